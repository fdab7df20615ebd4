// Messages between DevicePool (main thread) and its workers (worker.ts). Everything here crosses
// postMessage, so it is structured-cloneable: errors travel as plain {name, message, stack}.

/** What each worker gets as workerData. */
export interface WorkerConfig {
  rank: number;
  world: number;
  device: string;
  cpuDevices?: number;
  /** file: URLs of the handler modules to import. */
  modules: string[];
  /** one Int32 per rank: set (by close or terminate) to stop what the worker is doing (WorkerContext.stopFlag) */
  stop: SharedArrayBuffer;
}

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
}

/** main -> worker */
export type ToWorker = { type: 'call'; id: number; method: string; args: unknown };

/** worker -> main */
export type FromWorker =
  | { type: 'init'; ok: true; device: string; methods: string[]; pid: number; threadId: number }
  | { type: 'init'; ok: false; error: SerializedError }
  | { type: 'result'; id: number; ok: true; value: unknown }
  | { type: 'result'; id: number; ok: false; error: SerializedError }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string }
  /** a running call's progress (WorkerContext.progress), to the caller's onProgress */
  | { type: 'progress'; id: number; value: unknown };

export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) return { name: e.name, message: e.message, stack: e.stack };
  return { name: 'Error', message: typeof e === 'string' ? e : String(e) };
}
