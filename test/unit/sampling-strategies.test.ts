// A sampled token depends on the seed, the sequence's index in the request and the token's position
// alone: single-device generation, dp, mp and pp with any micro-batch count give the same tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate, generateSteps } from '../../src/engine/generate.js';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { Model } from '../../src/models/model.js';
import { ensureDist } from '../helpers/dist.js';

beforeAll(() => ensureDist(), 300_000);

describe('seeded sampling under every strategy', () => {
  const prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10], [11, 12, 13, 14, 15], [16, 17]];
  const opts = { maxTokens: 6, temperature: 1.5, topP: 0.95, seed: 1234 };
  let reference: number[][];
  const open: ParallelModel[] = [];
  beforeAll(async () => {
    const m = Model.load('tiny-llama', { device: 'cpu:0', dtype: 'f32' });
    reference = (await generate(m, prompts, { ...opts, stopTokens: [] })).map((g) => g.tokens);
    // One prompt alone draws what it draws in the batch.
    expect((await generate(m, [prompts[2]!], { ...opts, stopTokens: [], sequenceIds: [2] }))[0]!.tokens).toEqual(reference[2]);
    m.dispose();
  }, 120_000);
  afterAll(async () => {
    for (const p of open) await p.close();
  });

  it('single, dp on 2 and 3 devices, in batches per device', async () => {
    for (const [strategy, devices] of [['single', ['cpu:0']], ['dp', ['cpu:0', 'cpu:1']], ['dp', ['cpu:0', 'cpu:1', 'cpu:2']]] as const) {
      const p = await ParallelModel.load('tiny-llama', { strategy, devices: [...devices], dtype: 'f32' });
      open.push(p);
      expect((await p.generate(prompts, opts)).tokens).toEqual(reference);
      expect((await p.generate(prompts, { ...opts, batchPerDevice: 1 })).tokens).toEqual(reference);
    }
  });

  it('mp and pp with every micro-batch count, and interleaved stages', async () => {
    const mp = await ParallelModel.load('tiny-llama', { strategy: 'mp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32' });
    open.push(mp);
    expect((await mp.generate(prompts, opts)).tokens).toEqual(reference);
    const pp = await ParallelModel.load('tiny-llama', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32', chunks: 2 });
    open.push(pp);
    for (let m = 1; m <= prompts.length; m++) expect((await pp.generate(prompts, { ...opts, microBatches: m })).tokens).toEqual(reference);
  });

  it('the token after prefill and the next one are drawn independently (no shared random offset)', async () => {
    // Near-flat logits: with the same draw for both, token 0 would equal token 1 in every sequence.
    const m = Model.load('tiny-llama', { device: 'cpu:0', dtype: 'f32' });
    try {
      const many = Array.from({ length: 200 }, (_, b) => [1 + (b % 50)]);
      const firstTwo: number[][] = many.map(() => []);
      for await (const ev of generateSteps(m, many, { maxTokens: 2, temperature: 1000, seed: 7, stopTokens: [] })) ev.tokens.forEach((t, b) => firstTwo[b]!.push(t));
      const same = firstTwo.filter(([a, b]) => a === b).length;
      expect(same).toBeLessThan(10); // 512 tokens: about 0.4 of 200 by chance
    } finally {
      m.dispose();
    }
  });
});
