import { describe, expect, it } from 'vitest';
import { PRESETS } from '../../src/models/presets.js';
import { evenPlacement, explicitPlacement, getDeviceMap, interleavedPlacement, memoryPlacement, stageMemory } from '../../src/parallel/placement.js';

const gpt2 = PRESETS.gpt2!;
const llama = PRESETS['llama-2-7b']!;

describe('placement', () => {
  it("even split follows the seed's get_device_map", () => {
    expect(getDeviceMap(12, ['cuda:0', 'cuda:1'])).toEqual({ 'cuda:0': [0, 1, 2, 3, 4, 5], 'cuda:1': [6, 7, 8, 9, 10, 11] });
    const s = evenPlacement(gpt2, ['cuda:0', 'cuda:1']);
    expect(s).toEqual([
      { device: 'cuda:0', start: 0, end: 6, embed: true, head: false },
      { device: 'cuda:1', start: 6, end: 12, embed: false, head: true },
    ]);
    expect(evenPlacement(llama, ['a', 'b', 'c', 'd']).map((x) => [x.start, x.end])).toEqual([[0, 8], [8, 16], [16, 24], [24, 32]]);
    expect(evenPlacement(gpt2, ['a', 'b', 'c']).map((x) => x.end - x.start)).toEqual([4, 4, 4]);
    expect(evenPlacement({ ...gpt2, layers: 10 }, ['a', 'b', 'c']).map((x) => x.end - x.start)).toEqual([4, 4, 2]);
  });

  it('interleaves chunks: stage i on device i mod devices, sizes differing by at most one', () => {
    expect(interleavedPlacement(llama, ['cuda:0', 'cuda:1'], 2)).toEqual([
      { device: 'cuda:0', start: 0, end: 8, embed: true, head: false },
      { device: 'cuda:1', start: 8, end: 16, embed: false, head: false },
      { device: 'cuda:0', start: 16, end: 24, embed: false, head: false },
      { device: 'cuda:1', start: 24, end: 32, embed: false, head: true },
    ]);
    // 12 layers in 8 stages: 2, 2, 2, 2, 1, 1, 1, 1 (get_device_map's chunks of 2 would leave stages empty).
    expect(interleavedPlacement(gpt2, ['a', 'b'], 4).map((x) => [x.device, x.end - x.start])).toEqual([
      ['a', 2], ['b', 2], ['a', 2], ['b', 2], ['a', 1], ['b', 1], ['a', 1], ['b', 1],
    ]);
    expect(interleavedPlacement(gpt2, ['a', 'b'], 1)).toEqual(evenPlacement(gpt2, ['a', 'b']));
    expect(() => interleavedPlacement(gpt2, ['a', 'b'], 7)).toThrow(/14 stages for 12 layers: more stages than layers/);
    expect(() => interleavedPlacement(gpt2, ['a', 'b'], 0)).toThrow(/positive integer/);
    expect(() => interleavedPlacement(gpt2, ['a', 'a'], 2)).toThrow(/listed twice/);
  });

  it('rejects more stages than layers, empty devices, duplicates', () => {
    expect(() => evenPlacement(gpt2, Array.from({ length: 13 }, (_, i) => `cpu:${i}`))).toThrow(/more stages than layers/);
    expect(() => evenPlacement(gpt2, ['a', 'b', 'c', 'd', 'e'])).toThrow(/leave e without a layer/);
    expect(() => evenPlacement(gpt2, ['a', 'a'])).toThrow(/listed twice/);
  });

  it('splits by free memory, and says when the model does not fit', () => {
    const need = { dtype: 'bf16' as const, batch: 1, maxLen: 256 };
    const s = memoryPlacement(llama, ['cuda:0', 'cuda:1'], [30e9, 10e9], need);
    expect(s[0]!.end - s[0]!.start).toBeGreaterThan(s[1]!.end - s[1]!.start);
    expect(s[1]!.end).toBe(32);
    for (const [i, st] of s.entries()) expect(stageMemory(llama, st, need).total).toBeLessThanOrEqual([30e9, 10e9][i]!);
    expect(() => memoryPlacement(llama, ['cuda:0', 'cuda:1'], [4e9, 4e9], need)).toThrow(/does not fit/);
  });

  it('checks an explicit map', () => {
    const cfg = { ...gpt2, layers: 4 };
    expect(explicitPlacement(cfg, { 'cpu:0': [0], 'cpu:1': [1, 2, 3] }).map((s) => [s.start, s.end])).toEqual([[0, 1], [1, 4]]);
    expect(() => explicitPlacement(cfg, { 'cpu:0': [0, 1], 'cpu:1': [3] })).toThrow(/layer 2 is not placed/);
    expect(() => explicitPlacement(cfg, { 'cpu:0': [0, 1], 'cpu:1': [1, 2, 3] })).toThrow(/layer 1 is placed on both/);
    expect(() => explicitPlacement(cfg, { 'cpu:0': [0, 2], 'cpu:1': [1, 3] })).toThrow(/contiguous/);
    expect(() => explicitPlacement(cfg, { 'cpu:0': [0, 1], 'cuda:7': [2, 3] }, ['cpu:0', 'cpu:1'])).toThrow(/names cuda:7/);
  });

  it('estimates memory per stage: two stages hold about half the weights each', () => {
    const need = { dtype: 'bf16' as const, batch: 16, maxLen: 256 };
    const whole = stageMemory(llama, { device: 'x', start: 0, end: 32, embed: true, head: true }, need);
    const [a, b] = evenPlacement(llama, ['x', 'y']).map((s) => stageMemory(llama, s, need));
    expect(a!.total + b!.total).toBeCloseTo(whole.total, -6);
    expect(Math.max(a!.total, b!.total) / whole.total).toBeLessThan(0.55);
    expect(whole.weights / 2 ** 30).toBeCloseTo(12.55, 1); // 6.74e9 parameters in bf16
  });
});
