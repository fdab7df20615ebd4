// Events, streams and captured op sequences (CUDA graphs on a GPU, a recorded op list on the CPU).
import { parseDevice } from './device.js';
import { native, type NativeEvent, type NativeGraph, type NativeStream } from './native.js';

/** A point in a device's queued work; two of them time the work between. */
export class DeviceEvent {
  readonly device: string;
  /** @internal */ readonly native: NativeEvent;
  constructor(device: string) {
    this.device = parseDevice(device);
    this.native = native.eventCreate(this.device);
  }
  record(): this {
    this.native.record();
    return this;
  }
  synchronize(): void {
    this.native.synchronize();
  }
  /**
   * The device's current stream waits (on the device) for the work queued before record(): how work
   * forked onto a DeviceStream joins back, also inside a capture. On a CPU device, nothing to wait for.
   */
  wait(): void {
    this.native.wait();
  }
  /** Milliseconds from this event to `end` (waits for `end`). */
  elapsedMs(end: DeviceEvent): number {
    return this.native.elapsedMs(end.native);
  }
}

/** The stream each device's ops go to now (absent: its default stream), so `use` calls can nest. */
const current = new Map<string, DeviceStream>();

/** A second queue of work on a GPU (on a CPU device, ops run as they are called). */
export class DeviceStream {
  readonly device: string;
  /** @internal */ readonly native: NativeStream;
  constructor(device: string) {
    this.device = parseDevice(device);
    this.native = native.streamCreate(this.device);
  }
  synchronize(): void {
    this.native.synchronize();
  }
  waitEvent(e: DeviceEvent): void {
    this.native.waitEvent(e.native);
  }
  /** Run `fn` with this stream as the device's current stream; then the one current before (uses nest). */
  use<T>(fn: () => T): T {
    const before = current.get(this.device);
    native.setStream(this.device, this.native);
    current.set(this.device, this);
    try {
      return fn();
    } finally {
      native.setStream(this.device, before?.native ?? null);
      if (before) current.set(this.device, before);
      else current.delete(this.device);
    }
  }
}

/**
 * Run `fn` with the calling thread's ops told that none of its kernels writes a matrix they multiply by (decode:
 * only activations and caches change), so a GEMV may read its weights while the kernel before it drains
 * (native/cuda/matmul.cu's gemv_wpre), and that a decode attention's kernel before it writes no cached row below
 * the new token's (pos = lens - 1), so the attention may read those rows early (native/cuda/attention.cu's attn_pre).
 * Nothing changes on a CPU device. Nests: the setting before comes back.
 */
export function withFrozenWeights<T>(fn: () => T): T {
  const before = native.frozenWeights(true);
  try {
    return fn();
  } finally {
    native.frozenWeights(before);
  }
}

/** Ops captured once, replayed many times on the same memory. */
export class Graph {
  /** @internal */ readonly native: NativeGraph;
  /** @internal */
  constructor(n: NativeGraph) {
    this.native = n;
  }
  get device(): string | null {
    return this.native.device;
  }
  /** How many ops (graph nodes on a GPU) it replays. */
  get ops(): number {
    return this.native.ops;
  }
  replay(): void {
    this.native.replay();
  }
  dispose(): void {
    this.native.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Record the ops `fn` enqueues on `device` without running them; replay() runs them. Tensors the ops
 * touch stay allocated while the graph lives. Inputs change between replays by writing into the same
 * tensors (e.g. token ids and positions held on the device).
 */
export function capture(device: string, fn: () => void): Graph {
  const d = parseDevice(device);
  native.captureBegin(d);
  let g: NativeGraph;
  try {
    fn();
  } finally {
    g = native.captureEnd(d);
  }
  return new Graph(g);
}
