// Handlers run inside each device's worker (loaded by DevicePool): a model replica for data parallelism,
// or one pipeline stage. A stage executes its own instruction list — the column of the clock-cycle table
// for its stage — and meets its neighbours only through send/recv of activations, so stages run ahead of
// each other as far as the data allows. Model parallelism is the same code with one micro-batch.
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
import type { Handler, WorkerContext } from './pool.js';

export interface LoadArgs {
  source: string;
  dtype?: DType;
  seed?: number;
  stage?: StageSpec;
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
  stage: number;
  mb: number;
  step: number;
  t0: number;
  t1: number;
  /** host clock when the stage began and finished enqueuing the task (how far the host runs ahead) */
  h0?: number;
  h1?: number;
  /** device time when the task's compute ended and its send began (stages that send activations) */
  tc?: number;
}

export interface PipelineResult {
  /** the last stage's sampled tokens, per sequence of the batch (empty on other stages) */
  tokens: number[][];
  tasks: TaskTime[];
  peakBytes?: number;
}

const model = (ctx: WorkerContext): Model => {
  const m = ctx.state.get('model') as Model | undefined;
  if (!m) throw new Error('no model loaded on this worker: call load first');
  return m;
};
const comm = (ctx: WorkerContext): Communicator => {
  const c = ctx.state.get('comm') as Communicator | undefined;
  if (!c) throw new Error('no communicator on this worker: call commInit first');
  return c;
};
const now = () => performance.timeOrigin + performance.now();

export const handlers: Record<string, Handler> = {
  load(a: LoadArgs, ctx) {
    (ctx.state.get('model') as Model | undefined)?.dispose();
    const m = Model.load(a.source, { device: ctx.device, dtype: a.dtype, seed: a.seed, stage: a.stage });
    ctx.state.set('model', m);
    return { weightBytes: m.weightBytes, layers: m.weights.layers.length };
  },

  unload(_a: unknown, ctx) {
    (ctx.state.get('model') as Model | undefined)?.dispose();
    ctx.state.delete('model');
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
    return runStage(model(ctx), ctx.world > 1 ? comm(ctx) : null, ctx.rank, ctx.world, ctx.device, a);
  },
};

/**
 * Stage `rank` of `world`: prefill every micro-batch, then decode steps, each over every micro-batch in
 * turn. The first stage embeds (its ids come back from the last stage after each step); middle stages
 * receive activations and pass theirs on; the last stage samples and returns the new ids to the first.
 *
 * Everything a task needs from the host is uploaded once, before the loop (positions, lengths and
 * sampling offsets of every step, as one table), and the sampled ids stay on the device until the end,
 * so on a GPU the loop only enqueues work and a stage's host runs ahead of its kernels.
 */
function runStage(m: Model, c: Communicator | null, rank: number, world: number, device: string, a: PipelineArgs): PipelineResult {
  const { config: cfg, transformer: tf, dtype } = m;
  const first = rank === 0, last = rank === world - 1;
  const B = a.prompts.length;
  const lens = a.prompts.map((p) => p.length);
  const maxLen = Math.max(...lens) + a.maxTokens;
  const starts = a.micro.reduce<number[]>((acc, _n, i) => (acc.push(i ? acc[i - 1]! + a.micro[i - 1]! : 0), acc), []);
  const i32 = { dtype: 'i32' as const, device };
  const sampling = { temperature: a.temperature ?? 0, topK: a.topK ?? 0, topP: a.topP ?? 1, seed: a.seed ?? 0 };
  const tasks: TaskTime[] = [];
  const C = cfg.hidden;
  const peer = { prev: rank - 1, next: rank + 1, head: world - 1 };
  const owned: Tensor[] = [];
  const keep = (t: Tensor) => (owned.push(t), t);
  const cache = new KvCache(cfg, B, maxLen, device, dtype, m.weights.layers.length);
  // Row s of `steps` holds, for every sequence, lens + s: the cache length after step s, and the
  // position of the token fed at step s + 1 (row s - 1 gives that step's positions).
  const steps = keep(Tensor.from(Array.from({ length: a.maxTokens + 1 }, (_, st) => lens.map((l) => l + st)).flat(), [(a.maxTokens + 1) * B], i32));
  const row = (st: number, b0: number, n: number) => steps.view(st * B + b0, [n]);
  const zeros = keep(Tensor.zeros([B], i32));
  // Prefill inputs per micro-batch: token positions 0..T-1, padded ids (first stage), last-row indices.
  const pre = a.micro.map((n, mb) => {
    const b0 = starts[mb]!, mlens = lens.slice(b0, b0 + n), T = Math.max(...mlens);
    return {
      T,
      pos: keep(Tensor.from(mlens.flatMap(() => Array.from({ length: T }, (_, t) => t)), [n * T], i32)),
      ids: first ? keep(Tensor.from(a.prompts.slice(b0, b0 + n).flatMap((p) => [...p, ...new Array<number>(T - p.length).fill(0)]), [n * T], i32)) : undefined,
      last: last ? keep(Tensor.from(mlens.map((l, b) => b * T + l - 1), [n], i32)) : undefined,
    };
  });
  const sampled: Tensor[][] = a.micro.map(() => []); // last stage: [mb][step] ids, read back at the end
  // Last stage: sampled ids on their way back to the first stage, in the order it takes them (position
  // `at` = step * M + micro-batch). Sent no further ahead than IDS_AHEAD positions of this stage's own
  // progress: the first stage takes them only as it gets there (after its whole prefill, for the first
  // ones), and NCCL holds a bounded number of unreceived sends; beyond that this stage's stream would
  // block while the first stage blocks sending it activations, a deadlock at many micro-batches.
  const M = a.micro.length;
  const IDS_AHEAD = Math.max(world, 4);
  const outbox: { at: number; ids: Tensor }[] = [];
  const flush = (pos: number) => {
    while (outbox.length && outbox[0]!.at <= pos + IDS_AHEAD - 1) c!.send(outbox.shift()!.ids, 0);
  };
  // The ids sampled for micro-batch `mb` at `step`, which the first stage feeds at step + 1.
  const sendBack = (ids: Tensor, step: number, mb: number) => {
    outbox.push({ at: (step + 1) * M + mb, ids });
    flush(step * M + mb);
  };
  const marks: { mb: number; step: number; start: DeviceEvent; computed?: DeviceEvent; end: DeviceEvent; h0: number; h1: number }[] = [];
  synchronize(device); // uploads done: the timeline starts here
  const base = a.timeline ? new DeviceEvent(device).record() : undefined;
  const hostBase = now();
  // Decode tasks run a step captured once per micro-batch (a CUDA graph on a GPU, an op list on the
  // CPU) over fixed buffers; receives, sends and the per-step positions stay outside it.
  interface Slot {
    ids: Tensor; // first stage: the ids fed this step
    x: Tensor; // other stages: the activations received
    pos: Tensor;
    lens: Tensor;
    kv: KvCache;
    graph?: Graph;
    xOut?: Tensor; // first stage: the activations it sends on
    out?: Tensor; // last stage: the sampled ids
  }
  const slots: Slot[] = [];
  const slotOf = (mb: number): Slot => {
    const n = a.micro[mb]!;
    return (slots[mb] ??= {
      ids: keep(Tensor.empty([n], i32)),
      x: keep(Tensor.empty([n, C], { dtype, device })),
      pos: keep(Tensor.empty([n], i32)),
      lens: keep(Tensor.empty([n], i32)),
      kv: cache.slice(starts[mb]!, n),
    });
  };
  const decodeBody = (sl: Slot, n: number) => () => {
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
  try {
    for (let step = 0; step < a.maxTokens; step++)
      for (let mb = 0; mb < a.micro.length; mb++) {
        let start: DeviceEvent | undefined, computed: DeviceEvent | undefined;
        const h0 = now();
        const b0 = starts[mb]!, n = a.micro[mb]!;
        if (step > 0) {
          const sl = slotOf(mb);
          copyRow(sl.pos, step - 1, b0, n);
          copyRow(sl.lens, step, b0, n);
          if (first) {
            if (world === 1) sl.ids.copyFrom(sl.out!);
            else c!.recv(sl.ids, peer.head);
          } else {
            if (last) flush(step * M + mb);
            c!.recv(sl.x, peer.prev);
          }
          // A task's time is its work, not its wait for input: the event fires once the input is there.
          if (a.timeline) start = new DeviceEvent(device).record();
          if (!sl.graph) sl.graph = capture(device, decodeBody(sl, n));
          sl.graph.replay();
          if (!last) {
            if (start) computed = new DeviceEvent(device).record();
            c!.send(first ? sl.xOut! : sl.x, peer.next);
          }
          else {
            sampled[mb]!.push(Tensor.empty([n], i32).copyFrom(sl.out!));
            if (world > 1 && step + 1 < a.maxTokens) sendBack(sl.out!, step, mb);
          }
          if (start) marks.push({ mb, step, start, computed, end: new DeviceEvent(device).record(), h0, h1: now() });
          continue;
        }
        // Prefill: the micro-batch padded to its longest prompt, run op by op.
        const T = pre[mb]!.T;
        const pos = pre[mb]!.pos;
        const kv = cache.slice(b0, n);
        let x: Tensor;
        if (first) x = tf.embed(pre[mb]!.ids!, pos);
        else c!.recv((x = Tensor.empty([n * T, C], { dtype, device })), peer.prev);
        if (a.timeline) start = new DeviceEvent(device).record();
        tf.prefillLayers(x, kv, pos, zeros.view(0, [n]), n, T);
        if (!last) {
          if (start) computed = new DeviceEvent(device).record();
          c!.send(x, peer.next);
        }
        else {
          const h = ops.embedding(pre[mb]!.last!, x);
          const logits = tf.logits(h);
          h.dispose();
          const offsets = row(0, b0, n);
          const next = ops.sample(logits, { ...sampling, offsets });
          offsets.dispose();
          logits.dispose();
          sampled[mb]!.push(next);
          if (world === 1) (slotOf(mb).out = next);
          else if (step + 1 < a.maxTokens) sendBack(next, step, mb);
        }
        x.dispose();
        kv.k.concat(kv.v).forEach((t) => t.dispose());
        if (start) marks.push({ mb, step, start, computed, end: new DeviceEvent(device).record(), h0, h1: now() });
      }
    synchronize(device);
    // Device times, placed on the host clock through the event recorded when the loop began.
    for (const k of marks)
      tasks.push({
        stage: rank,
        mb: k.mb,
        step: k.step,
        t0: hostBase + base!.elapsedMs(k.start),
        t1: hostBase + base!.elapsedMs(k.end),
        ...(k.computed ? { tc: hostBase + base!.elapsedMs(k.computed) } : {}),
        h0: k.h0,
        h1: k.h1,
      });
    const tokens: number[][] = a.prompts.map(() => []);
    if (last)
      sampled.forEach((perStep, mb) =>
        perStep.forEach((t) => Array.from(t.toArray()).forEach((id, k) => tokens[starts[mb]! + k]!.push(id))),
      );
    return { tokens: last ? tokens : [], tasks };
  } finally {
    for (const sl of slots) {
      sl?.graph?.dispose();
      sl?.kv.k.concat(sl.kv.v).forEach((t) => t.dispose());
      if (sl?.out && !sampled.flat().includes(sl.out)) sl.out.dispose();
      sl?.xOut?.dispose();
    }
    for (const t of sampled.flat()) t.dispose();
    for (const t of owned) t.dispose();
    cache.dispose();
  }
}
