// Small SVG charts with no dependencies: a bar chart (throughput by strategy, median with a min-max
// whisker) and a pipeline timeline (one row per device, one box per task) that shows the bubble. Both
// have value axes with ticks and a grid, a legend for every colour, and titles wrapped to fit.
import type { TaskTime } from '../engine/executor.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
/** Width of one character of sans-serif text, as a fraction of the font size: DejaVu Sans's widest
 * common glyphs are about 0.6 em, so text measured this way fits in any common sans-serif font. */
const CHAR_EM = 0.6;

export const textWidth = (s: string, size: number): number => s.length * size * CHAR_EM;

/** Greedy word wrap of `s` into lines at most `width` px wide at `size`; a word too long alone is cut. */
export function wrapText(s: string, width: number, size: number): string[] {
  const max = Math.max(1, Math.floor(width / (size * CHAR_EM)));
  const lines: string[] = [];
  let line = '';
  for (let w of s.split(/\s+/).filter(Boolean)) {
    while (w.length > max) {
      if (line) lines.push(line), (line = '');
      lines.push(w.slice(0, max));
      w = w.slice(max);
    }
    if (!line) line = w;
    else if (line.length + 1 + w.length <= max) line += ` ${w}`;
    else lines.push(line), (line = w);
  }
  if (line) lines.push(line);
  return lines.length ? lines : [''];
}

/** Tick values from 0 (or lo) to at least `hi`, a round step (1, 2 or 5 x 10^k) about `n` ticks apart. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  const span = Math.max(hi - lo, 1e-12);
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw)!;
  const first = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = first; v < hi + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1]! < hi) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(12)));
  return ticks;
}

/** A tick label: no more digits than the step needs; thousands as "k" on an axis reaching 10 000. */
export function tickLabel(v: number, step: number, axisMax = v): string {
  if (axisMax >= 1e4 && step >= 1000) return v === 0 ? '0' : `${Number((v / 1e3).toPrecision(6))}k`;
  const digits = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
  return v.toFixed(digits);
}

function title(lines: string[], W: number, size: number): string {
  return lines.map((l, i) => `<text x="${W / 2}" y="${22 + i * (size + 4)}" text-anchor="middle" font-size="${size}">${esc(l)}</text>`).join('\n');
}

/** A title's lines and size: 15 px if it fits in two lines, else 13 px wrapped as needed. */
function fitTitle(s: string, width: number): { lines: string[]; size: number } {
  const big = wrapText(s, width, 15);
  return big.length <= 2 ? { lines: big, size: 15 } : { lines: wrapText(s, width, 13), size: 13 };
}

export interface Bar {
  label: string;
  /** the bar's length: the median */
  value: number;
  /** the whisker (min and max of the repeats), if there were several */
  min?: number;
  max?: number;
}

/** `note` labels the bars (default "median"); `whiskerNote` the whiskers (default "min to max of the runs"). */
export function barChart(titleText: string, unit: string, bars: Bar[], note?: string, whiskerNote = 'min to max of the runs'): string {
  if (!bars.length) throw new Error(`barChart "${titleText}": no bars to draw`);
  const W = 720;
  const labelW = Math.min(220, Math.max(60, ...bars.map((b) => textWidth(b.label, 12)))) + 16;
  const left = labelW, right = 70; // room for the value printed after the longest bar
  const t = fitTitle(titleText, W - 20);
  const top = 22 + t.lines.length * (t.size + 4) + 8;
  const bh = 34;
  const plotH = bars.length * bh;
  const legendH = 22;
  const H = top + plotH + 62 + legendH;
  const hi = Math.max(1e-9, ...bars.map((b) => Math.max(b.value, b.max ?? 0)));
  const ticks = niceTicks(0, hi);
  const top0 = ticks[ticks.length - 1]!;
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : top0;
  const x = (v: number) => left + ((W - left - right) * v) / top0;
  const grid = ticks
    .map((v) => `<line x1="${x(v).toFixed(1)}" y1="${top}" x2="${x(v).toFixed(1)}" y2="${top + plotH}" stroke="#ddd"/>
<line x1="${x(v).toFixed(1)}" y1="${top + plotH}" x2="${x(v).toFixed(1)}" y2="${top + plotH + 5}" stroke="#333"/>
<text x="${x(v).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle" font-size="11">${tickLabel(v, step, top0)}</text>`)
    .join('\n');
  const rows = bars
    .map((b, i) => {
      const y = top + i * bh;
      const whisker =
        b.min !== undefined && b.max !== undefined && b.max > b.min
          ? `<line x1="${x(b.min).toFixed(1)}" y1="${y + bh / 2}" x2="${x(b.max).toFixed(1)}" y2="${y + bh / 2}" stroke="#222" stroke-width="1.5"/>
<line x1="${x(b.min).toFixed(1)}" y1="${y + bh / 2 - 6}" x2="${x(b.min).toFixed(1)}" y2="${y + bh / 2 + 6}" stroke="#222" stroke-width="1.5"/>
<line x1="${x(b.max).toFixed(1)}" y1="${y + bh / 2 - 6}" x2="${x(b.max).toFixed(1)}" y2="${y + bh / 2 + 6}" stroke="#222" stroke-width="1.5"/>`
          : '';
      const end = Math.max(x(b.value), b.max !== undefined ? x(b.max) : 0);
      return `<text x="${left - 8}" y="${y + bh / 2 + 4}" text-anchor="end" font-size="12">${esc(b.label)}</text>
<rect x="${left}" y="${y + 6}" width="${(x(b.value) - left).toFixed(1)}" height="${bh - 12}" fill="${COLORS[0]}"><title>${esc(b.label)}: ${b.value.toFixed(1)} ${esc(unit)}</title></rect>
${whisker}
<text x="${(end + 5).toFixed(1)}" y="${y + bh / 2 + 4}" font-size="11">${b.value.toFixed(b.value < 10 ? 2 : 0)}</text>`;
    })
    .join('\n');
  const ly = top + plotH + 62;
  const hasWhisker = bars.some((b) => b.min !== undefined && b.max !== undefined && b.max > b.min);
  // the whisker's swatch follows the bar's label, however long that is
  const barLabel = note ?? 'median';
  const wx = left + 20 + Math.ceil(textWidth(barLabel, 11)) + 24;
  const legend = `<rect x="${left}" y="${ly - 10}" width="14" height="12" fill="${COLORS[0]}"/>
<text x="${left + 20}" y="${ly}" font-size="11">${esc(barLabel)}</text>${
    hasWhisker
      ? `\n<line x1="${wx}" y1="${ly - 4}" x2="${wx + 22}" y2="${ly - 4}" stroke="#222" stroke-width="1.5"/><line x1="${wx}" y1="${ly - 9}" x2="${wx}" y2="${ly + 1}" stroke="#222" stroke-width="1.5"/><line x1="${wx + 22}" y1="${ly - 9}" x2="${wx + 22}" y2="${ly + 1}" stroke="#222" stroke-width="1.5"/>
<text x="${wx + 28}" y="${ly}" font-size="11">${esc(whiskerNote)}</text>`
      : ''
  }`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Verdana, sans-serif">
<rect width="100%" height="100%" fill="white"/>
${title(t.lines, W, t.size)}
${grid}
<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>
<line x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}" stroke="#333"/>
${rows}
<text x="${(left + W - right) / 2}" y="${top + plotH + 36}" text-anchor="middle" font-size="12">${esc(unit)}</text>
${legend}
</svg>
`;
}

/** What a chart needs of a pipeline task: its row (`stage`, the device's rank), its stage, its times. */
export type TimelineTask = Pick<TaskTime, 'stage' | 'vstage' | 'mb' | 'step' | 't0' | 't1'> & {
  /** training tasks: a forward or a backward (generation tasks have none: prefill or decode by step) */
  kind?: 'forward' | 'backward';
};

/** Busy fraction: the sum of task times over (stages x span of the run). */
export function utilization(tasks: TimelineTask[], stages: number): number {
  if (!tasks.length) return 0;
  const t0 = Math.min(...tasks.map((t) => t.t0)), t1 = Math.max(...tasks.map((t) => t.t1));
  return tasks.reduce((a, t) => a + (t.t1 - t.t0), 0) / (stages * Math.max(t1 - t0, 1e-9));
}

/**
 * The idle fraction of one pass through an ideal pipeline of S stages and m equal micro-batches:
 * (S - 1) / (m + S - 1); with v interleaved chunks per device the fill and drain shrink v times,
 * (S - 1) / (v·m + S - 1).
 */
export function idealBubble(stages: number, microBatches: number, chunks = 1): number {
  if (stages < 1 || microBatches < 1 || chunks < 1) throw new Error(`idealBubble: stages, micro-batches and chunks must be >= 1, got ${stages}, ${microBatches}, ${chunks}`);
  return (stages - 1) / (chunks * microBatches + stages - 1);
}

export interface TimelineInfo {
  /** micro-batches (m) */
  microBatches: number;
  /** pp: stages per device, interleaved (v) */
  chunks?: number;
}

/**
 * One row per device, a box per task coloured by micro-batch; prefill (step 0) hatched, decode solid, or
 * for training, forward solid and backward striped;
 * a device's second (fourth, ...) chunk of interleaved layers lighter; white space is the bubble. The
 * subtitle gives the utilization and the ideal bubble to compare the idle time with.
 */
export function timelineChart(titleText: string, tasks: TimelineTask[], stages: string[], info: TimelineInfo): string {
  if (!tasks.length) throw new Error(`timelineChart "${titleText}": no tasks to draw`);
  const W = 960, rowH = 34, right = 20;
  const left = Math.min(160, Math.max(60, ...stages.map((s) => textWidth(s, 12)))) + 16;
  const t = fitTitle(titleText, W - 20);
  const S = stages.length, m = info.microBatches, v = info.chunks ?? 1;
  const util = utilization(tasks, S);
  const ideal = idealBubble(S, m, v);
  const sub = `utilization ${(util * 100).toFixed(1)}% (idle ${((1 - util) * 100).toFixed(1)}%); ideal bubble of one pass (S-1)/(${v > 1 ? 'v·' : ''}m+S-1) = ${(ideal * 100).toFixed(1)}% with S = ${S}, m = ${m}${v > 1 ? `, v = ${v}` : ''}`;
  const subLines = wrapText(sub, W - 20, 12);
  const subTop = 22 + t.lines.length * (t.size + 4);
  const top = subTop + subLines.length * 16 + 8;
  const plotH = S * rowH;
  const t0 = Math.min(...tasks.map((x) => x.t0)), t1 = Math.max(...tasks.map((x) => x.t1));
  const span = Math.max(t1 - t0, 1e-6);
  const ticks = niceTicks(0, span, 8).filter((x) => x <= span * 1.0001);
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : span;
  const X = (ms: number) => left + ((W - left - right) * ms) / span;
  const grid = ticks
    .map((ms) => `<line x1="${X(ms).toFixed(1)}" y1="${top}" x2="${X(ms).toFixed(1)}" y2="${top + plotH}" stroke="#e4e4e4"/>
<line x1="${X(ms).toFixed(1)}" y1="${top + plotH}" x2="${X(ms).toFixed(1)}" y2="${top + plotH + 5}" stroke="#333"/>
<text x="${X(ms).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle" font-size="11">${tickLabel(ms, step, span)}</text>`)
    .join('\n');
  const boxes = tasks
    .map((x) => {
      const a = X(x.t0 - t0), w = Math.max(0.5, X(x.t1 - t0) - a);
      const y = top + x.stage * rowH;
      const chunk = x.vstage === undefined ? 0 : Math.floor(x.vstage / S);
      const what = x.vstage === undefined ? `stage ${x.stage}` : `stage ${x.vstage} (chunk ${chunk} of ${stages[x.stage] ?? x.stage})`;
      const phase = x.kind ?? (x.step === 0 ? 'prefill' : `decode step ${x.step}`);
      const tip = `<title>${esc(what)}, micro-batch ${x.mb}, ${phase}: ${(x.t1 - x.t0).toFixed(2)} ms</title>`;
      const box = `<rect x="${a.toFixed(2)}" y="${y + 4}" width="${w.toFixed(2)}" height="${rowH - 8}" fill="${COLORS[x.mb % COLORS.length]}"${chunk % 2 ? ' fill-opacity="0.5"' : ''} stroke="white" stroke-width="0.5">${tip}</rect>`;
      const over = x.kind === 'backward' ? 'backward' : !x.kind && x.step === 0 ? 'prefill' : null;
      return over ? `${box}\n<rect x="${a.toFixed(2)}" y="${y + 4}" width="${w.toFixed(2)}" height="${rowH - 8}" fill="url(#${over})"/>` : box;
    })
    .join('\n');
  const labels = stages.map((s, i) => `<text x="${left - 8}" y="${top + i * rowH + rowH / 2 + 4}" text-anchor="end" font-size="12">${esc(s)}</text>`).join('\n');
  // Legend: one swatch per micro-batch colour (they repeat after ten), then what hatching, a lighter
  // shade and white mean. Items flow left to right and wrap to new lines.
  const items: { swatch: string; text: string }[] = [];
  for (let i = 0; i < Math.min(m, COLORS.length); i++) items.push({ swatch: `fill="${COLORS[i]}"`, text: `micro-batch ${i}${m > COLORS.length && i === COLORS.length - 1 ? ` (colours repeat every ${COLORS.length})` : ''}` });
  const training = tasks.some((x) => x.kind);
  const hasPrefill = !training && tasks.some((x) => x.step === 0), hasDecode = !training && tasks.some((x) => x.step > 0);
  if (hasPrefill) items.push({ swatch: 'fill="#888" pattern:prefill', text: 'prefill (hatched)' });
  if (hasDecode) items.push({ swatch: 'fill="#888"', text: 'decode (solid)' });
  if (training) {
    items.push({ swatch: 'fill="#888"', text: 'forward (solid)' });
    items.push({ swatch: 'fill="#888" pattern:backward', text: 'backward (striped)' });
  }
  if (v > 1) items.push({ swatch: 'fill="#888" fill-opacity="0.5"', text: v > 2 ? "chunks 1, 3, ... of a device's layers (lighter)" : "a device's second chunk of layers (lighter)" });
  items.push({ swatch: 'fill="white" stroke="#999"', text: 'idle (the bubble)' });
  const legendTop = top + plotH + 62;
  let lx = left, ly = legendTop;
  const legend = items
    .map((it) => {
      const w = 22 + textWidth(it.text, 11) + 14;
      if (lx + w > W - right && lx > left) (lx = left), (ly += 18);
      const [fill, pattern] = it.swatch.split(' pattern:');
      const sw = `<rect x="${lx}" y="${ly - 10}" width="16" height="12" ${fill}/>${pattern ? `<rect x="${lx}" y="${ly - 10}" width="16" height="12" fill="url(#${pattern})"/>` : ''}`;
      const s = `${sw}<text x="${lx + 22}" y="${ly}" font-size="11">${esc(it.text)}</text>`;
      lx += w;
      return s;
    })
    .join('\n');
  const H = ly + 16;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Verdana, sans-serif">
<defs><pattern id="prefill" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="2.5" height="6" fill="white" fill-opacity="0.75"/></pattern><pattern id="backward" width="6" height="5" patternUnits="userSpaceOnUse"><rect width="6" height="2" fill="black" fill-opacity="0.35"/></pattern></defs>
<rect width="100%" height="100%" fill="white"/>
${title(t.lines, W, t.size)}
${subLines.map((l, i) => `<text x="${W / 2}" y="${subTop + 12 + i * 16}" text-anchor="middle" font-size="12" fill="#333">${esc(l)}</text>`).join('\n')}
${grid}
${labels}
${boxes}
<line x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}" stroke="#333"/>
<text x="${(left + W - right) / 2}" y="${top + plotH + 36}" text-anchor="middle" font-size="12">time since the first task started (ms)</text>
${legend}
</svg>
`;
}
