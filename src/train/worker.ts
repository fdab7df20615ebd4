// Handlers of a data-parallel training worker (loaded by DevicePool, one per device; driven by
// src/train/data-parallel.ts). Each worker holds a whole replica (a Trainer: the same init from the same
// seed or folder or checkpoint on every rank), its share of the batches (TrainOptions.shard), and one
// communicator over all ranks. A step: forward/backward on its share, then one all-reduce 'avg' of the
// flat gradient buffer (the seed's average_gradients), then the norm and AdamW, which see the same
// gradient on every rank, so the replicas stay identical without ever exchanging weights. With ZeRO-1
// (ReplicaInitArgs.zero, src/train/zero.ts) each rank keeps the optimizer state of its shard only: the
// gradient is reduce-scattered, each rank updates its shard, and the weights are all-gathered.
import { memoryStats, resetPeakMemory, synchronize } from '../device.js';
import { dtypeSize } from '../dtype.js';
import { Communicator, type CommKind } from '../parallel/comm.js';
import { Tensor } from '../tensor.js';
import type { Handler, WorkerContext } from '../parallel/pool.js';
import type { DataShard } from './dp-data.js';
import type { HostOptimizerState } from './checkpoint.js';
import { BucketedAllReduce } from './grad-buckets.js';
import { Trainer, type TokenData, type TrainOptions } from './trainer.js';

const SKIP_REDUCE = process.env.PARALLM_DP_SKIP_REDUCE === '1';

/** The structured-cloneable part of TrainOptions (no callbacks), with the data already prepared. */
export type ReplicaOptions = Omit<TrainOptions, 'data' | 'device' | 'shard' | 'reduceGradients' | 'zero' | 'onStep' | 'onEval' | 'onEpoch' | 'onSave' | 'onCheckpointFile'> & {
  data: TokenData | string;
};

export interface ReplicaInitArgs {
  opts: ReplicaOptions;
  order: NonNullable<DataShard['order']>;
  /** rankOffset / world: launched as several processes, this worker is global rank rankOffset + its local rank, of world */
  comm: { kind: CommKind; id: string | Uint8Array; timeoutMs?: number; rankOffset?: number; world?: number } | null;
  /** > 0: all-reduce the gradient in buckets of about this many bytes during the backward (grad-buckets.ts) */
  bucketBytes?: number;
  /** 1: ZeRO-1, the optimizer state sharded over the ranks (needs comm; with bucketBytes, a slice of every bucket) */
  zero?: 0 | 1;
  /** with bucketBytes and tied embeddings: their gradient reduced in two parts (grad-buckets.ts) */
  tiedSplit?: boolean;
}

export interface ReplicaInfo {
  device: string;
  step: number;
  totalSteps: number;
  stepsPerEpoch: number;
  losses: number[];
  n: number;
  dtype: string;
  name: string;
  family: string;
}

/** A fault for the tests: rank `rank` throws, ends its thread, or stalls (until stopped, at most 30 s) at the start of step `step`. */
export interface StepFault {
  rank: number;
  step: number;
  kind: 'throw' | 'exit' | 'stall';
}

interface Replica {
  trainer: Trainer;
  comm: Communicator | null;
  buckets: BucketedAllReduce | null;
  /** launched across processes: the step's loss is gathered from every rank */
  global: boolean;
}

// The mean over all ranks of their losses, summed in rank order as DataParallelTrainer.trainStep does in
// one process, so one process and several give the same number. Each loss crosses as its float64's
// two 32-bit halves (an i32 all-gather), bit for bit.
function globalMeanLoss(comm: Communicator, loss: number, device: string): number {
  const mine = Tensor.from(new Int32Array(new Float64Array([loss]).buffer), [2], { device, dtype: 'i32' });
  const all = Tensor.empty([2 * comm.world], { device, dtype: 'i32' });
  try {
    comm.allGather(all, mine);
    const losses = new Float64Array((all.toArray() as Int32Array).slice().buffer);
    return losses.reduce((s, l) => s + l, 0) / losses.length;
  } finally {
    mine.dispose();
    all.dispose();
  }
}

const replica = (ctx: WorkerContext): Replica => {
  const r = ctx.state.get('replica') as Replica | undefined;
  if (!r) throw new Error(`${ctx.device}: no training replica on this worker: call trainInit first`);
  return r;
};

function disposeReplica(ctx: WorkerContext): void {
  const r = ctx.state.get('replica') as Replica | undefined;
  ctx.state.delete('replica');
  r?.buckets?.dispose();
  r?.trainer.dispose();
  r?.comm?.destroy();
}

export const handlers: Record<string, Handler> = {
  async trainInit(a: ReplicaInitArgs, ctx): Promise<ReplicaInfo> {
    disposeReplica(ctx);
    // NCCL's create blocks until every rank has joined, so it comes before anything that may fail on one rank only.
    const rank = ctx.rank + (a.comm?.rankOffset ?? 0);
    const world = a.comm?.world ?? ctx.world;
    const comm = a.comm ? Communicator.create(a.comm.kind, a.comm.id, rank, world, ctx.device, { timeoutMs: a.comm.timeoutMs, stopFlag: ctx.stopFlag }) : null;
    let trainer: Trainer;
    let buckets: BucketedAllReduce | null = null;
    try {
      trainer = await Trainer.create({
        ...a.opts,
        device: ctx.device,
        shard: { rank, world, order: a.order },
        // the seed's average_gradients: one all-reduce of the whole flat gradient after the backward,
        // or the buckets' wait for the reductions they launched during it
        // (ZeRO-1 reduce-scatters the same buckets: its own BucketedAllReduce, src/train/zero.ts)
        zero: comm && a.zero ? { comm, bucketBytes: a.bucketBytes } : undefined,
        // (PARALLM_DP_SKIP_REDUCE=1: no gradient reduction at all, each replica drifts on its own: a timing
        // knob that tells the communication's cost from the rest of a DP step's; the results are wrong)
        reduceGradients: comm && !a.zero && !SKIP_REDUCE ? (p, o) => (buckets ? buckets.finish(o?.inGraph) : comm.allReduce(p.grad, 'avg')) : undefined,
        drain: comm ? () => comm.drain() : undefined,
      });
      if (comm && a.bucketBytes && !a.zero && !SKIP_REDUCE) {
        const p = trainer.params;
        const tied = !!a.tiedSplit && p.cfg.tieEmbeddings;
        buckets = new BucketedAllReduce(p, comm, Math.max(1, Math.ceil(a.bucketBytes / dtypeSize(p.grad.dtype))), a.opts.gradAccum ?? 1, undefined, tied);
        trainer.stage.onGradsReady = buckets.onGradsReady;
        if (tied) trainer.stage.embedGrad = buckets.embedLookup;
      }
    } catch (e) {
      comm?.abort(); // the other ranks' first collective fails at once instead of waiting out the timeout
      comm?.destroy();
      throw e;
    }
    ctx.state.set('replica', { trainer, comm, buckets, global: world !== ctx.world } satisfies Replica);
    return {
      device: ctx.device, step: trainer.step, totalSteps: trainer.totalSteps, stepsPerEpoch: trainer.stepsPerEpoch, losses: [...trainer.losses],
      n: trainer.params.n, dtype: trainer.params.dtype, name: trainer.source.name, family: trainer.cfg.family,
    };
  },

  /** One optimizer step on this rank's share; the loss is this rank's (the caller averages over ranks). */
  trainStep(a: { fault?: StepFault }, ctx) {
    const r = replica(ctx);
    if (ctx.stopRequested()) throw new Error(`${ctx.device}: the run was stopped`);
    const f = a?.fault;
    if (f && f.rank === ctx.rank && f.step === r.trainer.step + 1 && f.kind === 'exit') process.exit(3);
    if (f && f.rank === ctx.rank && f.step === r.trainer.step + 1 && f.kind === 'stall') {
      const t0 = performance.now();
      while (!ctx.stopRequested() && performance.now() - t0 < 30_000) Atomics.wait(ctx.stopFlag, 0, 0, 20);
    }
    try {
      if (f && f.rank === ctx.rank && f.step === r.trainer.step + 1) throw new Error(`${ctx.device}: injected fault at step ${f.step}`);
      const res = r.trainer.trainStep();
      return r.global && r.comm ? { ...res, loss: globalMeanLoss(r.comm, res.loss, ctx.device) } : res;
    } catch (e) {
      // A rank that fails outside a collective would leave its peers waiting in the next one.
      r.comm?.abort();
      throw e;
    }
  },

  trainEvaluate(_a: unknown, ctx) {
    return replica(ctx).trainer.evaluate();
  },

  /** ZeRO-1: every rank's slices of the updated weights to every rank (all ranks call it, before rank 0 evaluates). */
  trainGather(_a: unknown, ctx) {
    const r = replica(ctx);
    try {
      r.trainer.zero?.gatherParams();
    } catch (e) {
      r.comm?.abort();
      throw e;
    }
  },

  /** `losses`: the run's losses as the main thread has them (the mean over ranks), for the checkpoint. */
  // Without ZeRO only rank 0 is called. With it every rank is: each sends its shard of the optimizer
  // state to rank 0, which writes the single-device checkpoint.
  trainSave(a: { dir: string; losses: number[] }, ctx) {
    const r = replica(ctx);
    const t = r.trainer;
    let whole: HostOptimizerState | undefined;
    if (t.zero) {
      try {
        whole = t.zero.gatherToRoot() ?? undefined;
      } catch (e) {
        r.comm?.abort();
        throw e;
      }
      if (ctx.rank !== 0) return;
    }
    t.losses.splice(0, t.losses.length, ...a.losses);
    t.save(a.dir, whole);
  },

  /**
   * This replica's master weights and moments, and the buckets' launch order of the last step (tests).
   * ZeRO-1 (every rank must be called): rank 0 gets the whole state gathered, the others their shards;
   * `weights` is each rank's whole compute copy.
   */
  trainState(_a: unknown, ctx) {
    const r = replica(ctx);
    const p = r.trainer.params;
    if (r.trainer.zero) {
      const whole = r.trainer.zero.gatherToRoot();
      return {
        ...(whole ?? { master: p.master.toArray() as Float32Array, m: p.m.toArray() as Float32Array, v: p.v.toArray() as Float32Array }),
        step: r.trainer.step, segments: p.segments, weights: (p.param ?? p.master).toArray(), graphSteps: r.trainer.graphSteps,
        buckets: r.trainer.zero.bucketed ? { ranges: r.trainer.zero.bucketed.buckets, launchOrder: [...r.trainer.zero.bucketed.launchOrder] } : null,
      };
    }
    return {
      master: p.hostMaster(), m: p.m.toArray() as Float32Array, v: p.v.toArray() as Float32Array, step: r.trainer.step,
      buckets: r.buckets ? { ranges: r.buckets.buckets, launchOrder: [...r.buckets.launchOrder] } : null, graphSteps: r.trainer.graphSteps,
    };
  },

  /** This device's memory now and at its peak since the last reset (bytes). */
  trainMemory(a: { reset?: boolean }, ctx) {
    synchronize(ctx.device);
    const m = memoryStats(ctx.device);
    if (a?.reset) resetPeakMemory(ctx.device);
    const r = ctx.state.get('replica') as Replica | undefined;
    return { ...m, optimizerBytes: r ? r.trainer.params.optimizerBytes : 0 };
  },

  trainDispose(_a: unknown, ctx) {
    disposeReplica(ctx);
  },
};
