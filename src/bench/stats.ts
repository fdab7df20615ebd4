// Timing on a device: warm up, then time each run with device events and keep the median.
import { DeviceEvent } from '../runtime.js';
import { synchronize } from '../device.js';

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

export function timeOnDevice(device: string, fn: (run: number) => void, warmup = 3, runs = 20): Timing {
  for (let i = 0; i < warmup; i++) fn(i);
  synchronize(device);
  const starts = Array.from({ length: runs }, () => new DeviceEvent(device));
  const ends = Array.from({ length: runs }, () => new DeviceEvent(device));
  for (let i = 0; i < runs; i++) {
    starts[i]!.record();
    fn(warmup + i);
    ends[i]!.record();
  }
  synchronize(device);
  const ms = starts.map((s, i) => s.elapsedMs(ends[i]!));
  return { medianMs: median(ms), minMs: Math.min(...ms), maxMs: Math.max(...ms), runs };
}
