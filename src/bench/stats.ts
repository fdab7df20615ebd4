// Timing on a device: warm up, then time each run with device events and keep the median.
import { DeviceEvent } from '../runtime.js';

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  runs: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Waits for the work queued on the device's current stream: not the whole device, which would also wait for other
 * streams' kernels (bench kernels --busy-sms holds SMs with one while a case is timed).
 */
function settle(device: string): void {
  new DeviceEvent(device).record().synchronize();
}

/**
 * Median time of one call of `fn`. Each timed sample is `inner` calls back to back between two events,
 * so a kernel shorter than the host's launch cost is measured as the device runs it, queued up, rather
 * than as the host feeds it. `inner` is chosen from a first timing so a sample lasts about 1 ms.
 */
export function timeOnDevice(device: string, fn: (run: number) => void, warmup = 3, runs = 20): Timing {
  let call = 0;
  for (let i = 0; i < warmup; i++) fn(call++);
  settle(device);
  const probe = [new DeviceEvent(device), new DeviceEvent(device)];
  probe[0]!.record();
  fn(call++);
  probe[1]!.record();
  const once = Math.max(probe[0]!.elapsedMs(probe[1]!), 1e-3);
  const inner = Math.max(1, Math.min(200, Math.round(1 / once)));
  const starts = Array.from({ length: runs }, () => new DeviceEvent(device));
  const ends = Array.from({ length: runs }, () => new DeviceEvent(device));
  for (let i = 0; i < runs; i++) {
    starts[i]!.record();
    for (let j = 0; j < inner; j++) fn(call++);
    ends[i]!.record();
  }
  settle(device);
  const ms = starts.map((s, i) => s.elapsedMs(ends[i]!) / inner);
  return { medianMs: median(ms), minMs: Math.min(...ms), maxMs: Math.max(...ms), runs };
}
