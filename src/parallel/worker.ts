// The worker-thread entry of DevicePool: one per device. It loads the addon (through the imports below),
// binds its device, imports the handler modules and then serves calls from the pool.
//
// Ordering: each call runs as soon as its message arrives. A synchronous handler runs to completion before
// the next message is read, so synchronous calls to one worker complete in arrival order. Async handlers
// interleave at their awaits: a later call may finish first.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { configureCpuDevices, parseDevice } from '../device.js';
import { native } from '../native.js';
import type { Handler, LogLevel, WorkerContext } from './pool.js';
import { serializeError, type FromWorker, type ToWorker, type WorkerConfig } from './protocol.js';

if (!parentPort) throw new Error('parallm: parallel/worker.js is a worker-thread entry, started by DevicePool');
const port = parentPort;
const config = workerData as WorkerConfig;

const post = (msg: FromWorker): void => port.postMessage(msg);

const handlers = new Map<string, Handler>([
  ['ping', (_args, ctx) => ({ device: ctx.device, pid: process.pid, threadId })],
  ['memoryStats', (_args, ctx) => native.memoryStats(ctx.device)],
]);

/** `<root>/src/x.ts` -> `<root>/dist/x.js`, or null if `url` is not a TypeScript file under a src/ folder. */
function compiledTwin(url: string): string | null {
  if (!url.startsWith('file:')) return null;
  const file = fileURLToPath(url);
  const ext = path.extname(file);
  if (ext !== '.ts' && ext !== '.mts') return null;
  const marker = `${path.sep}src${path.sep}`;
  const at = file.lastIndexOf(marker);
  if (at < 0) return null;
  const twin = file.slice(0, at) + `${path.sep}dist${path.sep}` + file.slice(at + marker.length, -ext.length) + (ext === '.ts' ? '.js' : '.mjs');
  return pathToFileURL(twin).href;
}

async function importModule(url: string): Promise<Record<string, unknown>> {
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (e) {
    // Workers run plain Node, which (v20) cannot import TypeScript; under vitest the pool is given .ts
    // sources all the same. So a module <root>/src/x.ts is loaded from its tsc output <root>/dist/x.js.
    // (Where Node can strip types, the .ts still fails on its './y.js' imports: same fallback.)
    const code = (e as { code?: string }).code;
    const twin = compiledTwin(url);
    if (!twin || (code !== 'ERR_UNKNOWN_FILE_EXTENSION' && code !== 'ERR_MODULE_NOT_FOUND')) throw e;
    if (!existsSync(fileURLToPath(twin)))
      throw new Error(
        `cannot import handler module ${fileURLToPath(url)} (a worker cannot load TypeScript) and its compiled ` +
          `${fileURLToPath(twin)} does not exist: run 'npm run build:ts'`,
      );
    return (await import(twin)) as Record<string, unknown>;
  }
}

async function init(): Promise<WorkerContext> {
  if (config.cpuDevices !== undefined) configureCpuDevices(config.cpuDevices);
  const device = parseDevice(config.device);
  for (const url of config.modules) {
    const mod = await importModule(url);
    const hs = mod.handlers;
    if (typeof hs !== 'object' || hs === null)
      throw new Error(`handler module ${url} must export 'handlers', an object of functions`);
    for (const [name, fn] of Object.entries(hs)) {
      if (typeof fn !== 'function') throw new Error(`handler module ${url}: handlers.${name} is not a function`);
      if (handlers.has(name)) throw new Error(`handler module ${url}: method '${name}' is already defined`);
      handlers.set(name, fn as Handler);
    }
  }
  const log = (message: string, level: LogLevel = 'info'): void => post({ type: 'log', level, message: String(message) });
  const stopFlag = new Int32Array(config.stop, 4 * config.rank, 1);
  const progress = (): void => {}; // outside a call: nobody listens (serve gives each call its own)
  return { rank: config.rank, world: config.world, device, stopFlag, stopRequested: () => Atomics.load(stopFlag, 0) !== 0, state: new Map(), log, progress };
}

async function serve(ctx: WorkerContext, msg: ToWorker): Promise<void> {
  const { id, method } = msg;
  let value: unknown;
  try {
    const fn = handlers.get(method);
    if (!fn) throw new Error(`unknown method '${method}'; known: ${[...handlers.keys()].sort().join(', ')}`);
    // The call's own progress channel; the rest of the context (state, stop flag) is the worker's.
    value = await fn(msg.args, { ...ctx, progress: (v: unknown) => post({ type: 'progress', id, value: v }) });
  } catch (e) {
    post({ type: 'result', id, ok: false, error: serializeError(e) });
    return;
  }
  try {
    post({ type: 'result', id, ok: true, value });
  } catch (e) {
    // Not structured-cloneable (a function, a Tensor's native handle, ...).
    const why = e instanceof Error ? e.message : String(e);
    post({ type: 'result', id, ok: false, error: { name: 'DataCloneError', message: `${method} returned a value that cannot be sent to the main thread: ${why}` } });
  }
}

try {
  const ctx = await init();
  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'call') void serve(ctx, msg);
  });
  post({ type: 'init', ok: true, device: ctx.device, methods: [...handlers.keys()], pid: process.pid, threadId });
} catch (e) {
  post({ type: 'init', ok: false, error: serializeError(e) });
}
