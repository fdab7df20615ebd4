#!/usr/bin/env node
// The kernel timeline of a PARALLM_TRACE build (native/cuda/trace.cuh), one decode step of it: the CSV the addon
// writes to $PARALLM_TRACE_OUT (a row a block: tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end, ns) grouped into
// launches, ordered by their first block's start, and the last complete step printed launch by launch, then per
// kernel family. Usage:
//   node bench/trace-report.mjs trace.csv [--from I --to J] [--mean] [--split-gap US] [--csv FILE]
// --from/--to: a range of launch indexes (as printed) instead of the last complete step. A step runs from an
// embedding launch to the sampling launches (argmax / sample) before the next embedding; without embeddings (a
// pipeline stage after the first), from after one sampling group to the end of the next.
// --mean: each number the mean over every complete step with the same launches as the one chosen (%globaltimer may
// tick coarsely: the report prints its step when >= 0.5 µs).
// --csv FILE: the blocks of the launches printed, as a trace CSV of their own (a whole trace can be hundreds of MB).
//
// A launch is the blocks of one %gridid (and .cu file and tag). gridid numbers launches in a CUDA context, graph
// replays included; should one ever come back, its blocks are split where one begins more than --split-gap µs
// (default 50, far below a step and above any gap between a launch's own blocks) after the latest end so far,
// and the report says how many were split.
//
// Columns, µs from the step's first start: start (first block's start), wait (first / last block's PDL wait done:
// griddepcontrol.wait returned; '-' where no block waited), end (last block's end), dur (end - start), gap (start -
// the previous launch's end; negative: they overlap, as PDL allows), ramp (last block's start - first's), tail (last
// block's end - first block's end), blocks and the SMs they ran on.
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const SAMPLING = new Set(['argmax', 'sample']);

// A parser of the CSV's lines after the header `head`: a row -> { tu, gridid, tag, tagName, smid, tBegin, tWait
// (null: no wait), tEnd } (ns numbers).
function rowParser(head) {
  const names = head.split(',').map((x) => x.trim());
  const want = ['tu', 'gridid', 'tag', 'tag_name', 'smid', 't_begin', 't_wait', 't_end'];
  const col = Object.fromEntries(want.map((w) => [w, names.indexOf(w)]));
  const missing = want.filter((w) => col[w] < 0);
  if (missing.length) throw new Error(`trace header lacks ${missing.join(', ')}: ${head}`);
  return (line) => {
    const f = line.split(',');
    const num = (k) => {
      const v = Number(f[col[k]]);
      if (!Number.isFinite(v)) throw new Error(`${k} is not a number: ${line}`);
      return v;
    };
    const wait = (f[col.t_wait] ?? '').trim();
    return {
      tu: f[col.tu],
      gridid: f[col.gridid], // 64-bit: kept as text
      tag: num('tag'),
      tagName: f[col.tag_name],
      smid: num('smid'),
      tBegin: num('t_begin'),
      tWait: wait === '' ? null : Number(wait),
      tEnd: num('t_end'),
    };
  };
}

/** The block records of a trace's text. */
export function parseTrace(text) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (!lines.length) throw new Error('empty trace');
  const parse = rowParser(lines[0]);
  return lines.slice(1).map(parse);
}

/** The block records of a trace file, read a piece at a time (a trace can be too long for one string). */
export function parseTraceFile(file) {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(1 << 24);
  const records = [];
  let parse = null;
  let rest = '';
  const take = (line) => {
    if (line.trim() === '') return;
    if (!parse) parse = rowParser(line);
    else records.push(parse(line));
  };
  try {
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) {
      const lines = (rest + buf.toString('latin1', 0, n)).split(/\r?\n/);
      rest = lines.pop();
      lines.forEach(take);
    }
    take(rest);
  } finally {
    closeSync(fd);
  }
  if (!parse) throw new Error(`${file}: empty trace`);
  return records;
}

/**
 * Launches from block records, ordered by start: { key, tu, gridid, tag, blocks, sms, start, end, waitFirst,
 * waitLast (null: no block waited), lastStart, firstEnd, records (its blocks) }. Also returns how many gridids held more than one launch.
 */
export function groupLaunches(records, { splitGapNs = 50_000 } = {}) {
  const byKey = new Map();
  for (const r of records) {
    const key = `${r.tu}|${r.gridid}|${r.tagName}`;
    let list = byKey.get(key);
    if (!list) byKey.set(key, (list = []));
    list.push(r);
  }
  const launches = [];
  let reused = 0;
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.tBegin - b.tBegin);
    let cur = null;
    let parts = 0;
    for (const r of list) {
      if (!cur || r.tBegin > cur.end + splitGapNs) {
        cur = { key, tu: r.tu, gridid: r.gridid, tag: r.tagName, blocks: 0, smSet: new Set(), start: r.tBegin, end: r.tEnd,
                waitFirst: null, waitLast: null, lastStart: r.tBegin, firstEnd: r.tEnd, records: [] };
        launches.push(cur);
        parts++;
      }
      cur.blocks++;
      cur.records.push(r);
      cur.smSet.add(r.smid);
      cur.end = Math.max(cur.end, r.tEnd);
      cur.firstEnd = Math.min(cur.firstEnd, r.tEnd);
      cur.lastStart = Math.max(cur.lastStart, r.tBegin);
      if (r.tWait !== null) {
        cur.waitFirst = cur.waitFirst === null ? r.tWait : Math.min(cur.waitFirst, r.tWait);
        cur.waitLast = cur.waitLast === null ? r.tWait : Math.max(cur.waitLast, r.tWait);
      }
    }
    if (parts > 1) reused++;
  }
  for (const l of launches) {
    l.sms = l.smSet.size;
    delete l.smSet;
  }
  launches.sort((a, b) => a.start - b.start || a.end - b.end);
  return { launches, reused };
}

/** The complete steps' [from, to] launch indexes (inclusive), oldest first (see the top). */
export function findSteps(launches) {
  const emb = launches.flatMap((l, i) => (l.tag === 'embedding' ? [i] : []));
  const steps = [];
  if (emb.length) {
    for (let k = 0; k < emb.length; k++) {
      const from = emb[k];
      const next = k + 1 < emb.length ? emb[k + 1] : launches.length;
      // the step ends with its last sampling launch before the next embedding; without one it is not complete
      let to = -1;
      for (let i = next - 1; i > from; i--) if (SAMPLING.has(launches[i].tag)) { to = i; break; }
      if (to >= 0) steps.push([from, k + 1 < emb.length ? next - 1 : to]);
    }
    return steps;
  }
  // Sampling groups (adjacent sampling launches, e.g. argmax's chunks then its merge) as the delimiters.
  const ends = [];
  launches.forEach((l, i) => {
    if (!SAMPLING.has(l.tag)) return;
    if (ends.length && ends[ends.length - 1] === i - 1) ends[ends.length - 1] = i;
    else ends.push(i);
  });
  for (let k = 1; k < ends.length; k++) steps.push([ends[k - 1] + 1, ends[k]]);
  return steps;
}

/** Launches from..to (inclusive) as rows (ns, relative to the first start) and the per-tag and step totals. */
export function stepReport(launches, from, to) {
  if (!(from >= 0 && to < launches.length && from <= to)) throw new Error(`launch range ${from}..${to} is outside 0..${launches.length - 1}`);
  const step = launches.slice(from, to + 1);
  const t0 = step[0].start;
  const rel = (t) => (t === null ? null : t - t0);
  const rows = step.map((l, k) => ({
    index: from + k,
    tag: l.tag,
    blocks: l.blocks,
    sms: l.sms,
    start: rel(l.start),
    waitFirst: rel(l.waitFirst),
    waitLast: rel(l.waitLast),
    end: rel(l.end),
    dur: l.end - l.start,
    gap: k === 0 ? null : l.start - step[k - 1].end,
    ramp: l.lastStart - l.start,
    tail: l.end - l.firstEnd,
  }));
  const perTag = new Map();
  for (const r of rows) {
    const t = perTag.get(r.tag) ?? { tag: r.tag, count: 0, busy: 0, gaps: 0 };
    t.count++;
    t.busy += r.dur;
    t.gaps += r.gap ?? 0;
    perTag.set(r.tag, t);
  }
  const end = Math.max(...step.map((l) => l.end));
  // time covered by at least one launch: the rest of the span had no block of a traced kernel running
  let covered = 0;
  let upTo = -Infinity;
  for (const l of step) {
    const a = Math.max(l.start, upTo);
    if (l.end > a) covered += l.end - a;
    upTo = Math.max(upTo, l.end);
  }
  const gaps = rows.filter((r) => r.gap !== null).map((r) => r.gap);
  return {
    from,
    to,
    rows,
    perTag: [...perTag.values()].sort((a, b) => b.busy - a.busy),
    span: end - t0,
    covered,
    gapSum: gaps.reduce((s, g) => s + g, 0),
    idleGaps: gaps.filter((g) => g > 0).reduce((s, g) => s + g, 0),
    overlaps: gaps.filter((g) => g < 0).reduce((s, g) => s + g, 0),
    gapBefore: from > 0 ? launches[from].start - launches[from - 1].end : null,
  };
}

/**
 * The mean of several stepReports of steps with the same launches (tags in the same order): a timer that ticks
 * coarsely (%globaltimer's may tick in ~1 µs) is read at a different phase each step, so the means resolve what
 * one step cannot. Indexes and gapBefore are the last step's.
 */
export function meanReport(reps) {
  const last = reps[reps.length - 1];
  const mean = (get) => {
    const v = reps.map(get).filter((x) => x !== null && x !== undefined);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  const fields = ['blocks', 'sms', 'start', 'waitFirst', 'waitLast', 'end', 'dur', 'gap', 'ramp', 'tail'];
  const rows = last.rows.map((r, k) => ({ ...r, ...Object.fromEntries(fields.map((f) => [f, mean((p) => p.rows[k][f])])) }));
  const perTag = last.perTag.map((t) => ({
    tag: t.tag,
    count: t.count,
    busy: mean((p) => p.perTag.find((x) => x.tag === t.tag).busy),
    gaps: mean((p) => p.perTag.find((x) => x.tag === t.tag).gaps),
  }));
  const totals = Object.fromEntries(['span', 'covered', 'gapSum', 'idleGaps', 'overlaps'].map((f) => [f, mean((p) => p[f])]));
  return { ...last, rows, perTag, ...totals, steps: reps.length };
}

/** The block records of launches from..to as a trace CSV of their own (the input's times). */
export function stepCsv(launches, from, to) {
  const recs = launches.slice(from, to + 1).flatMap((l) => l.records).sort((a, b) => a.tBegin - b.tBegin);
  const rows = recs.map((r) => [r.tu, r.gridid, r.tag, r.tagName, r.smid, r.tBegin, r.tWait ?? '', r.tEnd].join(','));
  return ['tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end', ...rows, ''].join('\n');
}

/** The smallest positive step between the trace's timestamps (the timer's tick, or near it). */
export function timerStep(records) {
  const ts = new Float64Array(records.length * 2);
  records.forEach((r, i) => ((ts[2 * i] = r.tBegin), (ts[2 * i + 1] = r.tEnd)));
  ts.sort();
  let step = Infinity;
  for (let i = 1; i < ts.length; i++) if (ts[i] > ts[i - 1]) step = Math.min(step, ts[i] - ts[i - 1]);
  return step;
}

const us = (ns) => (ns === null || ns === undefined ? '-' : (ns / 1e3).toFixed(2));
const count = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(1));

// A header and rows as columns, the text column `left` aligned left, the others right.
function aligned(head, rows, left) {
  const width = head.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === left ? c.padEnd(width[i]) : c.padStart(width[i]))).join('  ');
  return [line(head), ...rows.map(line)];
}

export function formatReport(rep, { launches, reused, steps, timer }) {
  const out = [];
  const spans = steps.map(([a, b]) => Math.max(...launches.slice(a, b + 1).map((l) => l.end)) - launches[a].start).sort((x, y) => x - y);
  out.push(`${launches.length} launches; ${steps.length} complete steps` +
    (spans.length ? ` (span median ${us(spans[spans.length >> 1])} µs, min ${us(spans[0])}, max ${us(spans[spans.length - 1])})` : '') +
    `; launches ${rep.from}..${rep.to} below`);
  if (rep.steps > 1) out.push(`means over the ${rep.steps} complete steps with these launches (the same kernels in the same order)`);
  if (reused) out.push(`note: ${reused} gridids held more than one launch (split by time: --split-gap)`);
  if (timer >= 500) out.push(`note: the timestamps step by >= ${timer} ns (%globaltimer's tick here): shorter times are quantized`);
  const cols = ['index', 'tag', 'blocks', 'sms', 'start', 'wait1', 'waitN', 'end', 'dur', 'gap', 'ramp', 'tail'];
  const table = rep.rows.map((r) => [r.index, r.tag, count(r.blocks), count(r.sms), us(r.start), us(r.waitFirst), us(r.waitLast), us(r.end),
    us(r.dur), us(r.gap), us(r.ramp), us(r.tail)].map(String));
  out.push('', `times in µs from the step's first start; gap: from the previous launch's end (negative: overlap)`);
  out.push(...aligned(cols, table, 1));
  const tags = rep.perTag.map((t) => [t.tag, String(t.count), us(t.busy), us(t.busy / t.count), us(t.gaps)]);
  out.push('', ...aligned(['tag', 'count', 'busy', 'mean', 'gaps'], tags, 0));
  out.push('', `step span ${us(rep.span)} µs: launches cover ${us(rep.covered)} (none running ${us(rep.span - rep.covered)}); ` +
    `gaps sum ${us(rep.gapSum)} (idle ${us(rep.idleGaps)}, overlap ${us(rep.overlaps)})` +
    (rep.gapBefore !== null ? `; ${us(rep.gapBefore)} from the launch before the step` : ''));
  return out.join('\n');
}

function main(argv) {
  const args = { file: null, from: null, to: null, splitGapUs: 50, mean: false, csv: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v)) throw new Error(`${a} needs a number`);
      return v;
    };
    if (a === '--from') args.from = val();
    else if (a === '--to') args.to = val();
    else if (a === '--split-gap') args.splitGapUs = val();
    else if (a === '--mean') args.mean = true;
    else if (a === '--csv') args.csv = argv[++i];
    else if (!args.file && !a.startsWith('--')) args.file = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.file) throw new Error('usage: node bench/trace-report.mjs trace.csv [--from I --to J] [--mean] [--split-gap US] [--csv FILE]');
  const records = parseTraceFile(args.file);
  if (!records.length) throw new Error(`${args.file}: no block records`);
  const { launches, reused } = groupLaunches(records, { splitGapNs: args.splitGapUs * 1e3 });
  const steps = findSteps(launches);
  let from = args.from, to = args.to;
  if (from === null || to === null) {
    if (!steps.length) throw new Error('no complete step found (embedding ... argmax / sample): pass --from and --to');
    [from, to] = steps[steps.length - 1];
    if (args.from !== null) from = args.from;
    if (args.to !== null) to = args.to;
  }
  let rep = stepReport(launches, from, to);
  if (args.mean) {
    const sig = (a, b) => launches.slice(a, b + 1).map((l) => l.tag).join(',');
    const want = sig(from, to);
    rep = meanReport(steps.filter(([a, b]) => sig(a, b) === want && a !== from).map(([a, b]) => stepReport(launches, a, b)).concat([rep]));
  }
  console.log(formatReport(rep, { launches, reused, steps, timer: timerStep(records) }));
  if (args.csv) writeFileSync(args.csv, stepCsv(launches, rep.from, rep.to));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(`trace-report: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
