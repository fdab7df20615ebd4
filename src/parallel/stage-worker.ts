// Handlers run inside each device's worker (loaded by DevicePool): a model replica for data parallelism,
// or the pipeline stages a device holds (one, or several interleaved chunks of layers). Every worker
// computes the same schedule (pipelineSchedule: which task runs on which device at which tick) and
// executes its own part of it; devices meet only through send/recv of what a task hands to the next.
// Model parallelism is the same code with one micro-batch.
import type { DType } from '../dtype.js';
import { memoryStats, resetPeakMemory, synchronize } from '../device.js';
import { DeviceEvent, capture, type Graph } from '../runtime.js';
import { generateSteps, type GenerateOptions, type GenerationTimes } from '../engine/generate.js';
import { Model } from '../models/model.js';
import { KvCache } from '../models/transformer.js';
import type { StageSpec } from '../models/weights.js';
import * as ops from '../ops.js';
import { Tensor } from '../tensor.js';
import { Communicator } from './comm.js';
import { pipelineSchedule, type PipelineTask } from './schedule.js';
import type { Handler, WorkerContext } from './pool.js';

export interface LoadArgs {
  source: string;
  dtype?: DType;
  seed?: number;
  /** the pipeline stages this device holds, in stage order (absent: the whole model, a replica) */
  stages?: StageSpec[];
}

export interface CommArgs {
  kind: 'cpu' | 'nccl';
  id: string | Uint8Array;
  timeoutMs?: number;
}

export interface PipelineArgs {
  /** every prompt of the batch (each stage needs the lengths; the first stage the ids) */
  prompts: number[][];
  /** micro-batch sizes, summing to the batch */
  micro: number[];
  maxTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** record per-task times with device events (no synchronization between tasks) */
  timeline?: boolean;
}

/** One task of a stage: micro-batch `mb` at decode step `step` (0 = prefill). Times in ms since the epoch. */
export interface TaskTime {
  /** the device's rank (a timeline's row) */
  stage: number;
  /** the pipeline stage it ran, when a device holds several (interleaved) */
  vstage?: number;
  mb: number;
  step: number;
  t0: number;
  t1: number;
  /** host clock when the stage began and finished enqueuing the task (how far the host runs ahead) */
  h0?: number;
  h1?: number;
}

export interface PipelineResult {
  /** the last stage's sampled tokens, per sequence of the batch (empty on other stages) */
  tokens: number[][];
  tasks: TaskTime[];
  peakBytes?: number;
}

const models = (ctx: WorkerContext): Model[] => {
  const m = ctx.state.get('models') as Model[] | undefined;
  if (!m) throw new Error('no model loaded on this worker: call load first');
  return m;
};
const model = (ctx: WorkerContext): Model => models(ctx)[0]!;
const unloadModels = (ctx: WorkerContext) => {
  for (const m of (ctx.state.get('models') as Model[] | undefined) ?? []) m.dispose();
  ctx.state.delete('models');
};
const comm = (ctx: WorkerContext): Communicator => {
  const c = ctx.state.get('comm') as Communicator | undefined;
  if (!c) throw new Error('no communicator on this worker: call commInit first');
  return c;
};
const now = () => performance.timeOrigin + performance.now();

export const handlers: Record<string, Handler> = {
  load(a: LoadArgs, ctx) {
    unloadModels(ctx);
    const ms: Model[] = [];
    try {
      for (const stage of a.stages ?? [undefined]) ms.push(Model.load(a.source, { device: ctx.device, dtype: a.dtype, seed: a.seed, stage }));
    } catch (e) {
      ms.forEach((m) => m.dispose());
      throw e;
    }
    ctx.state.set('models', ms);
    return { weightBytes: ms.reduce((n, m) => n + m.weightBytes, 0), layers: ms.reduce((n, m) => n + m.weights.layers.length, 0) };
  },

  unload(_a: unknown, ctx) {
    unloadModels(ctx);
    (ctx.state.get('comm') as Communicator | undefined)?.destroy();
    ctx.state.delete('comm');
  },

  commInit(a: CommArgs, ctx) {
    (ctx.state.get('comm') as Communicator | undefined)?.destroy();
    ctx.state.set('comm', Communicator.create(a.kind, a.id, ctx.rank, ctx.world, ctx.device, { timeoutMs: a.timeoutMs }));
  },

  /** Data parallel: this replica's share of the prompts, generated as one batch (to maxTokens each). */
  async generate(a: { prompts: number[][]; opts: GenerateOptions; batch?: number }, ctx) {
    const m = model(ctx);
    const t0 = now();
    const tokens: number[][] = a.prompts.map(() => []);
    const times: GenerationTimes = { prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
    // The replica's share, in batches of `batch` sequences (all at once by default).
    const size = a.batch ?? Math.max(1, a.prompts.length);
    for (let b0 = 0; b0 < a.prompts.length; b0 += size) {
      const part: GenerationTimes = { prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
      for await (const ev of generateSteps(m, a.prompts.slice(b0, b0 + size), { ...a.opts, stopTokens: [] }, part))
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

  /** All-reduce timing: median ms of `iters` sum all-reduces of `bytes` of bf16, after a warm-up. */
  allReduceBench(a: { bytes: number; iters: number }, ctx) {
    const c = comm(ctx);
    const t = Tensor.empty([Math.floor(a.bytes / 2)], { dtype: 'bf16', device: ctx.device });
    ops.fillUniform(t, { seed: ctx.rank, low: -1e-3, high: 1e-3 });
    try {
      for (let i = 0; i < 3; i++) c.allReduce(t);
      c.barrier();
      const ms: number[] = [];
      for (let i = 0; i < a.iters; i++) {
        const t0 = performance.now();
        c.allReduce(t);
        synchronize(ctx.device); // a CPU all-reduce has finished when it returns; a GPU one when its stream drains
        ms.push(performance.now() - t0);
      }
      return ms.sort((x, y) => x - y)[ms.length >> 1]!;
    } finally {
      t.dispose();
    }
  },

  pipeline(a: PipelineArgs, ctx): PipelineResult {
    return runStages(models(ctx), ctx.world > 1 ? comm(ctx) : null, ctx.rank, ctx.world, ctx.device, a);
  },
};

/**
 * This device's part of the pipeline run: the tasks pipelineSchedule gives it, tick by tick. At the
 * start of each tick the device hands on what its last task made (activations to the next stage's
 * device; on the last stage, the sampled ids to the first stage for the next step) and takes what its
 * peers made for it, all in one group of sends and receives; then it runs its task of the tick.
 *
 * Everything a task needs from the host is uploaded once, before the loop (positions, lengths and
 * sampling offsets of every step, as one table), and the sampled ids stay on the device until the end,
 * so on a GPU the loop only enqueues work and the host runs ahead of the kernels.
 */
function runStages(models: Model[], c: Communicator | null, rank: number, world: number, device: string, a: PipelineArgs): PipelineResult {
  const { config: cfg, dtype } = models[0]!;
  const S = models.length * world; // every device holds the same number of stages: rank, rank + world, ...
  const M = a.micro.length;
  const B = a.prompts.length;
  const lens = a.prompts.map((p) => p.length);
  const maxLen = Math.max(...lens) + a.maxTokens;
  const starts = a.micro.reduce<number[]>((acc, _n, i) => (acc.push(i ? acc[i - 1]! + a.micro[i - 1]! : 0), acc), []);
  const i32 = { dtype: 'i32' as const, device };
  const sampling = { temperature: a.temperature ?? 0, topK: a.topK ?? 0, topP: a.topP ?? 1, seed: a.seed ?? 0 };
  const C = cfg.hidden;
  const deviceOf = (stage: number) => stage % world;
  const owned: Tensor[] = [];
  const keep = (t: Tensor) => (owned.push(t), t);
  // The stages held here, by stage index: their layers (a Transformer) and their KV cache.
  const local = new Map(
    models.map((m, i) => {
      const stage = rank + i * world;
      return [stage, { tf: m.transformer, cache: new KvCache(cfg, B, maxLen, device, dtype, m.weights.layers.length), first: stage === 0, last: stage === S - 1 }];
    }),
  );
  // Row s of `steps` holds, for every sequence, lens + s: the cache length after step s, and the
  // position of the token fed at step s + 1 (row s - 1 gives that step's positions).
  const steps = keep(Tensor.from(Array.from({ length: a.maxTokens + 1 }, (_, st) => lens.map((l) => l + st)).flat(), [(a.maxTokens + 1) * B], i32));
  const row = (st: number, b0: number, n: number) => steps.view(st * B + b0, [n]);
  const zeros = keep(Tensor.zeros([B], i32));
  const holdsFirst = local.has(0), holdsLast = local.has(S - 1);
  // Prefill inputs per micro-batch: token positions 0..T-1, padded ids (first stage), last-row indices.
  const pre = a.micro.map((n, mb) => {
    const b0 = starts[mb]!, mlens = lens.slice(b0, b0 + n), T = Math.max(...mlens);
    return {
      T,
      pos: keep(Tensor.from(mlens.flatMap(() => Array.from({ length: T }, (_, t) => t)), [n * T], i32)),
      ids: holdsFirst ? keep(Tensor.from(a.prompts.slice(b0, b0 + n).flatMap((p) => [...p, ...new Array<number>(T - p.length).fill(0)]), [n * T], i32)) : undefined,
      last: holdsLast ? keep(Tensor.from(mlens.map((l, b) => b * T + l - 1), [n], i32)) : undefined,
    };
  });
  const sampled: Tensor[][] = a.micro.map(() => []); // last stage: [mb][step] ids, read back at the end

  // Decode tasks run a step captured once per (stage, micro-batch) (a CUDA graph on a GPU, an op list
  // on the CPU) over fixed buffers; receives, sends and the per-step positions stay outside it.
  interface Slot {
    ids: Tensor; // first stage: the ids fed this step
    x: Tensor; // other stages: the activations received
    pos: Tensor;
    lens: Tensor;
    kv: KvCache;
    graph?: Graph;
    xOut?: Tensor; // first stage: the activations it hands on
    out?: Tensor; // last stage: the sampled ids
  }
  const slots = new Map<number, Slot>(); // by stage * M + mb
  const slotOf = (stage: number, mb: number): Slot => {
    let sl = slots.get(stage * M + mb);
    if (!sl) {
      const n = a.micro[mb]!;
      sl = {
        ids: keep(Tensor.empty([n], i32)),
        x: keep(Tensor.empty([n, C], { dtype, device })),
        pos: keep(Tensor.empty([n], i32)),
        lens: keep(Tensor.empty([n], i32)),
        kv: local.get(stage)!.cache.slice(starts[mb]!, n),
      };
      slots.set(stage * M + mb, sl);
    }
    return sl;
  };
  const decodeBody = (stage: number, sl: Slot, n: number) => () => {
    const { tf, first, last } = local.get(stage)!;
    const x = first ? tf.embed(sl.ids, sl.pos) : sl.x;
    tf.decodeLayers(x, sl.kv, sl.pos, sl.lens, n);
    if (first && !last) sl.xOut = x;
    if (last) {
      const logits = tf.logits(x);
      sl.out = ops.sample(logits, { ...sampling, offsets: sl.lens });
      logits.dispose();
      if (first) x.dispose();
    }
  };
  const copyRow = (dst: Tensor, st: number, b0: number, n: number) => {
    const r = row(st, b0, n);
    dst.copyFrom(r);
    r.dispose();
  };

  // The schedule, and what crosses between devices at the start of each tick.
  const plan = pipelineSchedule(M, S, world, a.maxTokens);
  const ticks = plan.reduce((t, k) => Math.max(t, k.tick), 0) + 1;
  const byTick: PipelineTask[][] = Array.from({ length: ticks + 1 }, () => []);
  for (const k of plan) byTick[k.tick]!.push(k);
  // Where a task's output goes: the next stage, or (last stage, not the last step) stage 0 at step + 1.
  const consumer = (k: PipelineTask) =>
    k.stage < S - 1 ? { step: k.step, mb: k.mb, stage: k.stage + 1 } : k.step + 1 < a.maxTokens ? { step: k.step + 1, mb: k.mb, stage: 0 } : null;
  // Prefill activations received ahead of their task, by stage * M + mb.
  const inbox = new Map<number, Tensor>();
  // What this device's task of the previous tick made, to hand on at the start of this one.
  let made: { task: PipelineTask; t: Tensor; dispose: boolean } | null = null;
  // Where an incoming output lands: a prefill activation in a fresh tensor, a decode one in the slot's
  // input, ids in the first stage's slot.
  const landing = (to: { step: number; mb: number; stage: number }): Tensor => {
    const n = a.micro[to.mb]!;
    if (to.stage === 0) return slotOf(0, to.mb).ids;
    if (to.step > 0) return slotOf(to.stage, to.mb).x;
    const x = Tensor.empty([n * pre[to.mb]!.T, C], { dtype, device });
    inbox.set(to.stage * M + to.mb, x);
    return x;
  };
  const exchange = (t: number) => {
    const out = made && consumer(made.task) ? made : null;
    const ins = t > 0 ? byTick[t - 1]!.filter((k) => k.device !== rank && consumer(k) && deviceOf(consumer(k)!.stage) === rank) : [];
    if (out && deviceOf(consumer(out.task)!.stage) === rank) landing(consumer(out.task)!).copyFrom(out.t); // same device: a copy
    else if (out || ins.length)
      c!.group(() => {
        if (out) c!.send(out.t, deviceOf(consumer(out.task)!.stage));
        for (const k of ins) c!.recv(landing(consumer(k)!), k.device);
      });
    if (made?.dispose) made.t.dispose();
    made = null;
  };

  const tasks: TaskTime[] = [];
  const marks: { k: PipelineTask; start: DeviceEvent; end: DeviceEvent; h0: number; h1: number }[] = [];
  synchronize(device); // uploads done: the timeline starts here
  const base = a.timeline ? new DeviceEvent(device).record() : undefined;
  const hostBase = now();
  try {
    for (let t = 0; t <= ticks; t++) {
      const h0 = now();
      exchange(t);
      const k = byTick[t]?.find((x) => x.device === rank);
      if (!k) continue;
      const { tf, first, last } = local.get(k.stage)!;
      const b0 = starts[k.mb]!, n = a.micro[k.mb]!;
      let start: DeviceEvent | undefined;
      if (k.step > 0) {
        const sl = slotOf(k.stage, k.mb);
        copyRow(sl.pos, k.step - 1, b0, n);
        copyRow(sl.lens, k.step, b0, n);
        // A task's time is its work, not its wait for input: the event fires once the input is there.
        if (a.timeline) start = new DeviceEvent(device).record();
        if (!sl.graph) sl.graph = capture(device, decodeBody(k.stage, sl, n));
        sl.graph.replay();
        if (!last) made = { task: k, t: first ? sl.xOut! : sl.x, dispose: false };
        else {
          sampled[k.mb]!.push(Tensor.empty([n], i32).copyFrom(sl.out!));
          made = { task: k, t: sl.out!, dispose: false };
        }
      } else {
        // Prefill: the micro-batch padded to its longest prompt, run op by op.
        const { T, pos } = pre[k.mb]!;
        const kv = local.get(k.stage)!.cache.slice(b0, n);
        let x: Tensor;
        if (first) x = tf.embed(pre[k.mb]!.ids!, pos);
        else {
          x = inbox.get(k.stage * M + k.mb)!;
          inbox.delete(k.stage * M + k.mb);
        }
        if (a.timeline) start = new DeviceEvent(device).record();
        tf.prefillLayers(x, kv, pos, zeros.view(0, [n]), n, T);
        if (!last) made = { task: k, t: x, dispose: true };
        else {
          const h = ops.embedding(pre[k.mb]!.last!, x);
          const logits = tf.logits(h);
          h.dispose();
          const offsets = row(0, b0, n);
          const next = ops.sample(logits, { ...sampling, offsets });
          offsets.dispose();
          logits.dispose();
          x.dispose();
          sampled[k.mb]!.push(next);
          made = { task: k, t: next, dispose: false };
        }
        kv.k.concat(kv.v).forEach((v) => v.dispose());
      }
      if (start) marks.push({ k, start, end: new DeviceEvent(device).record(), h0, h1: now() });
    }
    synchronize(device);
    // Device times, placed on the host clock through the event recorded when the loop began.
    for (const m of marks)
      tasks.push({
        stage: rank,
        ...(S > world ? { vstage: m.k.stage } : {}),
        mb: m.k.mb,
        step: m.k.step,
        t0: hostBase + base!.elapsedMs(m.start),
        t1: hostBase + base!.elapsedMs(m.end),
        h0: m.h0,
        h1: m.h1,
      });
    const tokens: number[][] = a.prompts.map(() => []);
    if (holdsLast)
      sampled.forEach((perStep, mb) =>
        perStep.forEach((t) => Array.from(t.toArray()).forEach((id, k) => tokens[starts[mb]! + k]!.push(id))),
      );
    return { tokens: holdsLast ? tokens : [], tasks };
  } finally {
    for (const sl of slots.values()) {
      sl.graph?.dispose();
      sl.kv.k.concat(sl.kv.v).forEach((t) => t.dispose());
      if (sl.out && !sampled.flat().includes(sl.out)) sl.out.dispose();
      sl.xOut?.dispose();
    }
    if (made?.dispose) made.t.dispose(); // an error left a prefill output unsent
    for (const t of inbox.values()) t.dispose();
    for (const t of sampled.flat()) t.dispose();
    for (const t of owned) t.dispose();
    for (const l of local.values()) l.cache.dispose();
  }
}
