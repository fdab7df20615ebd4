// Generation on (dp, pp, tp) meshes of 4 CPU devices: replicas of pipelines of tensor-parallel stages
// give the single-device tokens (greedy and sampled), whatever the micro-batches; each rank holds its
// stage's layers and its tp share.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/engine/generate.js';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { Model } from '../../src/models/model.js';
import { Mesh } from '../../src/parallel/mesh.js';
import { rng } from '../../src/random.js';
import { ensureDist } from '../helpers/dist.js';
import { fixtures } from '../helpers/models.js';

const devices4 = ['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3'];
const r = rng(9);
const prompts = Array.from({ length: 6 }, (_, b) => Array.from({ length: 2 + (b % 4) }, () => Math.floor(r() * 256)));
const N = 5;
const open: ParallelModel[] = [];
const reference = new Map<string, number[][]>();

async function single(source: string, sampling: { temperature?: number; seed?: number } = {}): Promise<number[][]> {
  const key = `${source}/${JSON.stringify(sampling)}`;
  if (!reference.has(key)) {
    const m = Model.load(source, { device: 'cpu:0', dtype: 'f32' });
    reference.set(key, (await generate(m, prompts, { maxTokens: N, stopTokens: [], ...sampling })).map((g) => g.tokens));
    m.dispose();
  }
  return reference.get(key)!;
}

async function load(source: string, mesh: string | Mesh) {
  const p = await ParallelModel.load(source, { mesh, devices: devices4, dtype: 'f32' });
  open.push(p);
  return p;
}

beforeAll(() => ensureDist(), 300_000);
afterAll(async () => {
  for (const p of open) await p.close();
});

describe('meshes on 4 CPU devices', () => {
  it('dp=2,tp=2: each replica a tp pair; greedy and sampled tokens equal one device\'s', async () => {
    const p = await load('tiny-llama', 'dp=2,tp=2');
    expect(p.strategy).toBe('mesh');
    expect(p.placed.map((s) => [s.start, s.end, s.tp])).toEqual([0, 1, 0, 1].map((rank) => [0, 6, { rank, size: 2 }]));
    expect((await p.generate(prompts, { maxTokens: N })).tokens).toEqual(await single('tiny-llama'));
    // A draw is keyed on (seed, sequence, position): a replica's share samples what one device does.
    const sampling = { temperature: 0.9, seed: 7 };
    expect((await p.generate(prompts, { maxTokens: N, ...sampling })).tokens).toEqual(await single('tiny-llama', sampling));
    // Fewer prompts than replicas: the idle replica sits the run out.
    expect((await p.generate(prompts.slice(0, 1), { maxTokens: N })).tokens).toEqual((await single('tiny-llama')).slice(0, 1));
  }, 120_000);

  it('pp=2,tp=2: a pipeline of two tp stages, with 1, 2 and 3 micro-batches (GPT-2 and LLaMA)', async () => {
    for (const source of ['tiny-llama', path.join(fixtures, 'tiny-gpt2')]) {
      const p = await load(source, new Mesh({ pp: 2, tp: 2 }));
      const L = p.config.layers;
      expect(p.placed.map((s) => [s.start, s.end, s.embed, s.head, s.tp!.rank])).toEqual([
        [0, L / 2, true, false, 0], [0, L / 2, true, false, 1], [L / 2, L, false, true, 0], [L / 2, L, false, true, 1],
      ]);
      const want = await single(source);
      for (const m of [1, 2, 3]) {
        const res = await p.generate(prompts, { maxTokens: N, microBatches: m, timeline: true });
        expect(res.tokens, `${source}, ${m} micro-batches`).toEqual(want);
        expect(res.tasks.length).toBe(2 * m * N); // the timeline: replica 0's tp rank 0 lane, every stage and step
      }
      await p.close();
    }
  }, 120_000);

  it('a rank that fails mid-run fails the run with its own error; the next run works on new communicators', async () => {
    const p = await load('tiny-llama', 'pp=2,tp=2');
    const t0 = Date.now();
    // Rank 3 (stage 1, tp rank 1) fails while its tp peer waits for it in an all-reduce.
    await expect(p.generate(prompts, { maxTokens: N, fault: { rank: 3, tick: 2 } } as never)).rejects.toThrow(/a fault injected at tick 2/);
    expect(Date.now() - t0).toBeLessThan(20_000); // the peers were released, not left to their timeout
    expect((await p.generate(prompts, { maxTokens: N })).tokens).toEqual(await single('tiny-llama'));
  }, 120_000);

  it('dp=2,pp=2: replicas of two-stage pipelines', async () => {
    const p = await load('tiny-llama', 'dp=2,pp=2');
    expect(p.placed.map((s) => [s.start, s.end, s.tp])).toEqual([[0, 3, undefined], [3, 6, undefined], [0, 3, undefined], [3, 6, undefined]]);
    expect((await p.generate(prompts, { maxTokens: N, microBatches: 2 })).tokens).toEqual(await single('tiny-llama'));
  }, 120_000);

  it('refuses a mesh that the devices or the options do not fit, before any worker starts', async () => {
    await expect(ParallelModel.load('tiny-llama', { mesh: 'dp=2,tp=2', devices: devices4.slice(0, 3) })).rejects.toThrow(/mesh dp=2,pp=1,tp=2 has 4 ranks, but 3 devices/);
    await expect(ParallelModel.load('tiny-llama', { mesh: 'tp=2', strategy: 'pp', devices: devices4.slice(0, 2) })).rejects.toThrow(/strategy or mesh, not both/);
    await expect(ParallelModel.load('tiny-llama', { mesh: 'pp=2,tp=2', devices: devices4, placement: 'memory' })).rejects.toThrow(/splits its layers evenly/);
    await expect(ParallelModel.load('tiny-llama', { mesh: 'dp=1,tp=4,pp=1', devices: devices4.slice(0, 3) })).rejects.toThrow(/4 ranks/);
    await expect(ParallelModel.load('tiny-llama', { mesh: 'xp=2', devices: devices4 })).rejects.toThrow(/axis=size/);
  });
});
