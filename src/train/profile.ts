// Device time by op group of a training step (`parallm bench train --profile`): TrainStage marks the end
// of each group of ops with an event, and the time between two marks goes to the later mark's name.
// Events only, no synchronization between the marks, so the step runs as it does unprofiled (plus an
// event record per mark); the totals are read once the step is done.
import { DeviceEvent } from '../runtime.js';

export class OpProfiler {
  private last: DeviceEvent | null = null;
  private pending: [string, DeviceEvent, DeviceEvent][] = [];
  /** per group: summed device ms and how many times it ran */
  readonly totals = new Map<string, { ms: number; count: number }>();

  constructor(readonly device: string) {}

  /** Starts a span: the next mark's time counts from here. */
  start(): void {
    this.last = new DeviceEvent(this.device).record();
  }

  /** The ops queued since the last mark (or start) were `name`. */
  mark(name: string): void {
    if (!this.last) return this.start();
    const e = new DeviceEvent(this.device).record();
    this.pending.push([name, this.last, e]);
    this.last = e;
  }

  /** Adds the marked spans to the totals (waits for the last event). */
  flush(): void {
    for (const [name, a, b] of this.pending) {
      const t = this.totals.get(name) ?? { ms: 0, count: 0 };
      t.ms += a.elapsedMs(b);
      t.count++;
      this.totals.set(name, t);
    }
    this.pending = [];
    this.last = null;
  }

  /** The groups by time, largest first, with their share of the total. */
  table(steps = 1): { name: string; msPerStep: number; share: number; count: number }[] {
    const all = [...this.totals.values()].reduce((s, t) => s + t.ms, 0);
    return [...this.totals.entries()]
      .map(([name, t]) => ({ name, msPerStep: t.ms / steps, share: t.ms / Math.max(all, 1e-12), count: t.count / steps }))
      .sort((a, b) => b.msPerStep - a.msPerStep);
  }
}
