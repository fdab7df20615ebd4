// A model's shape and hyperparameters, normalized from a Hugging Face config.json. Only what the
// kernels implement is accepted: anything that would silently change the numerics is an error.
import * as path from 'node:path';
import { parseJsonText, readTextInFolder, scanJsonKeys, showName, showValue } from './folder.js';

export type ModelFamily = 'gpt2' | 'llama';

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

  oneOf(key: string, allowed: readonly string[], why: string): string {
    const v = this.get(key);
    if (v === undefined) this.fail(key, `is missing (expected ${allowed.map((a) => `"${a}"`).join(' or ')})`);
    if (typeof v !== 'string' || !allowed.includes(v)) this.fail(key, `is ${showValue(v)}: ${why}`);
    return v;
  }

  tokenIds(): { bosTokenId: number | null; eosTokenIds: number[] } {
    const bos = this.get('bos_token_id');
    if (bos !== undefined && !(Number.isSafeInteger(bos) && (bos as number) >= 0))
      this.fail('bos_token_id', `is ${showValue(bos)}, expected a token id or null`);
    const eos = this.get('eos_token_id');
    const eosIds = eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
    if (!eosIds.every((t) => Number.isSafeInteger(t) && t >= 0))
      this.fail('eos_token_id', `is ${showValue(eos)}, expected a token id, a list of them, or null`);
    return { bosTokenId: (bos as number | undefined) ?? null, eosTokenIds: eosIds as number[] };
  }
}

function parseGpt2(f: Fields): ModelConfig {
  const hidden = f.int('n_embd');
  const heads = f.int('n_head');
  if (hidden % heads !== 0) f.fail('n_head', `(${heads}) does not divide n_embd (${hidden})`);
  f.oneOf('activation_function', ['gelu_new', 'gelu_pytorch_tanh'], 'only the tanh GELU (gelu_new, gelu_pytorch_tanh) is implemented');
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
    normEps: f.positive('layer_norm_epsilon'),
    ropeTheta: 0,
    tieEmbeddings: true,
    ...f.tokenIds(),
  };
}

/** RoPE base from `rope_theta` (transformers 4) or `rope_parameters.rope_theta` (transformers 5); only plain RoPE. */
function llamaRopeTheta(f: Fields): number {
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const p = f.o[key];
    if (p === undefined || p === null) continue;
    if (!isObject(p)) f.fail(key, `is ${showValue(p)}, expected an object or null`);
    const type = p.rope_type ?? p.type ?? 'default';
    if (type !== 'default') f.fail(key, `has rope type ${showValue(type)}: only "default" RoPE is supported (no scaling)`);
  }
  const params = f.o.rope_parameters;
  if (f.o.rope_theta == null && isObject(params) && params.rope_theta != null)
    return new Fields(params, `${f.source} rope_parameters`).positive('rope_theta');
  return f.positive('rope_theta', 10000);
}

function parseLlama(f: Fields): ModelConfig {
  const hidden = f.int('hidden_size');
  const heads = f.int('num_attention_heads');
  const kvHeads = f.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) f.fail('num_key_value_heads', `(${kvHeads}) does not divide num_attention_heads (${heads})`);
  if (f.o.head_dim == null && hidden % heads !== 0)
    f.fail('num_attention_heads', `(${heads}) does not divide hidden_size (${hidden}) and head_dim is not given`);
  const headDim = f.int('head_dim', hidden / heads);
  f.oneOf('hidden_act', ['silu'], 'only SiLU (SwiGLU) is implemented');
  if (f.bool('attention_bias', false)) f.fail('attention_bias', 'is true: attention projections with bias are not supported');
  if (f.bool('mlp_bias', false)) f.fail('mlp_bias', 'is true: MLP projections with bias are not supported');
  return {
    family: 'llama',
    vocabSize: f.int('vocab_size'),
    hidden,
    layers: f.int('num_hidden_layers'),
    heads,
    kvHeads,
    headDim,
    intermediate: f.int('intermediate_size'),
    maxPositions: f.int('max_position_embeddings'),
    normEps: f.positive('rms_norm_eps'),
    ropeTheta: llamaRopeTheta(f),
    tieEmbeddings: f.bool('tie_word_embeddings', false),
    ...f.tokenIds(),
  };
}

/** Normalizes a parsed config.json; `source` names it in errors. */
export function parseConfig(json: unknown, source = 'config.json'): ModelConfig {
  if (!isObject(json)) throw new Error(`${source}: not a JSON object`);
  const f = new Fields(json, source);
  const type = json.model_type;
  if (type === 'gpt2') return parseGpt2(f);
  if (type === 'llama') return parseLlama(f);
  return f.fail('model_type', `is ${showValue(type)}: supported model types are "gpt2" and "llama"`);
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
