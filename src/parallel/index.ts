// The worker-thread layer: one worker per device (see pool.ts).
export { DevicePool, type PoolOptions, type Handler, type WorkerContext, type LogLevel } from './pool.js';
export type { FromWorker, ToWorker, WorkerConfig, SerializedError } from './protocol.js';
