// PARALLM_TRACE=1: one line per step of a run's failure and shutdown path, written synchronously to
// stderr from whichever thread (so a thread that then blocks still shows where it was).
import { writeSync } from 'node:fs';
import { threadId } from 'node:worker_threads';

const on = !!process.env.PARALLM_TRACE;

export function trace(what: string): void {
  if (on) writeSync(2, `[parallm trace ${(performance.timeOrigin + performance.now()).toFixed(0)} t${threadId}] ${what}\n`);
}
