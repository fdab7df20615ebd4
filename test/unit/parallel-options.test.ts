// ParallelModel checks every option on the main thread, before a worker starts a run, so a bad call is
// an error naming the option and the model stays usable (a pipeline is never left half-run).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { ensureDist } from '../helpers/dist.js';

beforeAll(() => ensureDist(), 300_000);

describe('ParallelModel options', () => {
  let pp: ParallelModel;
  let dp: ParallelModel;
  const prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]];
  beforeAll(async () => {
    pp = await ParallelModel.load('tiny-llama', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32' });
    dp = await ParallelModel.load('tiny-llama', { strategy: 'dp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32' });
  }, 120_000);
  afterAll(async () => {
    await pp?.close();
    await dp?.close();
  });

  it('rejects bad sampling options before any worker runs, and the pipeline still works after', async () => {
    const good = (await pp.generate(prompts, { maxTokens: 4 })).tokens;
    await expect(pp.generate(prompts, { maxTokens: 4, temperature: 1, topP: 0 })).rejects.toThrow(/topP must be in \(0, 1\]/);
    await expect(pp.generate(prompts, { maxTokens: 4, topK: -1 })).rejects.toThrow(/topK/);
    await expect(pp.generate(prompts, { maxTokens: 4, temperature: NaN })).rejects.toThrow(/temperature/);
    await expect(pp.generate(prompts, { maxTokens: 4, seed: -1 })).rejects.toThrow(/seed/);
    expect((await pp.generate(prompts, { maxTokens: 4 })).tokens).toEqual(good);
  });

  it('rejects bad maxTokens, micro-batch counts and prompts', async () => {
    for (const maxTokens of [NaN, 2.5, -3, 0]) await expect(pp.generate(prompts, { maxTokens })).rejects.toThrow(/maxTokens must be a positive integer/);
    for (const microBatches of [0, -1, NaN, 1.5]) await expect(pp.generate(prompts, { maxTokens: 2, microBatches })).rejects.toThrow(/micro-batches must be a positive integer/);
    await expect(pp.generate(prompts, { maxTokens: 2, microBatches: 4 })).rejects.toThrow(/4 micro-batches for a batch of 3/);
    for (const microBatches of [0, -1, NaN, 2]) await expect(dp.generate(prompts, { maxTokens: 2, microBatches })).rejects.toThrow(/micro-batches are for pp/);
    await expect(pp.generate(null as unknown as number[][], { maxTokens: 2 })).rejects.toThrow(/at least one prompt/);
    await expect(pp.generate([null as unknown as number[]], { maxTokens: 2 })).rejects.toThrow(/prompt 0 is empty/);
    await expect(pp.generate(prompts, undefined as unknown as { maxTokens: number })).rejects.toThrow(/maxTokens/);
    expect((await dp.generate(prompts, { maxTokens: 2 })).tokens).toHaveLength(3);
  });

  it('generateText cuts each sequence at its first stop token, and agrees with generate', async () => {
    const full = (await pp.generate(prompts, { maxTokens: 6 })).tokens;
    const stopAt = full[0]![2]!; // the third token of the first sequence
    const r = await pp.generateText(prompts, { maxTokens: 6, stopTokens: [stopAt] });
    r.generations.forEach((g, b) => {
      const at = full[b]!.indexOf(stopAt);
      expect(g.tokens).toEqual(at < 0 ? full[b] : full[b]!.slice(0, at + 1));
      expect(g.finish).toBe(at < 0 ? 'length' : 'stop-token');
      expect(g.text).toBeUndefined(); // tiny-llama has no tokenizer
    });
    await expect(pp.generateText(['text'], { maxTokens: 2 })).rejects.toThrow(/no tokenizer: give prompts as token ids/);
  });

  it('rejects bad loads with the reason', async () => {
    await expect(ParallelModel.load('tiny-llama', { strategy: 'pp', devices: [] })).rejects.toThrow(/devices must be a non-empty list/);
    await expect(ParallelModel.load('tiny-llama', { strategy: 'xx' as 'pp', devices: ['cpu:0'] })).rejects.toThrow(/unknown strategy "xx"/);
    await expect(ParallelModel.load('tiny-llama', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], placement: { 'cpu:0': [0, 1, 2, 3, 4, 5] } })).rejects.toThrow(/gives no layers to cpu:1/);
    await expect(ParallelModel.load('tiny-llama', { strategy: 'dp', devices: ['cpu:0', 'cpu:1'], chunks: 2 })).rejects.toThrow(/chunks applies to mp and pp/);
    await expect(ParallelModel.load('tiny-llama', { strategy: 'single', devices: ['cpu:0', 'cpu:1'] })).rejects.toThrow(/single takes one device/);
  });
});

describe('single-device generate input', () => {
  it('names a null or missing prompt instead of failing inside', async () => {
    const { Model } = await import('../../src/models/model.js');
    const { generate } = await import('../../src/engine/generate.js');
    const m = Model.load('tiny-llama', { device: 'cpu:0', dtype: 'f32' });
    try {
      await expect(generate(m, null as unknown as number[][])).rejects.toThrow(/at least one prompt/);
      await expect(generate(m, [null as unknown as number[]])).rejects.toThrow(/prompt 0 is null/);
      await expect(generate(m, [[1, 2], {} as unknown as number[]])).rejects.toThrow(/prompt 1 is object/);
    } finally {
      m.dispose();
    }
  });
});
