// Seeded sampling on the CPU: reproducible, greedy at temperature 0 and top-k 1, and drawing from the
// distribution that temperature, top-k and top-p leave (checked by a histogram).
import { describe, expect, it } from 'vitest';
import { Tensor, ops } from '../../src/index.js';
import { uniformArray } from '../../src/random.js';
import { argmaxRef, sampleDistributionRef } from '../helpers/reference.js';

const dev = 'cpu:0';

function logits(R: number, V: number, seed: number, spread = 4) {
  return Tensor.from(uniformArray(R * V, seed, -spread, spread), [R, V], { device: dev });
}

describe('sample', () => {
  it('same seed, same tokens; another seed, other tokens', () => {
    const x = logits(64, 1000, 1, 1);
    const a = ops.sample(x, { temperature: 1, seed: 42 }).toArray();
    const b = ops.sample(x, { temperature: 1, seed: 42 }).toArray();
    const c = ops.sample(x, { temperature: 1, seed: 43 }).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    for (const t of a) expect(t >= 0 && t < 1000).toBe(true);
  });

  it('temperature 0 and top-k 1 are argmax', () => {
    const x = logits(9, 50257, 2);
    const ref = Array.from(argmaxRef(x.toArray(), 9, 50257));
    expect(Array.from(ops.sample(x, { temperature: 0, seed: 5 }).toArray())).toEqual(ref);
    expect(Array.from(ops.sample(x, { temperature: 0.8, topK: 1, seed: 5 }).toArray())).toEqual(ref);
    expect(Array.from(ops.argmax(x).toArray())).toEqual(ref);
  });

  it('offsets change the draw per row', () => {
    const row = uniformArray(100, 9, -1, 1);
    const rows = new Float32Array(100 * 32);
    for (let r = 0; r < 32; r++) rows.set(row, r * 100);
    const x = Tensor.from(rows, [32, 100], { device: dev });
    const offsets = Tensor.from(Array.from({ length: 32 }, () => 7), [32], { dtype: 'i32', device: dev });
    // Same logits, same offset: rows still differ, because the row index is part of the draw.
    const t = ops.sample(x, { seed: 1, offsets }).toArray();
    expect(new Set(t).size).toBeGreaterThan(1);
  });

  for (const [temperature, topK, topP] of [
    [1, 0, 1],
    [0.7, 5, 1],
    [1.3, 0, 0.8],
    [1, 6, 0.6],
  ] as const)
    it(`histogram matches the distribution (T=${temperature}, topK=${topK}, topP=${topP})`, () => {
      const V = 12, R = 20000;
      const row = uniformArray(V, 11, -2, 2);
      const rows = new Float32Array(R * V);
      for (let r = 0; r < R; r++) rows.set(row, r * V);
      const x = Tensor.from(rows, [R, V], { device: dev });
      const toks = ops.sample(x, { temperature, topK, topP, seed: 123 }).toArray();
      const p = sampleDistributionRef(row, temperature, topK, topP);
      const counts = new Array<number>(V).fill(0);
      for (const t of toks) counts[t]!++;
      for (let i = 0; i < V; i++) {
        if (p[i] === 0) expect(counts[i], `token ${i} was cut`).toBe(0);
        else expect(Math.abs(counts[i]! / R - p[i]!), `token ${i}`).toBeLessThan(5 * Math.sqrt(p[i]! / R) + 1e-3);
      }
    });

  it('rejects bad arguments', () => {
    const x = logits(2, 10, 3);
    expect(() => ops.sample(x, { topP: 0 })).toThrow(/topP/);
    expect(() => ops.sample(x, { topK: -1 })).toThrow(/topK/);
    expect(() => ops.sample(x, { seed: -1 })).toThrow(/seed/);
  });
});
