// A model's shape and hyperparameters, normalized from a Hugging Face config.json. Only what the
// kernels implement is accepted: anything that would silently change the numerics is an error.
import * as path from 'node:path';
import { parseJsonText, readTextInFolder, scanJsonKeys, showName, showValue } from './folder.js';

export type ModelFamily = 'gpt2' | 'llama';

/** LLaMA 3.x's "llama3" RoPE scaling (models/rope.ts turns it into per-dimension frequencies). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface ModelConfig {
  family: ModelFamily;
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  maxPositions: number;
  normEps: number;
  /** RoPE base; 0 for models with learned positions (GPT-2). */
  ropeTheta: number;
  tieEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** Hugging Face model_type of a LLaMA-architecture model that is not "llama" ("mistral", "qwen2"). */
  modelType?: 'mistral' | 'qwen2';
  /** q/k/v projections have biases (Qwen2; LLaMA's attention_bias), fused as LayerWeights.qkvBias. */
  qkvBias?: boolean;
  /** the attention output projection has a bias (LLaMA's attention_bias; not Qwen2). */
  outBias?: boolean;
  /** RoPE scaling; absent: plain RoPE with ropeTheta. */
  ropeScaling?: Llama3RopeScaling;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Field readers: each error names the field and the source. `absent` is the value when missing or null. */
class Fields {
  constructor(
    readonly o: Json,
    readonly source: string,
  ) {}

  fail(key: string, why: string): never {
    throw new Error(`${this.source}: "${key}" ${why}`);
  }

  private get(key: string): unknown {
    const v = this.o[key];
    return v === null ? undefined : v;
  }

  int(key: string, absent?: number, min = 1): number {
    const v = this.get(key) ?? absent;
    if (v === undefined) this.fail(key, `is missing (expected an integer >= ${min})`);
    if (!Number.isSafeInteger(v) || (v as number) < min) this.fail(key, `is ${showValue(v)}, expected an integer >= ${min}`);
    return v as number;
  }

  positive(key: string, absent?: number): number {
    const v = this.get(key) ?? absent;
    if (v === undefined) this.fail(key, 'is missing (expected a positive number)');
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, `is ${showValue(v)}, expected a positive number`);
    return v;
  }

  bool(key: string, absent: boolean): boolean {
    const v = this.get(key) ?? absent;
    if (typeof v !== 'boolean') this.fail(key, `is ${showValue(v)}, expected true or false`);
    return v;
  }

  oneOf(key: string, allowed: readonly string[], why: string, absent?: string): string {
    const v = this.get(key) ?? absent;
    if (v === undefined) this.fail(key, `is missing (expected ${allowed.map((a) => `"${a}"`).join(' or ')})`);
    if (typeof v !== 'string' || !allowed.includes(v)) this.fail(key, `is ${showValue(v)}: ${why}`);
    return v;
  }

  /** bos/eos ids; `absent` are transformers' defaults when a key is missing (an explicit null means none). */
  tokenIds(absent: { bos?: number; eos?: number } = {}): { bosTokenId: number | null; eosTokenIds: number[] } {
    const bos = 'bos_token_id' in this.o ? this.get('bos_token_id') : absent.bos;
    if (bos !== undefined && !(Number.isSafeInteger(bos) && (bos as number) >= 0))
      this.fail('bos_token_id', `is ${showValue(bos)}, expected a token id or null`);
    const eos = 'eos_token_id' in this.o ? this.get('eos_token_id') : absent.eos;
    const eosIds = eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
    if (!eosIds.every((t) => Number.isSafeInteger(t) && t >= 0))
      this.fail('eos_token_id', `is ${showValue(eos)}, expected a token id, a list of them, or null`);
    return { bosTokenId: (bos as number | undefined) ?? null, eosTokenIds: eosIds as number[] };
  }
}

// Missing keys take transformers' defaults (GPT2Config, LlamaConfig, MistralConfig, Qwen2Config), as
// from_pretrained would, except the shape keys (vocabulary, widths, depth, heads, context): a config
// without them does not describe its checkpoint, and the class defaults are some other model's shape.

function parseGpt2(f: Fields): ModelConfig {
  const hidden = f.int('n_embd');
  const heads = f.int('n_head');
  if (hidden % heads !== 0) f.fail('n_head', `(${heads}) does not divide n_embd (${hidden})`);
  f.oneOf('activation_function', ['gelu_new', 'gelu_pytorch_tanh'], 'only the tanh GELU (gelu_new, gelu_pytorch_tanh) is implemented', 'gelu_new');
  if (f.bool('reorder_and_upcast_attn', false)) f.fail('reorder_and_upcast_attn', 'is true: not supported');
  // Variants of GPT-2 attention scaling that the attention kernels don't do.
  if (f.bool('scale_attn_by_inverse_layer_idx', false)) f.fail('scale_attn_by_inverse_layer_idx', 'is true: not supported');
  if (!f.bool('scale_attn_weights', true)) f.fail('scale_attn_weights', 'is false: not supported');
  if (!f.bool('tie_word_embeddings', true)) f.fail('tie_word_embeddings', 'is false: GPT-2 with an untied lm_head is not supported');
  return {
    family: 'gpt2',
    vocabSize: f.int('vocab_size'),
    hidden,
    layers: f.int('n_layer'),
    heads,
    kvHeads: heads,
    headDim: hidden / heads,
    intermediate: f.int('n_inner', 4 * hidden), // null in most configs: 4 * n_embd
    maxPositions: f.int('n_positions'),
    normEps: f.positive('layer_norm_epsilon', 1e-5),
    ropeTheta: 0,
    tieEmbeddings: true,
    ...f.tokenIds({ bos: 50256, eos: 50256 }),
  };
}

/** RoPE of a LLaMA-architecture config: `rope_scaling` (transformers 4) or `rope_parameters` (5). */
function llamaRope(f: Fields, defaultTheta: number): { ropeTheta: number; ropeScaling?: Llama3RopeScaling } {
  let scaling: Llama3RopeScaling | undefined;
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const p = f.o[key];
    if (p === undefined || p === null) continue;
    if (!isObject(p)) f.fail(key, `is ${showValue(p)}, expected an object or null`);
    const type = p.rope_type ?? p.type ?? 'default';
    if (type === 'default') continue;
    if (type !== 'llama3')
      f.fail(key, `has rope type ${showValue(type)}: only "default" and "llama3" RoPE are supported (other scalings change the numerics)`);
    const g = new Fields(p, `${f.source} ${key}`);
    const s: Llama3RopeScaling = {
      type: 'llama3',
      factor: g.positive('factor'),
      lowFreqFactor: g.positive('low_freq_factor'),
      highFreqFactor: g.positive('high_freq_factor'),
      originalMaxPositions: g.int('original_max_position_embeddings'),
    };
    // HF's formula divides by (high - low); equal factors would be a division by zero there.
    if (!(s.highFreqFactor > s.lowFreqFactor))
      g.fail('high_freq_factor', `(${s.highFreqFactor}) must be larger than low_freq_factor (${s.lowFreqFactor})`);
    if (scaling && JSON.stringify(scaling) !== JSON.stringify(s)) f.fail(key, 'disagrees with rope_scaling');
    scaling = s;
  }
  const params = f.o.rope_parameters;
  const ropeTheta =
    f.o.rope_theta == null && isObject(params) && params.rope_theta != null
      ? new Fields(params, `${f.source} rope_parameters`).positive('rope_theta')
      : f.positive('rope_theta', defaultTheta);
  return scaling ? { ropeTheta, ropeScaling: scaling } : { ropeTheta };
}

type LlamaLike = 'llama' | 'mistral' | 'qwen2';

/**
 * The context the kernels compute exactly: attention is full causal, so a sliding window W smaller than
 * max_position_embeddings (Mistral v0.1, Qwen2 with use_sliding_window) is honoured by capping the
 * context at W, where no token has anything outside its window yet.
 */
function slidingContext(f: Fields, type: LlamaLike, maxPositions: number, layers: number): number {
  let window: number | undefined;
  if (type === 'mistral') window = f.o.sliding_window === null ? undefined : f.int('sliding_window', 4096);
  if (type === 'qwen2' && f.bool('use_sliding_window', false)) {
    // Layers from max_window_layers on use the window (transformers' Qwen2 layer_types).
    const from = f.int('max_window_layers', 28, 0);
    if (from < layers && f.o.sliding_window !== null) window = f.int('sliding_window', 4096);
  }
  return window === undefined ? maxPositions : Math.min(maxPositions, window);
}

function parseLlama(f: Fields, type: LlamaLike): ModelConfig {
  const hidden = f.int('hidden_size');
  const heads = f.int('num_attention_heads');
  const kvHeads = f.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) f.fail('num_key_value_heads', `(${kvHeads}) does not divide num_attention_heads (${heads})`);
  if (f.o.head_dim == null && hidden % heads !== 0)
    f.fail('num_attention_heads', `(${heads}) does not divide hidden_size (${hidden}) and head_dim is not given`);
  const headDim = f.int('head_dim', hidden / heads);
  if (headDim % 2) f.fail('head_dim', `(${headDim}) must be even for RoPE`);
  f.oneOf('hidden_act', ['silu'], 'only SiLU (SwiGLU) is implemented', 'silu');
  // Qwen2's q/k/v always have biases (and o_proj none); LLaMA's attention_bias puts one on all four.
  const attentionBias = type === 'llama' && f.bool('attention_bias', false);
  if (type === 'llama' && f.bool('mlp_bias', false)) f.fail('mlp_bias', 'is true: MLP projections with bias are not supported');
  const layers = f.int('num_hidden_layers');
  const maxPositions = f.int('max_position_embeddings');
  const cfg: ModelConfig = {
    family: 'llama',
    vocabSize: f.int('vocab_size'),
    hidden,
    layers,
    heads,
    kvHeads,
    headDim,
    intermediate: f.int('intermediate_size'),
    maxPositions: slidingContext(f, type, maxPositions, layers),
    normEps: f.positive('rms_norm_eps', 1e-6),
    ...llamaRope(f, 10000),
    tieEmbeddings: f.bool('tie_word_embeddings', false),
    // Qwen2Config leaves bos/eos unset; LlamaConfig and MistralConfig default to 1 and 2.
    ...f.tokenIds(type === 'qwen2' ? {} : { bos: 1, eos: 2 }),
  };
  if (type !== 'llama') cfg.modelType = type;
  if (type === 'qwen2' || attentionBias) cfg.qkvBias = true;
  if (attentionBias) cfg.outBias = true;
  return cfg;
}

/** Normalizes a parsed config.json; `source` names it in errors. */
export function parseConfig(json: unknown, source = 'config.json'): ModelConfig {
  if (!isObject(json)) throw new Error(`${source}: not a JSON object`);
  const f = new Fields(json, source);
  const type = json.model_type;
  if (type === 'gpt2') return parseGpt2(f);
  if (type === 'llama' || type === 'mistral' || type === 'qwen2') return parseLlama(f, type);
  return f.fail('model_type', `is ${showValue(type)}: supported model types are "gpt2", "llama", "mistral" and "qwen2"`);
}

/** config.json files are a few KB; one with a large label map is still far below this. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Reads and normalizes `folder/config.json`, which must really lie inside `folder` (see folder.ts). */
export function loadConfig(folder: string): ModelConfig {
  const file = path.join(folder, 'config.json');
  const text = readTextInFolder(folder, file, 'model config', MAX_CONFIG_BYTES);
  const dup = scanJsonKeys(text, { maxKeys: Infinity, maxDepth: 64 }, (why) => new Error(`${file}: ${why}`));
  const json = parseJsonText(text, `${file}: `);
  // JSON.parse keeps the last of repeated keys; which one a config means is anyone's guess.
  if (dup) throw new Error(`${file}: key ${showName(dup.key)} appears twice${dup.top === dup.key ? '' : ` (under ${showName(dup.top)})`}`);
  return parseConfig(json, file);
}
