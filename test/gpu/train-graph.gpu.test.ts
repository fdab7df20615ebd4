// The training step as one CUDA graph (src/train/captured-step.ts) against the same steps op by op
// (PARALLM_TRAIN_GRAPH=0): on one GPU, bf16 and f32, with gradient accumulation, losses, norms and weights
// bit for bit (the same kernels in the same order); and data parallel on cuda:0 and cuda:1, where the
// graph holds NCCL's all-reduce of the gradient (one after the backward, or buckets on a second stream
// during it, joined back on the device): losses and every replica's weights bit for bit. Fresh
// random data and init each run. Skipped without a GPU (the DP case without 2 GPUs and NCCL).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/device.js';
import type { ModelConfig } from '../../src/io/config.js';
import { ncclStatus } from '../../src/parallel/comm.js';
import { CapturedStep } from '../../src/train/captured-step.js';
import { DataParallelTrainer } from '../../src/train/data-parallel.js';
import type { TrainOptions } from '../../src/train/trainer.js';
import { ensureDist } from '../helpers/dist.js';
import { smallGpt2, smallLlama, tokens, trainSteps } from '../helpers/train.js';

beforeAll(() => ensureDist()); // the DP workers run the compiled dist/

const gpus = cudaDeviceCount();
const newSeed = () => Math.floor(Math.random() * 1e6);
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

afterEach(() => {
  delete process.env.PARALLM_TRAIN_GRAPH;
  delete process.env.PARALLM_TRAIN_GRAPH_ZERO;
});

const single = trainSteps;

/** A data-parallel run with the step captured (graph '1') or op by op ('0'): its losses and replicas. */
async function dp(o: Parameters<typeof DataParallelTrainer.create>[0], graph: '0' | '1') {
  process.env.PARALLM_TRAIN_GRAPH = graph; // the workers start with a copy of this environment
  const t = await DataParallelTrainer.create(o);
  try {
    return { r: await t.run(), s: await t.replicaStates() };
  } finally {
    await t.close();
  }
}

/** Data parallel op by op and captured: no replay op by op, 5 of 6 steps replayed, losses and both replicas bit for bit. */
async function capturedMatchesEager(o: Parameters<typeof DataParallelTrainer.create>[0], seed: number) {
  const eager = await dp(o, '0');
  const graph = await dp(o, '1');
  expect(eager.s.map((s) => s.graphSteps)).toEqual([0, 0]);
  expect(graph.s.map((s) => s.graphSteps), 'steps 2..6 replayed on each replica').toEqual([5, 5]);
  expect(graph.r.losses, `seed ${seed}`).toEqual(eager.r.losses);
  for (const k of [0, 1]) expect(same(graph.s[k]!.master, eager.s[k]!.master), `replica ${k} (seed ${seed})`).toBe(true);
}

describe.skipIf(gpus === 0)('the training step as one CUDA graph', () => {
  for (const cfg of [smallGpt2, smallLlama] as ModelConfig[])
    for (const dtype of ['bf16', 'f32'] as const)
      it(`${cfg.family} [${dtype}], grad accumulation 2: captured steps = steps op by op, bit for bit`, async () => {
        const seed = newSeed();
        const o: TrainOptions = { model: cfg, data: tokens(cfg.vocabSize, 4000, seed), device: 'cuda:0', batch: 4, seq: 16, steps: 6, lr: 3e-3, warmup: 2, seed, dtype, gradAccum: 2 };
        const eager = await single(o, '0');
        const graph = await single(o, '1');
        expect(eager.captured).toBeNull();
        expect(graph.captured, 'the step was captured').toBeInstanceOf(CapturedStep);
        expect(graph.graphSteps, 'steps 2..6 replayed').toBe(5);
        expect(graph.steps, `seed ${seed}`).toEqual(eager.steps);
        expect(same(graph.master, eager.master), `weights (seed ${seed})`).toBe(true);
      });

  for (const bucketMiB of [0, 0.05])
  it.skipIf(gpus < 2 || !ncclStatus().ok)(`data parallel on cuda:0, cuda:1 [f32]${bucketMiB ? ', gradient buckets on a second stream during the backward' : ''}: NCCL inside the graph (the default); losses and replicas bit for bit`, async () => {
    const seed = newSeed();
    const o = { model: smallLlama, data: tokens(smallLlama.vocabSize, 4000, seed), devices: ['cuda:0', 'cuda:1'], batch: 4, seq: 16, steps: 6, lr: 3e-3, seed, dtype: 'f32' as const, bucketMiB };
    await capturedMatchesEager(o, seed);
  });

  for (const [dtype, bucketMiB] of [['f32', 0], ['bf16', 0], ['f32', 0.005], ['bf16', 0.005]] as const)
  it.skipIf(gpus < 2 || !ncclStatus().ok)(`data parallel with ZeRO-1 on cuda:0, cuda:1 [${dtype}]: ${bucketMiB ? 'each bucket reduce-scattered during the backward and all-gathered during the forward, on a second stream' : 'the reduce-scatter and the shard\'s norm'} inside the graph; losses and replicas bit for bit`, async () => {
    const seed = newSeed();
    const o = { model: smallGpt2, data: tokens(smallGpt2.vocabSize, 4000, seed), devices: ['cuda:0', 'cuda:1'], batch: 4, seq: 16, steps: 6, lr: 3e-3, seed, dtype, zero: 1 as const, bucketMiB };
    await capturedMatchesEager(o, seed);
  });
});
