// Model configs: the fixture configs, real-size GPT-2 and LLaMA configs, and an error naming the field
// for each bad or unsupported value.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig, type ModelConfig } from '../../src/io/config.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures');

// Hugging Face's config.json for openai-community/gpt2 (124M).
const gpt2_124m = {
  activation_function: 'gelu_new', architectures: ['GPT2LMHeadModel'], attn_pdrop: 0.1, bos_token_id: 50256,
  embd_pdrop: 0.1, eos_token_id: 50256, initializer_range: 0.02, layer_norm_epsilon: 1e-5, model_type: 'gpt2',
  n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12, n_positions: 1024, resid_pdrop: 0.1,
  summary_activation: null, summary_first_dropout: 0.1, summary_proj_to_labels: true, summary_type: 'cls_index',
  summary_use_proj: true, task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } }, vocab_size: 50257,
};

// meta-llama/Llama-2-7b-hf (transformers 4 layout: rope_theta at the top level).
const llama2_7b = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu',
  hidden_size: 4096, initializer_range: 0.02, intermediate_size: 11008, max_position_embeddings: 4096,
  model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32, pretraining_tp: 1,
  rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0, tie_word_embeddings: false, torch_dtype: 'float16',
  transformers_version: '4.31.0.dev0', use_cache: true, vocab_size: 32000,
};

describe('fixture configs', () => {
  it('tiny-llama (transformers 5: rope_parameters) and its sharded copy', () => {
    const want: ModelConfig = {
      family: 'llama', vocabSize: 256, hidden: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 128,
      maxPositions: 64, normEps: 1e-6, ropeTheta: 10000, tieEmbeddings: false, bosTokenId: 1, eosTokenIds: [2],
    };
    expect(loadConfig(join(fixtures, 'tiny-llama'))).toEqual(want);
    expect(loadConfig(join(fixtures, 'tiny-llama-sharded'))).toEqual(want);
  });

  it('tiny-gpt2', () => {
    expect(loadConfig(join(fixtures, 'tiny-gpt2'))).toEqual({
      family: 'gpt2', vocabSize: 256, hidden: 64, layers: 2, heads: 4, kvHeads: 4, headDim: 16, intermediate: 256,
      maxPositions: 64, normEps: 1e-5, ropeTheta: 0, tieEmbeddings: true, bosTokenId: 0, eosTokenIds: [0],
    } satisfies ModelConfig);
  });
});

describe('real-size configs', () => {
  it('GPT-2 124M', () => {
    expect(parseConfig(gpt2_124m)).toEqual({
      family: 'gpt2', vocabSize: 50257, hidden: 768, layers: 12, heads: 12, kvHeads: 12, headDim: 64, intermediate: 3072,
      maxPositions: 1024, normEps: 1e-5, ropeTheta: 0, tieEmbeddings: true, bosTokenId: 50256, eosTokenIds: [50256],
    } satisfies ModelConfig);
    expect(parseConfig({ ...gpt2_124m, n_inner: 1000, activation_function: 'gelu_pytorch_tanh' }).intermediate).toBe(1000);
  });

  it('LLaMA-2-7B', () => {
    expect(parseConfig(llama2_7b)).toEqual({
      family: 'llama', vocabSize: 32000, hidden: 4096, layers: 32, heads: 32, kvHeads: 32, headDim: 128, intermediate: 11008,
      maxPositions: 4096, normEps: 1e-5, ropeTheta: 10000, tieEmbeddings: false, bosTokenId: 1, eosTokenIds: [2],
    } satisfies ModelConfig);
  });

  it('defaults, GQA, rope_parameters, eos lists and tied embeddings', () => {
    const { num_key_value_heads: _kv, rope_theta: _rt, ...bare } = llama2_7b;
    const d = parseConfig({ ...bare, eos_token_id: null, bos_token_id: null });
    expect(d).toMatchObject({ kvHeads: 32, headDim: 128, ropeTheta: 10000, bosTokenId: null, eosTokenIds: [] });
    // A LLaMA-3-8B-like config without scaling: GQA 32/8, theta 500000, several eos ids.
    const l3 = parseConfig({
      ...llama2_7b, num_key_value_heads: 8, rope_theta: 500000, vocab_size: 128256, intermediate_size: 14336,
      eos_token_id: [128001, 128008, 128009], bos_token_id: 128000,
    });
    expect(l3).toMatchObject({ kvHeads: 8, ropeTheta: 500000, eosTokenIds: [128001, 128008, 128009], bosTokenId: 128000 });
    const { rope_theta: _t, rope_scaling: _s, ...v5 } = llama2_7b;
    expect(parseConfig({ ...v5, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }).ropeTheta).toBe(1e6);
    expect(parseConfig({ ...llama2_7b, rope_scaling: { rope_type: 'default' } }).ropeTheta).toBe(10000);
    expect(parseConfig({ ...llama2_7b, tie_word_embeddings: true, head_dim: 64 })).toMatchObject({ tieEmbeddings: true, headDim: 64 });
  });
});

describe('bad configs name the field and the source', () => {
  const bad: [string, Record<string, unknown>, RegExp][] = [
    // GPT-2
    ['gpt2 n_embd missing', { ...gpt2_124m, n_embd: undefined }, /"n_embd" is missing/],
    ['gpt2 n_layer', { ...gpt2_124m, n_layer: 0 }, /"n_layer" is 0, expected an integer >= 1/],
    ['gpt2 n_head', { ...gpt2_124m, n_head: 7 }, /"n_head" \(7\) does not divide n_embd \(768\)/],
    ['gpt2 n_head type', { ...gpt2_124m, n_head: '12' }, /"n_head" is "12"/],
    ['gpt2 n_positions', { ...gpt2_124m, n_positions: null }, /"n_positions" is missing/],
    ['gpt2 n_inner', { ...gpt2_124m, n_inner: 1.5 }, /"n_inner" is 1.5/],
    ['gpt2 vocab', { ...gpt2_124m, vocab_size: -1 }, /"vocab_size" is -1/],
    ['gpt2 eps', { ...gpt2_124m, layer_norm_epsilon: 0 }, /"layer_norm_epsilon" is 0, expected a positive number/],
    ['gpt2 gelu', { ...gpt2_124m, activation_function: 'gelu' }, /"activation_function" is "gelu": only the tanh GELU/],
    ['gpt2 act null', { ...gpt2_124m, activation_function: 'relu' }, /"activation_function" is "relu"/],
    ['gpt2 inverse idx', { ...gpt2_124m, scale_attn_by_inverse_layer_idx: true }, /"scale_attn_by_inverse_layer_idx" is true: not supported/],
    ['gpt2 untied', { ...gpt2_124m, tie_word_embeddings: false }, /"tie_word_embeddings" is false/],
    ['gpt2 eos', { ...gpt2_124m, eos_token_id: 'x' }, /"eos_token_id" is "x"/],
    // LLaMA
    ['llama hidden', { ...llama2_7b, hidden_size: undefined }, /"hidden_size" is missing/],
    ['llama layers', { ...llama2_7b, num_hidden_layers: 2.5 }, /"num_hidden_layers" is 2.5/],
    ['llama heads', { ...llama2_7b, num_attention_heads: 0 }, /"num_attention_heads" is 0/],
    ['llama kv', { ...llama2_7b, num_key_value_heads: 5 }, /"num_key_value_heads" \(5\) does not divide num_attention_heads \(32\)/],
    ['llama head_dim', { ...llama2_7b, num_attention_heads: 24, num_key_value_heads: 8 }, /"num_attention_heads" \(24\) does not divide hidden_size \(4096\)/],
    ['llama intermediate', { ...llama2_7b, intermediate_size: undefined }, /"intermediate_size" is missing/],
    ['llama positions', { ...llama2_7b, max_position_embeddings: '4096' }, /"max_position_embeddings" is "4096"/],
    ['llama eps', { ...llama2_7b, rms_norm_eps: 'x' }, /"rms_norm_eps" is "x"/],
    ['llama theta', { ...llama2_7b, rope_theta: -1 }, /"rope_theta" is -1/],
    ['llama theta v5', { ...llama2_7b, rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 'x' } }, /rope_parameters: "rope_theta" is "x"/],
    ['llama rope_scaling', { ...llama2_7b, rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling: "low_freq_factor" is missing/],
    ['llama rope_scaling v4', { ...llama2_7b, rope_scaling: { type: 'linear', factor: 2 } }, /"rope_scaling" has rope type "linear"/],
    ['llama rope_parameters', { ...llama2_7b, rope_parameters: { rope_type: 'yarn', rope_theta: 1e6 } }, /"rope_parameters" has rope type "yarn": only "default" and "llama3"/],
    ['llama act', { ...llama2_7b, hidden_act: 'gelu' }, /"hidden_act" is "gelu": only SiLU/],
    ['llama attention_bias', { ...llama2_7b, attention_bias: 1 }, /"attention_bias" is 1, expected true or false/],
    ['llama mlp_bias', { ...llama2_7b, mlp_bias: true }, /"mlp_bias" is true: .* not supported/],
    ['llama tie', { ...llama2_7b, tie_word_embeddings: 'yes' }, /"tie_word_embeddings" is "yes"/],
    ['llama bos', { ...llama2_7b, bos_token_id: -1 }, /"bos_token_id" is -1/],
    ['llama eos list', { ...llama2_7b, eos_token_id: [2, 'x'] }, /"eos_token_id" is \[2,"x"\]/],
    // Either
    ['model_type', { ...llama2_7b, model_type: 'mixtral' }, /"model_type" is "mixtral": supported model types are "gpt2", "llama", "mistral" and "qwen2"/],
    ['model_type missing', { ...llama2_7b, model_type: undefined }, /"model_type" is missing: supported/],
  ];
  for (const [label, json, re] of bad)
    it(label, () => {
      expect(() => parseConfig(json, 'models/x/config.json')).toThrow(re);
      expect(() => parseConfig(json, 'models/x/config.json')).toThrow(/^models\/x\/config\.json/);
    });

  it('non-objects and unreadable files', () => {
    expect(() => parseConfig([1], 'c.json')).toThrow(/c\.json: not a JSON object/);
    expect(() => parseConfig(null)).toThrow(/config\.json: not a JSON object/);
  });

  let tmp: string;
  beforeAll(() => void (tmp = mkdtempSync(join(tmpdir(), 'parallm-cfg-'))));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  it('loadConfig names the file', () => {
    expect(() => loadConfig(join(tmp, 'none'))).toThrow(/none\/config\.json: cannot read the model config/);
    mkdirSync(join(tmp, 'broken'));
    writeFileSync(join(tmp, 'broken', 'config.json'), '{"model_type": ');
    expect(() => loadConfig(join(tmp, 'broken'))).toThrow(/broken\/config\.json: not valid JSON/);
    mkdirSync(join(tmp, 'bad'));
    writeFileSync(join(tmp, 'bad', 'config.json'), JSON.stringify({ ...llama2_7b, hidden_act: 'relu' }));
    expect(() => loadConfig(join(tmp, 'bad'))).toThrow(/bad\/config\.json: "hidden_act" is "relu"/);
  });
});
