// Handlers run inside each device's worker (loaded by DevicePool): a model replica for data parallelism,
// or the pipeline stages a device holds (one, or several interleaved chunks of layers). The main thread
// plans (engine/plan.ts); a worker executes its column of the plan (engine/executor.ts) on one
// StageRunner per stage it holds, and meets its peers only through the communicators of its mesh groups.
import type { DType } from '../dtype.js';
import { memoryStats, resetPeakMemory, synchronize } from '../device.js';
import { generateSteps, type GenerateOptions, type GenerationTimes } from './generate.js';
import { abortError } from '../models/load-steps.js';
import { Model } from '../models/model.js';
import type { Stage } from '../models/weights.js';
import * as ops from '../ops.js';
import type { AllReducePath, Communicator, CommKind } from '../parallel/comm.js';
import { capture } from '../runtime.js';
import { joinGroups, type GroupArgs } from '../parallel/mesh-comms.js';
import type { MeshAxis } from '../parallel/mesh.js';
import type { Handler, WorkerContext } from '../parallel/pool.js';
import { Tensor } from '../tensor.js';
import { runGenerationColumn, type Column, type GenerationColumnResult } from './executor.js';
import type { Sampling } from './sampling.js';
import { RunInputs, StageRunner } from './stage-runner.js';
import { trace } from './trace.js';

export interface LoadArgs {
  source: string;
  dtype?: DType;
  seed?: number;
  /** the pipeline stages this device holds, in stage order, by stage index (absent: the whole model, a replica) */
  stages?: (Stage & { index: number })[];
}

/** This worker's place in each mesh group it belongs to (axes of size 1 have none). */
export interface CommArgs {
  kind: CommKind;
  groups: GroupArgs[];
  timeoutMs?: number;
}

export interface PipelineArgs extends Sampling {
  /** every prompt of the batch (each stage needs the lengths; the first stage the ids) */
  prompts: number[][];
  /** the prompts' indices in the whole request (a replica's share; default 0..B-1): they key sampled draws */
  seqIds?: number[];
  /** micro-batch sizes, summing to the batch */
  micro: number[];
  maxTokens: number;
  /** this device's column of the plan */
  column: Column;
  /** stages of the whole pipeline */
  stages: number;
  /** record per-task times with device events (no synchronization between tasks) */
  timeline?: boolean;
  /** fault injection for tests: rank `rank` throws at the start of tick `tick` */
  fault?: { rank: number; tick: number };
}

export type PipelineResult = GenerationColumnResult & { peakBytes?: number };

interface Held {
  models: Model[];
  /** stage index of each model (pipeline); absent for a replica */
  stages?: number[];
}

const held = (ctx: WorkerContext): Held => {
  const m = ctx.state.get('held') as Held | undefined;
  if (!m) throw new Error('no model loaded on this worker: call load first');
  return m;
};
const unloadModels = (ctx: WorkerContext) => {
  for (const m of (ctx.state.get('held') as Held | undefined)?.models ?? []) m.dispose();
  ctx.state.delete('held');
};
const comms = (ctx: WorkerContext): Map<MeshAxis, Communicator> => (ctx.state.get('comms') as Map<MeshAxis, Communicator> | undefined) ?? new Map();
/** The communicator the all-reduce benchmark uses: the pipeline group's, else tp's, else dp's. */
const benchComm = (ctx: WorkerContext): Communicator | undefined => comms(ctx).get('pp') ?? comms(ctx).get('tp') ?? comms(ctx).get('dp');
const destroyComms = (ctx: WorkerContext) => {
  for (const c of comms(ctx).values()) c.destroy();
  ctx.state.delete('comms');
};
const now = () => performance.timeOrigin + performance.now();

export const handlers: Record<string, Handler> = {
  /**
   * Loads with progress to the caller (ctx.progress, a LoadProgress after every step); the stop flag
   * (DevicePool.requestStop) aborts it at its next step, leaving nothing allocated.
   */
  async load(a: LoadArgs, ctx) {
    unloadModels(ctx);
    // A device's stages share one reading of the config, tokenizer and shard headers.
    const ms = await Model.loadStagesAsync(a.source, a.stages ?? [undefined], {
      device: ctx.device,
      dtype: a.dtype,
      seed: a.seed,
      onProgress: (p) => ctx.progress(p),
      shouldStop: ctx.stopRequested,
    });
    // An unload (close) that ran while this load was at an await found nothing to free: free it here.
    if (ctx.stopRequested()) {
      ms.forEach((m) => m.dispose());
      throw abortError(`Model.load ${a.source} on ${ctx.device}`, 'stop requested');
    }
    unloadModels(ctx);
    ctx.state.set('held', { models: ms, stages: a.stages?.map((s) => s.index) } satisfies Held);
    return { weightBytes: ms.reduce((n, m) => n + m.weightBytes, 0), layers: ms.reduce((n, m) => n + m.weights.layers.length, 0) };
  },

  unload(_a: unknown, ctx) {
    trace(`${ctx.device}: unload`);
    unloadModels(ctx);
    trace(`${ctx.device}: models freed`);
    destroyComms(ctx);
    trace(`${ctx.device}: communicators destroyed`);
  },

  /** Join this worker's mesh groups, in axis order on every rank (NCCL blocks until a group has joined). */
  commInit(a: CommArgs, ctx) {
    destroyComms(ctx);
    ctx.state.set('comms', joinGroups(a.kind, a.groups, ctx.device, { timeoutMs: a.timeoutMs, stopFlag: ctx.stopFlag }));
  },

  /** Data parallel: this replica's share of the prompts, generated as one batch (to maxTokens each). */
  async generate(a: { prompts: number[][]; seqIds: number[]; opts: GenerateOptions; batch?: number }, ctx) {
    const m = held(ctx).models[0]!;
    const t0 = now();
    const tokens: number[][] = a.prompts.map(() => []);
    const times: GenerationTimes = { prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
    // The replica's share, in batches of `batch` sequences (all at once by default).
    const size = a.batch ?? Math.max(1, a.prompts.length);
    for (let b0 = 0; b0 < a.prompts.length; b0 += size) {
      const part: GenerationTimes = { prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
      const opts = { ...a.opts, stopTokens: [], sequenceIds: a.seqIds.slice(b0, b0 + size), shouldStop: ctx.stopRequested, yieldToLoop: false };
      for await (const ev of generateSteps(m, a.prompts.slice(b0, b0 + size), opts, part))
        ev.tokens.forEach((t, b) => tokens[b0 + b]!.push(t));
      times.prefillMs += part.prefillMs;
      times.decodeMs += part.decodeMs;
      times.decodeSteps += part.decodeSteps;
    }
    synchronize(ctx.device);
    return { tokens, t0, t1: now(), times };
  },

  /** Peak bytes the device's allocator held since the last reset (reset: start counting again). */
  memory(a: { reset?: boolean }, ctx) {
    if (a?.reset) resetPeakMemory(ctx.device);
    return memoryStats(ctx.device);
  },

  /**
   * All-reduce timing over the pipeline group: median ms of one sum all-reduce of `bytes` of bf16 by
   * `path`, after a warm-up. CPU: `iters` timed calls. GPU: `iters` all-reduces back to back in one
   * captured graph (as decode runs them), replayed 5 times, each replay's time over `iters` — the
   * latency a graph sees, without the host's launch cost, the same way for every path.
   */
  allReduceBench(a: { bytes: number; iters: number; path?: AllReducePath }, ctx) {
    const c = benchComm(ctx);
    if (!c) throw new Error('no communicator on this worker: call commInit first');
    const path = a.path ?? 'auto';
    const t = Tensor.empty([Math.floor(a.bytes / 2)], { dtype: 'bf16', device: ctx.device });
    ops.fillUniform(t, { seed: ctx.rank, low: -1e-3, high: 1e-3 });
    try {
      for (let i = 0; i < 3; i++) c.allReduce(t, 'sum', path);
      c.barrier();
      const ms: number[] = [];
      if (ctx.device.startsWith('cuda')) {
        const g = capture(ctx.device, () => {
          for (let i = 0; i < a.iters; i++) c.allReduce(t, 'sum', path);
        });
        try {
          g.replay();
          c.barrier();
          for (let r = 0; r < 5; r++) {
            const t0 = performance.now();
            g.replay();
            c.drain();
            ms.push((performance.now() - t0) / a.iters);
          }
        } finally {
          g.dispose();
        }
      } else {
        for (let i = 0; i < a.iters; i++) {
          const t0 = performance.now();
          c.allReduce(t, 'sum', path);
          synchronize(ctx.device); // a CPU all-reduce has finished when it returns
          ms.push(performance.now() - t0);
        }
      }
      return ms.sort((x, y) => x - y)[ms.length >> 1]!;
    } finally {
      t.dispose();
    }
  },

  /** '' when this worker's communicator can take the peer all-reduce paths, else why not. */
  peerAllReduce(_a: unknown, ctx) {
    const c = benchComm(ctx);
    return c ? c.peerAllReduce : 'no communicator on this worker';
  },

  /** This device's column of a generation plan, on a StageRunner per stage it holds. */
  pipeline(a: PipelineArgs, ctx): PipelineResult {
    const h = held(ctx);
    if (!h.stages) throw new Error('pipeline: this worker holds a replica, not pipeline stages');
    const first = h.stages.includes(0);
    const last = h.stages.includes(a.stages - 1);
    const sampling: Sampling = { temperature: a.temperature, topK: a.topK, topP: a.topP, seed: a.seed };
    const run = new RunInputs(ctx.device, a.prompts, a.micro, a.maxTokens, { first, last }, a.seqIds);
    const runners = new Map<number, StageRunner>();
    // A tp shard sums its partial outputs over its tp group (made after the load, and again after a failure).
    const tp = comms(ctx).get('tp') ?? null;
    for (const m of h.models) m.transformer.tp = tp;
    try {
      h.models.forEach((m, i) => {
        const s = h.stages![i]!;
        runners.set(s, new StageRunner(m, run, sampling, { first: s === 0, last: s === a.stages - 1 }));
      });
      return runGenerationColumn(a.column, runners, comms(ctx).get('pp') ?? null, {
        device: ctx.device,
        batch: a.prompts.length,
        starts: run.starts,
        micro: a.micro,
        timeline: a.timeline,
        interleaved: h.stages.length > 1,
        checkStop: () => {
          if (ctx.stopRequested()) throw new Error(`${ctx.device}: the run was stopped (close() or terminate())`);
        },
        fault: a.fault?.rank === ctx.rank ? a.fault : undefined,
      });
    } catch (e) {
      tp?.abort(); // tp peers waiting in an all-reduce fail at once, not at their timeout
      throw e;
    } finally {
      trace(`${ctx.device}: pipeline cleanup`);
      for (const r of runners.values()) r.dispose();
      run.dispose();
      trace(`${ctx.device}: pipeline cleanup done`);
    }
  },
};
