// A model's weights on one device, in the run dtype, in the layout the kernels want:
//   - every projection as a torch Linear [out, in] (GPT-2's Conv1D [in, out] is transposed on load), so
//     decode takes the GEMV path;
//   - LLaMA's q/k/v fused into one [(Hq + 2 Hkv) D, C] projection and gate/up into one [2F, C], so a
//     layer runs one GEMM where it would run three or two.
// Weights come from a Hugging Face folder (safetensors) or are drawn on the device for a preset.
import { dtypeSize, type DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { showName } from '../io/folder.js';
import { DEFAULT_HEADER_LIMITS, WeightStore, type HeaderLimits } from '../io/safetensors.js';
import * as ops from '../ops.js';
import { Tensor } from '../tensor.js';
import { ropeFrequencyTensor } from './rope.js';
import { blockRanges, isSharded, spanBytes, tpLayout, type Span, type TpLayout, type TpShard } from './tp.js';
import { runLoadSync, type LoadAmount, type LoadSteps } from './load-steps.js';

export interface LayerWeights {
  norm1: Tensor;
  norm1Bias?: Tensor;
  qkv: Tensor; // [(Hq + 2 Hkv) D, C]
  qkvBias?: Tensor;
  out: Tensor; // [C, Hq D]
  outBias?: Tensor;
  norm2: Tensor;
  norm2Bias?: Tensor;
  up: Tensor; // GPT-2: [4C, C]; LLaMA: gate and up stacked, [2F, C]
  upBias?: Tensor;
  down: Tensor; // [C, F]
  downBias?: Tensor;
}

/** A pipeline stage: the part of a model it holds, layers [start, end), plus the embeddings and/or the head. */
export interface Stage {
  start: number;
  end: number;
  embed: boolean;
  head: boolean;
  /**
   * Tensor parallel: this rank's share of every layer (models/tp.ts: heads and MLP features split, the
   * embeddings, norms and head replicated); absent or size 1: whole layers.
   */
  tp?: TpShard;
}

export const wholeModel = (cfg: ModelConfig): Stage => ({ start: 0, end: cfg.layers, embed: true, head: true });

export interface ModelWeights {
  stage: Stage;
  embed?: Tensor; // [V, C], on the first stage (and the last, when tied)
  positions?: Tensor; // GPT-2: [P, C]
  layers: LayerWeights[]; // layers stage.start .. stage.end - 1
  normF?: Tensor;
  normFBias?: Tensor;
  head?: Tensor; // [V, C]; the embedding itself when tied
  /** scaled RoPE's per-dimension frequencies, f32 [headDim / 2] (models/rope.ts); absent for plain RoPE */
  ropeFreqs?: Tensor;
}

export function disposeWeights(w: ModelWeights): void {
  const all = new Set<Tensor>();
  for (const t of [w.embed, w.positions, w.normF, w.normFBias, w.head, w.ropeFreqs]) if (t) all.add(t);
  for (const l of w.layers) for (const t of Object.values(l)) if (t) all.add(t);
  for (const t of all) t.dispose();
}


// ---------------------------------------------------------------------------------------- random init

/**
 * Seeded random weights of the config's shapes, drawn on the device (no host traffic). Each tensor's
 * seed depends only on (seed, layer, slot), so a pipeline stage draws exactly the values the whole
 * model has for its layers.
 */
export function randomWeights(cfg: ModelConfig, device: string, dtype: DType, seed = 0, stage = wholeModel(cfg)): ModelWeights {
  return runLoadSync(randomWeightSteps(cfg, device, dtype, seed, [stage]))[0]!;
}

/** Tensors and bytes a preset's random weights of these stages draw (what randomWeightSteps reports). */
export function randomWeightTotals(cfg: ModelConfig, dtype: DType, stages: Stage[]): LoadAmount {
  const { hidden: C, heads, kvHeads, headDim: D, intermediate: F, vocabSize: V } = cfg;
  const gpt2 = cfg.family === 'gpt2';
  const W3 = (heads + 2 * kvHeads) * D;
  const perLayer = gpt2
    ? [C, C, W3 * C, W3, C * heads * D, C, C, C, F * C, F, C * F, C]
    : [C, W3 * C, ...(cfg.qkvBias ? [W3] : []), C * heads * D, ...(cfg.outBias ? [C] : []), C, 2 * F * C, C * F];
  let tensors = 0, elems = 0;
  const add = (n: number) => ((tensors += 1), (elems += n));
  for (const s of stages) {
    // A tp rank draws each split tensor whole (then keeps its share), and rank 0 alone the row-parallel biases.
    const tp = isSharded(s.tp) ? tpLayout(cfg, s.tp) : null;
    const first = tp?.shard.rank === 0;
    const tpLayer = !tp ? [] : gpt2
      ? [C, C, W3 * C, 3 * tp.heads * D, C * heads * D, ...(first ? [C] : []), C, C, F * C, tp.features, C * F, ...(first ? [C] : [])]
      : [C, W3 * C, ...(cfg.qkvBias ? [W3] : []), C * heads * D, ...(cfg.outBias && first ? [C] : []), C, 2 * F * C, C * F];
    for (let i = s.start; i < s.end; i++) (tp ? tpLayer : perLayer).forEach(add);
    if (s.embed || (s.head && cfg.tieEmbeddings)) add(V * C);
    if (gpt2 && s.embed) add(cfg.maxPositions * C);
    if (s.head) add(C);
    if (s.head && gpt2) add(C);
    if (s.head && !cfg.tieEmbeddings) add(V * C);
  }
  return { tensors, bytes: elems * dtypeSize(dtype) };
}

/** randomWeights for several stages, one tensor a step (each step yields what it drew). */
export function* randomWeightSteps(cfg: ModelConfig, device: string, dtype: DType, seed: number, stages: Stage[]): LoadSteps<ModelWeights[]> {
  const made: Tensor[] = [];
  const opt = { dtype, device };
  // Uniform with the std of HF's normal(0, 0.02) init; norms start at one and biases at zero.
  const a = 0.02 * Math.sqrt(3);
  const keep = (t: Tensor | undefined) => (t && made.push(t), t);
  function* draw(shape: number[], fill: Parameters<typeof ops.fillUniform>[1]): LoadSteps<Tensor> {
    const t = Tensor.empty(shape, opt);
    made.push(t);
    ops.fillUniform(t, fill);
    yield { tensors: 1, bytes: t.numel * dtypeSize(dtype) };
    return t;
  }
  const rnd = (shape: number[], layer: number, slot: number) => draw(shape, { seed: seed * 1_000_003 + (layer + 2) * 16 + slot, low: -a, high: a });
  // A tp rank draws the whole tensor (the same values as one device), keeps its blocks and frees the rest.
  function* rndShare(shape: number[], layer: number, slot: number, blocks: Block[]): LoadSteps<Tensor> {
    const full = yield* rnd(shape, layer, slot);
    made.splice(made.indexOf(full), 1);
    try {
      const bytes = new Uint8Array(full.toBuffer());
      const shape2: [number, number] = shape.length === 1 ? [1, shape[0]!] : [shape[0]!, shape[1]!];
      const parts = blocks.map((b) => sliceBytes(bytes, shape2, dtypeSize(dtype), b));
      const t = Tensor.empty(blocksShape(shape.length, blocks), opt);
      made.push(t);
      t.native.writeHost(asHost(concatBytes(parts), dtype));
      return t;
    } finally {
      full.dispose();
    }
  }
  const ones = (c: number) => draw([c], { low: 1, high: 1 });
  const zeros = (c: number) => draw([c], { low: 0, high: 0 });
  const { hidden: C, heads, kvHeads, headDim: D, intermediate: F, vocabSize: V } = cfg;
  const gpt2 = cfg.family === 'gpt2';
  const W3 = (heads + 2 * kvHeads) * D;
  // A tp rank's share of layer i: the blocks of the whole layer's draws (same seeds); the row-parallel
  // biases on rank 0 only.
  function* randomShardLayer(tp: TpLayout, i: number): LoadSteps<LayerWeights> {
    const b = shareBlocks(cfg, tp);
    const first = tp.shard.rank === 0;
    return {
      norm1: yield* ones(C),
      norm1Bias: gpt2 ? yield* zeros(C) : undefined,
      qkv: yield* rndShare([W3, C], i, 0, b.qkv),
      qkvBias: gpt2 ? yield* zeros(3 * tp.heads * D) : cfg.qkvBias ? yield* rndShare([W3], i, 4, b.qkvBias) : undefined,
      out: yield* rndShare([C, heads * D], i, 1, b.out),
      outBias: !first ? undefined : gpt2 ? yield* zeros(C) : cfg.outBias ? yield* rnd([C], i, 5) : undefined,
      norm2: yield* ones(C),
      norm2Bias: gpt2 ? yield* zeros(C) : undefined,
      up: yield* rndShare([gpt2 ? F : 2 * F, C], i, 2, gpt2 ? b.fc : b.gateUp),
      upBias: gpt2 ? yield* zeros(tp.features) : undefined,
      down: yield* rndShare([C, F], i, 3, b.down),
      downBias: gpt2 && first ? yield* zeros(C) : undefined,
    };
  }
  const out: ModelWeights[] = [];
  try {
    for (const stage of stages) {
      const layers: LayerWeights[] = [];
      const tp = isSharded(stage.tp) ? tpLayout(cfg, stage.tp) : null;
      for (let i = stage.start; i < stage.end && tp; i++) layers.push(yield* randomShardLayer(tp, i));
      for (let i = stage.start; i < stage.end && !tp; i++)
        layers.push({
          norm1: yield* ones(C),
          norm1Bias: gpt2 ? yield* zeros(C) : undefined,
          qkv: yield* rnd([W3, C], i, 0),
          // Qwen2-style biases are drawn, not zero, so that a preset exercises them.
          qkvBias: gpt2 ? yield* zeros(W3) : cfg.qkvBias ? yield* rnd([W3], i, 4) : undefined,
          out: yield* rnd([C, heads * D], i, 1),
          outBias: gpt2 ? yield* zeros(C) : cfg.outBias ? yield* rnd([C], i, 5) : undefined,
          norm2: yield* ones(C),
          norm2Bias: gpt2 ? yield* zeros(C) : undefined,
          up: yield* rnd([gpt2 ? F : 2 * F, C], i, 2),
          upBias: gpt2 ? yield* zeros(F) : undefined,
          down: yield* rnd([C, F], i, 3),
          downBias: gpt2 ? yield* zeros(C) : undefined,
        });
      const needEmbed = stage.embed || (stage.head && cfg.tieEmbeddings);
      const embed = needEmbed ? yield* rnd([V, C], -2, 0) : undefined;
      out.push({
        stage,
        embed,
        positions: gpt2 && stage.embed ? yield* rnd([cfg.maxPositions, C], -2, 1) : undefined,
        layers,
        normF: stage.head ? yield* ones(C) : undefined,
        normFBias: gpt2 && stage.head ? yield* zeros(C) : undefined,
        head: stage.head ? (cfg.tieEmbeddings ? embed : yield* rnd([V, C], -1, 0)) : undefined,
        ropeFreqs: stage.end > stage.start ? keep(ropeFrequencyTensor(cfg, device)) : undefined,
      });
    }
  } catch (e) {
    for (const t of made) t.dispose(); // an abort (thrown in at a step) or a failed draw leaves nothing behind
    throw e;
  }
  return out;
}

// ---------------------------------------------------------------------------------------- from files

type Host = Float32Array | Uint16Array;

function transpose(src: Host, rows: number, cols: number): Host {
  const out = new (src.constructor as { new (n: number): Host })(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

function concat(parts: Host[]): Host {
  const out = new (parts[0]!.constructor as { new (n: number): Host })(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

/** A block of a row-major [R, C] tensor (a 1-D tensor is [1, N]). */
export interface Block {
  rows: Span;
  cols: Span;
}
const all = (n: number): Span => [0, n];

/** Shape of blocks stacked: 1-D, their lengths summed; 2-D, their rows (they share a width). */
function blocksShape(dims: number, blocks: Block[]): number[] {
  const size = (s: Span) => s[1] - s[0];
  if (dims === 1) return [blocks.reduce((n, b) => n + size(b.cols), 0)];
  return [blocks.reduce((n, b) => n + size(b.rows), 0), size(blocks[0]!.cols)];
}

function sliceBytes(bytes: Uint8Array, shape: [number, number], elem: number, b: Block): Uint8Array {
  return concatBytes(blockRanges(shape, elem, b.rows, b.cols).map(([x, y]) => bytes.subarray(x, y)));
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.byteLength) - p.byteLength);
  return out;
}

/** Raw bytes of the run dtype as the typed array writeHost takes. */
function asHost(bytes: Uint8Array, dtype: DType): Host {
  const b = bytes.byteOffset % 4 ? bytes.slice() : bytes;
  return dtypeSize(dtype) === 4 ? new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4) : new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
}

/**
 * A tp rank's blocks of the run layout's [out, in] projections (LayerWeights): q, k, v rows of its heads,
 * the output projection's columns of them, the MLP's rows (gate and up in LLaMA's stacked [2F, C]) and
 * down's columns of its features.
 */
export function shareBlocks(cfg: ModelConfig, tp: TpLayout): Record<'qkv' | 'qkvBias' | 'out' | 'fc' | 'gateUp' | 'down', Block[]> {
  const { hidden: C, heads: H, kvHeads: KV, headDim: D, intermediate: F } = cfg;
  const q: Span = [tp.q0 * D, (tp.q0 + tp.heads) * D];
  const k: Span = [(H + tp.kv0) * D, (H + tp.kv0 + tp.kvHeads) * D];
  const v: Span = [(H + KV + tp.kv0) * D, (H + KV + tp.kv0 + tp.kvHeads) * D];
  const f: Span = [tp.f0, tp.f0 + tp.features];
  return {
    qkv: [q, k, v].map((rows): Block => ({ rows, cols: all(C) })),
    qkvBias: [q, k, v].map((cols): Block => ({ rows: [0, 1], cols })),
    out: [{ rows: all(C), cols: q }],
    fc: [{ rows: f, cols: all(C) }],
    gateUp: [{ rows: f, cols: all(C) }, { rows: [F + f[0], F + f[1]] as Span, cols: all(C) }],
    down: [{ rows: all(C), cols: f }],
  };
}

/** Bytes read between two steps of a file load: a large tensor (an embedding) is read in pieces. */
export const LOAD_PIECE_BYTES = 64 << 20;

class Loader {
  readonly used = new Set<string>();
  readonly made: Tensor[] = [];
  constructor(
    readonly store: WeightStore,
    readonly dtype: DType,
    readonly device: string,
    readonly source: string,
    readonly pieceBytes: number,
  ) {}

  /** Host values of `name`, checked against the shape the config implies; a step per piece read. */
  *host(name: string, shape: number[]): LoadSteps<Host> {
    if (!this.store.has(name)) throw new Error(`${this.source}: missing tensor "${name}" (expected shape [${shape.join(', ')}])`);
    const got = this.store.info(name).shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
      throw new Error(`${this.source}: tensor "${name}" has shape [${got.join(', ')}], the config implies [${shape.join(', ')}]`);
    this.used.add(name);
    // The last piece's step also counts the tensor (an empty tensor has one step of 0 bytes).
    const pieces = this.store.readRawSteps(name, this.pieceBytes);
    let r = pieces.next();
    if (r.done) yield { tensors: 1, bytes: 0 };
    while (!r.done) {
      const bytes = r.value;
      r = pieces.next();
      yield { tensors: r.done ? 1 : 0, bytes };
    }
    const raw = r.value;
    return this.store.convert(name, raw, this.dtype === 'i32' ? 'f32' : (this.dtype as 'f32' | 'bf16' | 'f16'));
  }

  /**
   * Only `blocks` of tensor `name` (checked against the whole tensor's shape), each converted to the run
   * dtype: a tp rank's share, read straight from the file (whole rows are one read, columns one read a
   * row). One step for the tensor.
   */
  *blocks(r: FileShare): LoadSteps<Host[]> {
    const { name, shape, blocks } = r;
    if (!this.store.has(name)) throw new Error(`${this.source}: missing tensor "${name}" (expected shape [${shape.join(', ')}])`);
    const info = this.store.info(name);
    const got = info.shape;
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i]))
      throw new Error(`${this.source}: tensor "${name}" has shape [${got.join(', ')}], the config implies [${shape.join(', ')}]`);
    this.used.add(name);
    const elem = info.nbytes / shape.reduce((a, b) => a * b, 1);
    const shape2 = as2d(shape);
    const to = this.dtype === 'i32' ? 'f32' : (this.dtype as 'f32' | 'bf16' | 'f16');
    const out = blocks.map((b) => this.store.convert(name, this.store.readRanges(name, blockRanges(shape2, elem, b.rows, b.cols)), to));
    yield { tensors: 1, bytes: out.reduce((n, h) => n + h.length * elem, 0) };
    return out;
  }

  upload(data: Host, shape: number[]): Tensor {
    const t = Tensor.empty(shape, { dtype: this.dtype, device: this.device });
    this.made.push(t);
    t.native.writeHost(data);
    return t;
  }

  *tensor(name: string, shape: number[]): LoadSteps<Tensor> {
    return this.upload(yield* this.host(name, shape), shape);
  }

  /**
   * Unexpected tensors are an error: they mean the file is not the model the config describes (a config
   * with fewer layers than the checkpoint would otherwise load and generate other text). `model` is every
   * name the whole model may hold: what its stages load plus buffers that are not weights. A stage skips
   * only those; anything else (a layer at or past cfg.layers, an unknown name) is unexpected for any stage.
   */
  checkAllUsed(model: (name: string) => boolean): void {
    const extra = this.store.names().filter((n) => !this.used.has(n) && !model(n));
    if (extra.length)
      throw new Error(
        `${this.source}: ${extra.length} unexpected tensors for this config: ${extra.slice(0, 5).map(showName).join(', ')}${extra.length > 5 ? ', …' : ''}`,
      );
  }
}

// The names each family's whole model may hold, per layer and at the ends; `extra` are buffers that are
// not weights (attention masks, RoPE frequencies) and a saved copy of a tied head.
const GPT2_LAYER = ['ln_1.weight', 'ln_1.bias', 'attn.c_attn.weight', 'attn.c_attn.bias', 'attn.c_proj.weight', 'attn.c_proj.bias',
  'ln_2.weight', 'ln_2.bias', 'mlp.c_fc.weight', 'mlp.c_fc.bias', 'mlp.c_proj.weight', 'mlp.c_proj.bias'];
const GPT2_LAYER_EXTRA = ['attn.bias', 'attn.masked_bias'];
const GPT2_ENDS = ['wte.weight', 'wpe.weight', 'ln_f.weight', 'ln_f.bias'];
const LLAMA_LAYER = ['input_layernorm.weight', 'self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight',
  'self_attn.o_proj.weight', 'post_attention_layernorm.weight', 'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight'];
const LLAMA_LAYER_EXTRA = ['self_attn.rotary_emb.inv_freq'];
const LLAMA_QKV_BIAS = ['self_attn.q_proj.bias', 'self_attn.k_proj.bias', 'self_attn.v_proj.bias'];
const LLAMA_OUT_BIAS = ['self_attn.o_proj.bias'];

/** The per-layer tensor names of a LLaMA-architecture config (Qwen2 and attention_bias add biases). */
function llamaLayerNames(cfg: ModelConfig): string[] {
  return [...LLAMA_LAYER, ...(cfg.qkvBias ? LLAMA_QKV_BIAS : []), ...(cfg.outBias ? LLAMA_OUT_BIAS : [])];
}
const LLAMA_ENDS = ['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight', 'model.rotary_emb.inv_freq'];

/**
 * Whether the whole model of `cfg` may have `name` in its files (GPT-2 names under `pre`): a layer's name
 * with a layer number below cfg.layers (written as the checkpoints write it: no leading zeros), or an end
 * piece. A test, not a list: a stage's config may claim any number of layers.
 */
function modelHas(cfg: ModelConfig, pre: string, ends: readonly string[]): (name: string) => boolean {
  const gpt2 = cfg.family === 'gpt2';
  const layerPrefix = gpt2 ? `${pre}h.` : 'model.layers.';
  const perLayer = new Set(gpt2 ? [...GPT2_LAYER, ...GPT2_LAYER_EXTRA] : [...llamaLayerNames(cfg), ...LLAMA_LAYER_EXTRA]);
  const endSet = new Set(ends);
  return (name) => {
    if (endSet.has(name)) return true;
    if (!name.startsWith(layerPrefix)) return false;
    const m = /^(0|[1-9]\d{0,9})\.(.+)$/.exec(name.slice(layerPrefix.length));
    return m !== null && Number(m[1]) < cfg.layers && perLayer.has(m[2]!);
  };
}

/**
 * How much safetensors header a checkpoint of `cfg` may have (see HeaderLimits): twice the tensors the
 * model may hold plus 64 (room for a few extra buffers, which the unused-tensor check then names), and
 * 1 MiB plus 1 KiB per such tensor of header bytes (a real entry is about 120 bytes; the MiB is for
 * __metadata__); never more than the defaults. A header past these is refused before it is read or while
 * it is scanned.
 */
export function loadLimits(cfg: ModelConfig): HeaderLimits {
  // Counted, not listed: a hostile config may claim 2^31 layers, which the shape checks refuse later.
  const gpt2 = cfg.family === 'gpt2';
  const perLayer = gpt2 ? GPT2_LAYER.length + GPT2_LAYER_EXTRA.length : llamaLayerNames(cfg).length + LLAMA_LAYER_EXTRA.length;
  const count = cfg.layers * perLayer + (gpt2 ? GPT2_ENDS.length + 1 : LLAMA_ENDS.length); // GPT-2: + lm_head.weight
  const maxTensors = Math.min(2 * count + 64, DEFAULT_HEADER_LIMITS.maxTensors);
  return { maxTensors, maxHeaderBytes: Math.min(1024 * 1024 + 1024 * maxTensors, DEFAULT_HEADER_LIMITS.maxHeaderBytes) };
}

/** A tp rank's read of one file tensor: its whole shape and the blocks it takes. */
interface FileShare {
  name: string;
  shape: number[];
  blocks: Block[];
}
const as2d = (shape: number[]): [number, number] => (shape.length === 1 ? [1, shape[0]!] : [shape[0]!, shape[1]!]);
const whole = (name: string, shape: number[]): FileShare => ({ name, shape, blocks: [{ rows: all(as2d(shape)[0]), cols: all(as2d(shape)[1]) }] });
const transposed = (b: Block): Block => ({ rows: b.cols, cols: b.rows });

/**
 * What a tp rank reads of layer `i`'s file tensors, by the part of LayerWeights it makes (GPT-2's Conv1D
 * weights are [in, out]: their blocks are the run layout's transposed). The row-parallel biases are
 * rank 0's only; the others read none.
 */
function tpLayerReads(cfg: ModelConfig, tp: TpLayout, i: number, pre: string): Record<string, FileShare | undefined> {
  const { hidden: C, heads: H, kvHeads: KV, headDim: D, intermediate: F } = cfg;
  const b = shareBlocks(cfg, tp);
  const first = tp.shard.rank === 0;
  if (cfg.family === 'gpt2') {
    const p = `${pre}h.${i}.`;
    const conv = (n: string, shape: number[], blocks: Block[]): FileShare => ({ name: p + n, shape, blocks: blocks.map(transposed) });
    return {
      norm1: whole(`${p}ln_1.weight`, [C]), norm1Bias: whole(`${p}ln_1.bias`, [C]),
      qkv: conv('attn.c_attn.weight', [C, 3 * C], b.qkv),
      qkvBias: { name: `${p}attn.c_attn.bias`, shape: [3 * C], blocks: b.qkvBias },
      out: conv('attn.c_proj.weight', [C, C], b.out),
      outBias: first ? whole(`${p}attn.c_proj.bias`, [C]) : undefined,
      norm2: whole(`${p}ln_2.weight`, [C]), norm2Bias: whole(`${p}ln_2.bias`, [C]),
      up: conv('mlp.c_fc.weight', [C, F], b.fc),
      upBias: { name: `${p}mlp.c_fc.bias`, shape: [F], blocks: [{ rows: [0, 1], cols: b.fc[0]!.rows }] },
      down: conv('mlp.c_proj.weight', [F, C], b.down),
      downBias: first ? whole(`${p}mlp.c_proj.bias`, [C]) : undefined,
    };
  }
  const p = `model.layers.${i}.`;
  const q: Span = [tp.q0 * D, (tp.q0 + tp.heads) * D];
  const kv: Span = [tp.kv0 * D, (tp.kv0 + tp.kvHeads) * D];
  const f = b.fc[0]!.rows;
  const rowsOf = (name: string, shape: number[], rows: Span): FileShare => ({ name: p + name, shape, blocks: [{ rows, cols: all(shape[1]!) }] });
  const bias = (name: string, n: number, cols: Span): FileShare => ({ name: p + name, shape: [n], blocks: [{ rows: [0, 1], cols }] });
  return {
    norm1: whole(`${p}input_layernorm.weight`, [C]),
    q: rowsOf('self_attn.q_proj.weight', [H * D, C], q),
    k: rowsOf('self_attn.k_proj.weight', [KV * D, C], kv),
    v: rowsOf('self_attn.v_proj.weight', [KV * D, C], kv),
    qBias: cfg.qkvBias ? bias('self_attn.q_proj.bias', H * D, q) : undefined,
    kBias: cfg.qkvBias ? bias('self_attn.k_proj.bias', KV * D, kv) : undefined,
    vBias: cfg.qkvBias ? bias('self_attn.v_proj.bias', KV * D, kv) : undefined,
    out: { name: `${p}self_attn.o_proj.weight`, shape: [C, H * D], blocks: b.out },
    outBias: cfg.outBias && first ? whole(`${p}self_attn.o_proj.bias`, [C]) : undefined,
    norm2: whole(`${p}post_attention_layernorm.weight`, [C]),
    gate: rowsOf('mlp.gate_proj.weight', [F, C], f),
    up: rowsOf('mlp.up_proj.weight', [F, C], f),
    down: { name: `${p}mlp.down_proj.weight`, shape: [C, F], blocks: b.down },
  };
}

/** A tp rank's layer `i` from the files: only its blocks are read (see tpLayerReads). */
function* loadTpLayer(cfg: ModelConfig, L: Loader, tp: TpLayout, i: number, pre: string): LoadSteps<LayerWeights> {
  const r = tpLayerReads(cfg, tp, i, pre);
  const one = function* (key: string): LoadSteps<Tensor | undefined> {
    const x = r[key];
    if (!x) return undefined;
    const h = yield* L.blocks(x);
    return L.upload(concat(h), blocksShape(x.shape.length, x.blocks));
  };
  // Conv1D [in, out] blocks, each transposed to [out, in] and stacked.
  const conv = function* (key: string): LoadSteps<Tensor> {
    const x = r[key]!;
    const hs = yield* L.blocks(x);
    const parts = hs.map((h, j) => transpose(h, x.blocks[j]!.rows[1] - x.blocks[j]!.rows[0], x.blocks[j]!.cols[1] - x.blocks[j]!.cols[0]));
    return L.upload(concat(parts), blocksShape(2, x.blocks.map(transposed)));
  };
  if (cfg.family === 'gpt2')
    return {
      norm1: (yield* one('norm1'))!, norm1Bias: yield* one('norm1Bias'),
      qkv: yield* conv('qkv'), qkvBias: yield* one('qkvBias'),
      out: yield* conv('out'), outBias: yield* one('outBias'),
      norm2: (yield* one('norm2'))!, norm2Bias: yield* one('norm2Bias'),
      up: yield* conv('up'), upBias: yield* one('upBias'),
      down: yield* conv('down'), downBias: yield* one('downBias'),
    };
  const host = function* (key: string): LoadSteps<Host> {
    return concat(yield* L.blocks(r[key]!));
  };
  const { hidden: C } = cfg;
  const [q, k, v] = [yield* host('q'), yield* host('k'), yield* host('v')];
  const qkvBias = cfg.qkvBias ? concat([yield* host('qBias'), yield* host('kBias'), yield* host('vBias')]) : undefined;
  const [gate, up] = [yield* host('gate'), yield* host('up')];
  return {
    norm1: (yield* one('norm1'))!,
    qkv: L.upload(concat([q, k, v]), [(q.length + k.length + v.length) / C, C]),
    qkvBias: qkvBias ? L.upload(qkvBias, [qkvBias.length]) : undefined,
    out: (yield* one('out'))!,
    outBias: yield* one('outBias'),
    norm2: (yield* one('norm2'))!,
    up: L.upload(concat([gate, up]), [(gate.length + up.length) / C, C]),
    down: (yield* one('down'))!,
  };
}

function* loadGpt2(cfg: ModelConfig, L: Loader, stage: Stage): LoadSteps<ModelWeights> {
  const { hidden: C, intermediate: F, vocabSize: V, maxPositions: P } = cfg;
  // Checkpoints saved from GPT2LMHeadModel prefix names with "transformer."; bare GPT2Model ones do not.
  // Judged by all the names, so a missing transformer.wte.weight is reported under its own name.
  const pre = gpt2Prefix(L.store);
  function* conv(name: string, inF: number, outF: number): LoadSteps<Tensor> {
    return L.upload(transpose(yield* L.host(name, [inF, outF]), inF, outF), [outF, inF]);
  }
  const layers: LayerWeights[] = [];
  const tp = isSharded(stage.tp) ? tpLayout(cfg, stage.tp) : null;
  for (let i = stage.start; i < stage.end && tp; i++) layers.push(yield* loadTpLayer(cfg, L, tp, i, pre));
  for (let i = stage.start; i < stage.end && !tp; i++) {
    const p = `${pre}h.${i}.`;
    layers.push({
      norm1: yield* L.tensor(`${p}ln_1.weight`, [C]),
      norm1Bias: yield* L.tensor(`${p}ln_1.bias`, [C]),
      qkv: yield* conv(`${p}attn.c_attn.weight`, C, 3 * C),
      qkvBias: yield* L.tensor(`${p}attn.c_attn.bias`, [3 * C]),
      out: yield* conv(`${p}attn.c_proj.weight`, C, C),
      outBias: yield* L.tensor(`${p}attn.c_proj.bias`, [C]),
      norm2: yield* L.tensor(`${p}ln_2.weight`, [C]),
      norm2Bias: yield* L.tensor(`${p}ln_2.bias`, [C]),
      up: yield* conv(`${p}mlp.c_fc.weight`, C, F),
      upBias: yield* L.tensor(`${p}mlp.c_fc.bias`, [F]),
      down: yield* conv(`${p}mlp.c_proj.weight`, F, C),
      downBias: yield* L.tensor(`${p}mlp.c_proj.bias`, [C]),
    });
  }
  const embed = stage.embed || stage.head ? yield* L.tensor(`${pre}wte.weight`, [V, C]) : undefined;
  const w: ModelWeights = {
    stage,
    embed,
    positions: stage.embed ? yield* L.tensor(`${pre}wpe.weight`, [P, C]) : undefined,
    layers,
    normF: stage.head ? yield* L.tensor(`${pre}ln_f.weight`, [C]) : undefined,
    normFBias: stage.head ? yield* L.tensor(`${pre}ln_f.bias`, [C]) : undefined,
    head: stage.head ? embed : undefined,
  };
  // A saved lm_head is the tied embedding again; attention-mask buffers are not weights.
  L.checkAllUsed(modelHas(cfg, pre, [...GPT2_ENDS.map((n) => pre + n), 'lm_head.weight']));
  return w;
}

function* loadLlama(cfg: ModelConfig, L: Loader, stage: Stage): LoadSteps<ModelWeights> {
  const { hidden: C, heads, kvHeads, headDim: D, intermediate: F, vocabSize: V } = cfg;
  const layers: LayerWeights[] = [];
  const tp = isSharded(stage.tp) ? tpLayout(cfg, stage.tp) : null;
  for (let i = stage.start; i < stage.end && tp; i++) layers.push(yield* loadTpLayer(cfg, L, tp, i, ''));
  for (let i = stage.start; i < stage.end && !tp; i++) {
    const p = `model.layers.${i}.`;
    const q = yield* L.host(`${p}self_attn.q_proj.weight`, [heads * D, C]);
    const k = yield* L.host(`${p}self_attn.k_proj.weight`, [kvHeads * D, C]);
    const v = yield* L.host(`${p}self_attn.v_proj.weight`, [kvHeads * D, C]);
    const gate = yield* L.host(`${p}mlp.gate_proj.weight`, [F, C]);
    const up = yield* L.host(`${p}mlp.up_proj.weight`, [F, C]);
    // Biases fused in the same order as the weights' rows: q, then k, then v.
    const qkvBias = cfg.qkvBias
      ? L.upload(
          concat([
            yield* L.host(`${p}self_attn.q_proj.bias`, [heads * D]),
            yield* L.host(`${p}self_attn.k_proj.bias`, [kvHeads * D]),
            yield* L.host(`${p}self_attn.v_proj.bias`, [kvHeads * D]),
          ]),
          [(heads + 2 * kvHeads) * D],
        )
      : undefined;
    layers.push({
      norm1: yield* L.tensor(`${p}input_layernorm.weight`, [C]),
      qkv: L.upload(concat([q, k, v]), [(heads + 2 * kvHeads) * D, C]),
      qkvBias,
      out: yield* L.tensor(`${p}self_attn.o_proj.weight`, [C, heads * D]),
      outBias: cfg.outBias ? yield* L.tensor(`${p}self_attn.o_proj.bias`, [C]) : undefined,
      norm2: yield* L.tensor(`${p}post_attention_layernorm.weight`, [C]),
      up: L.upload(concat([gate, up]), [2 * F, C]),
      down: yield* L.tensor(`${p}mlp.down_proj.weight`, [C, F]),
    });
  }
  const tied = llamaTied(cfg, L.store);
  const embed = stage.embed || (stage.head && tied) ? yield* L.tensor('model.embed_tokens.weight', [V, C]) : undefined;
  const w: ModelWeights = {
    stage,
    embed,
    layers,
    normF: stage.head ? yield* L.tensor('model.norm.weight', [C]) : undefined,
    head: stage.head ? (tied ? embed : yield* L.tensor('lm_head.weight', [V, C])) : undefined,
  };
  const freqs = stage.end > stage.start ? ropeFrequencyTensor(cfg, L.device) : undefined;
  if (freqs) L.made.push((w.ropeFreqs = freqs));
  // A tied model never loads lm_head.weight: a file that has one is not the model the config describes.
  L.checkAllUsed(modelHas(cfg, '', cfg.tieEmbeddings ? LLAMA_ENDS.filter((n) => n !== 'lm_head.weight') : LLAMA_ENDS));
  return w;
}

/** GPT2LMHeadModel's checkpoints prefix names with "transformer."; bare GPT2Model ones do not. */
const gpt2Prefix = (store: WeightStore) => (store.names().some((n) => n.startsWith('transformer.')) ? 'transformer.' : '');
/** A LLaMA checkpoint without lm_head.weight ties the head to the embedding whatever the config says. */
const llamaTied = (cfg: ModelConfig, store: WeightStore) => cfg.tieEmbeddings || !store.has('lm_head.weight');

/** The names a stage's load reads, in the loaders' terms (loadGpt2, loadLlama); a name read twice by two stages counts twice. */
function stageReads(cfg: ModelConfig, store: WeightStore, s: Stage): string[] {
  const out: string[] = [];
  if (cfg.family === 'gpt2') {
    const pre = gpt2Prefix(store);
    for (let i = s.start; i < s.end; i++) out.push(...GPT2_LAYER.map((n) => `${pre}h.${i}.${n}`));
    if (s.embed || s.head) out.push(`${pre}wte.weight`);
    if (s.embed) out.push(`${pre}wpe.weight`);
    if (s.head) out.push(`${pre}ln_f.weight`, `${pre}ln_f.bias`);
  } else {
    const tied = llamaTied(cfg, store);
    for (let i = s.start; i < s.end; i++) out.push(...LLAMA_LAYER.map((n) => `model.layers.${i}.${n}`));
    if (s.embed || (s.head && tied)) out.push('model.embed_tokens.weight');
    if (s.head) out.push('model.norm.weight');
    if (s.head && !tied) out.push('lm_head.weight');
  }
  return out;
}

/**
 * Tensors and file bytes that loading these stages from `store` reads (what fileWeightSteps reports).
 * A name the files lack counts nothing: the load itself then fails naming it.
 */
export function fileWeightTotals(cfg: ModelConfig, store: WeightStore, stages: Stage[]): LoadAmount {
  let tensors = 0, bytes = 0;
  for (const s of stages) {
    const tp = isSharded(s.tp) ? tpLayout(cfg, s.tp) : null;
    // A tp rank's layers read only their blocks; the ends (embeddings, head) are read whole.
    const ends = tp ? stageReads(cfg, store, { ...s, start: 0, end: 0 }) : stageReads(cfg, store, s);
    for (const n of ends) if (store.has(n)) (tensors += 1), (bytes += store.info(n).nbytes);
    const pre = cfg.family === 'gpt2' ? gpt2Prefix(store) : '';
    for (let i = s.start; i < s.end && tp; i++)
      for (const r of Object.values(tpLayerReads(cfg, tp, i, pre)))
        if (r && store.has(r.name)) {
          const info = store.info(r.name);
          const elem = info.nbytes / Math.max(1, r.shape.reduce((a, b) => a * b, 1));
          tensors += 1;
          bytes += r.blocks.reduce((n, b) => n + spanBytes(blockRanges(as2d(r.shape), elem, b.rows, b.cols)), 0);
        }
  }
  return { tensors, bytes };
}

/** Opens a checkpoint folder's weights with the header limits its config allows (see loadLimits). */
export function openWeights(cfg: ModelConfig, folder: string): WeightStore {
  return WeightStore.open(folder, loadLimits(cfg));
}

/**
 * Several stages' weights from an open store, a step per piece read (at most `pieceBytes`). On any
 * failure, or an abort thrown in at a step, everything it put on the device is freed. The caller closes
 * the store.
 */
export function* fileWeightSteps(
  cfg: ModelConfig,
  store: WeightStore,
  device: string,
  dtype: DType,
  stages: Stage[],
  pieceBytes = LOAD_PIECE_BYTES,
): LoadSteps<ModelWeights[]> {
  if (!(Number.isSafeInteger(pieceBytes) && pieceBytes > 0)) throw new Error(`load ${store.folder}: pieceBytes must be a positive integer, got ${pieceBytes}`);
  const L = new Loader(store, dtype, device, store.folder, pieceBytes);
  try {
    const out: ModelWeights[] = [];
    for (const stage of stages) out.push(cfg.family === 'gpt2' ? yield* loadGpt2(cfg, L, stage) : yield* loadLlama(cfg, L, stage));
    return out;
  } catch (e) {
    for (const t of L.made) t.dispose(); // nothing half-loaded stays on the device
    throw e;
  }
}

/** Load a Hugging Face checkpoint folder's weights (or one stage's share) onto `device` as `dtype`. */
export function loadWeights(cfg: ModelConfig, folder: string, device: string, dtype: DType, stage = wholeModel(cfg)): ModelWeights {
  return loadStageWeights(cfg, folder, device, dtype, [stage])[0]!;
}

/** Several stages' weights from one opening of the folder (its index and shard headers read once). */
export function loadStageWeights(cfg: ModelConfig, folder: string, device: string, dtype: DType, stages: Stage[]): ModelWeights[] {
  const store = openWeights(cfg, folder);
  try {
    return runLoadSync(fileWeightSteps(cfg, store, device, dtype, stages));
  } finally {
    store.close();
  }
}
