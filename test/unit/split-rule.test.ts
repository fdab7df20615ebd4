// The sm90 matmul's wave rule (native/core/split_rule.h, reached through native.testing.matmulWaveSplits in
// every build): how many K slices a compute-bound GEMM with fewer 128 x 256 tiles than SMs is cut into. On a GPU
// test/gpu/kernels.gpu.test.ts holds the cut products to float64 and to the same products left whole.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { native } from '../../src/native.js';

const splits = (tiles: number, kTiles: number, M: number, N: number, sms = 132) =>
  native.testing.matmulWaveSplits(tiles, kTiles, M, N, sms);

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
