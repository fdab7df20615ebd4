// The strategies on CPU devices: greedy tokens under data, model and pipeline parallelism on 2 and 3
// devices, for any micro-batch count up to the batch (dividing it or not), equal the single-device run.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { ensureDist } from '../helpers/dist.js';

const fx = path.resolve(__dirname, '../fixtures');
const expected = JSON.parse(readFileSync(path.join(fx, 'expected.json'), 'utf8')) as Record<string, { prompts: number[][]; greedy: number[][] }>;

beforeAll(() => ensureDist(), 300_000);

// The Hugging Face fixtures (2 layers) and the 6-layer tiny presets (for 3 stages).
for (const [name, source] of [
  ['tiny-gpt2', path.join(fx, 'tiny-gpt2')],
  ['tiny-llama', path.join(fx, 'tiny-llama')],
  ['tiny-gpt2', 'tiny-gpt2'],
  ['tiny-llama', 'tiny-llama'],
] as const) {
  describe(`${source.startsWith('/') ? path.basename(source) + ' (HF fixture)' : source + ' (preset)'}: strategies agree with one device`, () => {
    const folder = source;
    const fixture = source.startsWith('/');
    // Six prompts of different lengths: the fixture's four and two more.
    const prompts = [...expected[name]!.prompts, [3, 1, 4, 1, 5], [9, 2, 6]];
    const N = 8;
    let reference: number[][];
    const open: ParallelModel[] = [];

    beforeAll(async () => {
      const m = Model.load(folder, { device: 'cpu:0', dtype: 'f32' });
      reference = (await generate(m, prompts, { maxTokens: N, stopTokens: [] })).map((g) => g.tokens);
      m.dispose();
      if (fixture) expect(reference.slice(0, 4).map((t) => t.slice(0, N))).toEqual(expected[name]!.greedy.map((g) => g.slice(0, N)));
    });
    afterAll(async () => {
      for (const p of open) await p.close();
    });

    for (const devices of [['cpu:0', 'cpu:1'], ['cpu:0', 'cpu:1', 'cpu:2']]) {
      it(`dp on ${devices.length} devices`, async () => {
        const p = await ParallelModel.load(folder, { strategy: 'dp', devices, dtype: 'f32' });
        open.push(p);
        expect((await p.generate(prompts, { maxTokens: N })).tokens).toEqual(reference);
        // Each replica in batches of 2 sequences: the same tokens.
        expect((await p.generate(prompts, { maxTokens: N, batchPerDevice: 2 })).tokens).toEqual(reference);
        await expect(p.generate(prompts, { maxTokens: N, batchPerDevice: 0 })).rejects.toThrow(/batchPerDevice/);
      });

      it(`mp and pp on ${devices.length} devices, every micro-batch count`, async () => {
        if (devices.length > 2 && fixture) {
          // 2 layers cannot make 3 stages: a clear error, not a hang.
          await expect(ParallelModel.load(folder, { strategy: 'pp', devices, dtype: 'f32' })).rejects.toThrow(/more stages than layers/);
          return;
        }
        const mp = await ParallelModel.load(folder, { strategy: 'mp', devices, dtype: 'f32' });
        open.push(mp);
        expect((await mp.generate(prompts, { maxTokens: N })).tokens).toEqual(reference);
        const pp = await ParallelModel.load(folder, { strategy: 'pp', devices, dtype: 'f32' });
        open.push(pp);
        for (let m = 1; m <= prompts.length; m++) expect((await pp.generate(prompts, { maxTokens: N, microBatches: m })).tokens, `${m} micro-batches`).toEqual(reference);
        await expect(pp.generate(prompts, { maxTokens: N, microBatches: 7 })).rejects.toThrow(/at most one micro-batch per sequence/);
        await expect(pp.generate(prompts, { maxTokens: N, microBatches: 0 })).rejects.toThrow(/positive integer/);
      });

      it(`pp with 2 interleaved stages a device on ${devices.length} devices, every micro-batch count`, async () => {
        if (fixture) {
          // 2 layers cannot make 4 or 6 stages.
          await expect(ParallelModel.load(folder, { strategy: 'pp', devices, dtype: 'f32', chunks: 2 })).rejects.toThrow(/more stages than layers/);
          return;
        }
        const pp = await ParallelModel.load(folder, { strategy: 'pp', devices, dtype: 'f32', chunks: 2 });
        open.push(pp);
        expect(pp.stages.map((s) => [s.device, s.start, s.end])).toEqual(
          devices.length === 2
            ? [['cpu:0', 0, 2], ['cpu:1', 2, 4], ['cpu:0', 4, 5], ['cpu:1', 5, 6]]
            : [['cpu:0', 0, 1], ['cpu:1', 1, 2], ['cpu:2', 2, 3], ['cpu:0', 3, 4], ['cpu:1', 4, 5], ['cpu:2', 5, 6]],
        );
        for (let m = 1; m <= prompts.length; m++) expect((await pp.generate(prompts, { maxTokens: N, microBatches: m })).tokens, `${m} micro-batches`).toEqual(reference);
        const r = await pp.generate(prompts, { maxTokens: 3, microBatches: 4, timeline: true });
        // Every (stage, micro-batch, step) ran once, on the device that holds the stage.
        expect(r.tasks.length).toBe(2 * devices.length * 4 * 3);
        for (const t of r.tasks) expect(t.vstage! % devices.length).toBe(t.stage);
      });
    }
  });
}

describe('a pipeline whose worker dies mid-run', () => {
  it('rejects with an error naming the device, and the pool still closes (no hang)', async () => {
    const p = await ParallelModel.load('tiny-llama-32', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32', commTimeoutMs: 5_000 });
    const prompts = Array.from({ length: 8 }, (_, b) => [1 + b, 2, 3]);
    const run = p.generate(prompts, { maxTokens: 250, microBatches: 4 }).then(
      () => new Error('generate finished although a worker was killed'),
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 100));
    await p.pool.terminate(1, 'killed by the test');
    expect((await run).message).toMatch(/cpu:1 was terminated \(killed by the test\)/);
    const t0 = Date.now();
    await p.close();
    expect(Date.now() - t0).toBeLessThan(10_000);
  }, 60_000);
});
