#!/usr/bin/env node
// A GEMV's time as W bytes / streaming rate + a fixed cost a call, fitted for each kernel variant of a
// `parallm bench kernels --json` file from two of its batch-1 shapes with the same K (by default
// 1x11008x4096 and 1x22016x4096: one W twice the other), with the copy rate of the same call beside it.
// bench/RESULTS.md (fourth session) has the first fits. Usage: node bench/gemv-fit.mjs kernels.json [a b]
import { readFileSync } from 'node:fs';

const [file, a = '1x11008x4096', b = '1x22016x4096'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/gemv-fit.mjs kernels.json [shapeA shapeB]  (shapes as 1xNxK)');
  process.exit(2);
}
const doc = JSON.parse(readFileSync(file, 'utf8'));
const rows = Array.isArray(doc) ? doc : doc.results;
if (!Array.isArray(rows)) throw new Error(`${file}: no results array (a bench kernels --json file?)`);
const bytesOf = (shape) => {
  const m = /^(\d+)x(\d+)x(\d+)/.exec(shape);
  if (!m) throw new Error(`bad shape ${shape}`);
  return Number(m[2]) * Number(m[3]) * 2; // bf16 weights
};
const names = [...new Set(rows.filter((r) => r.name.startsWith('gemv')).map((r) => r.name))];
const copy = rows.find((r) => r.name === 'copy');
console.log(`fit over ${a} and ${b}${copy ? `; device copy ${copy.gbps.toFixed(0)} GB/s (read + write)` : ''}`);
for (const name of names) {
  const ra = rows.find((r) => r.name === name && r.shape.startsWith(`${a} `));
  const rb = rows.find((r) => r.name === name && r.shape.startsWith(`${b} `));
  if (!ra || !rb) continue;
  const [ba, bb] = [bytesOf(a), bytesOf(b)];
  const rate = (bb - ba) / ((rb.ms - ra.ms) / 1e3); // bytes a second
  const fixedUs = (ra.ms / 1e3 - ba / rate) * 1e6;
  console.log(`  ${name.padEnd(14)} streams at ${(rate / 1e12).toFixed(2)} TB/s, ${fixedUs.toFixed(1)} µs fixed a call`);
}
