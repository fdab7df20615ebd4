import { describe, expect, it } from 'vitest';
import { clockCycles, idealUtilization, pipelineSchedule, splitSizes, stageTasks, type PipelineTask } from '../../src/parallel/schedule.js';

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

// Every task once; at most one a device a tick; each after what it needs (the stage before, or the last
// stage's ids of the step before) on an earlier tick.
function checkSchedule(tasks: PipelineTask[], m: number, S: number, D: number, steps: number): number {
  expect(tasks.length).toBe(m * S * steps);
  const tick = new Map(tasks.map((k) => [`${k.step},${k.mb},${k.stage}`, k.tick]));
  expect(tick.size).toBe(tasks.length);
  const busy = new Set<string>();
  for (const k of tasks) {
    expect(k.device).toBe(k.stage % D);
    expect(busy.has(`${k.device},${k.tick}`)).toBe(false);
    busy.add(`${k.device},${k.tick}`);
    const need = k.stage > 0 ? `${k.step},${k.mb},${k.stage - 1}` : k.step > 0 ? `${k.step - 1},${k.mb},${S - 1}` : null;
    if (need) expect(tick.get(need)!).toBeLessThan(k.tick);
  }
  return Math.max(...tasks.map((k) => k.tick)) + 1;
}

describe('pipeline schedule (ticks, interleaved stages, decode steps)', () => {
  it('is the clock-cycle table with one stage per device and one step', () => {
    for (const [m, n] of [[1, 1], [3, 3], [8, 2], [5, 3]]) {
      const ticks = clockCycles(m!, n!).map((tasks) => tasks.map(([i, j]) => `${i},${j}`).sort());
      const got: string[][] = ticks.map(() => []);
      for (const k of pipelineSchedule(m!, n!, n!)) got[k.tick]!.push(`${k.mb},${k.stage}`);
      expect(got.map((x) => x.sort())).toEqual(ticks);
    }
  });

  it('interleaved: 8 micro-batches, 2 stages on each of 2 devices take 17 half-stage ticks (8.5 stage times, not 9)', () => {
    const t = pipelineSchedule(8, 4, 2);
    expect(checkSchedule(t, 8, 4, 2, 1)).toBe(17);
    // Depth first, in groups of one micro-batch per device (as Megatron-LM orders virtual stages).
    expect(t.filter((k) => k.device === 0).map((k) => `${k.stage}:${k.mb}`).slice(0, 6)).toEqual(['0:0', '0:1', '2:0', '2:1', '0:2', '0:3']);
    // 4 chunks a device: 8.25 stage times.
    expect(checkSchedule(pipelineSchedule(8, 8, 2), 8, 8, 2, 1)).toBe(33);
  });

  it('decode steps wait for the ids of the step before; one micro-batch is model parallelism', () => {
    // m >= stages: the stages never wait (a task every tick once full).
    expect(checkSchedule(pipelineSchedule(2, 2, 2, 5), 2, 2, 2, 5)).toBe(2 * 5 + 1);
    // mp: one device busy at a time, S ticks a step.
    expect(checkSchedule(pipelineSchedule(1, 2, 2, 4), 1, 2, 2, 4)).toBe(8);
    for (const [m, S, D, steps] of [[3, 4, 2, 3], [5, 6, 3, 2], [1, 4, 2, 3], [4, 1, 1, 3], [7, 6, 2, 4]])
      checkSchedule(pipelineSchedule(m!, S!, D!, steps!), m!, S!, D!, steps!);
  });

  it('rejects stages that do not divide over the devices, and bad counts', () => {
    expect(() => pipelineSchedule(4, 3, 2)).toThrow(/each device must hold the same number of stages/);
    expect(() => pipelineSchedule(0, 2, 2)).toThrow(/micro-batches/);
    expect(() => pipelineSchedule(2, 2, 2, 0)).toThrow(/steps/);
  });
});
