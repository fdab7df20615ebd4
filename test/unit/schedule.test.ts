import { describe, expect, it } from 'vitest';
import { columnOf } from '../../src/engine/executor.js';
import {
  clockTable,
  generationSchedule,
  gpipeSchedule,
  idealUtilization,
  oneFOneBSchedule,
  interleavedOneFOneBSchedule,
  scheduleProblems,
  splitSizes,
  type Schedule,
} from '../../src/parallel/schedule.js';

const cells = (s: Schedule) => {
  const ticks: string[][] = Array.from({ length: s.ticks }, () => []);
  for (const k of s.tasks) ticks[k.tick]!.push(`${k.mb},${k.stage}`);
  return ticks.map((t) => t.sort());
};

describe('clock-cycle schedule', () => {
  it("prints the seed's table for 3 micro-batches on 3 stages", () => {
    expect(clockTable(generationSchedule(3, 3, 3))).toBe(
      ['clock 0: (0,0)', 'clock 1: (1,0) (0,1)', 'clock 2: (2,0) (1,1) (0,2)', 'clock 3: (2,1) (1,2)', 'clock 4: (2,2)'].join('\n'),
    );
  });

  it('has m + n - 1 clocks, every (i, j) exactly once at clock i + j', () => {
    for (const [m, n] of [[1, 1], [1, 4], [8, 2], [5, 3], [16, 4]]) {
      const s = generationSchedule(m!, n!, n!);
      expect(s.ticks).toBe(m! + n! - 1);
      const seen = new Set<string>();
      for (const k of s.tasks) {
        expect(k.mb + k.stage).toBe(k.tick);
        seen.add(`${k.mb},${k.stage}`);
      }
      expect(seen.size).toBe(m! * n!);
    }
  });

  it('gives each stage its micro-batches in order; model parallelism is one micro-batch', () => {
    expect(generationSchedule(4, 3, 3).tasks.filter((k) => k.stage === 2).map((k) => k.mb)).toEqual([0, 1, 2, 3]);
    expect(cells(generationSchedule(1, 3, 3))).toEqual([['0,0'], ['0,1'], ['0,2']]);
    expect(idealUtilization(1, 2)).toBe(0.5);
    expect(idealUtilization(8, 2)).toBeCloseTo(8 / 9);
  });

  it('splits batches evenly, including counts that do not divide', () => {
    expect(splitSizes(10, 3)).toEqual([4, 3, 3]);
    expect(splitSizes(4, 4)).toEqual([1, 1, 1, 1]);
    expect(() => splitSizes(3, 4)).toThrow(/at most one micro-batch per sequence/);
    expect(() => splitSizes(3, 0)).toThrow(/positive integer/);
    expect(() => generationSchedule(2, 0, 1)).toThrow(/stages/);
  });
});

// Every task once; at most one a device a tick; each after what it needs (the stage before, or the last
// stage's ids of the step before) on an earlier tick.
function checkGeneration(s: Schedule, m: number, S: number, D: number, steps: number): number {
  expect(scheduleProblems(s)).toEqual([]);
  expect(s.tasks.length).toBe(m * S * steps);
  const tick = new Map(s.tasks.map((k) => [`${k.step},${k.mb},${k.stage}`, k.tick]));
  expect(tick.size).toBe(s.tasks.length);
  for (const k of s.tasks) {
    expect(k.device).toBe(k.stage % D);
    const need = k.stage > 0 ? `${k.step},${k.mb},${k.stage - 1}` : k.step > 0 ? `${k.step - 1},${k.mb},${S - 1}` : null;
    if (need) expect(tick.get(need)!).toBeLessThan(k.tick);
    expect(k.inputs.map((e) => e.kind)).toEqual(k.stage > 0 ? ['activation'] : k.step > 0 ? ['token-feedback'] : []);
  }
  return s.ticks;
}

describe('generation schedule (ticks, interleaved stages, decode steps)', () => {
  it('is the clock-cycle table with one stage per device and one step', () => {
    for (const [m, n] of [[1, 1], [3, 3], [8, 2], [5, 3]]) {
      const want = Array.from({ length: m! + n! - 1 }, (_, t) => {
        const c: string[] = [];
        for (let i = 0; i < m!; i++) if (t - i >= 0 && t - i < n!) c.push(`${i},${t - i}`);
        return c.sort();
      });
      expect(cells(generationSchedule(m!, n!, n!))).toEqual(want);
    }
  });

  it('interleaved: 8 micro-batches, 2 stages on each of 2 devices take 17 half-stage ticks (8.5 stage times, not 9)', () => {
    const t = generationSchedule(8, 4, 2);
    expect(checkGeneration(t, 8, 4, 2, 1)).toBe(17);
    // Depth first, in groups of one micro-batch per device (as Megatron-LM orders virtual stages).
    expect(t.tasks.filter((k) => k.device === 0).map((k) => `${k.stage}:${k.mb}`).slice(0, 6)).toEqual(['0:0', '0:1', '2:0', '2:1', '0:2', '0:3']);
    // 4 chunks a device: 8.25 stage times.
    expect(checkGeneration(generationSchedule(8, 8, 2), 8, 8, 2, 1)).toBe(33);
  });

  it('decode steps wait for the ids of the step before; one micro-batch is model parallelism', () => {
    // m >= stages: the stages never wait (a task every tick once full).
    expect(checkGeneration(generationSchedule(2, 2, 2, 5), 2, 2, 2, 5)).toBe(2 * 5 + 1);
    // mp: one device busy at a time, S ticks a step.
    expect(checkGeneration(generationSchedule(1, 2, 2, 4), 1, 2, 2, 4)).toBe(8);
    for (const [m, S, D, steps] of [[3, 4, 2, 3], [5, 6, 3, 2], [1, 4, 2, 3], [4, 1, 1, 3], [7, 6, 2, 4]])
      checkGeneration(generationSchedule(m!, S!, D!, steps!), m!, S!, D!, steps!);
  });

  it('rejects stages that do not divide over the devices, and bad counts', () => {
    expect(() => generationSchedule(4, 3, 2)).toThrow(/each device must hold the same number of stages/);
    expect(() => generationSchedule(0, 2, 2)).toThrow(/micro-batches/);
    expect(() => generationSchedule(2, 2, 2, 0)).toThrow(/steps/);
  });
});

describe('plans as data', () => {
  it('2 and 4 devices, 1/2/4/8 micro-batches, 1 or 2 chunks, with and without decode steps: every edge sound', () => {
    for (const D of [2, 4])
      for (const m of [1, 2, 4, 8])
        for (const chunks of [1, 2])
          for (const steps of [1, 3]) {
            const s = generationSchedule(m, D * chunks, D, steps);
            expect(scheduleProblems(s)).toEqual([]);
            // Each device's column: its tasks once, in tick order; every cross-device input received
            // exactly one tick after it was made, from the device that made it.
            let count = 0;
            for (let d = 0; d < D; d++) {
              const col = columnOf(s, d);
              count += col.tasks.length;
              expect(col.tasks.map((k) => k.tick)).toEqual([...col.tasks.map((k) => k.tick)].sort((a, b) => a - b));
              for (const r of col.receives) {
                const maker = s.tasks.find((k) => k.consumers.some((e) => s.tasks[e.to]!.device === d && s.tasks[e.to]!.step === r.to.step && s.tasks[e.to]!.mb === r.to.mb && s.tasks[e.to]!.stage === r.to.stage))!;
                expect(maker.device).toBe(r.from);
                expect(maker.tick + 1).toBe(r.tick);
              }
            }
            expect(count).toBe(s.tasks.length);
          }
  });

  it('the checker finds a broken plan', () => {
    const s = generationSchedule(2, 2, 2);
    const bad = structuredClone(s);
    bad.tasks[bad.tasks.length - 1]!.tick = 0; // runs before its input, on a busy device
    expect(scheduleProblems(bad).join('\n')).toMatch(/not before its tick|two tasks/);
    const orphan = structuredClone(s);
    orphan.tasks[0]!.consumers = [];
    expect(scheduleProblems(orphan).join('\n')).toMatch(/never consumed|does not list it/);
  });
});

describe('training schedules (GPipe, 1F1B)', () => {
  // Activations a stage holds at once: forwards done whose backward has not run yet.
  const peakInFlight = (s: Schedule, stage: number) => {
    let live = 0, peak = 0;
    for (const k of [...s.tasks].filter((x) => x.stage === stage).sort((a, b) => a.tick - b.tick)) {
      live += k.kind === 'forward' ? 1 : -1;
      peak = Math.max(peak, live);
    }
    return peak;
  };

  it('GPipe: all forwards, then all backwards; every stage holds every micro-batch', () => {
    for (const [m, S] of [[1, 2], [4, 2], [8, 4], [3, 3]]) {
      const s = gpipeSchedule(m!, S!);
      expect(scheduleProblems(s)).toEqual([]);
      expect(s.tasks.length).toBe(2 * m! * S!);
      expect(s.ticks).toBe(2 * (m! + S! - 1));
      for (let st = 0; st < S!; st++) expect(peakInFlight(s, st)).toBe(m);
      const lastF = Math.max(...s.tasks.filter((k) => k.kind === 'forward').map((k) => k.tick));
      expect(Math.min(...s.tasks.filter((k) => k.kind === 'backward').map((k) => k.tick))).toBeGreaterThan(lastF);
    }
  });

  it('1F1B: the same work in the same ticks, with stage s holding at most S - s micro-batches', () => {
    for (const [m, S] of [[1, 2], [4, 2], [8, 4], [16, 4], [3, 3]]) {
      const s = oneFOneBSchedule(m!, S!);
      expect(scheduleProblems(s)).toEqual([]);
      expect(s.tasks.length).toBe(2 * m! * S!);
      expect(s.ticks).toBe(2 * (m! + S! - 1));
      for (let st = 0; st < S!; st++) expect(peakInFlight(s, st)).toBe(Math.min(m!, S! - st));
      // Backward edges carry gradients to the stage before, and each stage's stash stays on its device.
      for (const k of s.tasks.filter((x) => x.kind === 'backward'))
        expect(k.inputs.map((e) => e.kind).sort()).toEqual(k.stage === S! - 1 ? ['stash'] : ['gradient', 'stash']);
    }
    expect(clockTable(oneFOneBSchedule(2, 2))).toBe(['clock 0: (0,0)', 'clock 1: (1,0) (0,1)', 'clock 2: B(0,1)', 'clock 3: B(0,0) (1,1)', 'clock 4: B(1,1)', 'clock 5: B(1,0)'].join('\n'));
  });

  it('interleaved 1F1B: a valid plan; a device holds at most its warm-up forwards + 1 micro-batch-chunks, fewer than GPipe\'s m x v', () => {
    /** micro-batch-chunks a device holds at once (forwards whose backward has not run) */
    const devicePeak = (s: ReturnType<typeof gpipeSchedule>, d: number) => {
      let live = 0, peak = 0;
      for (const k of s.tasks.filter((x) => x.device === d).sort((a, b) => a.tick - b.tick)) {
        live += k.kind === 'forward' ? 1 : -1;
        peak = Math.max(peak, live);
      }
      return peak;
    };
    for (const [m, D, v] of [[2, 2, 2], [4, 2, 2], [8, 2, 2], [4, 2, 4], [6, 3, 2], [8, 4, 2], [12, 4, 3]] as const) {
      const s = interleavedOneFOneBSchedule(m, D * v, D);
      expect(scheduleProblems(s), `m ${m}, D ${D}, v ${v}`).toEqual([]);
      expect(s.tasks.length).toBe(2 * m * D * v);
      for (let d = 0; d < D; d++) {
        const warm = Math.min(m * v, (D - d - 1) * 2 + (v - 1) * D);
        expect(devicePeak(s, d), `device ${d} of m ${m}, D ${D}, v ${v}`).toBeLessThanOrEqual(Math.min(m * v, warm + 1));
        expect(devicePeak(gpipeSchedule(m, D * v, D), d)).toBe(m * v);
      }
    }
    expect(interleavedOneFOneBSchedule(4, 2, 2).name).toBe('1f1b'); // one chunk: plain 1F1B
    expect(() => interleavedOneFOneBSchedule(3, 4, 2)).toThrow(/3 micro-batches must be a multiple of the 2 devices/);
  });
});
