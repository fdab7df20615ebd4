// Per-dimension RoPE inverse frequencies for scaled RoPE. Plain RoPE needs no table (the kernels form
// theta^(-2i/D) themselves); LLaMA 3.x's "llama3" scaling divides the low frequencies by `factor`, keeps
// the high ones, and blends in between, so no single theta describes it: the rope op then takes this
// table (ops.rope's `freqs`).
import type { ModelConfig } from '../io/config.js';
import { Tensor } from '../tensor.js';

/**
 * inv_freq[i] for i < rotDim/2, as transformers' _compute_llama3_parameters forms it (computed in double,
 * rounded to f32 once, as the kernels round theta^(-2i/D)); null for plain RoPE.
 */
export function ropeFrequencies(cfg: ModelConfig, rotDim = cfg.headDim): Float32Array | null {
  const s = cfg.ropeScaling;
  if (!s) return null;
  const half = rotDim / 2;
  const out = new Float32Array(half);
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositions / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const f = Math.pow(cfg.ropeTheta, (-2 * i) / rotDim);
    const wavelen = (2 * Math.PI) / f;
    let g: number;
    if (wavelen < highWavelen) g = f; // high frequencies: unchanged
    else if (wavelen > lowWavelen) g = f / s.factor; // low frequencies: interpolated by the factor
    else {
      const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      g = (1 - smooth) * (f / s.factor) + smooth * f;
    }
    out[i] = g;
  }
  return out;
}

/**
 * Plain RoPE's inverse frequencies theta^(-2i/rotDim), each computed in double and rounded to f32 as the
 * kernels compute them without a table (rope_common.cuh rope_freq): decode passes it on a GPU so the fused
 * rope + KV write loads a frequency instead of computing a double pow per element (S14-1).
 */
export function plainRopeFrequencies(theta: number, rotDim: number): Float32Array {
  const out = new Float32Array(rotDim / 2);
  for (let i = 0; i < out.length; i++) out[i] = Math.pow(theta, (-2 * i) / rotDim);
  return out;
}

/** The table on `device` (f32 [headDim / 2]), or undefined for plain RoPE. The caller owns it. */
export function ropeFrequencyTensor(cfg: ModelConfig, device: string): Tensor | undefined {
  const f = ropeFrequencies(cfg);
  if (!f) return undefined;
  return Tensor.from(f, [f.length], { dtype: 'f32', device });
}
