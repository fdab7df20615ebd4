// Every CPU kernel against its float64 reference, on fresh random inputs with odd sizes and length-1
// edges, outputs poisoned first.
import { describe, expect, it } from 'vitest';
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
