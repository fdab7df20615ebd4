// Whole-model gradients of TrainStage (src/train/stage.ts) against central differences of the mean loss,
// for GPT-2 (LayerNorm, GELU, biases, learned positions, tied embeddings) and LLaMA (RMSNorm, RoPE,
// SwiGLU, GQA, untied head), with padded targets; float32 on the CPU, a few random parameters per tensor.
import { describe, expect, it } from 'vitest';
import { initParams } from '../../src/train/init.js';
import { TrainStage, type MicroBatch } from '../../src/train/stage.js';
import { randomBatch, rng, smallGpt2, smallLlama, widen } from '../helpers/train.js';

const newSeed = () => Math.floor(Math.random() * 1e6);

describe('whole-model gradients match finite differences', () => {
  for (const cfg of [smallGpt2, smallLlama])
    it(`${cfg.family}`, () => {
      const seed = newSeed();
      const p = initParams({ cfg, folder: null, name: 'test' }, { device: 'cpu:0', seed });
      widen(p, seed);
      const st = new TrainStage(p);
      const mb: MicroBatch = randomBatch(cfg.vocabSize, 2, 7, seed, 2);
      const loss = () => {
        const r = st.forward(0, mb, undefined, { dscale: false });
        return r.lossSum! / r.count!;
      };
      p.zeroGrad();
      const r = st.forward(0, mb);
      expect(r.count).toBe(2 * 7 - 2);
      st.backward(0);
      const grad = p.grad.toArray();
      const master = p.hostMaster();
      const pick = rng(seed);
      const h = 1e-2;
      // The differences' own rounding: each f32 loss is off by a few ulps, divided by 2h. A gradient that is truly
      // zero (the key bias, which softmax cancels) shows only that: CI saw 1e-5 a parameter (seed 364108), over the
      // 1e-5 this bound allowed in all (about one ulp of the loss). Four ulps a parameter, over the four picked.
      const l0 = loss();
      const noise = (4 * 2 ** (Math.floor(Math.log2(Math.abs(l0))) - 23)) / (2 * h);
      for (const e of p.layout) {
        const an: number[] = [];
        const fd: number[] = [];
        for (let j = 0; j < 4; j++) {
          let i = e.offset + Math.floor(pick() * e.numel);
          if (e.key === 'embed' || e.key === 'head') i = e.offset + mb.inputs[j]! * cfg.hidden + (j % cfg.hidden); // rows that are used
          if (e.key === 'positions') i = e.offset + (j % 7) * cfg.hidden + j;
          const cell = p.master.view(i, [1]);
          cell.write([master[i]! + h]);
          const lp = loss();
          cell.write([master[i]! - h]);
          const lm = loss();
          cell.write([master[i]!]);
          cell.dispose();
          an.push(grad[i]!);
          fd.push((lp - lm) / (2 * h));
        }
        const err = Math.sqrt(an.reduce((s, g, j) => s + (g - fd[j]!) ** 2, 0));
        const scale = Math.sqrt(fd.reduce((s, g) => s + g * g, 0));
        expect(err, `${e.key} (seed ${seed}): analytic ${an.map((x) => x.toExponential(3))} vs fd ${fd.map((x) => x.toExponential(3))}`).toBeLessThanOrEqual(2e-2 * scale + 2 * noise);
      }
      p.dispose();
    });
});
