// Deferred weight gradients (TrainStage deferWeightGrads, flushWeightGrads) on CUDA: four micro-batches
// of different sizes through the whole model on cuda:0, with deferral against without (the dW scratch
// path of weightGrad, PARALLM_DW_SCRATCH, is the GPU default and used by both), and both against the
// CPU's f32 gradient of the same micro-batches. Tolerances: f32, 1e-5 relative between the two GPU runs
// (one matmul over all the tokens sums in another order than four and three adds) and 1e-4 against the
// CPU; bf16, 2e-2 between the two (without deferral the gradient is rounded to bf16 after every
// micro-batch's add, with it once) and 5e-2 against the CPU (train.gpu.test.ts's bound). Losses and the
// input-side results do not depend on deferral: equal within 1e-6 (f32) / 1e-3 (bf16) relative, not bit
// for bit, so a nondeterministic kernel (atomics) cannot fail the test. With two GPUs, a pipeline with
// deferral follows one GPU's f32 curve. Skipped without a GPU (CI).
import { beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount, type DType } from '../../src/index.js';
import type { ModelConfig } from '../../src/io/config.js';
import { ncclStatus } from '../../src/parallel/comm.js';
import { initParams } from '../../src/train/init.js';
import { PipelineTrainer, type PipelineTrainOptions } from '../../src/train/pipeline-parallel.js';
import { TrainStage, type MicroBatch } from '../../src/train/stage.js';
import { Trainer } from '../../src/train/trainer.js';
import { ensureDist } from '../helpers/dist.js';
import { relError } from '../helpers/reference.js';
import { randomBatch, smallGpt2, smallLlama, tokens } from '../helpers/train.js';

beforeAll(() => ensureDist());

const newSeed = () => Math.floor(Math.random() * 1e6);
// wider than the CPU tests' shapes, so the weight gradients' matmuls take the tensor-core paths
const gpt2w: ModelConfig = { ...smallGpt2, hidden: 128, heads: 4, kvHeads: 4, headDim: 32, intermediate: 512, maxPositions: 64 };
const llamaw: ModelConfig = { ...smallLlama, vocabSize: 128, hidden: 128, heads: 4, kvHeads: 2, headDim: 32, intermediate: 256, maxPositions: 64 };

function gradient(cfg: ModelConfig, mbs: MicroBatch[], seed: number, device: string, dtype: DType, defer: boolean) {
  const p = initParams({ cfg, folder: null, name: 'test' }, { device, dtype, seed });
  const st = new TrainStage(p, { deferWeightGrads: defer });
  p.zeroGrad();
  const count = mbs.reduce((t, mb) => t + mb.batch * mb.seq, 0);
  const losses = mbs.map((mb, i) => {
    const r = st.forward(i, mb, undefined, { dscale: 1 / count });
    st.backward(i);
    return r.lossSum!;
  });
  st.flushWeightGrads();
  const held = st.deferredBytes(true).peak;
  const g = Float64Array.from(p.grad.toArray());
  st.dispose();
  p.dispose();
  return { g, losses, held };
}

describe.skipIf(cudaDeviceCount() === 0)('deferred weight gradients on cuda:0', () => {
  for (const cfg of [gpt2w, llamaw])
    for (const dt of ['f32', 'bf16'] as DType[])
      it(`${cfg.family} [${dt}]: four micro-batches, deferred = not deferred = the CPU's f32 gradient`, () => {
        const seed = newSeed();
        const mbs = [[2, 64], [1, 48], [3, 64], [1, 17]].map(([b, t], i) => randomBatch(cfg.vocabSize, b!, t!, seed + i, i));
        const cpu = gradient(cfg, mbs, seed, 'cpu:0', 'f32', false);
        const off = gradient(cfg, mbs, seed, 'cuda:0', dt, false);
        const on = gradient(cfg, mbs, seed, 'cuda:0', dt, true);
        expect(off.held).toBe(0);
        expect(on.held).toBeGreaterThan(0);
        const f32 = dt === 'f32';
        on.losses.forEach((l, i) => expect(Math.abs(l - off.losses[i]!) / Math.abs(off.losses[i]!), `loss ${i} (seed ${seed})`).toBeLessThan(f32 ? 1e-6 : 1e-3));
        expect(relError(on.g, off.g), `deferred vs not (seed ${seed})`).toBeLessThan(f32 ? 1e-5 : 2e-2);
        expect(relError(on.g, cpu.g), `deferred vs the CPU (seed ${seed})`).toBeLessThan(f32 ? 1e-4 : 5e-2);
        expect(relError(off.g, cpu.g), `not deferred vs the CPU (seed ${seed})`).toBeLessThan(f32 ? 1e-4 : 5e-2);
      });
});

describe.skipIf(cudaDeviceCount() < 2 || !ncclStatus().ok)('a pipeline with deferred weight gradients on cuda:0, cuda:1', () => {
  it('gpt2 [f32]: 4 micro-batches, 1f1b = one GPU', async () => {
    const seed = newSeed();
    const cfg: ModelConfig = { ...smallGpt2, layers: 4 };
    const o: PipelineTrainOptions = {
      model: cfg, data: tokens(cfg.vocabSize, 4000, seed), devices: ['cuda:0', 'cuda:1'], batch: 8, seq: 16, steps: 6, lr: 3e-3, warmup: 2, seed,
      dtype: 'f32', microBatches: 4, schedule: '1f1b', commTimeoutMs: 60_000, deferWeightGrads: true,
    };
    const t = await PipelineTrainer.create(o);
    let r, held;
    try {
      r = await t.run();
      held = t.heldBytes;
    } finally {
      await t.close();
    }
    expect(held).toHaveLength(2);
    for (const b of held!) expect(b).toBeGreaterThan(0);
    const { devices: _d, microBatches: _m, schedule: _s, deferWeightGrads: _dw, ...rest } = o;
    const one = await Trainer.create({ ...rest, device: 'cuda:0' });
    const want = await one.run();
    one.dispose();
    for (const [i, l] of r.losses.entries()) expect(Math.abs(l - want.losses[i]!), `step ${i + 1} (seed ${seed})`).toBeLessThan(1e-4 * Math.abs(want.losses[i]!));
  });
});
