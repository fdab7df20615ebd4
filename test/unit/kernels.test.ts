// Every CPU kernel against its float64 reference, on fresh random inputs with odd sizes and length-1
// edges, outputs poisoned first.
import { describe, expect, it } from 'vitest';
import { Tensor, ops } from '../../src/index.js';
import { plainRopeFrequencies } from '../../src/models/rope.js';
import { uniformArray } from '../../src/random.js';
import { KERNEL_CASES, tolerance } from '../helpers/cases.js';
import { relError } from '../helpers/reference.js';

describe('CPU kernels match float64 references', () => {
  for (const c of KERNEL_CASES)
    for (const dt of c.dtypes)
      it(`${c.name} [${dt}]`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        const r = c.run('cpu:0', dt, seed);
        if (r.exact) {
          expect(Array.from(r.out), `seed ${seed}`).toEqual(Array.from(r.ref));
        } else {
          const err = relError(r.out, r.ref);
          expect(err, `seed ${seed}`).toBeLessThanOrEqual(tolerance(dt));
        }
      });
});

// Decode passes plain RoPE's frequencies as a table on a GPU (Transformer.ropeTable): the table must give
// the bits the kernels compute from theta (here on the CPU backend; test/gpu/decode.gpu.test.ts on a GPU).
describe('plainRopeFrequencies', () => {
  for (const [theta, D] of [[10000, 128], [500000, 64], [1e6, 80]] as const)
    it(`theta ${theta}, head dim ${D}: rope with the table gives theta's bits`, () => {
      const T = 37, H = 3, seed = Math.floor(Math.random() * 1e6);
      const pos = Tensor.from(Array.from({ length: T }, (_, t) => (seed + 97 * t) % 4096), [T], { dtype: 'i32', device: 'cpu:0' });
      const x0 = uniformArray(T * H * D, seed, -2, 2);
      const table = Tensor.from(plainRopeFrequencies(theta, D), [D / 2], { dtype: 'f32', device: 'cpu:0' });
      const [a, b] = [undefined, table].map((freqs) => {
        const x = Tensor.from(x0, [T, H * D], { dtype: 'f32', device: 'cpu:0' });
        ops.rope(x, pos, { heads: H, headDim: D, theta, freqs });
        return Array.from(x.toArray());
      });
      expect(b, `seed ${seed}`).toEqual(a);
    });
});
