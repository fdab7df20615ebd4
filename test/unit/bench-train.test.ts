// `parallm bench train --strategies`: each strategy trains for real on CPU devices (the loss falls, the
// tokens a step are the strategy's), pipelines return a timeline of forward and backward tasks whose
// order is the schedule's, the epoch benchmark times each epoch on 1 and 2 devices, and the charts
// render (PNG, via resvg) with forward told from backward and every label inside the picture.
import { Resvg } from '@resvg/resvg-js';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runEpochBench, runTrainStrategyBench, writeTrainCharts } from '../../src/bench/train-strategies.js';
import { textWidth } from '../../src/bench/svg.js';
import { ensureDist } from '../helpers/dist.js';

beforeAll(() => ensureDist());

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'parallm-bench-train-'));

/** Every <text> inside the picture and apart from the others (as the chart module measures text). */
function expectInside(svg: string): void {
  const m = /<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg)!;
  const W = Number(m[1]), H = Number(m[2]);
  const boxes: { x0: number; x1: number; y0: number; y1: number; s: string }[] = [];
  for (const t of svg.matchAll(/<text x="([\d.-]+)" y="([\d.-]+)"([^>]*)>([^<]*)<\/text>/g)) {
    const x = Number(t[1]), y = Number(t[2]), size = Number(/font-size="([\d.]+)"/.exec(t[3]!)?.[1] ?? 16);
    const w = textWidth(t[4]!, size);
    const x0 = /text-anchor="end"/.test(t[3]!) ? x - w : /text-anchor="middle"/.test(t[3]!) ? x - w / 2 : x;
    expect(x0, t[4]).toBeGreaterThanOrEqual(0);
    expect(x0 + w, t[4]).toBeLessThanOrEqual(W);
    expect(y, t[4]).toBeLessThanOrEqual(H);
    boxes.push({ x0, x1: x0 + w, y0: y - 0.8 * size, y1: y + 0.25 * size, s: t[4]! });
  }
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i]!, b = boxes[j]!;
      expect(a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1, `"${a.s}" overlaps "${b.s}"`).toBe(false);
    }
  // the whisker's swatch (three lines) starts after the bars' label in the legend
  const label = /<text x="([\d.]+)" y="[\d.]+" font-size="11">median step<\/text>/.exec(svg);
  const swatch = /<line x1="([\d.]+)" y1="[\d.]+" x2="[\d.]+" y2="[\d.]+" stroke="#222" stroke-width="1.5"\/><line/.exec(svg);
  if (label && swatch) expect(Number(swatch[1])).toBeGreaterThan(Number(label[1]) + textWidth('median step', 11));
  const img = new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' }, background: 'white' }).render();
  expect([img.width, img.height]).toEqual([W, H]);
}

describe('bench train over strategies (CPU devices)', () => {
  it('single, dp, mp and pp train; the pipeline timeline follows 1F1B; the charts render', async () => {
    const devices = ['cpu:0', 'cpu:1'];
    const o = { model: 'tiny-gpt2', devices, dtype: 'f32' as const, batch: 2, seq: 8, steps: 2, strategies: ['single', 'dp', 'mp', 'pp'] as const, scaling: 'weak' as const };
    const rs = await runTrainStrategyBench({ ...o, strategies: [...o.strategies] });
    expect(rs.map((r) => r.error ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(rs.map((r) => r.globalBatch)).toEqual([2, 4, 2, 2]); // weak scaling: dp trains 2 per device
    for (const r of rs) {
      expect(r.tokensPerS).toBeGreaterThan(0);
      expect(r.stepMs.min).toBeLessThanOrEqual(r.stepMs.median);
      expect(r.peakBytes).toHaveLength(r.devices.length);
      expect(r.lossLast, r.strategy).toBeLessThan(r.lossFirst); // the timed steps really train
    }
    const pp = rs[3]!;
    expect(pp.microBatches).toBe(2);
    expect(pp.schedule).toBe('1f1b');
    // one step's tasks: per device, each micro-batch's forward and backward, in 1F1B order on the last stage
    const tl = pp.timeline!;
    expect(tl).toHaveLength(2 * 2 * 2);
    const last = tl.filter((t) => t.stage === 1).sort((a, b) => a.t0 - b.t0).map((t) => `${t.kind[0]}${t.mb}`);
    expect(last).toEqual(['f0', 'b0', 'f1', 'b1']);
    const first = tl.filter((t) => t.stage === 0).sort((a, b) => a.t0 - b.t0).map((t) => `${t.kind[0]}${t.mb}`);
    expect(first).toEqual(['f0', 'f1', 'b0', 'b1']);
    for (const t of tl) expect(t.t1).toBeGreaterThanOrEqual(t.t0);
    const dir = tmp();
    const files = writeTrainCharts(dir, o, rs);
    expect(files.map((f) => path.basename(f))).toEqual(['train-throughput.svg', 'train-timeline-mp.svg', 'train-timeline-pp.svg']);
    const svg = readFileSync(path.join(dir, 'train-timeline-pp.svg'), 'utf8');
    expect(svg).toMatch(/forward \(solid\)/);
    expect(svg).toMatch(/backward \(striped\)/);
    expect(svg).not.toMatch(/url\(#prefill\)|prefill \(hatched\)/);
    expect(svg.match(/fill="url\(#backward\)"/g)!.length).toBe(4 + 1); // the backward tasks and the legend swatch
    for (const f of files) expectInside(readFileSync(f, 'utf8'));
    // a strategy that cannot run is reported, and the others' charts are still written
    const bad = await runTrainStrategyBench({ ...o, strategies: ['dp'], scaling: 'strong', batch: 3 });
    expect(bad[0]!.error).toMatch(/does not split over 2 devices/);
    expect(writeTrainCharts(dir, o, bad)).toEqual([]);
    expect(existsSync(path.join(dir, 'train-timeline-pp.svg'))).toBe(false);
  });

  it('mp and pp with deferred weight gradients (deferWeightGrads): train, and report the bytes held per device within the peak', async () => {
    const o = { model: 'tiny-gpt2', devices: ['cpu:0', 'cpu:1'], dtype: 'f32' as const, batch: 4, seq: 8, steps: 2, strategies: ['mp' as const, 'pp' as const], scaling: 'weak' as const, microBatches: 4 };
    const rs = await runTrainStrategyBench({ ...o, deferWeightGrads: true });
    for (const r of rs) {
      expect(r.error, r.strategy).toBeUndefined();
      expect(r.lossLast, r.strategy).toBeLessThan(r.lossFirst);
      expect(r.deferredBytes, r.strategy).toHaveLength(2);
      r.deferredBytes!.forEach((b, i) => {
        expect(b).toBeGreaterThan(0);
        expect(b).toBeLessThan(r.peakBytes[i]!);
      });
    }
    // the same tokens a step held whether in one micro-batch (mp) or four (pp)
    expect(rs[1]!.deferredBytes).toEqual(rs[0]!.deferredBytes);
    expect((await runTrainStrategyBench({ ...o, strategies: ['pp'] }))[0]!.deferredBytes).toBeUndefined();
  });

  it('dp with ZeRO-1 (zero: 1): trains, and reports each device holding half the optimizer state of plain dp', async () => {
    const o = { model: 'tiny-gpt2', devices: ['cpu:0', 'cpu:1'], dtype: 'f32' as const, batch: 2, seq: 8, steps: 2, strategies: ['dp' as const], scaling: 'weak' as const };
    const [plain, zero] = [await runTrainStrategyBench({ ...o, zero: 0 }), await runTrainStrategyBench({ ...o, zero: 1 })];
    for (const r of [plain[0]!, zero[0]!]) {
      expect(r.error).toBeUndefined();
      expect(r.lossLast).toBeLessThan(r.lossFirst);
      expect(r.optimizerBytes).toHaveLength(2);
    }
    expect(zero[0]!.zero).toBe(1);
    const [p, z] = [plain[0]!.optimizerBytes!, zero[0]!.optimizerBytes!];
    expect(p[0]).toBe(p[1]);
    expect(z[0]! + z[1]!).toBe(p[0]); // f32: m and v, split in two (the last shard may hold one more element)
    for (const b of z) expect(Math.abs(b - p[0]! / 2)).toBeLessThanOrEqual(8);
  });

  it('epochs on part of the Brown corpus: each epoch timed on one device and on two', async () => {
    const seen: string[] = [];
    const es = await runEpochBench({
      model: 'tiny-gpt2', devices: ['cpu:0', 'cpu:1'], dtype: 'f32', batch: 8, seq: 32, epochs: 2, brownFiles: ['ca01'], onEpoch: (n, e) => seen.push(`${n}:${e}`),
    });
    expect(seen).toEqual(['1:0', '1:1', '2:0', '2:1']);
    expect(es.map((e) => e.devices.length)).toEqual([1, 2]);
    for (const e of es) {
      expect(e.seconds).toHaveLength(2);
      expect(e.spread.min).toBeLessThanOrEqual(e.spread.max);
    }
    // dp with the same per-device batch: an epoch is the same tokens in half the steps
    expect(es[1]!.tokensPerEpoch).toBeGreaterThan(0.9 * es[0]!.tokensPerEpoch);
    const dir = tmp();
    const files = writeTrainCharts(dir, { model: 'tiny-gpt2', dtype: 'f32', batch: 8, seq: 32, scaling: 'weak' }, [], es);
    expect(files.map((f) => path.basename(f))).toEqual(['train-epochs.svg']);
    const svg = readFileSync(files[0]!, 'utf8');
    expect(svg).toMatch(/2 devices, epoch 2/);
    expectInside(svg);
  });
});

describe('bench train --profile', () => {
  it('times every op group of a step: each layer\'s groups once per layer, shares summing to one', async () => {
    const { runTrainBench } = await import('../../src/bench/train.js');
    const [r] = await runTrainBench({ model: 'tiny-llama', device: 'cpu:0', dtype: 'f32', shapes: [[2, 8]], steps: 1, profile: true });
    const p = new Map(r!.profile!.map((g) => [g.name, g]));
    const layers = 6; // tiny-llama
    for (const name of ['fwd qkv matmul', 'fwd rope', 'fwd attention', 'fwd activation', 'bwd attention', 'bwd rope', 'bwd qkv dW', 'bwd down dX'])
      expect(p.get(name)?.count, name).toBe(layers);
    expect(p.get('fwd norm')!.count).toBe(2 * layers + 1);
    for (const name of ['zero grad', 'fwd embed', 'fwd head matmul', 'classifier (cross-entropy)', 'bwd head matmul', 'bwd embed', 'grad norm', 'adamw'])
      expect(p.get(name)?.count, name).toBe(1);
    expect(r!.profile!.reduce((s, g) => s + g.share, 0)).toBeCloseTo(1, 6);
    for (const g of r!.profile!) expect(g.msPerStep).toBeGreaterThanOrEqual(0);
  });
});

describe('bench train: the timed steps as one graph each', () => {
  it('op by op on a CPU device by default; as graphs (PARALLM_TRAIN_GRAPH=1) with the same losses', async () => {
    const { runTrainBench } = await import('../../src/bench/train.js');
    const o = { model: 'tiny-gpt2', device: 'cpu:0', dtype: 'f32' as const, shapes: [[2, 8]] as [number, number][], steps: 3 };
    const [eager] = await runTrainBench(o);
    process.env.PARALLM_TRAIN_GRAPH = '1';
    try {
      const [graph] = await runTrainBench(o);
      expect(eager!.graph).toBe(false);
      expect(graph!.graph).toBe(true);
      expect([graph!.lossFirst, graph!.lossLast]).toEqual([eager!.lossFirst, eager!.lossLast]);
    } finally {
      delete process.env.PARALLM_TRAIN_GRAPH;
    }
  });
});
