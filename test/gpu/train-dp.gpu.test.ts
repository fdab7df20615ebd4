// Data-parallel training on cuda:0 and cuda:1 over NCCL (src/train/data-parallel.ts): with the 'global'
// data order, 2 replicas with batch b follow one GPU with batch 2b (f32: the losses within 1e-4 relative,
// the weights within 1e-4 absolute; only the reduction order differs); the replicas stay bit-identical
// (NCCL's all-reduce gives every rank the same sum); bf16 runs and learns. Skipped without 2 GPUs and NCCL.
import { beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/device.js';
import type { ModelConfig } from '../../src/io/config.js';
import { ncclStatus } from '../../src/parallel/comm.js';
import { DataParallelTrainer } from '../../src/train/data-parallel.js';
import { ensureDist } from '../helpers/dist.js';
import { runDp, runOne, smallGpt2, smallLlama, tokens } from '../helpers/train.js';

// the workers run the compiled dist/
beforeAll(() => ensureDist());

const enabled = cudaDeviceCount() >= 2 && ncclStatus().ok;
const newSeed = () => Math.floor(Math.random() * 1e6);


const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** f32: the dp run's losses within 1e-4 relative of one GPU's, its weights within 1e-4 absolute. */
function closeToOne(r: { losses: number[] }, master: Float32Array, r1: { losses: number[] }, master1: Float32Array, seed: number) {
  for (let i = 0; i < r1.losses.length; i++) expect(Math.abs(r.losses[i]! - r1.losses[i]!) / r1.losses[i]!, `step ${i + 1} (seed ${seed})`).toBeLessThan(1e-4);
  let d = 0;
  for (let i = 0; i < master1.length; i++) d = Math.max(d, Math.abs(master[i]! - master1[i]!));
  expect(d, `weights (seed ${seed})`).toBeLessThan(1e-4);
}

describe.skipIf(!enabled)('data-parallel training on cuda:0, cuda:1 (NCCL)', () => {
  for (const cfg of [smallGpt2, smallLlama] as ModelConfig[])
    it(`${cfg.family} [f32]: 2 x batch 4 = one GPU with batch 8; replicas identical`, async () => {
      const seed = newSeed();
      const data = tokens(cfg.vocabSize, 4000, seed);
      const o = { model: cfg, data, batch: 4, seq: 16, steps: 8, lr: 3e-3, warmup: 2, seed, dtype: 'f32' as const, commTimeoutMs: 60_000 };
      const { r, states } = await runDp({ ...o, devices: ['cuda:0', 'cuda:1'], dataOrder: 'global' });
      const { r1, master1 } = await runOne(o, 8, 'cuda:0');
      closeToOne(r, states[0]!.master, r1, master1, seed);
      expect(same(states[0]!.master, states[1]!.master)).toBe(true);
      expect(same(states[0]!.m, states[1]!.m)).toBe(true);
      expect(same(states[0]!.v, states[1]!.v)).toBe(true);
    });

  it('llama [bf16]: gradient buckets all-reduced on a second stream during the backward = one all-reduce after it', async () => {
    const seed = newSeed();
    const o = { model: smallLlama, data: tokens(smallLlama.vocabSize, 4000, seed), devices: ['cuda:0', 'cuda:1'], batch: 4, seq: 16, steps: 6, lr: 3e-3, seed, dtype: 'bf16' as const, gradAccum: 2 };
    const runWith = async (bucketMiB: number) => {
      const t = await DataParallelTrainer.create({ ...o, bucketMiB });
      try {
        return { r: await t.run(), s: await t.replicaStates() };
      } finally {
        await t.close();
      }
    };
    const whole = await runWith(0);
    const bucketed = await runWith(2000 / 2 ** 20);
    expect(bucketed.s[0]!.buckets!.launchOrder.length).toBeGreaterThan(smallLlama.layers + 1);
    // the same sums; only a GPU kernel's own run-to-run differences (atomics) may show
    for (let i = 0; i < 6; i++) expect(Math.abs(bucketed.r.losses[i]! - whole.r.losses[i]!) / whole.r.losses[i]!, `step ${i + 1} (seed ${seed})`).toBeLessThan(1e-3);
    expect(same(bucketed.s[0]!.master, bucketed.s[1]!.master)).toBe(true);
  });

  it('gpt2 [f32]: the tied gradient in two parts (tiedGradSplit, buckets on the second stream, gradient accumulation 2) = one GPU with batch 8; replicas identical', async () => {
    const seed = newSeed();
    const cfg = smallGpt2;
    const o = { model: cfg, data: tokens(cfg.vocabSize, 4000, seed), batch: 2, seq: 16, steps: 8, lr: 3e-3, warmup: 2, seed, dtype: 'f32' as const, gradAccum: 2 };
    const { r, states } = await runDp({ ...o, devices: ['cuda:0', 'cuda:1'], dataOrder: 'global', bucketMiB: 2000 / 2 ** 20, tiedGradSplit: true });
    expect(states[0]!.buckets!.ranges[0]!.ready, 'the embeddings\' bucket goes at the head').toBe(0);
    const { r1, master1 } = await runOne(o, 4, 'cuda:0');
    closeToOne(r, states[0]!.master, r1, master1, seed);
    expect(same(states[0]!.master, states[1]!.master)).toBe(true);
  });

  it('gpt2 [bf16], sharded data: the loss falls and the replicas stay identical', async () => {
    const seed = newSeed();
    const dp = await DataParallelTrainer.create({
      model: smallGpt2, data: tokens(smallGpt2.vocabSize, 6000, seed), devices: ['cuda:0', 'cuda:1'], batch: 8, seq: 16, steps: 30, lr: 3e-3, warmup: 3, seed, dtype: 'bf16',
    });
    try {
      const r = await dp.run();
      expect(r.losses[29]!, `seed ${seed}`).toBeLessThan(r.losses[0]! * 0.95); // bf16, 30 steps: measured 4.13 -> 3.68 on 2 x H200
      const s = await dp.replicaStates();
      expect(same(s[0]!.master, s[1]!.master)).toBe(true);
    } finally {
      await dp.close();
    }
  });
});
