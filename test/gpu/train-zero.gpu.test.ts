// ZeRO-1 data-parallel training on cuda:0 and cuda:1 over NCCL (src/train/zero.ts): in f32 it follows the
// non-sharded dp run within 1e-4 (losses relative, weights absolute: the gradient's mean and the global
// norm are reduced in another order); both ranks hold the same whole weights after the all-gather; each
// holds half the optimizer state; bf16 runs and learns; the same with a slice of every gradient bucket a
// rank. Skipped without 2 GPUs and NCCL.
import { beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/device.js';
import type { ModelConfig } from '../../src/io/config.js';
import { ncclStatus } from '../../src/parallel/comm.js';
import { DataParallelTrainer, type DataParallelOptions } from '../../src/train/data-parallel.js';
import { ensureDist } from '../helpers/dist.js';
import { smallGpt2, smallLlama, tokens } from '../helpers/train.js';

// the workers run the compiled dist/
beforeAll(() => ensureDist());

const enabled = cudaDeviceCount() >= 2 && ncclStatus().ok;
const newSeed = () => Math.floor(Math.random() * 1e6);


async function run(o: DataParallelOptions) {
  const t = await DataParallelTrainer.create(o);
  try {
    const r = await t.run();
    return { r, states: await t.replicaStates(), mem: await t.memory() };
  } finally {
    await t.close();
  }
}

describe.skipIf(!enabled)('ZeRO-1 on cuda:0, cuda:1 (NCCL)', () => {
  // bucketMiB 0.005: ~1300 f32 elements a bucket, each rank a slice of every one (src/train/zero-layout.ts),
  // reduce-scattered during the backward and all-gathered during the next forward on a second stream
  for (const [cfg, bucketMiB] of [[smallGpt2, 0], [smallLlama, 0], [smallGpt2, 0.005], [smallLlama, 0.005]] as [ModelConfig, number][])
    it(`${cfg.family} [f32]${bucketMiB ? ', a slice of every bucket a rank' : ''}: zero 1 = non-sharded dp within 1e-4; ranks hold the same weights; half the optimizer state each`, async () => {
      const seed = newSeed();
      const data = tokens(cfg.vocabSize, 4000, seed);
      const o: DataParallelOptions = {
        model: cfg, data, batch: 4, seq: 16, steps: 8, lr: 3e-3, warmup: 2, seed, dtype: 'f32', commTimeoutMs: 60_000, devices: ['cuda:0', 'cuda:1'], dataOrder: 'global',
      };
      const z = await run({ ...o, zero: 1, bucketMiB });
      const d = await run(o);
      if (bucketMiB) expect(z.states[0]!.buckets!.ranges.length, 'several buckets').toBeGreaterThan(3);
      for (let i = 0; i < 8; i++) expect(Math.abs(z.r.losses[i]! - d.r.losses[i]!) / d.r.losses[i]!, `step ${i + 1} (seed ${seed})`).toBeLessThan(1e-4);
      const [zm, dm] = [z.states[0]!.master, d.states[0]!.master];
      expect(zm.length).toBe(dm.length);
      let diff = 0;
      for (let i = 0; i < dm.length; i++) diff = Math.max(diff, Math.abs(zm[i]! - dm[i]!));
      expect(diff, `weights (seed ${seed})`).toBeLessThan(1e-4);
      const [w0, w1] = [z.states[0]!.weights!, z.states[1]!.weights!];
      expect(Buffer.from(w0.buffer, w0.byteOffset, w0.byteLength).equals(Buffer.from(w1.buffer, w1.byteOffset, w1.byteLength))).toBe(true);
      const full = d.mem[0]!.optimizerBytes;
      expect(z.mem[0]!.optimizerBytes + z.mem[1]!.optimizerBytes).toBe(full);
      for (const m of z.mem) expect(m.optimizerBytes).toBeLessThanOrEqual(full / 2 + 16 * (z.states[0]!.buckets?.ranges.length ?? 1));
    });

  it('llama [bf16]: zero 1 learns, its losses near the non-sharded run', async () => {
    const seed = newSeed();
    const data = tokens(smallLlama.vocabSize, 4000, seed);
    const o: DataParallelOptions = {
      model: smallLlama, data, batch: 4, seq: 16, steps: 8, lr: 3e-3, warmup: 2, seed, dtype: 'bf16', commTimeoutMs: 60_000, devices: ['cuda:0', 'cuda:1'], dataOrder: 'global',
    };
    const z = await run({ ...o, zero: 1 });
    const d = await run(o);
    expect(z.r.losses[7]!).toBeLessThan(z.r.losses[0]!);
    for (let i = 0; i < 8; i++) expect(Math.abs(z.r.losses[i]! - d.r.losses[i]!) / d.r.losses[i]!, `step ${i + 1} (seed ${seed})`).toBeLessThan(2e-2);
  });
});
