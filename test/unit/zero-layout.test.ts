// ZeRO-1's split by gradient buckets (src/train/zero-layout.ts), as properties over random buckets and
// world sizes: the ranks' segments cover every element once; each rank holds floor(len / world) of every
// bucket at slice `rank`, the last rank also the tail; a rank's local offsets run on without gaps in flat
// order; one bucket is the contiguous zeroShard; the gather order sorts by first use, ties in bucket order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { zeroShard } from '../helpers/train.js';
import { bucketSplit, gatherOrder, segmentsSize, zeroSegments, type ZeroBucket } from '../../src/train/zero-layout.js';

const bucketsOf = (lens: number[], start = 0): ZeroBucket[] => {
  let at = start;
  return lens.map((l) => ({ start: at, end: (at += l) }));
};

describe('zeroSegments', () => {
  it('covers every element once; slice r of each bucket, the tail the last rank; local offsets in flat order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 5 }), (lens, world, start) => {
        const buckets = bucketsOf(lens, start);
        const n = lens.reduce((a, b) => a + b, 0);
        const owner = new Int32Array(n).fill(-1);
        for (let r = 0; r < world; r++) {
          const segs = zeroSegments(buckets, r, world);
          let local = 0, prevHi = -1;
          for (const g of segs) {
            expect(g.local).toBe(local);
            expect(g.hi).toBeGreaterThan(g.lo);
            expect(g.lo).toBeGreaterThan(prevHi); // flat order, adjacent runs merged
            local += g.hi - g.lo;
            prevHi = g.hi;
            for (let i = g.lo; i < g.hi; i++) {
              expect(owner[i - start], `element ${i} owned twice`).toBe(-1);
              owner[i - start] = r;
            }
          }
          expect(segmentsSize(segs)).toBe(local);
          // floor(len / world) of every bucket, plus the tails on the last rank
          const want = buckets.reduce((s, b) => {
            const { per, tail } = bucketSplit(b, world);
            return s + per + (r === world - 1 ? tail : 0);
          }, 0);
          expect(local).toBe(want);
        }
        expect(owner.every((o) => o >= 0)).toBe(true);
        // within a bucket, element start + r * per + j belongs to rank r (j < per)
        for (const b of buckets) {
          const { per } = bucketSplit(b, world);
          for (let r = 0; r < world; r++) for (let j = 0; j < per; j++) expect(owner[b.start + r * per + j - start]).toBe(r);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('one bucket [0, n) is the contiguous zeroShard', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.integer({ min: 1, max: 7 }), (n, world) => {
        for (let r = 0; r < world; r++) {
          const segs = zeroSegments([{ start: 0, end: n }], r, world);
          const s = zeroShard(n, r, world);
          expect(segs).toEqual(s.hi > s.lo ? [{ ...s, local: 0 }] : []);
        }
      }),
    );
  });

  it('refuses a rank outside the world and buckets that are not consecutive', () => {
    expect(() => zeroSegments(bucketsOf([4]), 2, 2)).toThrow(/rank 2 of world 2 is not a rank/);
    expect(() => zeroSegments([{ start: 0, end: 4 }, { start: 5, end: 8 }], 0, 2)).toThrow(/consecutive non-empty/);
    expect(() => zeroSegments([{ start: 0, end: 0 }], 0, 2)).toThrow(/consecutive non-empty/);
  });
});

describe('gatherOrder', () => {
  it('sorts by first use, ties in bucket order (a stable sort)', () => {
    expect(gatherOrder([0, 3, 1, 1, 13])).toEqual([0, 2, 3, 1, 4]);
    // GPT-2's layout: the embeddings' bucket, the layers' matrices, the last bucket holding the norms and biases of layer 0 on
    expect(gatherOrder([0, 1, 3, 6, 9, 1])).toEqual([0, 1, 5, 2, 3, 4]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10 }), { maxLength: 20 }), (need) => {
        const o = gatherOrder(need);
        expect([...o].sort((a, b) => a - b)).toEqual(need.map((_, i) => i));
        for (let k = 1; k < o.length; k++) {
          const [a, b] = [o[k - 1]!, o[k]!];
          expect(need[a]! < need[b]! || (need[a] === need[b] && a < b)).toBe(true);
        }
      }),
    );
  });
});
