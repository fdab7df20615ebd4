// A short run on a few Brown files (the data pipeline of src/data/ end to end, GPT-2 BPE): the validation
// loss falls well below its start. A one-layer GPT-2 shape keeps it a few seconds on two cores; the
// 50257-word classifier dominates the cost.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import type { ModelConfig } from '../../src/io/config.js';
import { Trainer } from '../../src/train/trainer.js';

const cfg: ModelConfig = {
  family: 'gpt2', vocabSize: 50257, hidden: 32, layers: 1, heads: 2, kvHeads: 2, headDim: 16, intermediate: 128,
  maxPositions: 64, normEps: 1e-5, ropeTheta: 0, tieEmbeddings: true, bosTokenId: 50256, eosTokenIds: [50256],
};

it('30 steps on six Brown files lower the validation loss well below its start', async () => {
  const t = await Trainer.create({
    model: cfg, data: 'brown', brownFiles: ['ca01', 'ca02', 'ca03', 'ca04', 'ca05', 'ca06'],
    dataCache: mkdtempSync(path.join(os.tmpdir(), 'parallm-brown-')),
    device: 'cpu:0', batch: 8, seq: 32, steps: 30, lr: 1e-2, warmup: 3, evalBatches: 8, seed: 1,
  });
  const start = t.evaluate();
  const r = await t.run();
  t.dispose();
  const end = r.valLosses[r.valLosses.length - 1]!.valLoss;
  console.log(`brown: validation loss ${start.toFixed(3)} -> ${end.toFixed(3)}, train ${r.losses[0]!.toFixed(3)} -> ${r.losses[29]!.toFixed(3)}`);
  // The random init is near uniform (ln 50257 = 10.82); unigram and common-bigram statistics alone take it
  // below 8 (measured: 10.82 -> 7.8).
  expect(start).toBeGreaterThan(10.5);
  expect(end, `validation loss ${start.toFixed(3)} -> ${end.toFixed(3)}`).toBeLessThan(start - 2.5);
  expect(r.losses[29]!).toBeLessThan(r.losses[0]! - 2.5);
  expect(r.tokensPerSec).toBeGreaterThan(0);
});
