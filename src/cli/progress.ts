// Progress of a long step (a model load) on stderr: a bar redrawn in place with `\r` when the stream is
// a terminal (as wide as process.stderr.columns, with the rate's ETA), plain lines at each quarter when
// it is not (a log file or a pipe keeps four lines, not a thousand redraws), nothing when quiet (--json,
// whose stdout must stay machine-readable and whose stderr should not fill with bars).
import type { LoadProgress } from '../models/load-steps.js';
import { bytes as showBytes } from './format.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** default process.stderr */
  stream?: ProgressStream;
  /** print nothing (--json) */
  quiet?: boolean;
  /** clock in ms (tests) */
  now?: () => number;
  /** least ms between two redraws of the bar (default 100); the first and the last are always drawn */
  redrawMs?: number;
}

const clock = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1e3));
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
};

/** A model load's progress, drawn on a stream: `update` with each LoadProgress, then `done` (or `fail`). */
export class LoadProgressBar {
  private readonly stream: ProgressStream;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly redrawMs: number;
  private readonly quiet: boolean;
  /** the first update's time: a reporter may be made well before its load starts (train reads its data first) */
  private t0: number | null = null;
  private lastDraw = -Infinity;
  private lastQuarter = 0;
  private last: LoadProgress | null = null;
  private open = false;
  private ended = false;

  constructor(
    readonly label: string,
    o: ProgressOptions = {},
  ) {
    this.stream = o.stream ?? process.stderr;
    this.tty = !o.quiet && this.stream.isTTY === true;
    this.quiet = o.quiet === true;
    this.now = o.now ?? (() => performance.now());
    this.redrawMs = o.redrawMs ?? 100;
  }

  /** Fraction done, by bytes (tensors when there are no bytes to count). */
  private static fraction(p: LoadProgress): number {
    if (p.totalBytes > 0) return Math.min(1, p.bytes / p.totalBytes);
    return p.totalTensors > 0 ? Math.min(1, p.tensors / p.totalTensors) : 1;
  }

  update(p: LoadProgress): void {
    if (this.ended || this.quiet) return;
    this.last = p;
    const f = LoadProgressBar.fraction(p);
    const t = this.now();
    this.t0 ??= t;
    if (this.tty) {
      if (t - this.lastDraw < this.redrawMs && f < 1) return;
      this.lastDraw = t;
      this.stream.write(`\r${this.barLine(p, t)}\x1b[K`);
      this.open = true;
    } else {
      const quarter = Math.floor(f * 4);
      if (quarter <= this.lastQuarter || quarter >= 4) return; // 100% is done()'s line
      this.lastQuarter = quarter;
      this.stream.write(`${this.label}: ${quarter * 25}% (${this.amounts(p)}, ${clock(t - this.t0)})\n`);
    }
  }

  /** The last line: what was loaded and how long it took. */
  done(): void {
    if (this.ended || this.quiet) return void (this.ended = true);
    const t = this.now();
    if (this.tty && this.last) this.stream.write(`\r${this.barLine(this.last, t, true)}\x1b[K`);
    else this.stream.write(`${this.label}: done${this.last ? ` (${this.amounts(this.last)})` : ''} in ${((t - (this.t0 ?? t)) / 1e3).toFixed(1)} s\n`);
    if (this.tty && this.last) this.stream.write('\n');
    this.open = false;
    this.ended = true;
  }

  /** Ends an open bar's line, so an error message starts on a line of its own. */
  fail(): void {
    if (this.open) this.stream.write('\n');
    this.open = false;
    this.ended = true;
  }

  private amounts(p: LoadProgress): string {
    const b = p.totalBytes > 0 ? `${showBytes(p.bytes)} / ${showBytes(p.totalBytes)}, ` : '';
    return `${b}${p.tensors}/${p.totalTensors} tensors`;
  }

  /** `label [#####-----]  45%  1.2 GiB / 2.7 GiB, 120/580 tensors  ETA 3s`, cut to the stream's width. */
  private barLine(p: LoadProgress, t: number, final = false): string {
    const f = LoadProgressBar.fraction(p);
    const elapsed = t - (this.t0 ?? t);
    const eta = final ? `in ${clock(elapsed)}` : f > 0 && elapsed > 0 ? `ETA ${clock((elapsed / f) * (1 - f))}` : 'ETA ?';
    const text = `${String(Math.floor(f * 100)).padStart(3)}%  ${this.amounts(p)}  ${eta}`;
    // The last column would wrap on some terminals; 0 or no columns: a pseudo-terminal of unknown size.
    const width = Math.max(20, (this.stream.columns || 80) - 1);
    const room = width - this.label.length - text.length - 4; // "label [bar] text"
    if (room < 10) return `${this.label} ${text}`.slice(0, width);
    const fill = Math.round(f * room);
    return `${this.label} [${'#'.repeat(fill)}${'-'.repeat(room - fill)}] ${text}`;
  }
}
