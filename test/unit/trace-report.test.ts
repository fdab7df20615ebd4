// bench/trace-report.mjs on a small synthetic PARALLM_TRACE CSV: blocks grouped into launches by gridid (a reused
// gridid split by time), steps found between embeddings, and each launch's times and gaps.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const script = path.resolve('bench/trace-report.mjs');
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const tr: any = await import(script);

// Two complete steps (embedding ... argmax), a third without its argmax, and gridid 11 seen again much later.
// Rows out of time order, as several .cu files' rings are.
const CSV = `tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end
matmul.cu,11,5,tile_w,0,1400,1600,5000
embedding.cu,10,0,embedding,0,0,200,1000
embedding.cu,10,0,embedding,1,100,250,1500
matmul.cu,11,5,tile_w,1,1450,1600,5200
matmul.cu,11,5,tile_w,0,1500,,5100
matmul.cu,12,7,reduce_norm,3,5600,5700,6000
softmax.cu,13,17,argmax,4,6100,6150,6500
embedding.cu,20,0,embedding,0,100000,,101000
matmul.cu,21,5,tile_w,2,101200,101300,104000
softmax.cu,22,17,argmax,0,104100,104200,104600
embedding.cu,30,0,embedding,0,200000,,200500
matmul.cu,31,5,tile_w,0,200600,,201000
matmul.cu,11,5,tile_w,5,300000,,300500
`;

// Two steps with the same launches, on a timer that ticks in µs.
const COARSE = `tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end
embedding.cu,1,0,embedding,0,0,,1000
matmul.cu,2,5,tile_w,0,1000,2000,4000
softmax.cu,3,17,argmax,0,5000,,6000
embedding.cu,4,0,embedding,0,10000,,11000
matmul.cu,5,5,tile_w,0,12000,12000,14000
softmax.cu,6,17,argmax,0,14000,,15000
embedding.cu,7,0,embedding,0,20000,,21000
`;

describe('trace-report', () => {
  const { launches, reused } = tr.groupLaunches(tr.parseTrace(CSV));

  it('groups blocks into launches by gridid, ordered by start, and splits a reused gridid by time', () => {
    expect(launches.map((l: { gridid: string }) => l.gridid)).toEqual(['10', '11', '12', '13', '20', '21', '22', '30', '31', '11']);
    expect(reused).toBe(1);
    const [emb, tile] = launches;
    expect(emb).toMatchObject({ tag: 'embedding', blocks: 2, sms: 2, start: 0, end: 1500, waitFirst: 200, waitLast: 250, lastStart: 100, firstEnd: 1000 });
    expect(tile).toMatchObject({ tag: 'tile_w', blocks: 3, sms: 2, start: 1400, end: 5200, waitFirst: 1600, waitLast: 1600 });
    expect(launches[9]).toMatchObject({ blocks: 1, start: 300000, waitFirst: null });
  });

  it('finds the complete steps (embedding to its argmax)', () => {
    expect(tr.findSteps(launches)).toEqual([[0, 3], [4, 6]]);
  });

  it('reports gaps, overlap, ramp, tail and the per-tag totals', () => {
    const rep = tr.stepReport(launches, 0, 3);
    expect(rep.rows.map((r: { gap: number | null }) => r.gap)).toEqual([null, -100, 400, 100]);
    expect(rep.rows[1]).toMatchObject({ index: 1, start: 1400, waitFirst: 1600, end: 5200, dur: 3800, ramp: 100, tail: 200 });
    expect(rep.rows[0]).toMatchObject({ ramp: 100, tail: 500 });
    expect(rep).toMatchObject({ span: 6500, covered: 6000, gapSum: 400, idleGaps: 500, overlaps: -100, gapBefore: null });
    expect(rep.perTag.find((t: { tag: string }) => t.tag === 'tile_w')).toEqual({ tag: 'tile_w', count: 1, busy: 3800, gaps: -100 });
    const last = tr.stepReport(launches, 4, 6);
    expect(last.rows.map((r: { start: number }) => r.start)).toEqual([0, 1200, 4100]);
    expect(last).toMatchObject({ span: 4600, gapBefore: 93500 });
    // (--csv: the step's blocks alone, a trace of their own)
    const csv = tr.stepCsv(launches, 4, 6);
    expect(csv.trim().split('\n')).toEqual([
      'tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end',
      'embedding.cu,20,0,embedding,0,100000,,101000',
      'matmul.cu,21,5,tile_w,2,101200,101300,104000',
      'softmax.cu,22,17,argmax,0,104100,104200,104600',
    ]);
    expect(tr.findSteps(tr.groupLaunches(tr.parseTrace(csv)).launches)).toEqual([[0, 2]]);
  });

  it('averages steps with the same launches (--mean)', () => {
    const { launches: ls } = tr.groupLaunches(tr.parseTrace(COARSE));
    const steps = tr.findSteps(ls);
    expect(steps).toEqual([[0, 2], [3, 5]]);
    const m = tr.meanReport(steps.map(([a, b]: [number, number]) => tr.stepReport(ls, a, b)));
    expect(m.rows[1]).toMatchObject({ index: 4, start: 1500, dur: 2500, gap: 500, waitFirst: 2000 });
    expect(m.rows[2]).toMatchObject({ gap: 500 });
    expect(m).toMatchObject({ steps: 2, span: 5500, gapBefore: 4000 });
    expect(tr.timerStep(tr.parseTrace(COARSE))).toBe(1000);
  });

  const dir = mkdtempSync(path.join(tmpdir(), 'trace-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'trace.csv');
  writeFileSync(file, CSV);
  const run = (...args: string[]) => execFileSync(process.execPath, [script, file, ...args], { encoding: 'utf8' });

  it('prints the last complete step by default, and a --from/--to range', () => {
    const out = run();
    expect(out).toMatch(/10 launches; 2 complete steps .*; launches 4\.\.6 below/);
    expect(out).toMatch(/note: 1 gridids held more than one launch/);
    expect(out).toMatch(/^\s*5\s+tile_w\s+1\s+1\s+1\.20\s+1\.30\s+1\.30\s+4\.00\s+2\.80\s+0\.20\s/m);
    expect(out).toMatch(/step span 4\.60 µs/);
    const first = run('--from', '0', '--to', '3');
    expect(first).toMatch(/^\s*1\s+tile_w\s+3\s+2\s+1\.40\s+1\.60\s+1\.60\s+5\.20\s+3\.80\s+-0\.10\s+0\.10\s+0\.20$/m);
    expect(first).toMatch(/gaps sum 0\.40 \(idle 0\.50, overlap -0\.10\)/);
    const coarse = path.join(dir, 'coarse.csv');
    writeFileSync(coarse, COARSE);
    const mean = execFileSync(process.execPath, [script, coarse, '--mean'], { encoding: 'utf8' });
    expect(mean).toMatch(/means over the 2 complete steps/);
    expect(mean).toMatch(/timestamps step by >= 1000 ns/);
    expect(mean).toMatch(/^\s*4\s+tile_w\s+1\s+1\s+1\.50\s+2\.00\s+2\.00\s+4\.00\s+2\.50\s+0\.50\s/m);
  });
});
