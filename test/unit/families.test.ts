// The newer LLaMA-architecture families (Mistral, Qwen2, LLaMA 3.x scaled RoPE), transformers' config
// defaults and generation_config.json, on the CPU backend:
//   - against Hugging Face: logits of every prompt position and greedy tokens from the fixtures made by
//     `test/fixtures/make_fixtures.py OUT --families-only` (skipped, saying so, while they are absent);
//   - without fixtures: config parsing, the llama3 frequency table against a float64 transcription of
//     transformers' _compute_llama3_parameters, rope with a frequency table against float64, Qwen2's
//     bias loading from a safetensors file written here, and generation_config.json's stop ids and
//     sampling defaults.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig, type ModelConfig } from '../../src/io/config.js';
import { parseGenerationConfig } from '../../src/io/generation-config.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { generate, streamText } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { presetConfig } from '../../src/models/presets.js';
import { ropeFrequencies, ropeFrequencyTensor } from '../../src/models/rope.js';
import { Transformer } from '../../src/models/transformer.js';
import * as ops from '../../src/ops.js';
import { Tensor } from '../../src/tensor.js';
import { paramLayout } from '../../src/train/params.js';
import { allLogits, expected, fixtures } from '../helpers/models.js';
import { maxAbsError, relError } from '../helpers/reference.js';

const cpu = { device: 'cpu:0' };
const rand = (n: number, a = 1) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * a);

// ------------------------------------------------------------------------------------------ configs

const mistral7b = {
  architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096,
  intermediate_size: 14336, max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 1000000.0, sliding_window: null,
  tie_word_embeddings: false, vocab_size: 32768,
};
const qwen2_7b = {
  architectures: ['Qwen2ForCausalLM'], bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu', hidden_size: 3584,
  intermediate_size: 18944, max_position_embeddings: 131072, max_window_layers: 28, model_type: 'qwen2',
  num_attention_heads: 28, num_hidden_layers: 28, num_key_value_heads: 4, rms_norm_eps: 1e-6, rope_theta: 1000000.0,
  sliding_window: 131072, tie_word_embeddings: false, use_sliding_window: false, vocab_size: 152064,
};
const llama31_8b = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009],
  hidden_act: 'silu', hidden_size: 4096, intermediate_size: 14336, max_position_embeddings: 131072, mlp_bias: false,
  model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: false, vocab_size: 128256,
};

describe('configs of the newer families', () => {
  it('Mistral: the LLaMA architecture; a sliding window caps the context, null does not', () => {
    expect(parseConfig(mistral7b)).toEqual({
      family: 'llama', modelType: 'mistral', vocabSize: 32768, hidden: 4096, layers: 32, heads: 32, kvHeads: 8, headDim: 128,
      intermediate: 14336, maxPositions: 32768, normEps: 1e-5, ropeTheta: 1e6, tieEmbeddings: false, bosTokenId: 1, eosTokenIds: [2],
    } satisfies ModelConfig);
    // v0.1: a 4096 window over a 32768 context; absent, MistralConfig's default window is 4096 too.
    expect(parseConfig({ ...mistral7b, sliding_window: 4096 }).maxPositions).toBe(4096);
    const { sliding_window: _w, ...noWindow } = mistral7b;
    expect(parseConfig(noWindow).maxPositions).toBe(4096);
    expect(parseConfig({ ...mistral7b, sliding_window: 65536 }).maxPositions).toBe(32768);
    expect(() => parseConfig({ ...mistral7b, sliding_window: 0 }, 'm/config.json')).toThrow(/m\/config\.json: "sliding_window" is 0/);
  });

  it('Qwen2: q/k/v biases, no o_proj bias, bos/eos unset by default, use_sliding_window', () => {
    expect(parseConfig(qwen2_7b)).toEqual({
      family: 'llama', modelType: 'qwen2', qkvBias: true, vocabSize: 152064, hidden: 3584, layers: 28, heads: 28, kvHeads: 4,
      headDim: 128, intermediate: 18944, maxPositions: 131072, normEps: 1e-6, ropeTheta: 1e6, tieEmbeddings: false,
      bosTokenId: 151643, eosTokenIds: [151643],
    } satisfies ModelConfig);
    const { bos_token_id: _b, eos_token_id: _e, ...noIds } = qwen2_7b;
    expect(parseConfig(noIds)).toMatchObject({ bosTokenId: null, eosTokenIds: [] });
    // The window applies from layer max_window_layers on: only when some layer has it does it cap the context.
    expect(parseConfig({ ...qwen2_7b, use_sliding_window: true, sliding_window: 4096 }).maxPositions).toBe(131072);
    expect(parseConfig({ ...qwen2_7b, use_sliding_window: true, sliding_window: 4096, max_window_layers: 20 }).maxPositions).toBe(4096);
  });

  it('LLaMA 3.1: "llama3" rope scaling in either transformers layout; other scalings are refused', () => {
    const want = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };
    expect(parseConfig(llama31_8b)).toMatchObject({ ropeTheta: 500000, ropeScaling: want, eosTokenIds: [128001, 128008, 128009] });
    const { rope_scaling: rs, rope_theta: _t, ...v5 } = llama31_8b;
    expect(parseConfig({ ...v5, rope_parameters: { ...rs, rope_theta: 500000 } })).toMatchObject({ ropeTheta: 500000, ropeScaling: want });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ ...llama31_8b, rope_scaling: { ...rs, rope_type: 'yarn' } }, /"rope_scaling" has rope type "yarn": only "default" and "llama3"/],
      [{ ...llama31_8b, rope_scaling: { ...rs, rope_type: 'dynamic' } }, /"rope_scaling" has rope type "dynamic"/],
      [{ ...llama31_8b, rope_scaling: { ...rs, factor: 0 } }, /rope_scaling: "factor" is 0, expected a positive number/],
      [{ ...llama31_8b, rope_scaling: { ...rs, high_freq_factor: 1 } }, /"high_freq_factor" \(1\) must be larger than low_freq_factor \(1\)/],
      [{ ...llama31_8b, rope_scaling: { ...rs, original_max_position_embeddings: undefined } }, /"original_max_position_embeddings" is missing/],
      [{ ...llama31_8b, hidden_act: 'gelu' }, /"hidden_act" is "gelu": only SiLU/],
      [{ ...llama31_8b, mlp_bias: true }, /"mlp_bias" is true/],
    ];
    for (const [json, re] of bad) expect(() => parseConfig(json, 'l3/config.json'), String(re)).toThrow(re);
  });

  it("transformers' defaults for optional keys; what would change the numerics is still refused", () => {
    const gpt2 = { model_type: 'gpt2', n_embd: 64, n_head: 4, n_layer: 2, n_positions: 128, vocab_size: 300 };
    expect(parseConfig(gpt2)).toEqual({
      family: 'gpt2', vocabSize: 300, hidden: 64, layers: 2, heads: 4, kvHeads: 4, headDim: 16, intermediate: 256,
      maxPositions: 128, normEps: 1e-5, ropeTheta: 0, tieEmbeddings: true, bosTokenId: 50256, eosTokenIds: [50256],
    } satisfies ModelConfig);
    expect(parseConfig({ ...gpt2, bos_token_id: null, eos_token_id: null })).toMatchObject({ bosTokenId: null, eosTokenIds: [] });
    expect(() => parseConfig({ ...gpt2, activation_function: 'relu' })).toThrow(/"activation_function" is "relu"/);
    expect(() => parseConfig({ ...gpt2, reorder_and_upcast_attn: true })).toThrow(/"reorder_and_upcast_attn" is true/);
    const llama = { model_type: 'llama', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128, max_position_embeddings: 64, vocab_size: 256 };
    expect(parseConfig(llama)).toEqual({
      family: 'llama', vocabSize: 256, hidden: 64, layers: 2, heads: 4, kvHeads: 4, headDim: 16, intermediate: 128,
      maxPositions: 64, normEps: 1e-6, ropeTheta: 10000, tieEmbeddings: false, bosTokenId: 1, eosTokenIds: [2],
    } satisfies ModelConfig);
    expect(parseConfig({ ...llama, attention_bias: true })).toMatchObject({ qkvBias: true, outBias: true });
    // The shape keys stay required: the class defaults are some other model's shape.
    expect(() => parseConfig({ ...llama, hidden_size: undefined })).toThrow(/"hidden_size" is missing/);
  });
});

// ------------------------------------------------------------------------------------------ rope

/** transformers' _compute_llama3_parameters, transcribed in float64 (its torch.where form). */
function llama3InvFreqRef(theta: number, dim: number, factor: number, low: number, high: number, oldCtx: number): Float64Array {
  const out = new Float64Array(dim / 2);
  const lowWavelen = oldCtx / low, highWavelen = oldCtx / high;
  for (let j = 0; j < dim / 2; j++) {
    const invFreq = 1 / theta ** ((2 * j) / dim);
    const wavelen = (2 * Math.PI) / invFreq;
    let llama = wavelen > lowWavelen ? invFreq / factor : invFreq;
    const smooth = (oldCtx / wavelen - low) / (high - low);
    const smoothed = ((1 - smooth) * llama) / factor + smooth * llama;
    const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
    if (medium) llama = smoothed;
    out[j] = llama;
  }
  return out;
}

describe('llama3 rope frequencies', () => {
  it('match a float64 transcription of transformers, in all three bands', () => {
    for (const [theta, D, factor, low, high, ctx] of [
      [500000, 128, 8, 1, 4, 8192],
      [500000, 64, 32, 1, 4, 8192], // LLaMA 3.2 1B/3B
      [500000, 16, 8, 1, 4, 64], // the fixture's and tiny-llama3's
      [10000, 32, 4, 1, 4, 256],
    ]) {
      const cfg = { ...presetConfig('tiny-llama')!, ropeTheta: theta!, headDim: D!, ropeScaling: { type: 'llama3' as const, factor: factor!, lowFreqFactor: low!, highFreqFactor: high!, originalMaxPositions: ctx! } };
      const got = ropeFrequencies(cfg)!;
      const ref = llama3InvFreqRef(theta!, D!, factor!, low!, high!, ctx!);
      for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!) / ref[i]!, `D${D} i${i}`).toBeLessThan(1e-6);
      // Every band occurs in these shapes: unchanged (highest frequency), divided by the factor (lowest),
      // blended in between (neither).
      const plain = Array.from(ref, (_, i) => 1 / theta! ** ((2 * i) / D!));
      expect(ref[0]! / plain[0]!).toBeCloseTo(1, 12);
      expect(ref.at(-1)! / plain.at(-1)!).toBeCloseTo(1 / factor!, 12);
      expect(plain.some((p, i) => Math.abs(ref[i]! / p - 1) > 1e-9 && Math.abs((ref[i]! / p) * factor! - 1) > 1e-9)).toBe(true);
    }
    expect(ropeFrequencies(presetConfig('tiny-llama')!)).toBeNull();
  });

  /** ropeRef with per-dimension frequencies: the angle in f32 as the kernels form it, the rest in float64. */
  function ropeFreqRef(x: Float32Array, pos: number[], H: number, D: number, st: number, rot: number, f: Float32Array, sign = 1): Float64Array {
    const y = Float64Array.from(x);
    for (let r = 0; r < pos.length; r++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < rot / 2; i++) {
          const a = Math.fround(pos[r]! * f[i]!), o = r * st + h * D;
          const x1 = x[o + i]!, x2 = x[o + i + rot / 2]!;
          y[o + i] = x1 * Math.cos(a) - sign * x2 * Math.sin(a);
          y[o + i + rot / 2] = x2 * Math.cos(a) + sign * x1 * Math.sin(a);
        }
    return y;
  }

  for (const dtype of ['f32', 'bf16'] as const)
    it(`rope and ropeBackward with a frequency table (strided, partial rotary) [${dtype}]`, () => {
      const R = 13, H = 3, D = 32, rot = 24, st = H * D + 8;
      const pos = Array.from({ length: R }, () => Math.floor(Math.random() * 5000));
      const f = Float32Array.from({ length: rot / 2 }, () => Math.fround(Math.random() ** 4));
      const x0 = rand((R - 1) * st + H * D);
      const tol = dtype === 'f32' ? 1e-5 : 2e-2;
      for (const [fn, sign] of [[ops.rope, 1], [ops.ropeBackward, -1]] as const) {
        const x = Tensor.from(x0, [x0.length], { dtype, ...cpu });
        const xin = x.toArray() as Float32Array; // what the kernel sees after rounding to the dtype
        const pt = Tensor.from(pos, [R], { dtype: 'i32', ...cpu });
        const ft = Tensor.from(f, [f.length], { dtype: 'f32', ...cpu });
        fn(x, pt, { heads: H, headDim: D, rotaryDim: rot, tokenStride: st, theta: 10000, freqs: ft });
        const got = x.toArray() as Float32Array;
        expect(maxAbsError(got, ropeFreqRef(xin, pos, H, D, st, rot, f, sign)), `${fn.name}`).toBeLessThan(tol);
        // Rows' gaps (between st and H*D) are untouched.
        for (let r = 0; r < R - 1; r++) for (let g = H * D; g < st; g++) expect(got[r * st + g]).toBe(xin[r * st + g]);
        [x, pt, ft].forEach((t) => t.dispose());
      }
    });

  it('a table holding theta^(-2i/D) rotates as theta does; rope then ropeBackward is the identity', () => {
    const R = 7, H = 2, D = 16;
    const pos = Array.from({ length: R }, (_, i) => i * 311);
    const x0 = rand(R * H * D);
    const f = Float32Array.from({ length: D / 2 }, (_, i) => Math.fround(Math.pow(500000, (-2 * i) / D)));
    const a = Tensor.from(x0, [R * H * D], { dtype: 'f32', ...cpu });
    const b = Tensor.from(x0, [R * H * D], { dtype: 'f32', ...cpu });
    const pt = Tensor.from(pos, [R], { dtype: 'i32', ...cpu });
    const ft = Tensor.from(f, [D / 2], { dtype: 'f32', ...cpu });
    ops.rope(a, pt, { heads: H, headDim: D, theta: 500000 });
    ops.rope(b, pt, { heads: H, headDim: D, theta: 1, freqs: ft }); // theta is unused with a table
    expect(maxAbsError(b.toArray(), a.toArray())).toBeLessThan(1e-6);
    ops.ropeBackward(b, pt, { heads: H, headDim: D, freqs: ft });
    expect(maxAbsError(b.toArray(), x0)).toBeLessThan(1e-5);
    [a, b, pt, ft].forEach((t) => t.dispose());
  });

  it('the model rotates with its table: factor 1 is plain RoPE, factor 8 is not', () => {
    const m = Model.load('tiny-llama3', { ...cpu, dtype: 'f32', seed: 4 });
    const prompt = [5, 17, 101, 3, 250, 42, 7, 9, 11, 13, 200, 201];
    // The same weights under another config: a Model-shaped view for allLogits.
    const as = (cfg: ModelConfig, ropeFreqs: Tensor | undefined) =>
      ({ config: cfg, device: m.device, dtype: m.dtype, transformer: new Transformer(cfg, { ...m.weights, ropeFreqs }) }) as unknown as Model;
    const plainCfg = { ...m.config, ropeScaling: undefined };
    const unitCfg = { ...m.config, ropeScaling: { ...m.config.ropeScaling!, factor: 1 } };
    const unit = ropeFrequencyTensor(unitCfg, m.device)!;
    const plain = allLogits(as(plainCfg, undefined), prompt);
    expect(m.weights.ropeFreqs!.toArray()).toEqual(ropeFrequencies(m.config));
    expect(relError(allLogits(as(unitCfg, unit), prompt), plain)).toBeLessThan(1e-6);
    expect(relError(allLogits(m, prompt), plain)).toBeGreaterThan(1e-4);
    unit.dispose();
    m.dispose();
  });

  it('a bad table is an error naming the op and the sizes', () => {
    const x = Tensor.zeros([2 * 16], { dtype: 'f32', ...cpu });
    const pt = Tensor.zeros([2], { dtype: 'i32', ...cpu });
    const short = Tensor.zeros([4], { dtype: 'f32', ...cpu });
    const bf = Tensor.zeros([8], { dtype: 'bf16', ...cpu });
    expect(() => ops.rope(x, pt, { heads: 1, headDim: 16, freqs: short })).toThrow(/rope: freqs has 4 elements, expected rotaryDim \/ 2 = 8/);
    expect(() => ops.ropeBackward(x, pt, { heads: 1, headDim: 16, freqs: bf })).toThrow(/ropeBackward: freqs must be f32, got bf16/);
    expect(() => ops.rope(x, pt, { heads: 1, headDim: 16, theta: 0 })).toThrow(/rope: theta 0 must be a positive number/);
    [x, pt, short, bf].forEach((t) => t.dispose());
  });
});

// ------------------------------------------------------------------------------------------ Qwen2 biases

describe('Qwen2 weights from a safetensors file', () => {
  const C = 32, H = 4, Hkv = 2, D = 8, F = 48, V = 64, L = 2;
  const config = {
    model_type: 'qwen2', hidden_size: C, num_attention_heads: H, num_key_value_heads: Hkv, intermediate_size: F,
    num_hidden_layers: L, vocab_size: V, max_position_embeddings: 32, tie_word_embeddings: true, use_sliding_window: false,
  };
  function folder(drop?: string): { dir: string; data: Record<string, Float32Array> } {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-qwen2-'));
    const shapes: Record<string, number[]> = { 'model.embed_tokens.weight': [V, C], 'model.norm.weight': [C] };
    for (let i = 0; i < L; i++) {
      const p = `model.layers.${i}.`;
      Object.assign(shapes, {
        [`${p}input_layernorm.weight`]: [C], [`${p}post_attention_layernorm.weight`]: [C],
        [`${p}self_attn.q_proj.weight`]: [H * D, C], [`${p}self_attn.q_proj.bias`]: [H * D],
        [`${p}self_attn.k_proj.weight`]: [Hkv * D, C], [`${p}self_attn.k_proj.bias`]: [Hkv * D],
        [`${p}self_attn.v_proj.weight`]: [Hkv * D, C], [`${p}self_attn.v_proj.bias`]: [Hkv * D],
        [`${p}self_attn.o_proj.weight`]: [C, H * D],
        [`${p}mlp.gate_proj.weight`]: [F, C], [`${p}mlp.up_proj.weight`]: [F, C], [`${p}mlp.down_proj.weight`]: [C, F],
      });
    }
    const data: Record<string, Float32Array> = {};
    for (const [n, s] of Object.entries(shapes)) data[n] = rand(s.reduce((a, b) => a * b, 1), 0.3);
    writeSafetensors(
      path.join(dir, 'model.safetensors'),
      Object.entries(shapes).filter(([n]) => n !== drop).map(([name, shape]) => ({ name, dtype: 'F32' as const, shape, data: data[name]! })),
    );
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    return { dir, data };
  }

  it('q/k/v biases are fused in the order of the fused weight rows', () => {
    const { dir, data } = folder();
    const m = Model.load(dir, { ...cpu, dtype: 'f32' });
    expect(m.config).toMatchObject({ modelType: 'qwen2', qkvBias: true });
    for (let i = 0; i < L; i++) {
      const p = `model.layers.${i}.self_attn.`;
      const l = m.weights.layers[i]!;
      expect(Array.from(l.qkvBias!.toArray())).toEqual([...data[`${p}q_proj.bias`]!, ...data[`${p}k_proj.bias`]!, ...data[`${p}v_proj.bias`]!]);
      expect(Array.from(l.qkv.toArray())).toEqual([...data[`${p}q_proj.weight`]!, ...data[`${p}k_proj.weight`]!, ...data[`${p}v_proj.weight`]!]);
      expect(l.outBias).toBeUndefined();
    }
    // The biases reach the output (the fixtures hold the numbers to transformers').
    const withBias = allLogits(m, [3, 9, 27]);
    m.weights.layers.forEach((l) => ops.fillUniform(l.qkvBias!, { low: 0, high: 0 }));
    const noBias = allLogits(m, [3, 9, 27]);
    expect(relError(noBias, withBias)).toBeGreaterThan(1e-3);
    m.dispose();
  });

  it('a missing bias is named', () => {
    const { dir } = folder('model.layers.1.self_attn.k_proj.bias');
    expect(() => Model.load(dir, { ...cpu, dtype: 'f32' })).toThrow(/missing tensor "model\.layers\.1\.self_attn\.k_proj\.bias" \(expected shape \[16\]\)/);
  });

  it('a LLaMA config refuses the same file: the biases are unexpected', () => {
    const { dir } = folder();
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'llama' }));
    expect(() => Model.load(dir, { ...cpu, dtype: 'f32' })).toThrow(/unexpected tensors for this config: "?model\.layers\.0\.self_attn\.q_proj\.bias/);
  });

  it('training refuses what its flat layout cannot hold (biases, scaled RoPE), naming it', () => {
    const stage = (c: ModelConfig) => ({ start: 0, end: c.layers, embed: true, head: true });
    for (const [name, re] of [['tiny-qwen2', /training: qwen2 with attention biases is not supported/], ['tiny-llama3', /training: llama with "llama3" RoPE scaling is not supported/]] as const) {
      const c = presetConfig(name)!;
      expect(() => paramLayout(c, stage(c))).toThrow(re);
    }
    const mistral = { ...presetConfig('tiny-llama')!, modelType: 'mistral' as const };
    expect(paramLayout(mistral, stage(mistral)).length).toBeGreaterThan(0);
  });

  it('presets of the new families generate (random weights; the fixtures test the numerics)', async () => {
    for (const name of ['tiny-qwen2', 'tiny-llama3']) {
      const m = Model.load(name, { ...cpu, seed: 3 });
      expect(m.weights.ropeFreqs !== undefined).toBe(name === 'tiny-llama3');
      const [a] = await generate(m, [[1, 2, 3]], { maxTokens: 5, stopTokens: [] });
      const [b] = await generate(m, [[1, 2, 3]], { maxTokens: 5, stopTokens: [], graph: false });
      expect(a!.tokens).toHaveLength(5);
      expect(a!.tokens).toEqual(b!.tokens);
      m.dispose();
    }
  });
});

// ------------------------------------------------------------------------------------------ generation_config.json

describe('generation_config.json', () => {
  it('parses eos lists and sampling defaults; do_sample false is greedy', () => {
    expect(parseGenerationConfig({ bos_token_id: 1, eos_token_id: [2, 88], do_sample: true, temperature: 0.6, top_p: 0.9, max_new_tokens: 7 }))
      .toEqual({ eosTokenIds: [2, 88], temperature: 0.6, topK: 50, topP: 0.9, maxTokens: 7 });
    expect(parseGenerationConfig({ eos_token_id: 5, temperature: 0.6, top_p: 0.9 })).toEqual({ eosTokenIds: [5], temperature: 0 });
    expect(parseGenerationConfig({})).toEqual({ temperature: 0 });
    expect(parseGenerationConfig({ do_sample: true, top_k: 0 })).toEqual({ temperature: 1, topK: 0, topP: 1 });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ eos_token_id: [2, 'x'] }, /"eos_token_id" is \[2,"x"\], expected a token id or a list/],
      [{ do_sample: 'yes' }, /"do_sample" is "yes", expected true or false/],
      [{ do_sample: true, top_p: 0 }, /"top_p" is 0, expected a number in \(0, 1\]/],
      [{ temperature: -1 }, /"temperature" is -1/],
      [{ max_new_tokens: 0 }, /"max_new_tokens" is 0/],
    ];
    for (const [json, re] of bad) expect(() => parseGenerationConfig(json, 'g/generation_config.json')).toThrow(re);
    expect(() => parseGenerationConfig([], 'g.json')).toThrow(/g\.json: not a JSON object/);
  });

  const withGeneration = (gen: unknown): string => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'parallm-gen-'));
    const from = path.join(fixtures, 'tiny-llama');
    for (const f of readdirSync(from)) copyFileSync(path.join(from, f), path.join(d, f));
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify(gen));
    return d;
  };
  const prompt = expected['tiny-llama']!.prompts[0]!;
  const greedy = expected['tiny-llama']!.greedy[0]!;

  it('every eos id of the file stops generate, streamText and generateSteps; a caller\'s stopTokens win', async () => {
    const stopAt = greedy.findIndex((t, i) => i >= 2 && greedy.indexOf(t) === i); // first occurrence, past two tokens
    const m = Model.load(withGeneration({ eos_token_id: [255, greedy[stopAt]!], max_new_tokens: 16 }), { ...cpu, dtype: 'f32' });
    const [g] = await generate(m, [prompt]);
    expect(g!.tokens).toEqual(greedy.slice(0, stopAt + 1));
    expect(g!.finish).toBe('stop-token');
    let text = '';
    for await (const piece of streamText(m, prompt)) text += piece;
    expect(text).toBe(g!.text); // the stop token's text is not streamed
    const [all] = await generate(m, [prompt], { stopTokens: [] });
    expect(all!.tokens).toEqual(greedy); // max_new_tokens 16 from the file
    m.dispose();
  });

  it('sampling defaults apply when the caller gives none, field by field', async () => {
    const m = Model.load(withGeneration({ do_sample: true, temperature: 1.5, top_k: 40, top_p: 0.9, max_new_tokens: 6 }), { ...cpu, dtype: 'f32' });
    const plain = Model.load(path.join(fixtures, 'tiny-llama'), { ...cpu, dtype: 'f32' });
    const o = { stopTokens: [], seed: 5 };
    const [a] = await generate(m, [prompt], o);
    const [b] = await generate(plain, [prompt], { ...o, temperature: 1.5, topK: 40, topP: 0.9, maxTokens: 6 });
    expect(a!.tokens).toHaveLength(6);
    expect(a!.tokens).toEqual(b!.tokens);
    // A caller's temperature 0 is greedy whatever the file says.
    const [c] = await generate(m, [prompt], { ...o, temperature: 0, maxTokens: 16 });
    expect(c!.tokens).toEqual(greedy);
    // Without a generation_config.json nothing changes: greedy, 64 tokens at most, config.json's eos.
    const [d] = await generate(plain, [prompt], { stopTokens: [], maxTokens: 16 });
    expect(d!.tokens).toEqual(greedy);
    m.dispose();
    plain.dispose();
  });

  it("a file's max_new_tokens is cut to what the context leaves", async () => {
    const m = Model.load(withGeneration({ max_new_tokens: 4096 }), { ...cpu, dtype: 'f32' });
    const long = Array.from({ length: 60 }, (_, i) => (i * 7) % 256);
    const [g] = await generate(m, [long], { stopTokens: [] });
    expect(g!.tokens).toHaveLength(64 - 60);
    m.dispose();
  });

  it('a bad file fails the load, naming it', () => {
    expect(() => Model.load(withGeneration({ eos_token_id: 'x' }), cpu)).toThrow(/generation_config\.json: "eos_token_id" is "x"/);
  });
});

// ------------------------------------------------------------------------------------------ Hugging Face parity

const familiesJson = path.join(fixtures, 'expected-families.json');
const FAMILY_FIXTURES = ['tiny-mistral', 'tiny-qwen2', 'tiny-llama3'] as const;
const haveFixtures = existsSync(familiesJson) && FAMILY_FIXTURES.every((n) => existsSync(path.join(fixtures, n, 'config.json')));
if (!haveFixtures)
  console.warn(
    `families.test.ts: SKIPPING the Hugging Face parity of ${FAMILY_FIXTURES.join(', ')}: ${familiesJson} and those folders are absent ` +
      '(make them on the GPU machine: python3 test/fixtures/make_fixtures.py test/fixtures --families-only)',
  );

describe.skipIf(!haveFixtures)('the newer families match Hugging Face (fixtures of make_fixtures.py --families-only)', () => {
  const exp = haveFixtures
    ? (JSON.parse(readFileSync(familiesJson, 'utf8')) as Record<string, { prompts: number[][]; logits: number[][][]; greedy: number[][]; new_tokens: number }>)
    : {};
  for (const name of FAMILY_FIXTURES)
    describe(name, () => {
      it('logits of every prompt position (f32) and greedy continuations, alone and batched', async () => {
        const e = exp[name]!;
        const m = Model.load(path.join(fixtures, name), { ...cpu, dtype: 'f32' });
        expect(m.config.qkvBias === true).toBe(name === 'tiny-qwen2');
        expect(m.config.ropeScaling !== undefined).toBe(name === 'tiny-llama3');
        e.prompts.forEach((p, i) => expect(relError(allLogits(m, p), e.logits[i]!.flat()), `prompt ${i}`).toBeLessThan(1e-4));
        for (const [i, p] of e.prompts.entries()) {
          const [g] = await generate(m, [p], { maxTokens: e.new_tokens, stopTokens: [] });
          expect(g!.tokens, `prompt ${i}`).toEqual(e.greedy[i]);
        }
        const all = await generate(m, e.prompts, { maxTokens: e.new_tokens, stopTokens: [] });
        expect(all.map((g) => g.tokens)).toEqual(e.greedy);
        m.dispose();
      });
    });
});
