// Tensor-parallel training on cuda:0 and cuda:1 over NCCL (Stage.tp, train/stage.ts's tp all-reduces on
// the compute stream, train/pipeline-parallel.ts with tp = 2): f32 follows one GPU with the same batch —
// losses and gradient norms within 1e-4 relative, every rank's slice of every weight within 1e-4 absolute
// (the tp all-reduces sum the heads' and features' partial sums in another order) — and what both ranks
// hold whole (embeddings, norms, head, GPT-2's row-parallel biases) stays identical bit for bit.
// Skipped without 2 GPUs and NCCL.
import { beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/device.js';
import type { ModelConfig } from '../../src/io/config.js';
import { ncclStatus } from '../../src/parallel/comm.js';
import { PipelineTrainer, type PipelineTrainOptions } from '../../src/train/pipeline-parallel.js';
import { Trainer } from '../../src/train/trainer.js';
import { ensureDist } from '../helpers/dist.js';
import { tpSlice } from '../helpers/tp-slice.js';
import { smallGpt2, smallLlama, tokens } from '../helpers/train.js';

beforeAll(() => ensureDist());

const enabled = cudaDeviceCount() >= 2 && ncclStatus().ok;
const newSeed = () => Math.floor(Math.random() * 1e6);


function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.skipIf(!enabled)('tensor-parallel training on cuda:0, cuda:1 (NCCL)', () => {
  const cases: ModelConfig[] = [
    { ...smallGpt2, layers: 3 },
    { ...smallLlama, layers: 3 },
  ];
  for (const cfg of cases)
    it(`${cfg.family} [f32], tp=2 = one GPU`, async () => {
      const seed = newSeed();
      const o: PipelineTrainOptions = {
        model: cfg, data: tokens(cfg.vocabSize, 4000, seed), devices: ['cuda:0', 'cuda:1'], tp: 2, batch: 6, seq: 16, steps: 6, lr: 3e-3, warmup: 2,
        seed, dtype: 'f32', clip: 0.2, evalEvery: 3, commTimeoutMs: 60_000,
      };
      const tpNorms: number[] = [];
      const t = await PipelineTrainer.create({ ...o, onStep: (e) => tpNorms.push(e.gradNorm) });
      let r, states;
      try {
        r = await t.run();
        states = (await t.stageStates()).flat();
      } finally {
        await t.close();
      }
      const { devices: _d, tp: _t, ...rest } = o;
      const oneNorms: number[] = [];
      const one = await Trainer.create({ ...rest, device: 'cuda:0', onStep: (e) => oneNorms.push(e.gradNorm) });
      const ro = await one.run();
      const byKey = new Map(one.params.layout.map((e) => [e.key, one.params.hostMaster().slice(e.offset, e.offset + e.numel)]));
      one.dispose();
      expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]!);
      for (const [i, l] of r.losses.entries()) expect(Math.abs(l - ro.losses[i]!), `loss of step ${i + 1}`).toBeLessThan(1e-4 * ro.losses[i]!);
      for (const [i, g] of tpNorms.entries()) expect(Math.abs(g - oneNorms[i]!), `norm of step ${i + 1}`).toBeLessThan(1e-4 * oneNorms[i]!);
      for (const [i, e] of r.valLosses.entries()) expect(Math.abs(e.valLoss - ro.valLosses[i]!.valLoss)).toBeLessThan(1e-4 * e.valLoss);
      expect(states).toHaveLength(2);
      const whole = new Map<string, Float32Array>();
      for (const s of states) {
        const rank = (s as unknown as { stage: { tp: { rank: number } } }).stage.tp.rank;
        for (const e of s.layout) {
          const got = s.master.subarray(e.offset, e.offset + e.numel);
          const want = tpSlice(cfg, e.key, byKey.get(e.key)!, rank, 2);
          expect(maxAbs(got, want), `${e.key} on tp rank ${rank}`).toBeLessThan(1e-4);
          if (want !== byKey.get(e.key)) continue;
          const other = whole.get(e.key);
          if (!other) whole.set(e.key, got);
          else expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(other.buffer, other.byteOffset, other.byteLength)), `${e.key}: the ranks' copies differ`).toBe(true);
        }
      }
      expect(whole.size).toBeGreaterThan(0);
    });
});
