#!/usr/bin/env node
// Data-parallel training across processes against threads (issue 16's floor: 2 processes with one GPU
// each reach >= 0.97x the throughput of one process driving both). The same `parallm train --strategy
// dp` run both ways, alternating (threads, processes, threads, processes), GPT-2 124M on the Brown
// corpus, bf16, 128 sequences of 128 tokens per GPU; each run's step time is the median of its steps
// after the first 5 (start-up and warm-up left out). Prints one line per run and the ratio.
//   node bench/dp-procs.mjs [--steps 30] [--rounds 2] [--devices cuda:0,cuda:1] [--json out.json] [-- more train options]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const steps = Number(arg('--steps', '30'));
const rounds = Number(arg('--rounds', '2'));
const devices = arg('--devices', 'cuda:0,cuda:1').split(',');
const kind = devices[0].split(':')[0];
const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'index.js');
const cache = mkdtempSync(path.join(os.tmpdir(), 'parallm-dp-procs-'));
const train = ['train', '--model', arg('--model', 'gpt2'), '--data', 'brown', '--data-cache', cache, '--batch', arg('--batch', '128'),
  '--seq', arg('--seq', '128'), '--steps', String(steps), '--eval-batches', '1', '--json', '--strategy', 'dp',
  ...(process.argv.includes('--') ? process.argv.slice(process.argv.indexOf('--') + 1) : [])];

const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
function stepMs(stdout) {
  const ms = stdout.split('\n').filter((l) => l.startsWith('{"type":"step"')).map((l) => JSON.parse(l).stepMs);
  if (ms.length < 8) throw new Error(`only ${ms.length} step lines`);
  return median(ms.slice(5));
}

function run(how) {
  const args = how === 'threads'
    ? [cli, ...train, '--devices', devices.join(',')]
    : [cli, 'launch', '--nproc', String(devices.length), '--devices-per-proc', '1', '--device-kind', kind, '--', ...train];
  const t0 = Date.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${how} failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  // Under launch every line comes as "[rank r] ..."; rank 0's steps are the run's.
  const out = how === 'threads' ? r.stdout : r.stdout.split('\n').filter((l) => l.startsWith('[rank 0] ')).map((l) => l.slice(9)).join('\n');
  return { how, stepMs: stepMs(out), wallS: (Date.now() - t0) / 1e3 };
}

const results = [];
for (let i = 0; i < rounds; i++)
  for (const how of ['threads', 'processes']) {
    const r = run(how);
    results.push(r);
    const tokens = Number(arg('--batch', '128')) * Number(arg('--seq', '128')) * devices.length;
    console.log(`${how.padEnd(9)} round ${i + 1}: ${r.stepMs.toFixed(2)} ms/step median (${Math.round(tokens / (r.stepMs / 1e3))} tokens/s), ${r.wallS.toFixed(0)} s in all`);
  }
const best = (how) => Math.min(...results.filter((r) => r.how === how).map((r) => r.stepMs));
const ratio = best('threads') / best('processes');
console.log(`processes / threads throughput: ${ratio.toFixed(4)}x (best run of each; floor >= 0.97x)`);
const out = arg('--json');
if (out) writeFileSync(out, JSON.stringify({ devices, steps, rounds, results, ratio }, null, 2));
