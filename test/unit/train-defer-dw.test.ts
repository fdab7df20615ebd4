// TrainStage with deferWeightGrads: the linear layers' weight gradients held back by backward and added
// by flushWeightGrads in one matmul over every held micro-batch. Held to the same stages without
// deferral on the same micro-batches: losses and input gradients bit for bit (deferral changes no op
// they depend on), parameter gradients within f32 reduction order (one matmul over K = all the tokens
// adds in another order than one matmul per micro-batch). The gradients start from the same random
// values in both runs, so an overwrite instead of an accumulation shows.
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/io/config.js';
import * as ops from '../../src/ops.js';
import { initParams } from '../../src/train/init.js';
import type { FlatParams } from '../../src/train/params.js';
import { TrainStage, type MicroBatch } from '../../src/train/stage.js';
import { relError } from '../helpers/reference.js';
import { randomBatch, rng, smallGpt2, smallLlama, widen } from '../helpers/train.js';

const newSeed = () => Math.floor(Math.random() * 1e6);
// a vocabulary that is a multiple of 64: the head unpadded (the others pad it to 64 rows)
const llama64: ModelConfig = { ...smallLlama, vocabSize: 64 };

function gradsByKey(p: FlatParams): Map<string, Float32Array> {
  const g = p.grad.toArray() as Float32Array;
  return new Map(p.layout.map((e) => [e.key, g.slice(e.offset, e.offset + e.numel)]));
}

interface Run {
  losses: number[];
  dIns: Float32Array[];
  grads: Map<string, Float32Array>[];
  ready: string[][];
  held: number;
}

/**
 * The model cut in two stages (embed + layer 0 | layer 1 + head), every micro-batch forward then
 * backward (1F1B's order on one device), then flushWeightGrads on both when deferring.
 */
function run(cfg: ModelConfig, mbs: MicroBatch[], seed: number, defer: boolean): Run {
  const src = { cfg, folder: null, name: 'test' };
  const ps = [
    initParams(src, { device: 'cpu:0', seed, stage: { start: 0, end: 1, embed: true, head: false } }),
    initParams(src, { device: 'cpu:0', seed, stage: { start: 1, end: 2, embed: false, head: true } }),
  ];
  const stages = ps.map((p, i) => {
    widen(p, seed + i);
    ops.fillUniform(p.grad, { seed: seed + 7 + i, low: -0.5, high: 0.5 }); // a gradient from earlier micro-steps
    return new TrainStage(p, { deferWeightGrads: defer });
  });
  const ready = stages.map((s) => {
    const r: string[] = [];
    s.onGradsReady = (what) => r.push(String(what));
    return r;
  });
  const count = mbs.reduce((t, mb) => t + mb.batch * mb.seq, 0);
  const out: Run = { losses: [], dIns: [], grads: [], ready, held: 0 };
  mbs.forEach((mb, i) => {
    const h = stages[0]!.forward(i, mb, undefined, { dscale: 1 / count }).out!;
    out.losses.push(stages[1]!.forward(i, mb, h, { dscale: 1 / count }).lossSum!);
    h.dispose();
    const dIn = stages[1]!.backward(i)!;
    out.dIns.push(dIn.toArray() as Float32Array);
    expect(stages[0]!.backward(i, dIn)).toBeNull();
    dIn.dispose();
  });
  out.held = stages.reduce((t, s) => t + s.deferredBytes().now, 0);
  for (const s of stages) s.flushWeightGrads();
  for (const s of stages) expect(s.deferredBytes().now).toBe(0);
  out.grads = ps.map(gradsByKey);
  stages.forEach((s) => s.dispose());
  ps.forEach((p) => p.dispose());
  return out;
}

/** micro-batches of random sizes (rows 1-3, 3-16 tokens), some targets padding */
function batches(cfg: ModelConfig, n: number, seed: number): MicroBatch[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => randomBatch(cfg.vocabSize, 1 + Math.floor(r() * 3), 3 + Math.floor(r() * 14), seed + 100 * i, i % 2));
}

describe('TrainStage deferWeightGrads = the per-micro-batch weight gradients', () => {
  for (const cfg of [smallGpt2, smallLlama, llama64])
    for (const n of [1, 2, 3, 4])
      it(`${cfg.family} (vocabulary ${cfg.vocabSize}), ${n} micro-batch${n > 1 ? 'es' : ''}`, () => {
        const seed = newSeed();
        const mbs = batches(cfg, n, seed);
        const want = run(cfg, mbs, seed, false);
        const got = run(cfg, mbs, seed, true);
        expect(want.held).toBe(0);
        // what is held: per layer dy and x of qkv, out, up, down; the head's dlogits and normF output
        const tokens = mbs.reduce((t, mb) => t + mb.batch * mb.seq, 0);
        const { hidden: C, heads, kvHeads, headDim: D, intermediate: F } = cfg;
        const perLayer = (heads + 2 * kvHeads) * D + C + C + C + (cfg.family === 'gpt2' ? F : 2 * F) + C + C + F;
        const Vp = Math.ceil(cfg.vocabSize / 64) * 64;
        expect(got.held).toBe(4 * tokens * (2 * perLayer + Vp + C));
        expect(got.losses, `seed ${seed}`).toEqual(want.losses); // bit for bit
        got.dIns.forEach((d, i) => expect(Buffer.from(d.buffer).equals(Buffer.from(want.dIns[i]!.buffer)), `input gradient ${i} (seed ${seed})`).toBe(true));
        for (const s of [0, 1])
          for (const [key, w] of want.grads[s]!) {
            const g = got.grads[s]!.get(key)!;
            // f32 sums of up to ~100 products in another order: relative 1e-6 of the gradient's size
            expect(relError(g, w), `stage ${s} ${key} (seed ${seed})`).toBeLessThan(1e-6);
            const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
            for (let j = 0; j < w.length; j++) if (Math.abs(g[j]! - w[j]!) > 1e-6 * scale + 1e-7) expect.fail(`stage ${s} ${key}[${j}]: ${g[j]} vs ${w[j]} (seed ${seed})`);
          }
        // each group reported complete once, after the flush, in the order one backward reports it
        const once = want.ready.map((r) => r.slice(0, r.length / n));
        expect(got.ready).toEqual(once);
      });
});

describe('TrainStage deferWeightGrads bookkeeping', () => {
  it('clear() drops what is held; flushing with nothing held adds nothing; it cannot be turned off while holding', () => {
    const cfg = smallLlama;
    const seed = newSeed();
    const p = initParams({ cfg, folder: null, name: 'test' }, { device: 'cpu:0', seed });
    const s = new TrainStage(p, { deferWeightGrads: true });
    p.zeroGrad();
    const mb = randomBatch(cfg.vocabSize, 2, 8, seed);
    s.forward(0, mb, undefined, {});
    s.backward(0);
    expect(s.deferredBytes().now).toBeGreaterThan(0);
    expect(() => (s.deferWeightGrads = false)).toThrow(/flushWeightGrads/);
    s.clear();
    expect(s.deferredBytes().now).toBe(0);
    expect(s.deferredBytes(true).peak).toBeGreaterThan(0);
    const g0 = p.grad.toArray() as Float32Array;
    s.flushWeightGrads();
    expect(p.grad.toArray()).toEqual(g0);
    s.deferWeightGrads = false;
    s.dispose();
    p.dispose();
  });
});
