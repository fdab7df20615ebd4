// Bytes of a model's parts, from its config alone (before anything loads): what placement, `parallm
// plan` and the benchmarks report.
import { dtypeSize, type DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { shardConfig } from './tp.js';
import type { Stage } from './weights.js';

/** One decoder layer's weights. */
export function layerWeightBytes(cfg: ModelConfig, dtype: DType): number {
  const { hidden: C, heads, kvHeads, headDim: D, intermediate: F } = cfg;
  const gpt2 = cfg.family === 'gpt2';
  const W3 = (heads + 2 * kvHeads) * D;
  const biases = gpt2 ? 0 : (cfg.qkvBias ? W3 : 0) + (cfg.outBias ? C : 0); // Qwen2, LLaMA's attention_bias
  const params = W3 * C + C * heads * D + (gpt2 ? 2 : 3) * F * C + (gpt2 ? 4 * C + W3 + C + F + C : 2 * C) + biases;
  return params * dtypeSize(dtype);
}

/** Token (and GPT-2's position) embeddings. */
export function embedBytes(cfg: ModelConfig, dtype: DType): number {
  return (cfg.vocabSize * cfg.hidden + (cfg.family === 'gpt2' ? cfg.maxPositions * cfg.hidden : 0)) * dtypeSize(dtype);
}

/** Final norm and head (with tied embeddings, a last stage that is not also the first holds its own copy). */
export function headBytes(cfg: ModelConfig, dtype: DType): number {
  return (cfg.vocabSize * cfg.hidden + 2 * cfg.hidden) * dtypeSize(dtype);
}

/** Keys and values of one layer for `batch` sequences of `maxLen` tokens. */
export function layerKvBytes(cfg: ModelConfig, dtype: DType, batch: number, maxLen: number): number {
  return 2 * batch * maxLen * cfg.kvHeads * cfg.headDim * dtypeSize(dtype);
}

/** The weights a stage holds (the whole model by default). */
export function stageWeightBytes(cfg: ModelConfig, dtype: DType, s: Stage = { start: 0, end: cfg.layers, embed: true, head: true }): number {
  // A tp rank's layers: its heads' and features' share (the norms and biases counted whole).
  let w = (s.end - s.start) * layerWeightBytes(shardConfig(cfg, s.tp), dtype);
  if (s.embed) w += embedBytes(cfg, dtype);
  if (s.head) w += s.embed && cfg.tieEmbeddings ? 2 * cfg.hidden * dtypeSize(dtype) : headBytes(cfg, dtype);
  return w;
}
