// Checkpoints parallm writes, for transformers' from_pretrained to load (bench/peers/hf_load_check.py):
// a GPT-2 trained a few steps by `parallm train` on Brown files, and a LLaMA preset with grouped-query
// heads saved from its training parameters. Beside each folder, parallm's own logits (f32, CPU) for a
// prompt, which the peer compares against. Usage: node bench/probes/hf-roundtrip.mjs <out folder>
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Model, Tensor, ops } from '../../dist/index.js';
import { saveCheckpoint } from '../../dist/train/checkpoint.js';
import { initParams, resolveModel } from '../../dist/train/init.js';

const out = path.resolve(process.argv[2] ?? 'hf-roundtrip');
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
mkdirSync(out, { recursive: true });
const cli = path.join(root, 'dist/cli/index.js');
execFileSync(process.execPath, [cli, 'train', '--model', 'tiny-gpt2', '--data', 'brown', '--brown-files', 'ca01,ca02,ca03', '--device', 'cpu:0',
  '--steps', '12', '--batch', '4', '--seq', '64', '--lr', '1e-3', '--save', path.join(out, 'gpt2')], { stdio: 'inherit' });
const p = initParams(resolveModel('tiny-llama'), { device: 'cpu:0', seed: 3 });
saveCheckpoint(path.join(out, 'llama'), p, { step: 0, loader: { epoch: 0, index: 0 }, losses: [], run: { batch: 1, seq: 1, gradAccum: 1, dataHash: '', dtype: 'f32', dataSeed: 0 } });
p.dispose();
const prompt = [5, 17, 101, 3, 250, 42, 7, 9];
for (const name of ['gpt2', 'llama']) {
  const m = Model.load(path.join(out, name), { device: 'cpu:0', dtype: 'f32' });
  const ids = Tensor.from(prompt, [prompt.length], { dtype: 'i32', device: 'cpu:0' });
  const pos = Tensor.from(prompt.map((_, i) => i), [prompt.length], { dtype: 'i32', device: 'cpu:0' });
  const x = m.transformer.embed(ids, pos);
  const cache = new (await import('../../dist/models/transformer.js')).KvCache(m.config, 1, prompt.length, 'cpu:0', 'f32');
  const zeros = Tensor.zeros([1], { dtype: 'i32', device: 'cpu:0' });
  m.transformer.prefillLayers(x, cache, pos, zeros, 1, prompt.length);
  const logits = m.transformer.logits(x);
  writeFileSync(path.join(out, `${name}-logits.json`), JSON.stringify({ prompt, vocab: m.config.vocabSize, logits: Array.from(logits.toArray()) }));
  for (const t of [ids, pos, x, zeros, logits]) t.dispose();
  cache.dispose();
  m.dispose();
}
console.log(`wrote ${out}/{gpt2,llama} and their logits`);
