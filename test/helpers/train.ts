// Shared by the training tests: small model shapes (the tiny presets' 50257-word vocabulary makes the
// classifier dominate), random batches, and a seeded wide init for finite differences.
import type { ModelConfig } from '../../src/io/config.js';
import { ops } from '../../src/index.js';
import { DataParallelTrainer, type DataParallelOptions } from '../../src/train/data-parallel.js';
import type { FlatParams } from '../../src/train/params.js';
import type { MicroBatch } from '../../src/train/stage.js';
import { Trainer, type TokenData, type TrainOptions } from '../../src/train/trainer.js';

export const smallGpt2: ModelConfig = {
  family: 'gpt2', vocabSize: 61, hidden: 16, layers: 2, heads: 2, kvHeads: 2, headDim: 8, intermediate: 64,
  maxPositions: 16, normEps: 1e-5, ropeTheta: 0, tieEmbeddings: true, bosTokenId: 0, eosTokenIds: [0],
};

export const smallLlama: ModelConfig = {
  family: 'llama', vocabSize: 53, hidden: 16, layers: 2, heads: 4, kvHeads: 2, headDim: 4, intermediate: 24,
  maxPositions: 16, normEps: 1e-5, ropeTheta: 10000, tieEmbeddings: false, bosTokenId: 1, eosTokenIds: [2],
};

/** A seeded generator (mulberry32) for batches. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random ids in [0, V); `pad` of the targets (the last ones of row 0) are -100. */
export function randomBatch(V: number, batch: number, seq: number, seed: number, pad = 0): MicroBatch {
  const r = rng(seed);
  const inputs = Int32Array.from({ length: batch * seq }, () => Math.floor(r() * V));
  const targets = Int32Array.from({ length: batch * seq }, () => Math.floor(r() * V));
  for (let i = 0; i < pad; i++) targets[seq - 1 - i] = -100;
  return { inputs, targets, batch, seq };
}

/** Master weights uniform in [-a, a] (norm weights around 1), so gradients are well above f32 noise. */
export function widen(p: FlatParams, seed: number, a = 0.3): void {
  ops.fillUniform(p.master, { seed, low: -a, high: a });
  for (const e of p.layout)
    if (/norm\d?$|normF$/.test(e.key)) {
      const t = p.master.view(e.offset, e.shape);
      ops.fillUniform(t, { seed: seed + e.offset, low: 0.7, high: 1.3 });
      t.dispose();
    }
  p.syncParam();
}

/**
 * A learnable token stream for trainer tests (mostly "next = previous + 1 mod V", some noise): n training
 * tokens and n / 4 validation ones, seeded.
 */
export function tokens(V: number, n: number, seed: number): TokenData {
  const r = rng(seed);
  const make = (len: number) => {
    const t = new Uint16Array(len);
    for (let i = 1; i < len; i++) t[i] = r() < 0.8 ? (t[i - 1]! + 1) % V : Math.floor(r() * V);
    return t;
  };
  return { train: make(n), val: make(Math.floor(n / 4)), id: `random-${V}-${n}-${seed}` };
}

/**
 * `opts.steps` steps of a Trainer with its step captured as a graph (PARALLM_TRAIN_GRAPH=1) or op by op
 * ('0'): each step's result, the weights, the captured step (null when op by op) and the replayed steps.
 */
export async function trainSteps(opts: TrainOptions, graph: '0' | '1') {
  process.env.PARALLM_TRAIN_GRAPH = graph;
  const t = await Trainer.create(opts);
  try {
    const steps = [];
    for (let i = 0; i < opts.steps!; i++) steps.push(t.trainStep());
    return { steps, master: t.params.hostMaster(), captured: (t as unknown as { captured: unknown }).captured, graphSteps: t.graphSteps };
  } finally {
    t.dispose();
  }
}

/** A data-parallel run to its end: its result and every replica's state (the pool closed either way). */
/**
 * A data-parallel run's options run on one device (`device`) with batch `batch` (the dp-only options
 * dropped): its result and final master weights, the reference a dp run is held to.
 */
export async function runOne(o: Omit<DataParallelOptions, 'devices'> & { devices?: string[] }, batch: number, device: string) {
  const { devices: _d, dataOrder: _o, bucketMiB: _b, tiedGradSplit: _t, ...rest } = o;
  const one = await Trainer.create({ ...rest, device, batch } as TrainOptions);
  try {
    return { r1: await one.run(), master1: one.params.hostMaster() };
  } finally {
    one.dispose();
  }
}

export async function runDp(o: DataParallelOptions) {
  const dp = await DataParallelTrainer.create(o);
  try {
    return { r: await dp.run(), states: await dp.replicaStates() };
  } finally {
    await dp.close();
  }
}

/**
 * The contiguous split of n elements over `world` ranks (floor(n / world) each, the last rank also the
 * remainder): ZeRO-1's one-bucket layout, written out independently of src/train/zero-layout.ts as the
 * tests' reference for it.
 */
export function zeroShard(n: number, rank: number, world: number): { lo: number; hi: number } {
  const per = Math.floor(n / world);
  return { lo: rank * per, hi: rank === world - 1 ? n : (rank + 1) * per };
}
