// Tensor-parallel tests' models: small GPT-2 and LLaMA checkpoints written to a temporary folder with
// shapes the presets lack (6 heads, for tp=3; 1 or 3 KV heads), random weights, and every tensor kept.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { rng } from '../../src/random.js';

export interface TinyFolder {
  dir: string;
  data: Record<string, Float32Array>;
  shapes: Record<string, number[]>;
}

function write(config: object, shapes: Record<string, number[]>, seed: number): TinyFolder {
  const dir = mkdtempSync(path.join(tmpdir(), 'parallm-tp-'));
  const r = rng(seed);
  const data: Record<string, Float32Array> = {};
  for (const [n, s] of Object.entries(shapes)) {
    const a = new Float32Array(s.reduce((x, y) => x * y, 1));
    // Norm weights near one; everything else small, so the logits stay well scaled.
    const norm = /(ln_|layernorm|norm\.weight)/.test(n) && n.endsWith('weight');
    for (let i = 0; i < a.length; i++) a[i] = norm ? 1 + 0.1 * (r() - 0.5) : 0.2 * (r() - 0.5);
    data[n] = a;
  }
  writeSafetensors(path.join(dir, 'model.safetensors'), Object.entries(shapes).map(([name, shape]) => ({ name, dtype: 'F32' as const, shape, data: data[name]! })));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return { dir, data, shapes };
}

/** GPT-2 of `heads` heads of 8 dimensions, 2 layers, vocabulary 96. */
export function tinyGpt2Folder(heads: number, seed = 1): TinyFolder {
  const C = 8 * heads, F = 4 * C, V = 96, P = 32, L = 2;
  const shapes: Record<string, number[]> = { 'wte.weight': [V, C], 'wpe.weight': [P, C], 'ln_f.weight': [C], 'ln_f.bias': [C] };
  for (let i = 0; i < L; i++) {
    const p = `h.${i}.`;
    Object.assign(shapes, {
      [`${p}ln_1.weight`]: [C], [`${p}ln_1.bias`]: [C], [`${p}attn.c_attn.weight`]: [C, 3 * C], [`${p}attn.c_attn.bias`]: [3 * C],
      [`${p}attn.c_proj.weight`]: [C, C], [`${p}attn.c_proj.bias`]: [C], [`${p}ln_2.weight`]: [C], [`${p}ln_2.bias`]: [C],
      [`${p}mlp.c_fc.weight`]: [C, F], [`${p}mlp.c_fc.bias`]: [F], [`${p}mlp.c_proj.weight`]: [F, C], [`${p}mlp.c_proj.bias`]: [C],
    });
  }
  const config = {
    model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: C, n_head: heads, n_layer: L, n_positions: P, n_inner: null,
    vocab_size: V, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', tie_word_embeddings: true, bos_token_id: 0, eos_token_id: 0,
  };
  return write(config, shapes, seed);
}

/** LLaMA of `heads` query and `kvHeads` KV heads of 8 dimensions, 2 layers; `bias`: q/k/v/o biases (attention_bias). */
export function tinyLlamaFolder(heads: number, kvHeads: number, o: { bias?: boolean; intermediate?: number; seed?: number } = {}): TinyFolder {
  const D = 8, C = 48, F = o.intermediate ?? 96, V = 96, L = 2, H = heads, KV = kvHeads;
  const shapes: Record<string, number[]> = { 'model.embed_tokens.weight': [V, C], 'model.norm.weight': [C], 'lm_head.weight': [V, C] };
  for (let i = 0; i < L; i++) {
    const p = `model.layers.${i}.`;
    Object.assign(shapes, {
      [`${p}input_layernorm.weight`]: [C], [`${p}post_attention_layernorm.weight`]: [C],
      [`${p}self_attn.q_proj.weight`]: [H * D, C], [`${p}self_attn.k_proj.weight`]: [KV * D, C], [`${p}self_attn.v_proj.weight`]: [KV * D, C],
      [`${p}self_attn.o_proj.weight`]: [C, H * D],
      [`${p}mlp.gate_proj.weight`]: [F, C], [`${p}mlp.up_proj.weight`]: [F, C], [`${p}mlp.down_proj.weight`]: [C, F],
      ...(o.bias
        ? { [`${p}self_attn.q_proj.bias`]: [H * D], [`${p}self_attn.k_proj.bias`]: [KV * D], [`${p}self_attn.v_proj.bias`]: [KV * D], [`${p}self_attn.o_proj.bias`]: [C] }
        : {}),
    });
  }
  const config = {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: C, num_attention_heads: H, num_key_value_heads: KV, head_dim: D,
    num_hidden_layers: L, intermediate_size: F, vocab_size: V, max_position_embeddings: 32, rms_norm_eps: 1e-6, rope_theta: 10000,
    hidden_act: 'silu', attention_bias: !!o.bias, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
  };
  return write(config, shapes, o.seed ?? 2);
}
