// DevicePool: one worker_thread per device. Each worker loads the addon, binds its device and serves
// named methods (handlers) that the main thread calls with structured-cloneable arguments. A worker that
// dies, crashes or times out rejects every call still waiting on it: nothing hangs.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FromWorker, SerializedError, ToWorker, WorkerConfig } from './protocol.js';

export interface PoolOptions {
  /** Per-call limit in ms; a call past it rejects and its worker is terminated. Default 0: none. */
  timeoutMs?: number;
  /** Configure this many CPU devices (cpu:0..n-1) in every worker; a process-global native setting. */
  cpuDevices?: number;
  /** Absolute paths or file: URLs of ESM modules each worker imports at start; each exports `handlers`. */
  modules?: string[];
  /** Where ctx.log lines go; default console.{info,warn,error} with a `[device]` prefix. */
  onLog?: (device: string, level: LogLevel, message: string) => void;
}

export type LogLevel = 'info' | 'warn' | 'error';

export type Handler = (args: any, ctx: WorkerContext) => unknown | Promise<unknown>;

export interface WorkerContext {
  rank: number;
  world: number;
  /**
   * Set by the main thread (DevicePool.close, terminate, requestStop) to stop this worker's work: long
   * handlers check it between steps (`stopRequested`), and communicators made with it stop their waits.
   */
  stopFlag: Int32Array;
  stopRequested(): boolean;
  /** Normalized id, e.g. 'cuda:1'. */
  device: string;
  /** Per-worker storage kept across calls: models, caches. */
  state: Map<string, unknown>;
  /** A line to the main thread (PoolOptions.onLog). */
  log(message: string, level?: LogLevel): void;
  /**
   * The running call's progress, to the `onProgress` its caller gave (CallOptions); dropped when it gave
   * none. Structured-cloneable; a handler that runs several calls at once reports each on its own ctx.
   */
  progress(value: unknown): void;
}

export interface CallOptions {
  /** `transfer` moves ArrayBuffers etc. instead of copying them */
  transfer?: Transferable[];
  /** hears each WorkerContext.progress of this call, in order, before it settles */
  onProgress?: (value: any) => void;
}

interface Pending {
  method: string;
  onProgress?: (value: unknown) => void;
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

type InitInfo = Extract<FromWorker, { type: 'init'; ok: true }>;

/** The worker entry must be compiled JS. From dist/ it sits next to this file; from src/ (vitest runs the
 * TypeScript sources) there is no worker.js beside us, so use tsc's output in <packageRoot>/dist. */
function workerScript(): URL {
  const here = new URL('./worker.js', import.meta.url);
  if (here.protocol === 'file:' && existsSync(fileURLToPath(here))) return here;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const built = path.join(root, 'dist', 'parallel', 'worker.js');
  if (existsSync(built)) return pathToFileURL(built);
  throw new Error(
    `parallm: DevicePool cannot find its worker script: neither ${fileURLToPath(here)} nor ${built} exists. ` +
      `Run 'npm run build:ts' to compile it.`,
  );
}

function moduleUrl(m: string): string {
  if (typeof m !== 'string') throw new Error(`DevicePool: modules must be paths or file: URLs, got ${String(m)}`);
  if (m.startsWith('file:')) return m;
  if (!path.isAbsolute(m)) throw new Error(`DevicePool: module path must be absolute (or a file: URL), got '${m}'`);
  return pathToFileURL(m).href;
}

/**
 * The process's Node flags, less those that would break a worker: `--input-type` (for `node -e` / stdin
 * input) makes Node refuse a worker started from a file. Workers inherit the rest (--import hooks, limits).
 */
export function workerExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--input-type') i++; // and its value
    else if (!argv[i]!.startsWith('--input-type=')) out.push(argv[i]!);
  }
  return out;
}

/** An error from the worker, as an Error here: device prefix on the message, the worker's stack frames kept. */
function remoteError(device: string, e: SerializedError): Error {
  const err = new Error(`[${device}] ${e.message}`);
  err.name = e.name;
  const frames = (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
  err.stack = [`${e.name}: ${err.message}`, ...frames].join('\n');
  return err;
}

/** One worker and the calls waiting on it. */
class Slot {
  readonly worker: Worker;
  readonly ready: Promise<InitInfo>;
  device: string;
  /** Why the worker is gone ("exited with code 3"); null while it lives. */
  dead: string | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private started = false;

  constructor(
    script: URL,
    config: WorkerConfig,
    onLog: NonNullable<PoolOptions['onLog']>,
    readonly stop: Int32Array,
  ) {
    this.device = config.device;
    this.worker = new Worker(script, { workerData: config, execArgv: workerExecArgv(process.execArgv) });
    this.ready = new Promise<InitInfo>((resolve, reject) => {
      this.worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'init') {
          if (!msg.ok) return reject(remoteError(this.device, msg.error));
          this.started = true;
          this.device = msg.device;
          this.worker.unref(); // idle workers don't keep the process alive; ref'd while calls wait
          resolve(msg);
        } else if (msg.type === 'result') {
          const p = this.pending.get(msg.id);
          if (!p) return; // already rejected (timeout)
          this.settle(msg.id);
          if (msg.ok) p.resolve(msg.value);
          else p.reject(remoteError(this.device, msg.error));
        } else if (msg.type === 'log') {
          onLog(this.device, msg.level, msg.message);
        } else if (msg.type === 'progress') {
          const p = this.pending.get(msg.id);
          // A listener that throws must not break the message loop: it ends its own call.
          try {
            p?.onProgress?.(msg.value);
          } catch (e) {
            this.settle(msg.id);
            p!.reject(e instanceof Error ? e : new Error(String(e)));
          }
        }
      });
      this.worker.on('error', (e: Error) => {
        // An uncaught exception: the worker is terminated after this.
        if (!this.started) reject(new Error(`worker for ${this.device} failed to start: ${e.message}`));
        this.fail(`crashed: ${e.name}: ${e.message}`);
      });
      this.worker.on('exit', (code) => {
        if (!this.started) reject(new Error(`worker for ${this.device} exited with code ${code} during start`));
        this.fail(`exited with code ${code}`);
      });
    });
  }

  call<R>(method: string, args: unknown, transfer: Transferable[] | undefined, timeoutMs: number, onProgress?: (value: unknown) => void): Promise<R> {
    if (this.dead) return Promise.reject(new Error(`worker for ${this.device} has exited (it ${this.dead}); cannot call '${method}'`));
    return new Promise<R>((resolve, reject) => {
      const id = this.nextId++;
      try {
        this.worker.postMessage({ type: 'call', id, method, args } satisfies ToWorker, transfer as any);
      } catch (e) {
        return reject(new Error(`[${this.device}] cannot send the arguments of '${method}': ${(e as Error).message}`));
      }
      const p: Pending = { method, resolve, reject, onProgress };
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          const msg = `[${this.device}] '${method}' timed out after ${timeoutMs} ms; its worker is terminated`;
          this.settle(id);
          reject(new Error(msg));
          // It may be stuck in a native call: the only way out is to end the thread.
          this.fail(`was terminated: '${method}' timed out after ${timeoutMs} ms`);
          void this.worker.terminate();
        }, timeoutMs);
      }
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, p);
    });
  }

  private settle(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }

  /** Mark the worker gone and reject everything waiting on it. `reason` completes "worker for cpu:1 ...". */
  fail(reason: string, message?: (method: string) => string): void {
    if (this.dead) return;
    this.dead = reason;
    for (const [id, p] of [...this.pending]) {
      this.settle(id);
      p.reject(new Error(message ? message(p.method) : `worker for ${this.device} ${reason} while '${p.method}' was pending`));
    }
  }
}

export class DevicePool {
  /** Normalized device ids ('cuda' -> 'cuda:0'), index = rank. */
  readonly devices: string[];
  private readonly slots: Slot[];
  private readonly timeoutMs: number;
  private closing: Promise<void> | null = null;

  private constructor(slots: Slot[], timeoutMs: number) {
    this.slots = slots;
    this.devices = slots.map((s) => s.device);
    this.timeoutMs = timeoutMs;
  }

  /** Resolves once every worker has loaded the addon, bound its device and imported its modules. */
  static async start(devices: string[], opts: PoolOptions = {}): Promise<DevicePool> {
    if (!Array.isArray(devices) || devices.length === 0) throw new Error('DevicePool.start: give at least one device');
    const timeoutMs = opts.timeoutMs ?? 0;
    if (!(timeoutMs >= 0 && Number.isFinite(timeoutMs))) throw new Error(`DevicePool: timeoutMs must be >= 0, got ${timeoutMs}`);
    const modules = (opts.modules ?? []).map(moduleUrl);
    const onLog =
      opts.onLog ?? ((device: string, level: LogLevel, message: string) => console[level](`[${device}] ${message}`));
    const script = workerScript();
    const stop = new SharedArrayBuffer(4 * devices.length);
    const slots = devices.map(
      (device, rank) =>
        new Slot(script, { rank, world: devices.length, device, cpuDevices: opts.cpuDevices, modules, stop }, onLog, new Int32Array(stop, 4 * rank, 1)),
    );
    const inits = await Promise.allSettled(slots.map((s) => s.ready));
    const errors = inits.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    const seen = new Set<string>();
    for (const s of slots) {
      if (seen.has(s.device) && errors.length === 0) errors.push(`device ${s.device} is listed twice: one worker per device`);
      seen.add(s.device);
    }
    if (errors.length > 0) {
      for (const s of slots) s.fail('was stopped: the pool failed to start');
      await Promise.all(slots.map((s) => s.worker.terminate()));
      throw new Error(`DevicePool.start failed: ${errors.join('; ')}`);
    }
    return new DevicePool(slots, timeoutMs);
  }

  /**
   * Run `method` on worker `rank`; `transfer` moves ArrayBuffers etc. instead of copying them (or give
   * CallOptions, which also take an onProgress).
   */
  call<R = unknown>(rank: number, method: string, args?: unknown, transfer?: Transferable[] | CallOptions): Promise<R> {
    if (this.closing) return Promise.reject(new Error(`pool closed; cannot call '${method}'`));
    const slot = this.slots[rank];
    if (!Number.isInteger(rank) || !slot)
      return Promise.reject(new RangeError(`rank ${rank} out of range: the pool has ${this.slots.length} workers`));
    const o: CallOptions = Array.isArray(transfer) ? { transfer } : (transfer ?? {});
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') return Promise.reject(new Error(`call('${method}'): onProgress must be a function`));
    return slot.call<R>(method, args, o.transfer, this.timeoutMs, o.onProgress);
  }

  /** The same method on every worker; results in rank order. Rejects with the first failure. */
  async all<R = unknown>(method: string, argsPerRank?: unknown[] | ((rank: number) => unknown)): Promise<R[]> {
    const n = this.slots.length;
    if (Array.isArray(argsPerRank) && argsPerRank.length !== n)
      throw new Error(`all('${method}'): ${argsPerRank.length} argument sets for ${n} workers`);
    const argsOf = (r: number) => (typeof argsPerRank === 'function' ? argsPerRank(r) : argsPerRank?.[r]);
    return Promise.all(this.slots.map((_, r) => this.call<R>(r, method, argsOf(r))));
  }

  /**
   * The same method on `ranks` (default: every worker), for work the ranks do together (collectives):
   * the first failure stops the others at once (a rank waiting on a peer that will never send is ended
   * only by its stop flag), every call is let finish, and the error is the root cause — a rank's own
   * failure, not the "aborted" or "stopped" errors it caused on its peers. Results in the order of `ranks`.
   */
  async allOrRootCause<R = unknown>(method: string, args: (rank: number) => unknown, ranks: number[] = this.slots.map((_, r) => r)): Promise<R[]> {
    const calls = ranks.map((r) =>
      this.call<R>(r, method, args(r)).catch((e: unknown) => {
        this.requestStop();
        throw e;
      }),
    );
    const settled = await Promise.allSettled(calls);
    const errors = settled.flatMap((x) => (x.status === 'rejected' ? [x.reason as Error] : []));
    if (errors.length) throw errors.find((e) => !/aborted|stopped|was closed|pool closed/.test(e.message)) ?? errors[0]!;
    return settled.map((x) => (x as PromiseFulfilledResult<R>).value);
  }

  /**
   * Stop one worker now (a stuck or unwanted one): its pending calls reject with `reason`, later calls to
   * it reject at once. A worker inside a native call stops when that call returns.
   */
  async terminate(rank: number, reason = 'terminate() was called'): Promise<void> {
    const slot = this.slots[rank];
    if (!Number.isInteger(rank) || !slot) throw new RangeError(`rank ${rank} out of range: the pool has ${this.slots.length} workers`);
    // A worker blocked in a communicator wait returns from it within 20 ms once its flag is set; only
    // then can the thread be ended.
    Atomics.store(slot.stop, 0, 1);
    slot.fail(`was terminated (${reason})`);
    await slot.worker.terminate();
  }

  /**
   * Ask every worker to stop what it is doing: handlers that check `ctx.stopRequested()` end with an
   * error, and communicator waits stop. Calls made after `clearStop()` run normally again.
   */
  requestStop(): void {
    for (const s of this.slots) Atomics.store(s.stop, 0, 1);
  }

  clearStop(): void {
    for (const s of this.slots) Atomics.store(s.stop, 0, 0);
  }

  /** Reject pending calls with "pool closed" and terminate the workers. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.requestStop();
      for (const s of this.slots) s.fail('was closed', (m) => `pool closed while ${s.device} '${m}' was pending`);
      await Promise.all(this.slots.map((s) => s.worker.terminate()));
    })();
    return this.closing;
  }
}
