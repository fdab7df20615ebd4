// The sm90 matmul's wave rule (native/core/split_rule.h, reached through native.testing.matmulWaveSplits in
// every build): how many K slices a compute-bound GEMM with fewer 128 x 256 tiles than SMs is cut into. On a GPU
// test/gpu/kernels.gpu.test.ts holds the cut products to float64 and to the same products left whole.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native.js';

const splits = (tiles: number, kTiles: number, M: number, N: number, sms = 132) =>
  native.testing.matmulWaveSplits(tiles, kTiles, M, N, sms);
const width = (M: number, N: number, kTiles: number, s256 = 1, s192 = 1, sms = 132) =>
  native.testing.matmulTileWidth(M, N, kTiles, sms, s256, s192);

describe('sm90 wave rule for K slices', () => {
  it("cuts GPT-2's weight gradients at 16,384 tokens: qkv in 2, up and down in 3", () => {
    expect(splits(54, 256, 2304, 768)).toBe(2);
    expect(splits(72, 256, 3072, 768)).toBe(3);
    expect(splits(72, 256, 768, 3072)).toBe(3);
  });

  it('at 8,192 tokens cuts qkv in 2 and leaves up whole (the reduce would cost what the idle SMs do)', () => {
    expect(splits(54, 128, 2304, 768)).toBe(2);
    expect(splits(72, 128, 3072, 768)).toBe(1);
  });

  it('leaves a whole wave of tiles whole, and a short K whole', () => {
    expect(splits(132, 256, 16384, 2112)).toBe(1);
    expect(splits(264, 1024, 32768, 2112)).toBe(1);
    expect(splits(54, 16, 2304, 768)).toBe(1);
  });

  it('gives 1-8 slices of at least 16 k-tiles each', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 1 << 16 }), fc.integer({ min: 1, max: 1 << 16 }), fc.integer({ min: 1, max: 200 }), (t, nk, M, N, sms) => {
        const s = splits(t, nk, M, N, sms);
        expect(Number.isInteger(s) && s >= 1 && s <= 8).toBe(true);
        if (s > 1) expect(Math.floor(nk / s)).toBeGreaterThanOrEqual(16);
      }),
    );
  });

  it('refuses sizes that are not positive, naming the hook', () => {
    expect(() => splits(0, 256, 2304, 768)).toThrow(/matmulWaveSplits: expected positive sizes/);
    expect(() => splits(54, 256, -1, 768)).toThrow(/matmulWaveSplits/);
  });
});

describe("sm90 128-row tile's width (192 or 256 columns)", () => {
  it("takes 192 for GPT-2's N = 768 products at 8,192 rows: 256 tiles in two rounds, as 192 tiles of 256 took", () => {
    expect(width(8192, 768, 48)).toBe(192); // the down projection (K 3072)
    expect(width(8192, 768, 12)).toBe(192); // the out projection (K 768)
  });

  it('keeps 256 at 16,384 rows (three rounds of 256 against four of 192: even) and for square products', () => {
    expect(width(16384, 768, 48)).toBe(256);
    expect(width(4096, 4096, 64)).toBe(256);
    expect(width(8192, 3072, 12)).toBe(256);
  });

  it("takes 192 for the up and down weight gradients at 8,192 tokens (96 tiles in one round against 72)", () => {
    expect(width(3072, 768, 128, splits(72, 128, 3072, 768), splits(96, 128, 3072, 768))).toBe(192);
    expect(width(768, 3072, 128, splits(72, 128, 768, 3072), splits(96, 128, 768, 3072))).toBe(192);
  });

  it("keeps 256 where 192's estimate is not 12% lower (qkv at 8,192 rows: five rounds against six of 3/4, 10%)", () => {
    expect(width(8192, 2304, 12)).toBe(256);
  });

  it('gives 192 or 256 for any positive sizes, and refuses others naming the hook', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1 << 17 }), fc.integer({ min: 1, max: 1 << 17 }), fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 200 }), (M, N, nk, a, b, sms) => {
        expect([192, 256]).toContain(width(M, N, nk, a, b, sms));
      }),
    );
    expect(() => width(0, 768, 12)).toThrow(/matmulTileWidth: expected positive sizes/);
    expect(() => width(8192, 768, 12, 0, 1)).toThrow(/matmulTileWidth/);
  });
});
