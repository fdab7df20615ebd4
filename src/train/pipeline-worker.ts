// Handlers of a pipeline-parallel training worker (loaded by DevicePool, one per device; driven by
// src/train/pipeline-parallel.ts). A worker holds the stages of its pipeline rank (one, or several
// interleaved ones), each a TrainStage over its own flat parameters and AdamW state, in a mesh of dp
// replicas x pp stages: its pipeline group carries activations forward and gradients back, its
// data-parallel group (the same stage in the other replicas) averages the stage's gradient.
//
// A step, on every rank: gradAccum micro-steps, each a batch cut into micro-batches run through the
// plan's column (train/pipeline-column.ts); then the gradient averaged over the replicas; the two copies
// of tied embeddings (first stage, last stage) summed, so both apply the same update; the global gradient
// norm summed over the pipeline (the tied copy counted once); then AdamW on each stage with that norm —
// the update of one device training the whole model, within reduction order.
//
// With tp > 1 each stage here is a tp rank's share (Stage.tp), its TrainStage all-reducing over the tp
// group inside forward and backward; the norm sums the shards' squares over the tp group and counts what
// every tp rank holds whole once; a save gathers the shards on the stage's tp rank 0 (gatherStage).
import { memoryStats, resetPeakMemory, synchronize } from '../device.js';
import { valBatches } from '../data/loader.js';
import type { Column } from '../engine/executor.js';
import type { Stage } from '../models/weights.js';
import * as ops from '../ops.js';
import type { Communicator, CommKind } from '../parallel/comm.js';
import type { MeshAxis } from '../parallel/mesh.js';
import { joinGroups, type GroupArgs } from '../parallel/mesh-comms.js';
import type { Handler, WorkerContext } from '../parallel/pool.js';
import { splitSizes } from '../parallel/schedule.js';
import { Tensor } from '../tensor.js';
import { loadOptimizerState, stageRecord, writeStageFiles, type HostOptimizerState, type StageRecord } from './checkpoint.js';
import { gatherShards, wholeStage } from './tp-shards.js';
import type { DataShard } from './dp-data.js';
import { initParamsAsync } from './init.js';
import { adamwStep, checkStepFinite, stepSettings } from './optim.js';
import { paramLayout, type FlatParams } from './params.js';
import { runTrainingColumn, type TrainColumnResult } from './pipeline-column.js';
import { prepareRun, type RunSetup } from './run-setup.js';
import { countTargets, TrainStage, type MicroBatch } from './stage.js';
import type { ReplicaInfo, ReplicaOptions, StepFault } from './worker.js';

export interface PipelineInitArgs {
  opts: ReplicaOptions;
  order: NonNullable<DataShard['order']>;
  /** this rank's replica among the data-parallel ones */
  replica: { rank: number; world: number };
  /** the stages this device holds, by index (with its tp shard when tp > 1), and how many the pipeline has */
  stages: (Stage & { index: number })[];
  nStages: number;
  /** every stage's layers [start, end), in stage order: a resumed run must split the model the same way */
  split: number[][];
  /** this rank's place in the pipeline, and the pipeline ranks holding the first and the last stage */
  ppRank: number;
  firstRank: number;
  lastRank: number;
  /** micro-batches a batch is cut into, and this rank's columns of the training and evaluation plans */
  micro: number;
  trainColumn: Column;
  evalColumn: Column;
  comm: { kind: CommKind; groups: GroupArgs[]; timeoutMs?: number };
  /**
   * every stage holds its weight gradients back to one matmul per layer after its last backward of a
   * column (TrainStage deferWeightGrads); a number n: also after every n of its backward tasks
   */
  deferWeightGrads?: boolean | number;
}

/** What a device tells the main thread after ppInit: a replica's (`n`: the parameters of its stages), and the data's hash. */
export interface PipelineInfo extends ReplicaInfo {
  dataHash: string;
}

export interface PipelineStepResult {
  /** the replica's mean loss (every rank of the pipeline gets it from the global reduction) */
  loss: number;
  gradNorm: number;
  lr: number;
  /** the last stage's exact (f64) loss sum and count; null on other stages */
  exact: { lossSum: number; count: number } | null;
  tasks?: TrainColumnResult['tasks'];
  /** the most bytes this device held at once for deferred weight gradients during the step (0 without) */
  heldBytes: number;
}

interface Held {
  a: PipelineInitArgs;
  run: RunSetup;
  opts: ReplicaOptions;
  stages: Map<number, TrainStage>;
  params: FlatParams[];
  comms: Map<MeshAxis, Communicator>;
  step: number;
  losses: number[];
}

const held = (ctx: WorkerContext): Held => {
  const h = ctx.state.get('pipeline') as Held | undefined;
  if (!h) throw new Error(`${ctx.device}: no pipeline stage on this worker: call ppInit first`);
  return h;
};

function dispose(ctx: WorkerContext): void {
  const h = ctx.state.get('pipeline') as Held | undefined;
  ctx.state.delete('pipeline');
  if (!h) return;
  for (const s of h.stages.values()) s.dispose();
  for (const p of h.params) p.dispose();
  for (const c of h.comms.values()) c.destroy();
}

/** Rows [from, from + n) of a batch, as a micro-batch. */
function rows(b: MicroBatch, from: number, n: number): MicroBatch {
  const T = b.seq;
  return { inputs: b.inputs.subarray(from * T, (from + n) * T), targets: b.targets.subarray(from * T, (from + n) * T), batch: n, seq: T };
}

function cut(b: MicroBatch, parts: number): MicroBatch[] {
  let at = 0;
  return splitSizes(b.batch, parts).map((n) => {
    const m = rows(b, at, n);
    at += n;
    return m;
  });
}

/** The embedding gradient segment of a stage holding embeddings (paramLayout puts 'embed' first of all). */
function embedGrad(p: FlatParams): Tensor {
  const e = p.layout.find((x) => x.key === 'embed');
  if (!e) throw new Error(`${p.device}: stage ${p.stage.start}-${p.stage.end} holds no embeddings`);
  return p.grad.view(e.offset, [e.numel]);
}

/**
 * The tied embeddings' two gradient copies (first stage, last stage) summed on both, so they stay equal
 * after the update. Both ranks add the same two numbers (a + b = b + a), so the copies agree exactly.
 */
function sumTiedEmbeddings(h: Held): void {
  const { a } = h;
  const cfg = h.run.cfg;
  if (!cfg.tieEmbeddings || a.nStages < 2) return;
  const first = h.params.find((p) => p.stage.embed);
  const last = h.params.find((p) => p.stage.head);
  if (!first && !last) return;
  if (first && last) {
    const g0 = embedGrad(first), g1 = embedGrad(last);
    ops.add(g0, g1, g0);
    g1.copyFrom(g0);
    g0.dispose();
    g1.dispose();
    return;
  }
  const pp = h.comms.get('pp');
  if (!pp) throw new Error(`${first?.device ?? last!.device}: tied embeddings across stages need the pipeline's communicator`);
  const mine = embedGrad((first ?? last)!);
  const peer = first ? a.lastRank : a.firstRank;
  const theirs = Tensor.empty([mine.numel], { dtype: mine.dtype, device: mine.device });
  try {
    pp.group(() => {
      pp.send(mine, peer);
      pp.recv(theirs, peer);
    });
    ops.add(mine, theirs, mine);
  } finally {
    theirs.dispose();
    mine.dispose();
  }
}

/** The squares of `g`'s elements [lo, hi), summed. */
function squares(g: Tensor, lo: number, hi: number): number {
  if (hi <= lo) return 0;
  const view = g.view(lo, [hi - lo]);
  const s = ops.sumSquares(view);
  try {
    return s.toArray()[0]!;
  } finally {
    s.dispose();
    view.dispose();
  }
}

/**
 * The squared norm of this device's gradients (the last stage's copy of tied embeddings left out), as
 * the sum over this rank's tp shards and the sum over what every tp rank holds whole: the first is summed
 * over the tp group, the second counted once (the tp ranks' copies are equal).
 */
function localSquares(h: Held): { sharded: number; replicated: number } {
  let sharded = 0, replicated = 0;
  for (const p of h.params) {
    const skipEmbed = h.run.cfg.tieEmbeddings && h.a.nStages > 1 && p.stage.head && !p.stage.embed;
    // runs of adjacent entries of one kind, one reduction each (the layers' matrices are one run)
    let lo = 0, kind: boolean | null = null;
    const flush = (hi: number) => {
      if (kind === null) return;
      const s = squares(p.grad, lo, hi);
      if (kind) sharded += s;
      else replicated += s;
    };
    for (const e of p.layout) {
      const k = skipEmbed && e.key === 'embed' ? null : e.sharded;
      if (k === kind) continue;
      flush(e.offset);
      (lo = e.offset), (kind = k);
    }
    flush(p.n);
  }
  return { sharded, replicated };
}

/**
 * A tp stage's optimizer state (master, m, v), whole: each tp rank sends its shards to rank 0, which
 * receives them a buffer at a time and assembles the whole stage's (train/tp-shards.ts); null elsewhere.
 */
function gatherStage(p: FlatParams, tp: Communicator): HostOptimizerState | null {
  const bufs = [p.master, p.m, p.v];
  if (tp.rank !== 0) {
    for (const b of bufs) tp.send(b, 0);
    tp.drain();
    return null;
  }
  const parts: Float32Array[][] = [bufs.map((b) => b.toArray() as Float32Array)];
  const tmp = Tensor.empty([p.n], { dtype: 'f32', device: p.device });
  try {
    for (let t = 1; t < tp.world; t++)
      parts.push(bufs.map(() => {
        tp.recv(tmp, t);
        tp.drain();
        return tmp.toArray() as Float32Array;
      }));
  } finally {
    tmp.dispose();
  }
  const [master, m, v] = [0, 1, 2].map((k) => gatherShards(p.cfg, p.stage, parts.map((x) => x[k]!)));
  return { master: master!, m: m!, v: v! };
}

export const handlers: Record<string, Handler> = {
  async ppInit(a: PipelineInitArgs, ctx): Promise<PipelineInfo> {
    dispose(ctx);
    // NCCL's create blocks until every rank has joined: before anything that may fail on one rank only.
    const comms = joinGroups(a.comm.kind, a.comm.groups, ctx.device, { timeoutMs: a.comm.timeoutMs, stopFlag: ctx.stopFlag });
    const tp = comms.get('tp');
    const params: FlatParams[] = [];
    try {
      const run = await prepareRun(
        { ...a.opts, device: ctx.device },
        { rank: a.replica.rank, world: a.replica.world, order: a.order },
        { stages: a.split },
      );
      for (const s of a.stages) {
        const { index: _, ...stage } = s;
        const p = await initParamsAsync(run.ck ? { ...run.src, folder: null } : run.src, { device: ctx.device, dtype: run.dtype, seed: a.opts.seed ?? 0, stage });
        params.push(p);
        if (run.ck) loadOptimizerState(a.opts.resume!, p, run.ck);
      }
      const stages = new Map(a.stages.map((s, i) => [s.index, new TrainStage(params[i]!, { tp, deferWeightGrads: !!a.deferWeightGrads })]));
      const h: Held = { a, run, opts: a.opts, stages, params, comms, step: run.ck?.step ?? 0, losses: [...(run.ck?.losses ?? [])] };
      ctx.state.set('pipeline', h);
      return {
        device: ctx.device, step: h.step, totalSteps: run.totalSteps, stepsPerEpoch: run.stepsPerEpoch, losses: [...h.losses],
        n: params.reduce((t, p) => t + p.n, 0), dtype: run.dtype, name: run.src.name, family: run.cfg.family, dataHash: run.data.id,
      };
    } catch (e) {
      for (const p of params) p.dispose();
      for (const c of comms.values()) c.abort(); // the peers' first collective fails at once
      for (const c of comms.values()) c.destroy();
      throw e;
    }
  },

  /** One optimizer step of this rank's stages, in step with the other ranks. */
  ppStep(a: { timeline?: boolean; fault?: StepFault }, ctx): PipelineStepResult {
    const h = held(ctx);
    const { run } = h;
    if (ctx.stopRequested()) throw new Error(`${ctx.device}: the run was stopped`);
    const step = h.step + 1;
    const f = a?.fault;
    if (f && f.rank === ctx.rank && f.step === step && f.kind === 'exit') process.exit(3);
    const pp = h.comms.get('pp') ?? null;
    const dp = h.comms.get('dp') ?? null;
    const tp = h.comms.get('tp') ?? null;
    try {
      if (f && f.rank === ctx.rank && f.step === step) throw new Error(`${ctx.device}: injected fault at step ${f.step}`);
      const batches = Array.from({ length: run.gradAccum }, () => run.loader.next());
      const count = batches.reduce((s, b) => s + countTargets(b.targets, run.cfg.vocabSize), 0);
      for (const p of h.params) p.zeroGrad();
      let lossSum = 0, counted = 0, heldBytes = 0;
      const tasks: TrainColumnResult['tasks'] = [];
      for (const b of batches) {
        const r = runTrainingColumn(h.a.trainColumn, h.stages, pp, {
          device: ctx.device, micro: cut(b, h.a.micro), dscale: 1 / Math.max(count, 1), timeline: a?.timeline,
          flushEvery: typeof h.a.deferWeightGrads === 'number' ? h.a.deferWeightGrads : undefined, checkStop: () => {
            if (ctx.stopRequested()) throw new Error(`${ctx.device}: the run was stopped`);
          },
        });
        lossSum += r.lossSum;
        counted += r.count;
        heldBytes = Math.max(heldBytes, r.heldBytes);
        tasks.push(...r.tasks);
      }
      // the replicas' gradients averaged, stage by stage (each stage's dp group holds the same layers)
      if (dp) for (const p of h.params) dp.allReduce(p.grad, 'avg');
      sumTiedEmbeddings(h);
      // The global norm and the replica's loss, summed over the pipeline in one reduction: every rank
      // then decides alike whether the step is finite (a rank throwing alone would leave the others waiting).
      // With tp, the shards' squares are summed over the tp group first, the replicated ones counted once.
      const holdsLast = h.params.some((p) => p.stage.head);
      const sq = localSquares(h);
      const sumOver = (c: Communicator | null, xs: number[]): number[] => {
        if (!c) return xs;
        const v = Tensor.from(xs, [xs.length], { dtype: 'f32', device: ctx.device });
        try {
          c.allReduce(v);
          return Array.from(v.toArray());
        } finally {
          v.dispose();
        }
      };
      const stageSquares = sumOver(tp, [sq.sharded])[0]! + sq.replicated;
      const sums = sumOver(pp, [stageSquares, holdsLast ? lossSum : 0]);
      const norm = Math.sqrt(sums[0]!);
      const loss = (holdsLast ? lossSum : sums[1]!) / Math.max(count, 1);
      checkStepFinite(step, loss, norm);
      const { lr, hyper } = stepSettings(h.opts, step, run.totalSteps);
      for (const p of h.params) adamwStep(p, step, lr, hyper, norm);
      h.step = step;
      h.losses.push(loss);
      return { loss, gradNorm: norm, lr, exact: holdsLast ? { lossSum, count: counted } : null, heldBytes, ...(a?.timeline ? { tasks } : {}) };
    } catch (e) {
      for (const c of h.comms.values()) c.abort();
      throw e;
    }
  },

  /** Validation through this replica's pipeline (only replica 0 runs it): the last stage's sum and count. */
  ppEvaluate(_a: unknown, ctx): { lossSum: number; count: number } {
    const h = held(ctx);
    const pp = h.comms.get('pp') ?? null;
    let lossSum = 0, count = 0, n = 0;
    try {
      for (const b of valBatches(h.run.data.val, { batch: h.run.batch, seq: h.run.seq })) {
        if (h.opts.evalBatches !== undefined && n++ >= h.opts.evalBatches) break;
        const r = runTrainingColumn(h.a.evalColumn, h.stages, pp, { device: ctx.device, micro: [b], dscale: false });
        lossSum += r.lossSum;
        count += r.count;
      }
    } catch (e) {
      for (const c of h.comms.values()) c.abort(); // the pipeline and tp peers wait on this rank
      throw e;
    }
    return { lossSum, count };
  },

  /**
   * Writes this device's stages into a pending checkpoint (replica 0 only); `losses` as the main thread has
   * them. With tp, every tp rank sends its shards to its stage's tp rank 0, which writes the whole stage.
   */
  ppSave(a: { tmp: string }, ctx): { index: number; names: string[]; record: StageRecord; loader: unknown }[] {
    const h = held(ctx);
    const tp = h.comms.get('tp');
    const out: { index: number; names: string[]; record: StageRecord; loader: unknown }[] = [];
    try {
      for (const [i, p] of h.params.entries()) {
        const index = h.a.stages[i]!.index;
        if (!tp) {
          out.push({ index, names: writeStageFiles(a.tmp, p, index, h.a.nStages, h.step), record: stageRecord(p), loader: h.run.loader.position });
          continue;
        }
        const state = gatherStage(p, tp);
        if (!state) continue;
        const stage = wholeStage(p.stage);
        const layout = paramLayout(p.cfg, stage);
        const whole = { cfg: p.cfg, stage, layout, n: state.master.length, nDecay: layout.filter((e) => e.decay).reduce((t, e) => t + e.numel, 0) };
        out.push({ index, names: writeStageFiles(a.tmp, whole, index, h.a.nStages, h.step, undefined, state), record: stageRecord(whole), loader: h.run.loader.position });
      }
    } catch (e) {
      tp?.abort(); // the stage's tp peers may be waiting on this rank
      throw e;
    }
    return out;
  },

  /** This device's stages' master weights, moments and last step's gradients (tests: replicas agree; tied copies agree; tp shards). */
  ppState(_a: unknown, ctx) {
    const h = held(ctx);
    return h.params.map((p, i) => ({
      index: h.a.stages[i]!.index, stage: p.stage, master: p.hostMaster(), m: p.m.toArray() as Float32Array, v: p.v.toArray() as Float32Array,
      grad: p.grad.toArray() as Float32Array,
      layout: p.layout.map((e) => ({ key: e.key, offset: e.offset, numel: e.numel })),
    }));
  },

  ppMemory(a: { reset?: boolean }, ctx) {
    synchronize(ctx.device);
    const m = memoryStats(ctx.device);
    if (a?.reset) resetPeakMemory(ctx.device);
    return m;
  },

  ppDispose(_a: unknown, ctx) {
    dispose(ctx);
  },
};
