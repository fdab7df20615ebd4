// The CLI's load progress (src/cli/progress.ts) on an injected stream and clock: a bar redrawn in place
// on a terminal, plain quarter lines otherwise, nothing when quiet.
import { describe, expect, it } from 'vitest';
import { LoadProgressBar } from '../../src/cli/progress.js';
import { reportingLoad, type LoadProgress } from '../../src/models/load-steps.js';

function stream(isTTY: boolean, columns?: number) {
  const chunks: string[] = [];
  return { chunks, isTTY, columns, write: (s: string) => chunks.push(s), text: () => chunks.join('') };
}

const MiB = 2 ** 20;
const at = (bytes: number, tensors: number): LoadProgress => ({ bytes, totalBytes: 400 * MiB, tensors, totalTensors: 80 });

describe('LoadProgressBar', () => {
  it('on a terminal: one line redrawn with \\r, as wide as the terminal, with the ETA of the rate so far', () => {
    let t = 0;
    const s = stream(true, 100);
    const bar = new LoadProgressBar('loading gpt2', { stream: s, now: () => t, redrawMs: 100 });
    bar.update(at(0, 0));
    t = 2000;
    bar.update(at(100 * MiB, 20)); // a quarter in 2 s: 6 s to go
    t = 2050;
    bar.update(at(110 * MiB, 22)); // within redrawMs: not drawn
    t = 4000;
    bar.update(at(200 * MiB, 40)); // half in 4 s: 4 s to go
    t = 8000;
    bar.update(at(400 * MiB, 80));
    bar.done();
    const draws = s.chunks.filter((c) => c.startsWith('\r'));
    expect(s.chunks.every((c) => c.startsWith('\r') || c === '\n')).toBe(true);
    expect(s.text().endsWith('\n')).toBe(true);
    expect(s.text().split('\n').length).toBe(2); // one line, ended once
    const lines = draws.map((c) => c.slice(1).replace('\x1b[K', ''));
    expect(lines.length).toBe(5); // 4 updates drawn (one throttled) and the final line
    for (const l of lines) expect(l.length).toBe(99);
    expect(lines[0]).toMatch(/^loading gpt2 \[-+\]   0%  0\.0 KiB \/ 400\.0 MiB, 0\/80 tensors  ETA \?$/);
    expect(lines[1]).toMatch(/^loading gpt2 \[#+-+\]  25%  100\.0 MiB \/ 400\.0 MiB, 20\/80 tensors  ETA 6s$/);
    expect(lines[2]).toMatch(/ 50% .* ETA 4s$/);
    expect(lines[3]).toMatch(/100% .* ETA 0s$/);
    expect(lines[4]).toMatch(/^loading gpt2 \[#+\] 100%  400\.0 MiB \/ 400\.0 MiB, 80\/80 tensors  in 8s$/);
    // The bar's fill follows the fraction: a quarter of its cells at 25%.
    const cells = (l: string) => /\[([#-]+)\]/.exec(l)![1]!;
    expect(cells(lines[1]!).split('#').length - 1).toBe(Math.round(cells(lines[1]!).length / 4));
    expect(cells(lines[4]!)).toMatch(/^#+$/);
  });

  it('times the load from its first update, not from when the bar was made', () => {
    let t = 0;
    const s = stream(false);
    const bar = new LoadProgressBar('loading', { stream: s, now: () => t });
    t = 5000; // the caller read its data first
    bar.update(at(0, 0));
    t = 7000;
    bar.update(at(100 * MiB, 20));
    t = 13000;
    bar.update(at(400 * MiB, 80));
    bar.done();
    expect(s.text().split('\n').filter(Boolean)).toEqual([
      'loading: 25% (100.0 MiB / 400.0 MiB, 20/80 tensors, 2s)',
      'loading: done (400.0 MiB / 400.0 MiB, 80/80 tensors) in 8.0 s',
    ]);
  });

  it('a narrow terminal drops the bar and cuts the line; no column count means 80', () => {
    const narrow = stream(true, 30);
    const b1 = new LoadProgressBar('loading llama-2-7b', { stream: narrow, now: () => 0 });
    b1.update(at(100 * MiB, 20));
    const l1 = narrow.chunks[0]!.slice(1).replace('\x1b[K', '');
    expect(l1.length).toBeLessThanOrEqual(29);
    expect(l1).not.toContain('[');
    expect(l1.startsWith('loading llama-2-7b  25%')).toBe(true);
    const wide = stream(true);
    new LoadProgressBar('x', { stream: wide, now: () => 0 }).update(at(100 * MiB, 20));
    expect(wide.chunks[0]!.slice(1).replace('\x1b[K', '').length).toBe(79);
  });

  it('not a terminal: a plain line at each quarter and a done line, no \\r', () => {
    let t = 0;
    const s = stream(false);
    const bar = new LoadProgressBar('loading gpt2', { stream: s, now: () => t });
    for (let i = 0; i <= 80; i++) {
      t = i * 100;
      bar.update(at(i * 5 * MiB, i));
    }
    bar.done();
    expect(s.text()).not.toContain('\r');
    expect(s.text().split('\n').filter(Boolean)).toEqual([
      'loading gpt2: 25% (100.0 MiB / 400.0 MiB, 20/80 tensors, 2s)',
      'loading gpt2: 50% (200.0 MiB / 400.0 MiB, 40/80 tensors, 4s)',
      'loading gpt2: 75% (300.0 MiB / 400.0 MiB, 60/80 tensors, 6s)',
      'loading gpt2: done (400.0 MiB / 400.0 MiB, 80/80 tensors) in 8.0 s',
    ]);
  });

  it('quiet (--json) writes nothing; fail ends an open bar line so the error starts on its own', async () => {
    const q = stream(true);
    const quiet = new LoadProgressBar('loading', { stream: q, quiet: true, now: () => 0 });
    quiet.update(at(MiB, 1));
    quiet.done();
    expect(q.chunks).toEqual([]);

    const s = stream(true);
    const bar = new LoadProgressBar('loading', { stream: s, now: () => 0, redrawMs: 0 });
    await expect(
      reportingLoad(bar, async (onProgress) => {
        onProgress!(at(MiB, 1));
        throw new Error('disk gone');
      }),
    ).rejects.toThrow('disk gone');
    expect(s.chunks.length).toBe(2);
    expect(s.chunks[1]).toBe('\n');
    bar.update(at(2 * MiB, 2)); // after the end: ignored
    expect(s.chunks.length).toBe(2);
  });

  it('reportingLoad passes progress through and ends the reporter once; without one it just loads', async () => {
    const s = stream(false);
    const bar = new LoadProgressBar('loading', { stream: s, now: () => 0 });
    const v = await reportingLoad(bar, async (onProgress) => {
      for (let i = 0; i <= 80; i += 20) onProgress!(at(i * 5 * MiB, i));
      return 42;
    });
    expect(v).toBe(42);
    expect(s.text().split('\n').filter(Boolean).length).toBe(4);
    expect(await reportingLoad(undefined, async (onProgress) => (onProgress === undefined ? 'none' : 'some'))).toBe('none');
  });
});
