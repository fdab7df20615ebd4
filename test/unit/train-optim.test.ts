// The optimizer side of training (src/train/optim.ts, params.ts): the LR schedule, the flat layout's
// decay split, AdamW with clipping over several real steps against a float64 host AdamW, and that a
// model overfits one batch.
import { describe, expect, it } from 'vitest';
import { lrAt, adamwStep, gradNorm, DEFAULT_ADAMW } from '../../src/train/optim.js';
import { initParams } from '../../src/train/init.js';
import { paramLayout } from '../../src/train/params.js';
import { TrainStage } from '../../src/train/stage.js';
import { wholeModel } from '../../src/models/weights.js';
import { adamwRef } from '../helpers/reference-grad.js';
import { relError } from '../helpers/reference.js';
import { randomBatch, smallGpt2, smallLlama } from '../helpers/train.js';

const newSeed = () => Math.floor(Math.random() * 1e6);

describe('lrAt: warmup then cosine', () => {
  const s = { lr: 1e-3, warmup: 10, total: 110, minLrFrac: 0.1 };
  it('rises linearly during warmup', () => {
    expect(lrAt(1, s)).toBeCloseTo(1e-4, 12);
    expect(lrAt(5, s)).toBeCloseTo(5e-4, 12);
    expect(lrAt(10, s)).toBeCloseTo(1e-3, 12);
  });
  it('follows the cosine to the floor', () => {
    expect(lrAt(60, s)).toBeCloseTo(1e-4 + 0.5 * 9e-4, 12); // half way: the mean of peak and floor
    expect(lrAt(35, s)).toBeCloseTo(1e-4 + 0.5 * (1 + Math.cos(Math.PI / 4)) * 9e-4, 12);
    expect(lrAt(110, s)).toBeCloseTo(1e-4, 12);
    expect(lrAt(500, s)).toBeCloseTo(1e-4, 12);
  });
  it('is non-increasing after warmup, and without warmup starts at the peak', () => {
    for (let k = 11; k < 110; k++) expect(lrAt(k + 1, s)).toBeLessThanOrEqual(lrAt(k, s));
    expect(lrAt(1, { lr: 2e-3, warmup: 0, total: 1000, minLrFrac: 0 })).toBeCloseTo(2e-3, 8);
  });
});

describe('flat parameter layout', () => {
  for (const cfg of [smallGpt2, smallLlama])
    it(`${cfg.family}: matrices and embeddings first (decayed), norms and biases after, no gaps`, () => {
      const lay = paramLayout(cfg, wholeModel(cfg));
      let off = 0, decaying = true;
      for (const e of lay) {
        expect(e.offset).toBe(off);
        off += e.numel;
        if (!e.decay) decaying = false;
        expect(e.decay, e.key).toBe(decaying);
        expect(e.shape.length, e.key).toBe(e.decay ? 2 : 1);
      }
    });
});

describe('AdamW over real steps matches a float64 host AdamW', () => {
  for (const cfg of [smallGpt2, smallLlama])
    it(`${cfg.family}, 4 steps with clipping`, () => {
      const seed = newSeed();
      const p = initParams({ cfg, folder: null, name: 'test' }, { device: 'cpu:0', seed });
      const st = new TrainStage(p);
      const h = { ...DEFAULT_ADAMW, clip: 0.05 }; // small enough that clipping acts
      let master: ArrayLike<number> = p.hostMaster();
      let m: ArrayLike<number> = new Float64Array(p.n), v: ArrayLike<number> = new Float64Array(p.n);
      let clipped = 0;
      for (let step = 1; step <= 4; step++) {
        p.zeroGrad();
        st.forward(0, randomBatch(cfg.vocabSize, 2, 8, seed + step));
        st.backward(0);
        const g = p.grad.toArray();
        let ss = 0;
        for (const x of g) ss += x * x;
        const norm = gradNorm(p);
        expect(Math.abs(norm - Math.sqrt(ss)) / Math.sqrt(ss)).toBeLessThan(1e-5);
        const lr = lrAt(step, { lr: 1e-2, warmup: 2, total: 4 });
        adamwStep(p, step, lr, h, norm);
        const gradScale = norm > h.clip ? h.clip / norm : 1;
        if (gradScale < 1) clipped++;
        ({ master, m, v } = adamwRef(master, m, v, [g], { nDecay: p.nDecay, lr, ...h, gradScale }, step));
      }
      expect(clipped).toBeGreaterThan(0);
      expect(relError(p.hostMaster(), master), `seed ${seed}`).toBeLessThan(1e-5);
      expect(relError(p.m.toArray(), m), `seed ${seed}`).toBeLessThan(1e-4);
      expect(relError(p.v.toArray(), v), `seed ${seed}`).toBeLessThan(1e-4);
      p.dispose();
    });
});

describe('overfitting one batch', () => {
  for (const cfg of [smallGpt2, smallLlama])
    it(`${cfg.family}: the loss falls far below its start`, () => {
      const seed = newSeed();
      const p = initParams({ cfg, folder: null, name: 'test' }, { device: 'cpu:0', seed });
      const st = new TrainStage(p);
      const mb = randomBatch(cfg.vocabSize, 2, 12, seed);
      const losses: number[] = [];
      for (let step = 1; step <= 60; step++) {
        p.zeroGrad();
        const r = st.forward(0, mb);
        losses.push(r.lossSum! / r.count!);
        st.backward(0);
        adamwStep(p, step, 1e-2, { ...DEFAULT_ADAMW, weightDecay: 0 });
      }
      expect(losses[0]!).toBeGreaterThan(0.9 * Math.log(cfg.vocabSize)); // about uniform at the random init
      expect(losses[59]!, `losses ${losses.map((l) => l.toFixed(2)).join(' ')}`).toBeLessThan(0.1 * losses[0]!);
      p.dispose();
    });
});
