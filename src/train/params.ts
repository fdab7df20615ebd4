// A stage's trainable parameters as flat buffers, so the optimizer is one fused `adamw` call:
//   master  f32 [n]   the weights the optimizer owns
//   m, v    f32 [n]   AdamW's moments
//   param   dt  [n]   the compute copy the kernels read (absent in f32: the kernels read master itself)
//   grad    dt  [n]   gradients, zeroed once per optimizer step and summed over micro-steps
// Each weight tensor of the model (src/models/weights.ts layout: fused qkv and gate/up, Linear [out, in])
// is a view into param (and its gradient a view into grad at the same offset). Decayed tensors (matrices,
// embeddings) come first and the rest (norms, biases) after, so `nDecay` is one offset.
//
// ZeRO-1 (src/train/zero.ts): a rank owns the optimizer state of its segments of the flat buffers only
// (src/train/zero-layout.ts: slice `rank` of every gradient bucket, or of one bucket [0, n)): m and v hold
// them one after another, and so does master when it is a copy apart from the compute weights (bf16,
// f16); in f32 master is the compute weights, so it stays whole. param and grad stay whole.
import type { DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import * as ops from '../ops.js';
import { Tensor } from '../tensor.js';
import { disposeWeights, type LayerWeights, type ModelWeights, type Stage } from '../models/weights.js';
import { isSharded, tpLayout } from '../models/tp.js';
import { gradBuckets, type GradBucket } from './grad-buckets.js';
import { segmentsSize, zeroSegments, type ZeroSegment } from './zero-layout.js';

// The first write of a gradient after zeroGrad stores it (takeZeroed); PARALLM_GRAD_STORE=0 adds every write, as
// before it, for measuring the difference (S34-1, bench/RESULTS.md: with the bias sums below, GPT-2 training +1.7% at
// 64 x 128, +0.9% at 128 x 128; each alone within the noise).
const STORE_FIRST = process.env.PARALLM_GRAD_STORE !== '0';

/** One tensor's place in the flat buffers; `key` names it in ModelWeights ('embed', 'layers.3.qkv', ...). */
export interface ParamEntry {
  readonly key: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly numel: number;
  readonly decay: boolean;
  /** a tensor-parallel shard (different on each tp rank); false for what every tp rank holds whole */
  readonly sharded: boolean;
}

const LAYER_MATRICES = ['qkv', 'out', 'up', 'down'] as const;
const LAYER_VECTORS = ['norm1', 'norm1Bias', 'qkvBias', 'outBias', 'norm2', 'norm2Bias', 'upBias', 'downBias'] as const;

/**
 * This layout and the checkpoint writer know LLaMA without biases and with plain RoPE: training a model
 * with attention biases (Qwen2) or scaled RoPE (LLaMA 3.x) would silently drop the biases or mis-rotate.
 */
function checkTrainable(cfg: ModelConfig): void {
  if (cfg.qkvBias || cfg.outBias || cfg.ropeScaling)
    throw new Error(
      `training: ${cfg.modelType ?? cfg.family}${cfg.qkvBias ? ' with attention biases' : ''}${cfg.ropeScaling ? ` with "${cfg.ropeScaling.type}" RoPE scaling` : ''} is not supported yet (GPT-2, and LLaMA or Mistral with plain RoPE, are)`,
    );
}

/**
 * Tensor-parallel training splits the KV heads evenly: generation's replicated KV head (kvHeads < tp,
 * models/tp.ts) would need its gradient summed over the ranks that share it.
 */
function trainTpLayout(cfg: ModelConfig, stage: Stage) {
  if (!isSharded(stage.tp)) return null;
  const { size } = stage.tp;
  const layout = tpLayout(cfg, stage.tp); // heads and features that split size ways
  if (cfg.kvHeads % size)
    throw new Error(`training: tp=${size} does not divide the model's ${cfg.kvHeads} KV heads (tensor-parallel training needs kvHeads % tp == 0; the model has ${cfg.heads} query heads)`);
  return layout;
}

/** The parameters a tp rank holds a shard of (column-parallel weights and biases, row-parallel weights); the rest are whole on every rank. */
const TP_SHARDED = new Set(['qkv', 'out', 'up', 'down', 'qkvBias', 'upBias']);

/**
 * The flat layout of a stage's parameters (a pure function of the config and the stage). With stage.tp,
 * the rank's share of each layer (models/tp.ts): qkv rows and out columns of its heads, up (gate and up)
 * rows and down columns of its features, qkvBias and upBias split; GPT-2's row-parallel biases (outBias,
 * downBias) whole on every rank, added once after the all-reduce (TrainStage).
 */
export function paramLayout(cfg: ModelConfig, stage: Stage): ParamEntry[] {
  checkTrainable(cfg);
  const tp = trainTpLayout(cfg, stage);
  const { hidden: C, headDim: D, vocabSize: V } = cfg;
  const heads = tp ? tp.heads : cfg.heads, kvHeads = tp ? tp.kvHeads : cfg.kvHeads, F = tp ? tp.features : cfg.intermediate;
  const gpt2 = cfg.family === 'gpt2';
  const W3 = (heads + 2 * kvHeads) * D;
  const shapes: Record<string, number[]> = {
    qkv: [W3, C], out: [C, heads * D], up: [gpt2 ? F : 2 * F, C], down: [C, F],
    norm1: [C], norm2: [C], norm1Bias: [C], norm2Bias: [C], qkvBias: [W3], outBias: [C], upBias: [F], downBias: [C],
  };
  const decayed: [string, number[]][] = [];
  const rest: [string, number[]][] = [];
  const hasEmbed = stage.embed || (stage.head && cfg.tieEmbeddings);
  if (hasEmbed) decayed.push(['embed', [V, C]]);
  if (gpt2 && stage.embed) decayed.push(['positions', [cfg.maxPositions, C]]);
  for (let i = stage.start; i < stage.end; i++) for (const k of LAYER_MATRICES) decayed.push([`layers.${i}.${k}`, shapes[k]!]);
  if (stage.head && !cfg.tieEmbeddings) decayed.push(['head', [V, C]]);
  for (let i = stage.start; i < stage.end; i++)
    for (const k of LAYER_VECTORS) if (gpt2 || !k.endsWith('Bias')) rest.push([`layers.${i}.${k}`, shapes[k]!]);
  if (stage.head) {
    rest.push(['normF', [C]]);
    if (gpt2) rest.push(['normFBias', [C]]);
  }
  let offset = 0;
  return [...decayed.map((e) => [...e, true] as const), ...rest.map((e) => [...e, false] as const)].map(([key, shape, decay]) => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const e = { key, shape, offset, numel, decay, sharded: tp !== null && TP_SHARDED.has(key.slice(key.lastIndexOf('.') + 1)) };
    offset += numel;
    return e;
  });
}

/** Views of a flat buffer in ModelWeights form (head = embed when tied). */
function weightViews(cfg: ModelConfig, stage: Stage, layout: ParamEntry[], flat: Tensor): ModelWeights {
  const v: Record<string, Tensor> = {};
  for (const e of layout) v[e.key] = flat.view(e.offset, e.shape);
  const layers: LayerWeights[] = [];
  for (let i = stage.start; i < stage.end; i++) {
    const get = (k: string) => v[`layers.${i}.${k}`];
    layers.push({
      norm1: get('norm1')!, norm1Bias: get('norm1Bias'), qkv: get('qkv')!, qkvBias: get('qkvBias'), out: get('out')!, outBias: get('outBias'),
      norm2: get('norm2')!, norm2Bias: get('norm2Bias'), up: get('up')!, upBias: get('upBias'), down: get('down')!, downBias: get('downBias'),
    });
  }
  return {
    stage,
    embed: v.embed,
    positions: v.positions,
    layers,
    normF: v.normF,
    normFBias: v.normFBias,
    head: stage.head ? (cfg.tieEmbeddings ? v.embed : v.head) : undefined,
  };
}

function entryTensor(w: ModelWeights, stage: Stage, key: string): Tensor | undefined {
  const m = /^layers\.(\d+)\.(\w+)$/.exec(key);
  if (m) return (w.layers[Number(m[1]) - stage.start] as unknown as Record<string, Tensor | undefined>)[m[2]!];
  return (w as unknown as Record<string, Tensor | undefined>)[key];
}

/** ZeRO-1 for FlatParams: this rank of `world`, the optimizer state split by gradient buckets of about `bucketElems` (0: one bucket). */
export interface ZeroSplit {
  rank: number;
  world: number;
  bucketElems?: number;
}

export class FlatParams {
  /** where each tensor lives in the flat buffers */
  readonly layout: ParamEntry[];
  readonly n: number;
  readonly nDecay: number;
  readonly master: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
  /** the compute copy (dtype dt); null in f32, where the kernels read master */
  readonly param: Tensor | null;
  readonly grad: Tensor;
  /** the model's weights: views into the compute buffer */
  readonly weights: ModelWeights;
  /** the gradients, views into grad in the same form */
  readonly grads: ModelWeights;
  /**
   * the optimizer's part of the flat buffers: [0, n), or a ZeRO-1 rank's segments (src/train/zero-layout.ts),
   * which m and v (and master when masterSharded) hold one after another
   */
  readonly segments: readonly ZeroSegment[];
  /** ZeRO-1: the gradient buckets the segments come from (one [0, n) without bucketElems); null otherwise */
  readonly zeroBuckets: readonly GradBucket[] | null;
  /** master holds the segments only (ZeRO-1 with a 16-bit compute copy); else it is whole */
  readonly masterSharded: boolean;
  private disposed = false;

  constructor(
    readonly cfg: ModelConfig,
    readonly stage: Stage,
    readonly device: string,
    readonly dtype: DType,
    /** ZeRO-1: hold the optimizer state of this rank's segments only */
    zero?: ZeroSplit,
  ) {
    if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'f16') throw new Error(`training: dtype ${dtype} is not f32, bf16 or f16`);
    this.layout = paramLayout(cfg, stage);
    const last = this.layout[this.layout.length - 1]!;
    this.n = last.offset + last.numel;
    this.nDecay = this.layout.filter((e) => e.decay).reduce((s, e) => s + e.numel, 0);
    if (zero && !(Number.isInteger(zero.world) && zero.world >= 1 && Number.isInteger(zero.rank) && zero.rank >= 0 && zero.rank < zero.world))
      throw new Error(`training: ZeRO rank ${zero.rank} of world ${zero.world} is not a rank (0 <= rank < world)`);
    const be = zero?.bucketElems ?? 0;
    if (zero && !(Number.isInteger(be) && be >= 0)) throw new Error(`training: ZeRO bucketElems must be an integer >= 0, got ${be}`);
    this.zeroBuckets = zero ? gradBuckets(this, be > 0 ? be : this.n) : null; // (n: one bucket)
    this.segments = zero ? zeroSegments(this.zeroBuckets!, zero.rank, zero.world) : [{ lo: 0, hi: this.n, local: 0 }];
    const nShard = segmentsSize(this.segments);
    this.masterSharded = !!zero && dtype !== 'f32';
    const made: Tensor[] = [];
    const mk = (dt: DType, n = this.n) => {
      const t = Tensor.empty([n], { dtype: dt, device });
      made.push(t);
      return t;
    };
    try {
      this.master = mk('f32', dtype === 'f32' ? this.n : nShard);
      this.m = ops.fillUniform(mk('f32', nShard), { low: 0, high: 0 });
      this.v = ops.fillUniform(mk('f32', nShard), { low: 0, high: 0 });
      this.param = dtype === 'f32' ? null : mk(dtype);
      this.grad = ops.fillUniform(mk(dtype), { low: 0, high: 0 });
    } catch (e) {
      made.forEach((t) => t.dispose());
      throw e;
    }
    this.weights = weightViews(cfg, stage, this.layout, this.param ?? this.master);
    this.grads = weightViews(cfg, stage, this.layout, this.grad);
  }

  /** Copy weights of this stage's shapes (f32, e.g. from randomWeights or loadWeights) into master. */
  setFrom(w: ModelWeights): void {
    const whole = this.master.numel === this.n;
    for (const e of this.layout) {
      const t = entryTensor(w, this.stage, e.key);
      if (!t) throw new Error(`training: the weights have no "${e.key}" for stage layers [${this.stage.start}, ${this.stage.end})`);
      if (t.numel !== e.numel) throw new Error(`training: "${e.key}" has ${t.numel} elements, the layout ${e.numel}`);
      if (whole) {
        const dst = this.master.view(e.offset, e.shape);
        if (t.dtype === 'f32') dst.copyFrom(t);
        else ops.cast(t, 'f32', dst);
        dst.dispose();
        continue;
      }
      // a sharded master: the compute copy straight from the source, master from the parts in its segments
      const dst = this.param!.view(e.offset, e.shape);
      ops.cast(t, this.dtype, dst);
      dst.dispose();
      for (const g of this.segments) {
        const lo = Math.max(e.offset, g.lo), hi = Math.min(e.offset + e.numel, g.hi);
        if (lo >= hi) continue;
        const flat = t.view(0, [e.numel]);
        const src = flat.view(lo - e.offset, [hi - lo]);
        const part = this.master.view(g.local + lo - g.lo, [hi - lo]);
        if (t.dtype === 'f32') part.copyFrom(src);
        else ops.cast(src, 'f32', part);
        for (const x of [flat, src, part]) x.dispose();
      }
    }
    if (whole) this.syncParam();
  }

  /**
   * The compute copy from master (after master changes outside adamw: init, resume). With a sharded
   * master, only its segments' part of it: the ranks then all-gather the rest (src/train/zero.ts).
   */
  syncParam(): void {
    if (!this.param) return;
    if (!this.masterSharded) {
      ops.cast(this.master, this.dtype, this.param);
      return;
    }
    for (const g of this.segments) {
      const part = this.param.view(g.lo, [g.hi - g.lo]), from = this.master.view(g.local, [g.hi - g.lo]);
      ops.cast(from, this.dtype, part);
      part.dispose();
      from.dispose();
    }
  }

  /** Bytes of f32 state the optimizer keeps beside the compute weights: m and v, and master unless it is them (f32). */
  get optimizerBytes(): number {
    return 4 * (this.m.numel + this.v.numel + (this.param ? this.master.numel : 0));
  }

  zeroGrad(): void {
    ops.fillUniform(this.grad, { low: 0, high: 0 });
    this.zeroed.clear();
    for (const e of this.layout) this.zeroed.add(entryTensor(this.grads, this.stage, e.key)!);
    if (this.grads.head) this.zeroed.add(this.grads.head);
  }

  /**
   * True the first time it is asked for a gradient view of `grads` since zeroGrad: that gradient still holds
   * zeros, so its writer may store its sum instead of adding it (TrainStage's weight gradients: one matmul
   * straight into the gradient, no scratch and add). Every later call for it says false. A writer that adds
   * into a gradient must ask too (the tied head and embedding are one view), so no store comes after an add.
   */
  takeZeroed(g: Tensor): boolean {
    if (!STORE_FIRST) return false;
    return this.zeroed.delete(g);
  }
  private readonly zeroed = new Set<Tensor>();

  /** A host copy of master (waits for the device). */
  hostMaster(): Float32Array {
    if (this.masterSharded) throw new Error(`training: master holds this rank's ZeRO segments (${this.master.numel} of ${this.n} elements) only; gather it first (src/train/zero.ts)`);
    return this.master.toArray() as Float32Array;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    disposeWeights(this.weights);
    disposeWeights(this.grads);
    for (const t of [this.master, this.m, this.v, this.param, this.grad]) t?.dispose();
  }
}
