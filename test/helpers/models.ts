// Shared by the CPU and GPU model tests: the Hugging Face fixtures and logits of every prompt position.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Model } from '../../src/models/model.js';
import { KvCache } from '../../src/models/transformer.js';
import { Tensor } from '../../src/tensor.js';

export const fixtures = path.resolve(__dirname, '../fixtures');

export const expected = JSON.parse(readFileSync(path.join(fixtures, 'expected.json'), 'utf8')) as Record<
  string,
  { prompts: number[][]; logits: number[][][]; greedy: number[][]; new_tokens: number }
>;

/** Logits of every position of one prompt, through prefill. */
export function allLogits(m: Model, prompt: number[]): Float32Array {
  const T = prompt.length;
  const cache = new KvCache(m.config, 1, T, m.device, m.dtype);
  const i32 = { dtype: 'i32' as const, device: m.device };
  const ids = Tensor.from(prompt, [T], i32);
  const pos = Tensor.from(prompt.map((_, t) => t), [T], i32);
  const zeros = Tensor.zeros([1], i32);
  const x = m.transformer.prefill(cache, ids, pos, zeros, 1, T);
  const lg = m.transformer.logits(x);
  const out = lg.toArray() as Float32Array;
  [ids, pos, zeros, x, lg].forEach((t) => t.dispose());
  cache.dispose();
  return out;
}

/**
 * Logits of `steps` decode steps after a prefill of `prompt` (batch 1), each step fed the next of `feed`
 * (teacher-forced, so two settings see the same inputs): [steps][V] flattened.
 */
export function decodeLogits(m: Model, prompt: number[], feed: number[]): Float32Array {
  const T = prompt.length, S = feed.length;
  const cache = new KvCache(m.config, 1, T + S, m.device, m.dtype);
  const i32 = { dtype: 'i32' as const, device: m.device };
  const ids = Tensor.from(prompt, [T], i32);
  const pos = Tensor.from(prompt.map((_, t) => t), [T], i32);
  const zeros = Tensor.zeros([1], i32);
  const x = m.transformer.prefill(cache, ids, pos, zeros, 1, T);
  const V = m.config.vocabSize;
  const out = new Float32Array(S * V);
  for (const [s, tok] of feed.entries()) {
    const id = Tensor.from([tok], [1], i32), p = Tensor.from([T + s], [1], i32), len = Tensor.from([T + s + 1], [1], i32);
    const lg = m.transformer.decode(cache, id, p, len, 1);
    out.set(lg.toArray() as Float32Array, s * V);
    [id, p, len, lg].forEach((t) => t.dispose());
  }
  [ids, pos, zeros, x].forEach((t) => t.dispose());
  cache.dispose();
  return out;
}
