// Seeded host-side random numbers for tests, benchmarks and random-init presets.
import type { DType } from './dtype.js';
import { Tensor, numelOf, type Shape, type TensorOptions } from './tensor.js';

/** mulberry32: a small, fast, seeded 32-bit generator; floats in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform floats in [low, high). */
export function uniformArray(n: number, seed: number, low = -1, high = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  const w = high - low;
  for (let i = 0; i < n; i++) out[i] = low + w * r();
  return out;
}

export interface RandOptions extends TensorOptions {
  seed?: number;
  low?: number;
  high?: number;
}

/** A tensor of uniform values in [low, high) (default [-1, 1)), reproducible from `seed`. */
export function rand(shape: Shape, opts: RandOptions = {}): Tensor {
  const dtype: DType = opts.dtype ?? 'f32';
  if (dtype === 'i32') throw new Error('rand: use a float dtype');
  return Tensor.from(uniformArray(numelOf(shape), opts.seed ?? 0, opts.low, opts.high), shape, opts);
}
