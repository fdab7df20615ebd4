// The benchmark's SVG charts, rendered to PNG with resvg: titles fit, no two labels overlap, the legend
// names every colour drawn, the axes have ticks; the bubble figures against float64 references; the
// chart folder never keeps a failed strategy's timeline; the table formats and the run's metadata.
import { Resvg } from '@resvg/resvg-js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { barChart, idealBubble, niceTicks, textWidth, timelineChart, utilization, wrapText, type TimelineTask } from '../../src/bench/svg.js';
import { writeStrategyCharts, type StrategyBenchResult } from '../../src/bench/strategies.js';
import { benchMeta, cudaVersionString, ncclVersionString } from '../../src/bench/meta.js';
import { buildInfo } from '../../src/device.js';
import { csv, markdown } from '../../src/cli/format.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'parallm-charts-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function render(svg: string): { width: number; height: number; pixels: Buffer } {
  const r = new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, background: 'white' }).render();
  // Kept for a look: PARALLM_CHARTS_PNG=folder writes every rendered chart there.
  const keep = process.env.PARALLM_CHARTS_PNG;
  if (keep) writeFileSync(path.join(keep, `chart-${Math.random().toString(36).slice(2, 8)}.png`), r.asPng());
  return { width: r.width, height: r.height, pixels: r.pixels };
}

interface Text { x0: number; x1: number; y0: number; y1: number; s: string }

/** Every <text>'s box, as the chart module measures text (the same width per character). */
function texts(svg: string): Text[] {
  return [...svg.matchAll(/<text x="([\d.-]+)" y="([\d.-]+)"([^>]*)>([^<]*)<\/text>/g)].map((m) => {
    const x = Number(m[1]), y = Number(m[2]), attrs = m[3]!;
    const size = Number(/font-size="([\d.]+)"/.exec(attrs)?.[1] ?? 16);
    const s = m[4]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    const w = textWidth(s, size);
    const x0 = /text-anchor="end"/.test(attrs) ? x - w : /text-anchor="middle"/.test(attrs) ? x - w / 2 : x;
    return { x0, x1: x0 + w, y0: y - 0.8 * size, y1: y + 0.25 * size, s };
  });
}

function size(svg: string): { W: number; H: number } {
  const m = /<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg)!;
  return { W: Number(m[1]), H: Number(m[2]) };
}

/** Labels inside the picture and apart from each other. */
function expectLegible(svg: string): void {
  const { W, H } = size(svg);
  const ts = texts(svg);
  for (const t of ts) {
    expect(t.x0, `"${t.s}" starts left of the picture`).toBeGreaterThanOrEqual(0);
    expect(t.x1, `"${t.s}" ends right of the picture (${W})`).toBeLessThanOrEqual(W);
    expect(t.y0).toBeGreaterThanOrEqual(0);
    expect(t.y1).toBeLessThanOrEqual(H);
  }
  for (let i = 0; i < ts.length; i++)
    for (let j = i + 1; j < ts.length; j++) {
      const a = ts[i]!, b = ts[j]!;
      const overlap = a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
      expect(overlap, `"${a.s}" overlaps "${b.s}"`).toBe(false);
    }
}

/** How many pixels of the PNG have this colour (exactly, opaque). */
function countColour(img: { pixels: Buffer }, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < img.pixels.length; i += 4) if (img.pixels[i] === r && img.pixels[i + 1] === g && img.pixels[i + 2] === b) n++;
  return n;
}

/** A random pipeline run: S devices, m micro-batches, prefill then `steps - 1` decode steps, v chunks. */
function randomRun(S: number, m: number, steps: number, v: number, seed: number): TimelineTask[] {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const free = new Array<number>(S).fill(1000 + rnd() * 50);
  const tasks: TimelineTask[] = [];
  for (let step = 0; step < steps; step++)
    for (let mb = 0; mb < m; mb++)
      for (let vs = 0; vs < S * v; vs++) {
        const stage = vs % S;
        const t0 = free[stage]! + rnd() * 0.3;
        const t1 = t0 + (step === 0 ? 2 : 0.4) * (0.5 + rnd());
        free[stage] = t1;
        tasks.push({ stage, vstage: v > 1 ? vs : undefined, mb, step, t0, t1 });
      }
  return tasks;
}

describe('chart helpers', () => {
  it('round ticks cover the range', () => {
    for (const [lo, hi] of [[0, 4723], [0, 0.0137], [0, 9.9], [0, 1e6 + 1], [0, 1]]) {
      const t = niceTicks(lo!, hi!);
      expect(t[0]).toBeLessThanOrEqual(lo!);
      expect(t[t.length - 1]).toBeGreaterThanOrEqual(hi!);
      expect(t.length).toBeGreaterThanOrEqual(3);
      expect(t.length).toBeLessThanOrEqual(12);
      const step = t[1]! - t[0]!;
      const mant = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
      expect([1, 2, 5].some((k) => Math.abs(mant - k) < 1e-6)).toBe(true);
    }
  });

  it('wraps words to the width, cutting only a word too long for a line', () => {
    const s = 'tiny-llama (f32): generation throughput by strategy, batch 8 (dp: 8 per device), 32 prompt + 4 new tokens';
    const lines = wrapText(s, 300, 15);
    expect(lines.join(' ')).toBe(s);
    for (const l of lines) expect(textWidth(l, 15)).toBeLessThanOrEqual(300);
    const long = wrapText(`/models/${'x'.repeat(200)}`, 300, 15);
    expect(long.join('')).toBe(`/models/${'x'.repeat(200)}`);
    for (const l of long) expect(textWidth(l, 15)).toBeLessThanOrEqual(300);
  });

  it('the ideal bubble is (S - 1) / (v·m + S - 1), and the utilization the busy share of devices x span', () => {
    for (let S = 1; S <= 8; S++) for (const m of [1, 2, 3, 8, 32]) for (const v of [1, 2, 4]) expect(idealBubble(S, m, v)).toBeCloseTo((S - 1) / (v * m + S - 1), 15);
    expect(() => idealBubble(0, 1)).toThrow(/idealBubble/);
    const tasks = randomRun(3, 4, 3, 1, 7);
    const span = Math.max(...tasks.map((t) => t.t1)) - Math.min(...tasks.map((t) => t.t0));
    let busy = 0;
    for (const t of tasks) busy += t.t1 - t.t0;
    expect(utilization(tasks, 3)).toBeCloseTo(busy / (3 * span), 12);
  });
});

describe('charts, rendered', () => {
  it('throughput: title wrapped to fit, value axis with ticks, a whisker and a legend', () => {
    const bars = ['single x1', 'dp x2', 'mp x2', 'pp (2 chunks) x2'].map((label, i) => {
      const v = 1000 + Math.random() * 5000 * (i + 1);
      return { label, value: v, min: v * (0.8 + 0.1 * Math.random()), max: v * (1.05 + 0.2 * Math.random()) };
    });
    const title = `/data/models/Llama-2-7b-hf-with-a-rather-long-folder-name (bf16): generation throughput by strategy, batch 64 (dp: 64 per device), 128 prompt + 128 new tokens`;
    const svg = barChart(title, 'generated tokens/s (whole run)', bars, 'run of median wall time (of 3)');
    expectLegible(svg);
    const ts = texts(svg).map((t) => t.s);
    expect(ts.filter((t) => title.includes(t)).join(' ')).toContain('(bf16): generation');
    for (const b of bars) expect(ts).toContain(b.label);
    expect(ts).toContain('min to max of the runs');
    // Value axis: at least 3 numeric ticks, 0 first, the last past the largest whisker.
    const ticks = ts.filter((t) => /^\d+(\.\d+)?k?$/.test(t) && !bars.some((b) => b.value.toFixed(0) === t)).map((t) => (t.endsWith('k') ? Number(t.slice(0, -1)) * 1e3 : Number(t)));
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks[0]).toBe(0);
    expect(Math.max(...ticks)).toBeGreaterThanOrEqual(Math.max(...bars.map((b) => b.max)));
    const img = render(svg);
    expect([img.width, img.height]).toEqual([size(svg).W, size(svg).H]);
    expect(countColour(img, '#4e79a7')).toBeGreaterThan(1000); // the bars are drawn
    expect(() => barChart('nothing', 'tokens/s', [])).toThrow(/no bars/);
  });

  for (const [S, m, v] of [[2, 2, 1], [4, 12, 1], [2, 4, 2]] as const)
    it(`timeline of ${S} devices, ${m} micro-batches, ${v} chunk(s): every colour in the legend, prefill told from decode, utilization and ideal bubble given`, () => {
      const tasks = randomRun(S, m, 4, v, 1 + S * 100 + m * 10 + v);
      const devs = Array.from({ length: S }, (_, i) => `cuda:${i}`);
      const svg = timelineChart(`llama-2-7b (bf16): pp timeline on ${devs.join(', ')}, batch 64 in ${m} micro-batches, 128 prompt + 128 new tokens`, tasks, devs, { microBatches: m, chunks: v });
      expectLegible(svg);
      // Every fill a task box uses is a legend swatch's fill.
      const boxFills = new Set([...svg.matchAll(/<rect [^>]*fill="(#[0-9a-f]{6})"[^>]*><title>/g)].map((x) => x[1]!));
      const legendFills = new Set([...svg.matchAll(/<rect x="[\d.]+" y="[\d.]+" width="16" height="12" fill="(#[0-9a-f]{6})"/g)].map((x) => x[1]!));
      expect(boxFills.size).toBe(Math.min(m, 10));
      for (const f of boxFills) expect(legendFills).toContain(f);
      const ts = texts(svg).map((t) => t.s).join('\n');
      expect(ts).toMatch(/prefill \(hatched\)/);
      expect(ts).toMatch(/decode \(solid\)/);
      expect(ts).toMatch(/idle \(the bubble\)/);
      if (v > 1) expect(ts).toMatch(/second chunk of layers \(lighter\)/);
      if (m > 10) expect(ts).toMatch(/colours repeat every 10/);
      // Prefill tasks (and only they) carry the hatching.
      expect(svg.match(/fill="url\(#prefill\)"/g)!.length).toBe(tasks.filter((t) => t.step === 0).length + 1); // + its legend swatch
      const util = utilization(tasks, S);
      expect(ts).toContain(`utilization ${(util * 100).toFixed(1)}%`);
      expect(ts).toContain(`= ${(((S - 1) / (v * m + S - 1)) * 100).toFixed(1)}% with S = ${S}, m = ${m}`);
      expect(ts).toMatch(/time since the first task started \(ms\)/);
      const img = render(svg);
      for (const f of boxFills) expect(countColour(img, f), `colour ${f} drawn`).toBeGreaterThan(0);
    });

  it('an empty timeline is an error, not a blank chart', () => {
    expect(() => timelineChart('t', [], ['cpu:0'], { microBatches: 1 })).toThrow(/no tasks/);
  });
});

describe('writeStrategyCharts', () => {
  const base = { model: 'tiny-llama', dtype: 'f32' as const, batch: 4, promptTokens: 8, newTokens: 3, repeats: 3 };
  const result = (strategy: 'single' | 'pp', error?: string): StrategyBenchResult => ({
    strategy, model: 'tiny-llama', dtype: 'f32', devices: strategy === 'pp' ? ['cpu:0', 'cpu:1'] : ['cpu:0'], batch: 4, promptTokens: 8, newTokens: 3,
    microBatches: error ? 0 : 2, wallMs: 10, tokensPerS: error ? 0 : 1200 + Math.random() * 100, prefillTokensPerS: 1, decodeTokensPerS: 1, msPerStep: 1,
    utilization: 0.5, memory: [], repeats: 3, tokensPerSRuns: { min: 1100, median: 1200, max: 1400 }, wallMsRuns: { min: 9, median: 10, max: 11 },
    ...(error ? { error } : strategy === 'pp' ? { timeline: randomRun(2, 2, 3, 1, 3) } : {}),
    });

  it('writes the charts of the strategies that ran and removes the timeline of one that failed', () => {
    const out = path.join(tmp, 'charts');
    const first = writeStrategyCharts(out, base, [result('single'), result('pp')]);
    expect(first.map((f) => path.basename(f))).toEqual(['throughput.svg', 'timeline-pp.svg']);
    writeFileSync(path.join(out, 'timeline-mp.svg'), '<svg>an older run</svg>');
    // The same folder again, pp failing this time: no timeline of the earlier pp is left listed or on disk.
    const second = writeStrategyCharts(out, base, [result('single'), result('pp', '3 micro-batches for a batch of 2')]);
    expect(second.map((f) => path.basename(f))).toEqual(['throughput.svg']);
    expect(existsSync(path.join(out, 'timeline-pp.svg'))).toBe(false);
    expect(existsSync(path.join(out, 'timeline-mp.svg'))).toBe(false);
    expect(readFileSync(path.join(out, 'throughput.svg'), 'utf8')).not.toMatch(/pp x2/);
    // Nothing ran: no throughput chart with a title and no bars.
    expect(writeStrategyCharts(out, base, [result('single', 'out of memory')])).toEqual([]);
    expect(existsSync(path.join(out, 'throughput.svg'))).toBe(false);
  });
});

describe('bench output', () => {
  it('markdown and CSV keep every cell, escaping what would split one', () => {
    const rows = [['pp (2 chunks)', 'cpu:0,cpu:1', 'a "b" | c', 12], ['single', 'cpu:0', 'x\ny', 3.5]];
    expect(csv(['s', 'devices', 'note', 'n'], rows)).toBe('s,devices,note,n\npp (2 chunks),"cpu:0,cpu:1","a ""b"" | c",12\nsingle,cpu:0,"x\ny",3.5');
    const md = markdown(['s', 'devices', 'note', 'n'], rows).split('\n');
    expect(md[0]).toBe('| s | devices | note | n |');
    expect(md[1]).toBe('| --- | ---: | ---: | ---: |');
    expect(md[2]).toBe('| pp (2 chunks) | cpu:0,cpu:1 | a "b" \\| c | 12 |');
  });

  it('the metadata names the version, date, host, devices and what NCCL and the driver are', () => {
    expect(ncclVersionString(22803)).toBe('2.28.3');
    expect(ncclVersionString(21805)).toBe('2.18.5');
    expect(ncclVersionString(2708)).toBe('2.7.8');
    const m = benchMeta(['cpu:0']);
    const pkg = JSON.parse(readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as { version: string };
    expect(m.parallm).toBe(pkg.version);
    expect(Math.abs(Date.parse(m.date) - Date.now())).toBeLessThan(60_000);
    expect(m.host.name).toBe(os.hostname());
    expect(m.devices).toEqual([{ id: 'cpu:0', name: expect.stringMatching(/CPU/) }]);
    expect(m.nccl.version ?? m.nccl.error).toBeTruthy();
    expect(cudaVersionString(13000)).toBe('13.0');
    expect(cudaVersionString(12080)).toBe('12.8');
    expect(cudaVersionString(0)).toBeUndefined();
    const info = buildInfo();
    expect(m.cuda.compiled).toBe(info.cuda);
    // A CUDA build links a runtime it can name without a driver; the driver's CUDA only with a driver.
    if (info.cuda) expect(m.cuda.runtime).toMatch(/^1\d\.\d+$/);
    else expect(m.cuda.runtime).toBeUndefined();
    if (/no NVIDIA driver/.test(info.cudaStatus)) expect(m.cuda.driverSupports).toBeUndefined();
    if (!m.gpus.length) expect(m.cuda.status).not.toBe('ok');
  });
});

// Lets a person look at the charts: PARALLM_CHARTS_PNG=/tmp/x npx vitest run test/unit/bench-charts.test.ts
if (process.env.PARALLM_CHARTS_PNG) mkdirSync(process.env.PARALLM_CHARTS_PNG, { recursive: true });
