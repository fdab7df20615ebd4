// Decode one step ahead (GenerateOptions.ahead, on by default on a GPU): each step is enqueued before the
// step before's tokens are waited for. On the CPU a step runs when enqueued, so these tests check what
// the option must not change (the tokens, stops, errors, memory), not what it gains (bench/RESULTS.md).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, generateSteps, type GenerateOptions } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { memoryStats } from '../../src/device.js';
import { capture } from '../../src/runtime.js';
import { Tensor } from '../../src/tensor.js';
import * as ops from '../../src/ops.js';

const dev = 'cpu:0';

describe('Tensor.readBegin', () => {
  it('wait() returns what toArray does, once', () => {
    for (const dtype of ['f32', 'i32', 'bf16'] as const) {
      const t = Tensor.from([1, -2, 3, 7], [4], { dtype, device: dev });
      const r = t.readBegin();
      expect(Array.from(r.wait())).toEqual(Array.from(t.toArray()));
      expect(() => r.wait()).toThrow(/wait\(\) returns them once/);
      t.dispose();
    }
  });

  it('reads the values as they were when the read began, and an empty tensor', () => {
    const t = Tensor.from([1, 2, 3], [3], { device: dev });
    const r = t.readBegin();
    t.write([4, 5, 6]);
    expect(Array.from(r.wait())).toEqual([1, 2, 3]);
    t.dispose();
    const e = Tensor.empty([0], { device: dev });
    expect(e.readBegin().wait().length).toBe(0);
    e.dispose();
    expect(() => t.readBegin()).toThrow(/disposed/);
  });

  it('is an error while the device captures', () => {
    const y = Tensor.zeros([8], { device: dev });
    let msg = '';
    const g = capture(dev, () => {
      ops.gelu(y, y);
      try {
        y.readBegin();
      } catch (err) {
        msg = (err as Error).message;
      }
    });
    expect(msg).toMatch(/readBegin: cannot read a tensor of cpu:0 back while cpu:0 is capturing/);
    g.dispose();
    y.dispose();
  });
});

describe('generation one step ahead', () => {
  let m: Model;
  beforeAll(() => {
    m = Model.load('tiny-llama', { device: dev, dtype: 'f32' });
  });
  afterAll(() => m.dispose());

  const prompts = [[5, 9, 17, 3], [250, 1], [7, 7, 7, 7, 7, 7]];
  const run = (opts: GenerateOptions) => generate(m, prompts, { maxTokens: 6, stopTokens: [], ...opts });

  it.each([
    ['greedy, graph', { graph: true }],
    ['greedy, op by op', { graph: false }],
    ['sampled', { temperature: 0.9, topK: 20, seed: 11 }],
  ] as const)('gives the tokens of a step at a time (%s), at every length', async (_, o) => {
    for (const maxTokens of [1, 2, 3, 6]) {
      const base = await run({ ...o, maxTokens, ahead: false });
      const ahead = await run({ ...o, maxTokens, ahead: true });
      expect(ahead).toEqual(base);
      expect(base[0]!.tokens.length).toBe(maxTokens);
    }
  });

  it('stops where a step at a time stops; the step enqueued past the stop is dropped, its memory freed', async () => {
    const free = await run({ ahead: false });
    // A stop token each sequence meets at a different step: sequence 0's third token.
    const stop = free[0]!.tokens[2]!;
    const before = memoryStats(dev).allocated;
    const base = await run({ stopTokens: [stop], ahead: false });
    const ahead = await run({ stopTokens: [stop], ahead: true });
    expect(ahead).toEqual(base);
    expect(base[0]!.finish).toBe('stop-token');
    // One sequence: every sequence has stopped at its third token, with steps left (the one enqueued ahead dropped).
    const one = [prompts[0]!];
    const alone = await generate(m, one, { maxTokens: 6, stopTokens: [stop], ahead: false });
    expect(alone[0]!.tokens).toHaveLength(3);
    expect(await generate(m, one, { maxTokens: 6, stopTokens: [stop], ahead: true })).toEqual(alone);
    expect(memoryStats(dev).allocated).toBe(before);
  });

  it('a stop asked for mid-run ends it with the error, the enqueued step waited for and freed', async () => {
    const before = memoryStats(dev).allocated;
    let steps = 0;
    const gen = generateSteps(m, prompts, { maxTokens: 8, stopTokens: [], ahead: true, shouldStop: () => steps >= 3 });
    await expect(
      (async () => {
        for await (const _ of gen) steps++;
      })(),
    ).rejects.toThrow(/stopped/);
    expect(steps).toBe(3);
    expect(memoryStats(dev).allocated).toBe(before);
  });

  it('a consumer that leaves early (break) frees everything', async () => {
    const before = memoryStats(dev).allocated;
    let seen = 0;
    for await (const ev of generateSteps(m, prompts, { maxTokens: 8, stopTokens: [], ahead: true })) {
      expect(ev.tokens).toHaveLength(prompts.length);
      if (++seen === 2) break;
    }
    expect(memoryStats(dev).allocated).toBe(before);
  });

  it('times each step from the step before to its own tokens', async () => {
    const times = { prefillMs: 0, decodeMs: 0, decodeSteps: 0, stepMs: [] as number[] };
    for await (const _ of generateSteps(m, prompts, { maxTokens: 6, stopTokens: [], ahead: true }, times));
    expect(times.decodeSteps).toBe(4); // steps 2..5 (step 1 captures the graph)
    expect(times.stepMs).toHaveLength(4);
    expect(times.stepMs.every((t) => t >= 0 && Number.isFinite(t))).toBe(true);
    expect(times.decodeMs).toBeGreaterThanOrEqual(times.stepMs.reduce((a, b) => a + b, 0) - 1e-6);
  });
});
