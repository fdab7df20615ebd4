// A model load as a generator of steps: each step has put a piece of the weights on the device and
// yields how much (tensors, bytes). Model.load runs the steps back to back; Model.loadAsync reports
// progress after each, checks for an abort and yields to the event loop, so a load of many seconds
// leaves the process responsive. An abort is thrown into the generator at its step, so the loaders'
// own catch blocks free what they had allocated.

/** How much of a load: tensors put on the device and bytes read (files) or drawn (presets). */
export interface LoadAmount {
  tensors: number;
  bytes: number;
}

/** What `onProgress` receives: done so far, out of the totals known before the first step. */
export interface LoadProgress {
  bytes: number;
  totalBytes: number;
  tensors: number;
  totalTensors: number;
}

export type LoadSteps<R> = Generator<LoadAmount, R, void>;

export interface LoadControl {
  /** called after every step, and once before the first (at zero) */
  onProgress?: (p: LoadProgress) => void;
  /** an aborted signal stops the load at its next step with an AbortError; nothing stays allocated */
  signal?: AbortSignal;
  /** polled at every step like `signal` (workers pass their stop flag: WorkerContext.stopRequested) */
  shouldStop?: () => boolean;
}

/** The Error an aborted load rejects with: name 'AbortError', as fetch and timers/promises use. */
export function abortError(what: string, reason?: unknown): Error {
  // A plain abort() gives a DOMException "This operation was aborted": nothing to add.
  const why = reason instanceof Error ? (reason.name === 'AbortError' ? '' : `: ${reason.message}`) : typeof reason === 'string' ? `: ${reason}` : '';
  const e = new Error(`${what} was aborted${why}`);
  e.name = 'AbortError';
  return e;
}

export function isAbortError(e: unknown): boolean {
  return e instanceof Error && e.name === 'AbortError';
}

/** Runs the steps without pausing (the synchronous Model.load). */
export function runLoadSync<R>(steps: LoadSteps<R>): R {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Runs the steps with a turn of the event loop between them, reporting progress against `total`. On an
 * abort the AbortError is thrown into the generator (its cleanup runs) and then rejected with.
 */
export async function runLoadAsync<R>(steps: LoadSteps<R>, total: LoadAmount, ctl: LoadControl, what: string): Promise<R> {
  const done: LoadAmount = { tensors: 0, bytes: 0 };
  const report = () => ctl.onProgress?.({ bytes: done.bytes, totalBytes: total.bytes, tensors: done.tensors, totalTensors: total.tensors });
  const stopped = (): Error | null =>
    ctl.signal?.aborted ? abortError(what, ctl.signal.reason) : ctl.shouldStop?.() ? abortError(what, 'stop requested') : null;
  const first = stopped();
  if (first) {
    steps.return(undefined as R); // nothing has run: no cleanup to do
    throw first;
  }
  report();
  let r = steps.next();
  for (;;) {
    if (r.done) return r.value;
    done.tensors += r.value.tensors;
    done.bytes += r.value.bytes;
    try {
      report();
    } catch (e) {
      steps.throw(e); // a throwing callback ends the load like an abort: the generator frees what it made
    }
    await nextTick();
    const stop = stopped();
    r = stop ? steps.throw(stop) : steps.next();
  }
}

/** Someone watching loads (the CLI's LoadProgressBar): one per load, `done` or `fail` at its end. */
export interface LoadReporter {
  update(p: LoadProgress): void;
  done(): void;
  fail(): void;
}

/** Runs `load` with `reporter` hearing its progress (none: no reporting), ending it either way. */
export async function reportingLoad<T>(reporter: LoadReporter | undefined, load: (onProgress?: (p: LoadProgress) => void) => Promise<T>): Promise<T> {
  if (!reporter) return load();
  let v: T;
  try {
    v = await load((p) => reporter.update(p));
  } catch (e) {
    reporter.fail();
    throw e;
  }
  reporter.done();
  return v;
}
