// Tensors on CPU devices: creation, round trips in every dtype, views, copies between devices, memory
// accounting, and the errors a user meets first.
import { describe, expect, it } from 'vitest';
import { Tensor, bf16ToF32, configureCpuDevices, devices, f16ToF32, f32ToBf16, f32ToF16, memoryStats, parseDevice } from '../../src/index.js';
import { uniformArray } from '../../src/random.js';

describe('dtype conversion', () => {
  it('bf16 rounds to nearest even and keeps specials', () => {
    expect(bf16ToF32(f32ToBf16(1))).toBe(1);
    expect(bf16ToF32(f32ToBf16(-2.5))).toBe(-2.5);
    expect(bf16ToF32(f32ToBf16(1 + 2 ** -8))).toBe(1); // tie -> even
    expect(bf16ToF32(f32ToBf16(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6); // tie -> even (up)
    expect(bf16ToF32(f32ToBf16(Infinity))).toBe(Infinity);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
  });
  it('f16 round trips representable values and handles subnormals and overflow', () => {
    for (const v of [0, 1, -1, 0.5, 65504, 2 ** -14, 2 ** -24, 3 * 2 ** -24]) expect(f16ToF32(f32ToF16(v))).toBe(v);
    expect(f16ToF32(f32ToF16(1e6))).toBe(Infinity);
    expect(f16ToF32(f32ToF16(2 ** -26))).toBe(0);
  });
});

describe('tensors on the CPU', () => {
  it('round-trips values in each dtype', () => {
    const vals = uniformArray(37, 1, -3, 3);
    const f = Tensor.from(vals, [37], { dtype: 'f32', device: 'cpu:0' });
    expect(Array.from(f.toArray())).toEqual(Array.from(vals));
    const b = Tensor.from(vals, [37], { dtype: 'bf16', device: 'cpu:0' });
    expect(Array.from(b.toArray())).toEqual(Array.from(vals, (v) => bf16ToF32(f32ToBf16(v))));
    const h = Tensor.from(vals, [37], { dtype: 'f16', device: 'cpu:0' });
    expect(Array.from(h.toArray())).toEqual(Array.from(vals, (v) => f16ToF32(f32ToF16(v))));
    const i = Tensor.from([1, -2, 2147483647], [3], { dtype: 'i32', device: 'cpu:0' });
    expect(Array.from(i.toArray())).toEqual([1, -2, 2147483647]);
    expect(b.nbytes).toBe(74);
    [f, b, h, i].forEach((t) => t.dispose());
  });

  it('views share memory with their base', () => {
    const t = Tensor.from([0, 1, 2, 3, 4, 5], [2, 3], { device: 'cpu:0' });
    const v = t.view(3, [3]);
    expect(Array.from(v.toArray())).toEqual([3, 4, 5]);
    v.write([7, 8, 9]);
    expect(Array.from(t.toArray())).toEqual([0, 1, 2, 7, 8, 9]);
    expect(t.reshape([3, 2]).shape).toEqual([3, 2]);
    expect(() => t.view(4, [3])).toThrow(/outside/);
    expect(() => t.reshape([4])).toThrow(/reshape/);
    // The base may be disposed while a view lives: the view keeps the memory.
    t.dispose();
    expect(Array.from(v.toArray())).toEqual([7, 8, 9]);
    v.dispose();
  });

  it('copies between CPU devices', () => {
    configureCpuDevices(2);
    const a = Tensor.from([1, 2, 3], [3], { device: 'cpu:0' });
    const b = a.to('cpu:1');
    expect(b.device).toBe('cpu:1');
    expect(Array.from(b.toArray())).toEqual([1, 2, 3]);
    const c = Tensor.zeros([3], { device: 'cpu:1' }).copyFrom(a);
    expect(Array.from(c.toArray())).toEqual([1, 2, 3]);
    expect(devices().filter((d) => d.kind === 'cpu').length).toBe(2);
    [a, b, c].forEach((t) => t.dispose());
  });

  it('dispose frees at once and the cache reuses the block', () => {
    const before = memoryStats('cpu:0');
    const t = Tensor.empty([1 << 16], { device: 'cpu:0' });
    const during = memoryStats('cpu:0');
    expect(during.allocated - before.allocated).toBeGreaterThanOrEqual(1 << 18);
    t.dispose();
    expect(t.disposed).toBe(true);
    const after = memoryStats('cpu:0');
    expect(after.allocated).toBe(before.allocated);
    expect(after.cached).toBeGreaterThanOrEqual(1 << 18);
    const u = Tensor.empty([1 << 16], { device: 'cpu:0' });
    expect(memoryStats('cpu:0').driverAllocs).toBe(after.driverAllocs); // served from the cache
    u.dispose();
  });

  it('names the problem for bad input', () => {
    expect(() => Tensor.empty([2], { device: 'tpu:0' })).toThrow(/unknown device "tpu:0"/);
    expect(() => Tensor.empty([2], { device: 'cpu:99' })).toThrow(/unknown device "cpu:99"/);
    expect(() => parseDevice('cuda:7')).toThrow(/unknown device "cuda:7"/);
    expect(() => Tensor.empty([2], { dtype: 'f64' as never, device: 'cpu:0' })).toThrow(/unknown dtype/);
    expect(() => Tensor.empty([2, -1], { device: 'cpu:0' })).toThrow(/bad shape/);
    expect(() => Tensor.from([1, 2], [3], { device: 'cpu:0' })).toThrow(/2 values for shape \[3\]/);
    expect(() => Tensor.from([1.5], [1], { dtype: 'i32', device: 'cpu:0' })).toThrow(/not a 32-bit integer/);
    const t = Tensor.zeros([2], { device: 'cpu:0' });
    t.dispose();
    expect(() => t.toArray()).toThrow(/disposed/);
    expect(t.toString()).toContain('disposed');
  });
});

describe('fillUniform', () => {
  it('fills reproducibly within [low, high), constants when low == high', async () => {
    const { ops } = await import('../../src/index.js');
    const a = ops.fillUniform(Tensor.empty([10001], { device: 'cpu:0' }), { seed: 3, low: -2, high: 5 }).toArray();
    const b = ops.fillUniform(Tensor.empty([10001], { device: 'cpu:0' }), { seed: 3, low: -2, high: 5 }).toArray();
    expect(Array.from(a)).toEqual(Array.from(b));
    let mean = 0;
    for (const v of a) {
      expect(v >= -2 && v < 5).toBe(true);
      mean += v / a.length;
    }
    expect(Math.abs(mean - 1.5)).toBeLessThan(0.1);
    const c = ops.fillUniform(Tensor.empty([5], { dtype: 'bf16', device: 'cpu:0' }), { low: 1, high: 1 }).toArray();
    expect(Array.from(c)).toEqual([1, 1, 1, 1, 1]);
  });
});
