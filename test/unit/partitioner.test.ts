import { describe, expect, it } from 'vitest';
import { DataPartitioner } from '../../src/parallel/partitioner.js';

describe('DataPartitioner', () => {
  it('shuffles with a seed, splits evenly, drops nothing, gathers back in order', () => {
    const data = Array.from({ length: 101 }, (_, i) => `item${i}`);
    const p = new DataPartitioner(101, 2, 1234);
    expect(p.partitions.map((x) => x.length)).toEqual([51, 50]);
    expect(new Set(p.partitions.flat()).size).toBe(101);
    expect(new DataPartitioner(101, 2, 1234).partitions).toEqual(p.partitions);
    expect(new DataPartitioner(101, 2, 99).partitions).not.toEqual(p.partitions);
    const results = [0, 1].map((k) => p.use(data, k).map((s) => s.toUpperCase()));
    expect(p.gather(results)).toEqual(data.map((s) => s.toUpperCase()));
  });

  it('takes given sizes and rejects bad ones', () => {
    expect(new DataPartitioner(10, [0.7, 0.3]).partitions.map((x) => x.length)).toEqual([7, 3]);
    expect(new DataPartitioner(10, 3).partitions.map((x) => x.length)).toEqual([4, 3, 3]);
    expect(() => new DataPartitioner(10, [0.5, 0.2])).toThrow(/sum to 0.7/);
    expect(() => new DataPartitioner(10, 2).use([], 2)).toThrow(/no partition 2/);
  });
});
