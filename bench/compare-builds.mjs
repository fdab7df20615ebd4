// Old build against new, from the JSON that `bench/device-run.sh compare` writes into one folder
// (<old|new>-r<round>-<case>.json): each figure's best over the rounds, the ratio new / old, and a flag
// where the new build is more than 2% worse. Usage: node bench/compare-builds.mjs <folder>
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node bench/compare-builds.mjs <folder>');
// figure name -> { old: [values], new: [values], higher: whether more is better }
const figures = new Map();
const add = (build, name, value, higher = true) => {
  if (!(value > 0)) return;
  const f = figures.get(name) ?? { old: [], new: [], higher };
  f[build].push(value);
  figures.set(name, f);
};
for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
  const m = /^(old|new)-r\d+-(.+)\.json$/.exec(file);
  if (!m) continue;
  const [, build, kind] = m;
  let doc;
  try {
    doc = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
  } catch {
    continue; // a run that failed wrote nothing usable: its figures are missing, and the table says so
  }
  for (const r of doc.results ?? []) {
    if (kind === 'kernels') add(build, `kernel ${r.name} ${r.shape} ${r.dtype} ms`, r.ms, false);
    else if (kind.startsWith('gen-')) {
      add(build, `${r.model} decode batch ${r.batch} tok/s`, r.decodeTokensPerS);
      add(build, `${r.model} prefill batch ${r.batch} tok/s`, r.prefillTokensPerS);
    } else if (!r.error) {
      const what = kind === 'prefill' ? 'prefill tok/s' : kind === 'ppdecode' ? 'decode tok/s' : 'tok/s';
      const v = kind === 'prefill' ? r.prefillTokensPerS : kind === 'ppdecode' ? r.decodeTokensPerS : r.tokensPerS;
      add(build, `${kind} ${r.strategy} x${r.devices.length} batch ${r.batch} ${what}`, v);
    }
  }
}
const best = (xs, higher) => (xs.length ? (higher ? Math.max(...xs) : Math.min(...xs)) : NaN);
const rows = [];
for (const [name, f] of figures) {
  const o = best(f.old, f.higher), n = best(f.new, f.higher);
  const ratio = f.higher ? n / o : o / n; // > 1: the new build is faster
  rows.push({ name, old: o, new: n, ratio, flag: ratio < 0.98 ? 'WORSE >2%' : '' });
}
const w = Math.max(...rows.map((r) => r.name.length));
console.log(`${'figure'.padEnd(w)}  ${'old'.padStart(10)}  ${'new'.padStart(10)}  new/old`);
for (const r of rows) console.log(`${r.name.padEnd(w)}  ${r.old.toPrecision(5).padStart(10)}  ${r.new.toPrecision(5).padStart(10)}  ${r.ratio.toFixed(3)} ${r.flag}`);
console.log(`${rows.filter((r) => r.flag).length} of ${rows.length} figures more than 2% worse`);
