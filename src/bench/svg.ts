// Small SVG charts with no dependencies: a bar chart (throughput by strategy) and a pipeline timeline
// (one row per stage, one box per task) that shows the bubble.
import type { TaskTime } from '../engine/executor.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];

export function barChart(title: string, unit: string, bars: { label: string; value: number }[]): string {
  const W = 640, H = 360, left = 140, right = 80, top = 40, bottom = 30; // room for the value labels
  const max = Math.max(1e-9, ...bars.map((b) => b.value));
  const bh = (H - top - bottom) / Math.max(1, bars.length);
  const rows = bars
    .map((b, i) => {
      const w = ((W - left - right) * b.value) / max;
      const y = top + i * bh;
      return `<text x="${left - 8}" y="${y + bh / 2 + 4}" text-anchor="end" font-size="12">${esc(b.label)}</text>
<rect x="${left}" y="${y + 4}" width="${w.toFixed(1)}" height="${(bh - 8).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"/>
<text x="${left + w + 4}" y="${y + bh / 2 + 4}" font-size="11">${b.value.toFixed(b.value < 10 ? 2 : 0)}</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>
<text x="${W - right}" y="${H - 8}" text-anchor="end" font-size="11" fill="#555">${esc(unit)}</text>
${rows}
</svg>
`;
}

/** What a chart needs of a pipeline task: its row (`stage`, the device's rank), its stage, its times. */
export type TimelineTask = Pick<TaskTime, 'stage' | 'vstage' | 'mb' | 'step' | 't0' | 't1'>;

/** One row per stage, a box per task coloured by micro-batch; white space is the bubble. */
export function timelineChart(title: string, tasks: TimelineTask[], stages: string[]): string {
  const W = 900, rowH = 34, left = 90, right = 20, top = 40;
  const H = top + stages.length * rowH + 40;
  const t0 = Math.min(...tasks.map((t) => t.t0)), t1 = Math.max(...tasks.map((t) => t.t1));
  const span = Math.max(t1 - t0, 1e-6);
  const x = (t: number) => left + ((W - left - right) * (t - t0)) / span;
  const boxes = tasks
    .map((t) => {
      const w = Math.max(0.5, x(t.t1) - x(t.t0));
      const y = top + t.stage * rowH;
      // Interleaved stages: a device's second, fourth, ... chunk of layers in a lighter shade.
      const chunk = t.vstage === undefined ? 0 : Math.floor(t.vstage / stages.length);
      const what = t.vstage === undefined ? `stage ${t.stage}` : `stage ${t.vstage} (chunk ${chunk} of ${stages[t.stage] ?? t.stage})`;
      return `<rect x="${x(t.t0).toFixed(2)}" y="${y + 4}" width="${w.toFixed(2)}" height="${rowH - 8}" fill="${COLORS[t.mb % COLORS.length]}"${chunk % 2 ? ' fill-opacity="0.55"' : ''} stroke="white" stroke-width="0.5"><title>${what}, micro-batch ${t.mb}, step ${t.step}: ${(t.t1 - t.t0).toFixed(2)} ms</title></rect>`;
    })
    .join('\n');
  const labels = stages.map((s, i) => `<text x="${left - 8}" y="${top + i * rowH + rowH / 2 + 4}" text-anchor="end" font-size="12">${esc(s)}</text>`).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>
${labels}
${boxes}
<text x="${left}" y="${H - 12}" font-size="11" fill="#555">0 ms</text>
<text x="${W - right}" y="${H - 12}" text-anchor="end" font-size="11" fill="#555">${span.toFixed(1)} ms (colour: micro-batch; white: idle)</text>
</svg>
`;
}

/** Busy fraction: the sum of task times over (stages x span of the run). */
export function utilization(tasks: TimelineTask[], stages: number): number {
  if (!tasks.length) return 0;
  const t0 = Math.min(...tasks.map((t) => t.t0)), t1 = Math.max(...tasks.map((t) => t.t1));
  return tasks.reduce((a, t) => a + (t.t1 - t.t0), 0) / (stages * Math.max(t1 - t0, 1e-9));
}
