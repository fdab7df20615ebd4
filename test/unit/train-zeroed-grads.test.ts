// FlatParams.takeZeroed: after zeroGrad, TrainStage stores each gradient's first sum (the weight gradients'
// matmul straight into the gradient, the biases' row sums, the padded head's rows) instead of adding it.
// Held to the same steps with the stores turned into adds (the gradient zeroed by a fill that takeZeroed
// does not see): the same gradients bit for bit, since the first add is onto zeros; and to the steps added
// onto a random gradient, less it (within f32 rounding), so neither run can overwrite what it should add to.
// Several micro-batches
// (stores, then adds), the tied GPT-2 head and embedding (the lookups add into the head's gradient, so
// they must come after its store: backward's order), deferred weight gradients, padded and unpadded heads.
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/io/config.js';
import * as ops from '../../src/ops.js';
import { initParams } from '../../src/train/init.js';
import { TrainStage } from '../../src/train/stage.js';
import { randomBatch, smallGpt2, smallLlama, widen } from '../helpers/train.js';

const newSeed = () => Math.floor(Math.random() * 1e6);
const llama64: ModelConfig = { ...smallLlama, vocabSize: 64 }; // the head unpadded

type Start = 'zeroGrad' | 'zeros' | 'random';

/** The gradients of `micro` micro-batches, less the gradient they started from. */
function grads(cfg: ModelConfig, seed: number, micro: number, defer: boolean, start: Start): Float32Array {
  const p = initParams({ cfg, folder: null, name: 'test' }, { device: 'cpu:0', seed });
  const st = new TrainStage(p, { deferWeightGrads: defer });
  try {
    widen(p, seed);
    ops.fillUniform(p.grad, { seed: seed + 1, low: -1, high: 1 }); // a previous step's gradient
    if (start === 'zeroGrad') p.zeroGrad();
    else if (start === 'zeros') ops.fillUniform(p.grad, { low: 0, high: 0 });
    const g0 = p.grad.toArray() as Float32Array;
    const mbs = Array.from({ length: micro }, (_, i) => randomBatch(cfg.vocabSize, 1 + (i % 2), 5 + 3 * i, seed + 10 * i, i % 2));
    const count = mbs.reduce((t, mb) => t + mb.batch * mb.seq, 0);
    mbs.forEach((mb, i) => {
      st.forward(i, mb, undefined, { dscale: 1 / count });
      expect(st.backward(i)).toBeNull();
    });
    st.flushWeightGrads();
    const g = p.grad.toArray() as Float32Array;
    return start === 'random' ? g.map((x, i) => x - g0[i]!) : g;
  } finally {
    st.dispose();
    p.dispose();
  }
}

describe('gradients stored after zeroGrad = gradients added onto zeros', () => {
  for (const cfg of [smallGpt2, smallLlama, llama64])
    for (const defer of [false, true])
      for (const micro of [1, 3])
        it(`${cfg.family} V${cfg.vocabSize}${defer ? ', deferred dW' : ''}, ${micro} micro-batch${micro > 1 ? 'es' : ''}`, () => {
          const seed = newSeed();
          const a = grads(cfg, seed, micro, defer, 'zeroGrad'), b = grads(cfg, seed, micro, defer, 'zeros');
          const c = grads(cfg, seed, micro, defer, 'random');
          expect(a.length).toBe(b.length);
          let differ = 0, nonzero = 0, far = 0;
          for (let i = 0; i < a.length; i++) {
            if (a[i] !== b[i]) differ++;
            if (a[i] !== 0) nonzero++;
            if (Math.abs(c[i]! - a[i]!) > 1e-6 * (1 + Math.abs(a[i]!))) far++; // the random start's ulp, 6e-8
          }
          expect(differ, `seed ${seed}`).toBe(0);
          expect(far, `seed ${seed}`).toBe(0);
          expect(nonzero).toBeGreaterThan(a.length / 2); // the gradients were computed, not left at zero
        });
});

describe('FlatParams.takeZeroed', () => {
  it('says true once per gradient view after each zeroGrad, and false before any', () => {
    const p = initParams({ cfg: smallGpt2, folder: null, name: 'test' }, { device: 'cpu:0', seed: 3 });
    try {
      const l0 = p.grads.layers[0]!;
      expect(p.takeZeroed(l0.up)).toBe(false); // no zeroGrad yet: the gradient may hold anything
      p.zeroGrad();
      expect(p.takeZeroed(l0.up)).toBe(true);
      expect(p.takeZeroed(l0.up)).toBe(false);
      expect(p.grads.head).toBe(p.grads.embed); // tied: one view, so the lookups' add clears the head's store
      expect(p.takeZeroed(p.grads.embed!)).toBe(true);
      expect(p.takeZeroed(p.grads.head!)).toBe(false);
      expect(p.takeZeroed(l0.upBias!)).toBe(true);
      const other = p.grad.view(0, [4]); // not a view of grads: never stored into
      expect(p.takeZeroed(other)).toBe(false);
      other.dispose();
      p.zeroGrad();
      expect(p.takeZeroed(l0.up)).toBe(true);
    } finally {
      p.dispose();
    }
  });
});
