import { describe, expect, it } from 'vitest';
import { clockCycles, idealUtilization, splitSizes, stageTasks } from '../../src/parallel/schedule.js';

describe('clock-cycle schedule', () => {
  it("is the seed's table for 3 micro-batches on 3 stages", () => {
    expect(clockCycles(3, 3)).toEqual([[[0, 0]], [[1, 0], [0, 1]], [[2, 0], [1, 1], [0, 2]], [[2, 1], [1, 2]], [[2, 2]]]);
  });

  it('has m + n - 1 clocks, every (i, j) exactly once at clock i + j', () => {
    for (const [m, n] of [[1, 1], [1, 4], [8, 2], [5, 3], [16, 4]]) {
      const c = clockCycles(m!, n!);
      expect(c.length).toBe(m! + n! - 1);
      const seen = new Set<string>();
      c.forEach((tasks, k) =>
        tasks.forEach(([i, j]) => {
          expect(i + j).toBe(k);
          seen.add(`${i},${j}`);
        }),
      );
      expect(seen.size).toBe(m! * n!);
    }
  });

  it('gives each stage its micro-batches in order; model parallel is one micro-batch', () => {
    expect(stageTasks(4, 3, 2)).toEqual([0, 1, 2, 3]);
    expect(clockCycles(1, 3)).toEqual([[[0, 0]], [[0, 1]], [[0, 2]]]);
    expect(idealUtilization(1, 2)).toBe(0.5);
    expect(idealUtilization(8, 2)).toBeCloseTo(8 / 9);
  });

  it('splits batches evenly, including counts that do not divide', () => {
    expect(splitSizes(10, 3)).toEqual([4, 3, 3]);
    expect(splitSizes(4, 4)).toEqual([1, 1, 1, 1]);
    expect(() => splitSizes(3, 4)).toThrow(/at most one micro-batch per sequence/);
    expect(() => splitSizes(3, 0)).toThrow(/positive integer/);
    expect(() => clockCycles(2, 0)).toThrow(/stages/);
    expect(() => stageTasks(2, 2, 2)).toThrow(/not in \[0, 2\)/);
  });
});
