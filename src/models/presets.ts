// Named model shapes with a seeded random init: the real architectures for benchmarking, tiny ones for
// tests. Nothing is downloaded; a preset's weights are drawn on the device.
import type { ModelConfig } from '../io/config.js';

const gpt2 = (hidden: number, layers: number, heads: number): ModelConfig => ({
  family: 'gpt2',
  vocabSize: 50257,
  hidden,
  layers,
  heads,
  kvHeads: heads,
  headDim: hidden / heads,
  intermediate: 4 * hidden,
  maxPositions: 1024,
  normEps: 1e-5,
  ropeTheta: 0,
  tieEmbeddings: true,
  bosTokenId: 50256,
  eosTokenIds: [50256],
});

const llama = (hidden: number, layers: number, heads: number, kvHeads: number, intermediate: number, vocabSize = 32000, maxPositions = 4096): ModelConfig => ({
  family: 'llama',
  vocabSize,
  hidden,
  layers,
  heads,
  kvHeads,
  headDim: hidden / heads,
  intermediate,
  maxPositions,
  normEps: 1e-5,
  ropeTheta: 10000,
  tieEmbeddings: false,
  bosTokenId: 1,
  eosTokenIds: [2],
});

// LLaMA 3.1's RoPE scaling (its config.json rope_scaling).
const llama31Rope = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } as const;

export const PRESETS: Record<string, ModelConfig> = {
  gpt2: gpt2(768, 12, 12),
  'gpt2-medium': gpt2(1024, 24, 16),
  'gpt2-large': gpt2(1280, 36, 20),
  'gpt2-xl': gpt2(1600, 48, 25),
  'llama-2-7b': llama(4096, 32, 32, 32, 11008),
  'llama-2-13b': llama(5120, 40, 40, 40, 13824),
  // A 1B-class LLaMA (TinyLlama-1.1B's shape: grouped-query attention, 4 KV heads), for training benchmarks.
  'llama-1b': llama(2048, 22, 32, 4, 5632, 32000, 2048),
  'llama-3.1-8b': {
    ...llama(4096, 32, 32, 8, 14336, 128256, 131072), ropeTheta: 500000, ropeScaling: { ...llama31Rope },
    bosTokenId: 128000, eosTokenIds: [128001, 128008, 128009],
  },
  'mistral-7b': { ...llama(4096, 32, 32, 8, 14336, 32768, 32768), ropeTheta: 1e6, modelType: 'mistral' }, // v0.3
  'qwen2-7b': {
    ...llama(3584, 28, 28, 4, 18944, 152064, 32768), normEps: 1e-6, ropeTheta: 1e6, modelType: 'qwen2', qkvBias: true,
    bosTokenId: null, eosTokenIds: [151643],
  },
  // Tiny shapes for tests: small enough for the CPU backend, with GQA in the LLaMA one.
  'tiny-gpt2': { ...gpt2(64, 6, 4), vocabSize: 50257, maxPositions: 256 },
  'tiny-llama': { ...llama(64, 6, 4, 2, 128, 512, 256) },
  // The newer families at tiny width: Qwen2's q/k/v biases, LLaMA 3.1's scaled RoPE (its original
  // context shrunk to 64 so that all three frequency bands occur at head dim 16).
  'tiny-qwen2': { ...llama(64, 4, 4, 2, 128, 512, 256), modelType: 'qwen2', qkvBias: true, ropeTheta: 1e6 },
  'tiny-llama3': { ...llama(64, 4, 4, 2, 128, 512, 256), ropeTheta: 500000, ropeScaling: { ...llama31Rope, originalMaxPositions: 64 } },
  // LLaMA-2-7B's depth (32 layers: the seed's 4-stage pipeline, 8 a device) at a tiny width.
  'tiny-llama-32': { ...llama(64, 32, 4, 2, 128, 512, 256) },
};

export function presetConfig(name: string): ModelConfig | undefined {
  if (!Object.prototype.hasOwnProperty.call(PRESETS, name)) return undefined;
  const c = PRESETS[name]!;
  return { ...c, eosTokenIds: [...c.eosTokenIds], ...(c.ropeScaling ? { ropeScaling: { ...c.ropeScaling } } : {}) };
}
