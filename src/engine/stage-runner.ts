// One pipeline stage of a generation run on its device: the stage's layers and KV cache, with the
// embeddings on the first stage and the head and sampler on the last. Prefill and decode of a
// micro-batch are written here once; single-device generation (engine/generate.ts) is one stage that is
// both first and last, and the pipeline executor (engine/executor.ts) runs one StageRunner per stage a
// device holds.
//
// Everything a task needs from the host is uploaded once, before the run (RunInputs: positions and
// lengths of every step as one table, the prompts' ids and last-row indices per micro-batch), so on a GPU
// a run only enqueues work and the host runs ahead of the kernels.
import type { Model } from '../models/model.js';
import { KvCache } from '../models/transformer.js';
import * as ops from '../ops.js';
import { capture, withFrozenWeights, type Graph } from '../runtime.js';
import { Tensor } from '../tensor.js';
import type { Sampling } from './sampling.js';

/** What every stage of one run on a device shares: the batch, its micro-batches, and their tables. */
export class RunInputs {
  readonly B: number;
  readonly lens: number[];
  /** cache rows per sequence: the longest prompt plus the new tokens */
  readonly maxLen: number;
  /** first sequence of each micro-batch */
  readonly starts: number[];
  /** per micro-batch prefill inputs: padded length T, positions 0..T-1, ids (first stage), last-row indices (last stage) */
  readonly pre: { T: number; pos: Tensor; ids?: Tensor; last?: Tensor }[];
  /** zeros [B]: prefill writes the cache from row 0 */
  readonly zeros: Tensor;
  /** each sequence's index in the whole request: with its token's position it keys a sampled draw, so a
   * sequence gets the same tokens whatever batch, micro-batch or replica it runs in */
  readonly seq: Tensor;
  // Row s holds, for every sequence, lens + s: the cache length after step s, the position of the token
  // fed at step s + 1 (row s - 1 gives that step's positions), and the position of the token sampled at
  // step s (which keys its random draw, see `offsets`).
  private readonly steps: Tensor;
  private readonly owned: Tensor[] = [];
  // Row views made once and reused: a decode step copies two rows, and a view is an N-API object.
  private readonly rows = new Map<number, Tensor>();

  constructor(
    readonly device: string,
    prompts: number[][],
    /** micro-batch sizes, summing to the batch */
    readonly micro: number[],
    readonly maxTokens: number,
    holds: { first: boolean; last: boolean },
    /** the sequences' indices in the whole request (default 0..B-1) */
    seqIds?: number[],
  ) {
    const i32 = { dtype: 'i32' as const, device };
    const keep = (t: Tensor) => (this.owned.push(t), t);
    this.B = prompts.length;
    this.lens = prompts.map((p) => p.length);
    this.maxLen = Math.max(...this.lens) + maxTokens;
    this.starts = micro.reduce<number[]>((acc, _n, i) => (acc.push(i ? acc[i - 1]! + micro[i - 1]! : 0), acc), []);
    try {
      this.steps = keep(Tensor.from(Array.from({ length: maxTokens + 1 }, (_, st) => this.lens.map((l) => l + st)).flat(), [(maxTokens + 1) * this.B], i32));
      this.zeros = keep(Tensor.zeros([this.B], i32));
      if (seqIds && seqIds.length !== this.B) throw new Error(`${seqIds.length} sequence ids for a batch of ${this.B}`);
      this.seq = keep(Tensor.from(seqIds ?? this.lens.map((_, b) => b), [this.B], i32));
      this.pre = micro.map((n, mb) => {
        const b0 = this.starts[mb]!, mlens = this.lens.slice(b0, b0 + n), T = Math.max(...mlens);
        return {
          T,
          pos: keep(Tensor.from(mlens.flatMap(() => Array.from({ length: T }, (_, t) => t)), [n * T], i32)),
          ids: holds.first ? keep(Tensor.from(prompts.slice(b0, b0 + n).flatMap((p) => [...p, ...new Array<number>(T - p.length).fill(0)]), [n * T], i32)) : undefined,
          last: holds.last ? keep(Tensor.from(mlens.map((l, b) => b * T + l - 1), [n], i32)) : undefined,
        };
      });
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Row `step` of the steps table for micro-batch `mb` (a view; the caller disposes it). */
  row(step: number, mb: number): Tensor {
    return this.steps.view(step * this.B + this.starts[mb]!, [this.micro[mb]!]);
  }

  /** The sequence ids of micro-batch `mb` (a view; the caller disposes it). */
  seqOf(mb: number): Tensor {
    return this.seq.view(this.starts[mb]!, [this.micro[mb]!]);
  }

  /** Copy row `step` for micro-batch `mb` into `dst`, on the device. */
  copyRow(dst: Tensor, step: number, mb: number): void {
    const key = step * this.micro.length + mb;
    let r = this.rows.get(key);
    if (!r) this.rows.set(key, (r = this.row(step, mb)));
    dst.copyFrom(r);
  }

  dispose(): void {
    for (const t of this.rows.values()) t.dispose();
    this.rows.clear();
    for (const t of this.owned) t.dispose();
    this.owned.length = 0;
  }
}

/** A decode step of one micro-batch, captured once over fixed buffers and replayed every step. */
interface Slot {
  ids: Tensor; // first stage: the ids fed this step
  seq: Tensor; // last stage: the sequences' ids (a view of RunInputs.seq)
  x: Tensor; // other stages: the activations received
  pos: Tensor;
  lens: Tensor;
  kv: KvCache;
  graph?: Graph;
  xOut?: Tensor; // first stage (not last): the activations it hands on
  out?: Tensor; // last stage: the sampled ids
}

export interface StageRunnerOptions {
  first: boolean;
  last: boolean;
  /** capture each micro-batch's decode step once and replay it (default true) */
  graph?: boolean;
}

export class StageRunner {
  readonly first: boolean;
  readonly last: boolean;
  private readonly cache: KvCache;
  private readonly slots = new Map<number, Slot>();
  private readonly graph: boolean;

  constructor(
    readonly model: Model,
    readonly run: RunInputs,
    readonly sampling: Sampling,
    o: StageRunnerOptions,
  ) {
    this.first = o.first;
    this.last = o.last;
    // The CPU communicator runs its collectives when called, not from a recorded op list, so a tp shard's
    // decode step on CPU devices runs op by op; on CUDA the NCCL all-reduces are captured with the rest.
    const tpOnCpu = (model.weights.stage.tp?.size ?? 1) > 1 && run.device.startsWith('cpu');
    this.graph = (o.graph ?? true) && !tpOnCpu;
    // A tp shard caches only its KV heads (the transformer's config is its share's).
    this.cache = new KvCache(model.transformer.cfg, run.B, run.maxLen, run.device, model.dtype, model.weights.layers.length);
  }

  private slot(mb: number): Slot {
    let sl = this.slots.get(mb);
    if (!sl) {
      const n = this.run.micro[mb]!;
      const { device } = this.run;
      const i32 = { dtype: 'i32' as const, device };
      sl = {
        ids: Tensor.empty([n], i32),
        seq: this.run.seqOf(mb),
        x: Tensor.empty([n, this.model.config.hidden], { dtype: this.model.dtype, device }),
        pos: Tensor.empty([n], i32),
        lens: Tensor.empty([n], i32),
        kv: this.cache.slice(this.run.starts[mb]!, n),
      };
      this.slots.set(mb, sl);
    }
    return sl;
  }

  /**
   * Where the input of micro-batch `mb` at `step` goes: a fresh tensor for prefill activations (the
   * caller hands it to prefill, which takes it over), the slot's fixed buffer for a decode step (ids on
   * the first stage, activations on the others).
   */
  inputBuffer(mb: number, step: number): Tensor {
    if (step > 0) return this.first ? this.slot(mb).ids : this.slot(mb).x;
    if (this.first) throw new Error('the first stage takes no prefill input: it embeds the prompts');
    return Tensor.empty([this.run.micro[mb]! * this.run.pre[mb]!.T, this.model.config.hidden], { dtype: this.model.dtype, device: this.run.device });
  }

  /**
   * Prefill micro-batch `mb` (padded to its longest prompt, op by op). `x`: the activations from the stage
   * before (taken over and freed here), absent on the first stage. Returns the activations to hand on
   * (the caller frees them), or on the last stage the sampled ids [n] (the caller frees them).
   * `started` is called once the input is there, before the stage's work is enqueued.
   */
  prefill(mb: number, x?: Tensor, started?: () => void): Tensor {
    const { tf } = this;
    const n = this.run.micro[mb]!, p = this.run.pre[mb]!;
    const kv = this.cache.slice(this.run.starts[mb]!, n);
    // Freed below, not left to its finalizer: an undisposed view keeps RunInputs' block alive after
    // run.dispose(), and a tight loop of generations piles such wrappers up between event-loop turns.
    const zeros = this.run.zeros.view(0, [n]);
    try {
      if (this.first) x = tf.embed(p.ids!, p.pos);
      else if (!x) throw new Error(`prefill of micro-batch ${mb}: no input activations`);
      started?.();
      tf.prefillLayers(x, kv, p.pos, zeros, n, p.T);
      if (!this.last) return x;
      const h = ops.embedding(p.last!, x);
      const logits = tf.logits(h);
      h.dispose();
      x.dispose();
      const offsets = this.run.row(0, mb);
      const rows = this.run.seqOf(mb);
      try {
        return ops.sample(logits, { ...this.sampling, offsets, rows });
      } finally {
        offsets.dispose();
        rows.dispose();
        logits.dispose();
      }
    } catch (e) {
      x?.dispose();
      throw e;
    } finally {
      kv.dispose();
      zeros.dispose();
    }
  }

  /**
   * Decode step `step` (>= 1) of micro-batch `mb`: its input is in inputBuffer(mb, step) (a runner that
   * is both first and last stage puts each step's sampled ids there itself, so only the first decode step
   * needs the prefill's ids copied in). Returns the slot's output (the activations to hand on, or the
   * sampled ids on the last stage), valid until this micro-batch's next step; the runner owns it.
   */
  decode(mb: number, step: number, started?: () => void): Tensor {
    const sl = this.slot(mb);
    const n = this.run.micro[mb]!;
    this.run.copyRow(sl.pos, step - 1, mb);
    this.run.copyRow(sl.lens, step, mb);
    started?.();
    if (!this.graph) {
      sl.out?.dispose();
      this.decodeBody(sl, n);
    } else {
      // A task's time is its work, not its wait for input: the graph is captured on the first step.
      sl.graph ??= capture(this.run.device, () => this.decodeBody(sl, n));
      sl.graph.replay();
    }
    return this.last ? sl.out! : this.first ? sl.xOut! : sl.x;
  }

  private get tf() {
    return this.model.transformer;
  }

  // Decode writes no weight: its GEMVs may start reading theirs while the kernel before drains (withFrozenWeights).
  private decodeBody(sl: Slot, n: number): void {
    withFrozenWeights(() => this.decodeOps(sl, n));
  }

  private decodeOps(sl: Slot, n: number): void {
    const { tf } = this;
    const x = this.first ? tf.embed(sl.ids, sl.pos) : sl.x;
    tf.decodeLayers(x, sl.kv, sl.pos, sl.lens, n);
    if (this.first && !this.last) {
      sl.xOut?.dispose();
      sl.xOut = x;
    }
    if (this.last) {
      const logits = tf.logits(x);
      // The token sampled at step s sits at position lens + s: that position keys its random draw.
      sl.out = ops.sample(logits, { ...this.sampling, offsets: sl.lens, rows: sl.seq });
      logits.dispose();
      if (this.first) {
        x.dispose();
        // One stage that is first and last feeds its own ids back, inside the captured step.
        sl.ids.copyFrom(sl.out);
      }
    }
  }

  dispose(): void {
    for (const sl of this.slots.values()) {
      sl.graph?.dispose();
      sl.kv.dispose();
      for (const t of [sl.ids, sl.seq, sl.x, sl.pos, sl.lens, sl.xOut, sl.out]) t?.dispose();
    }
    this.slots.clear();
    this.cache.dispose();
  }
}
