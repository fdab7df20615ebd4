// TrainStage as a pipeline executor will use it: the model cut into two stages (embeddings + first
// layers | last layers + head), forward handed on, backward handed back. The gradients equal the whole
// model's; with tied embeddings the two stages' copies of the embedding gradient add up to the whole one.
import { describe, expect, it } from 'vitest';
import { initParams } from '../../src/train/init.js';
import { TrainStage } from '../../src/train/stage.js';
import type { FlatParams } from '../../src/train/params.js';
import { relError } from '../helpers/reference.js';
import { randomBatch, smallGpt2, smallLlama } from '../helpers/train.js';

const newSeed = () => Math.floor(Math.random() * 1e6);

function gradsByKey(p: FlatParams): Map<string, Float32Array> {
  const g = p.grad.toArray() as Float32Array;
  return new Map(p.layout.map((e) => [e.key, g.slice(e.offset, e.offset + e.numel)]));
}

describe('two pipeline stages give the whole model\'s gradients', () => {
  for (const cfg of [smallGpt2, smallLlama])
    it(`${cfg.family}: two micro-batches in flight (GPipe order)`, () => {
      const seed = newSeed();
      const src = { cfg, folder: null, name: 'test' };
      const mbs = [randomBatch(cfg.vocabSize, 2, 9, seed, 1), randomBatch(cfg.vocabSize, 1, 9, seed + 1)];
      const count = mbs[0]!.batch * 9 - 1 + 9;
      const whole = initParams(src, { device: 'cpu:0', seed });
      const w = new TrainStage(whole);
      whole.zeroGrad();
      let lossWhole = 0;
      mbs.forEach((mb, i) => {
        lossWhole += w.forward(i, mb, undefined, { dscale: 1 / count }).lossSum!;
        w.backward(i);
      });
      const a = initParams(src, { device: 'cpu:0', seed, stage: { start: 0, end: 1, embed: true, head: false } });
      const b = initParams(src, { device: 'cpu:0', seed, stage: { start: 1, end: 2, embed: false, head: true } });
      const sa = new TrainStage(a), sb = new TrainStage(b);
      a.zeroGrad();
      b.zeroGrad();
      let lossStages = 0;
      // GPipe: every forward, then every backward in reverse order
      const outs = mbs.map((mb, i) => sa.forward(i, mb, undefined, { dscale: 1 / count }).out!);
      mbs.forEach((mb, i) => (lossStages += sb.forward(i, mb, outs[i], { dscale: 1 / count }).lossSum!));
      outs.forEach((t) => t.dispose());
      expect(sa.inFlight.sort()).toEqual([0, 1]);
      for (const i of [1, 0]) {
        const dIn = sb.backward(i)!;
        expect(sa.backward(i, dIn)).toBeNull();
        dIn.dispose();
      }
      expect(sa.inFlight).toEqual([]);
      expect(lossStages).toBeCloseTo(lossWhole, 9);
      const gw = gradsByKey(whole), ga = gradsByKey(a), gb = gradsByKey(b);
      for (const [key, want] of gw) {
        let got = ga.get(key) ?? gb.get(key)!;
        if (key === 'embed' && cfg.tieEmbeddings) got = got.map((x, j) => x + gb.get('embed')![j]!); // the stages' copies, summed
        expect(got, key).toBeDefined();
        expect(relError(got, want), `${key} (seed ${seed})`).toBeLessThan(1e-5);
      }
      [whole, a, b].forEach((p) => p.dispose());
    });
});
