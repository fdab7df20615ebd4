// Devices: cpu:N (each a share of the host's cores) and cuda:N.
import { native, type NativeDeviceInfo, type NativeMemoryStats } from './native.js';

export type DeviceInfo = NativeDeviceInfo;
export type MemoryStats = NativeMemoryStats;

const DEVICE_RE = /^(cpu|cuda)(?::(\d{1,4}))?$/;

/** Normalize 'cuda' -> 'cuda:0', and check the device exists. */
export function parseDevice(device: string): string {
  if (typeof device !== 'string') throw new Error(`device must be a string like "cuda:0" or "cpu:0", got ${String(device)}`);
  const m = DEVICE_RE.exec(device.trim());
  if (!m) throw new Error(`unknown device "${device}": expected cpu, cpu:N, cuda or cuda:N`);
  const id = `${m[1]}:${m[2] ?? '0'}`;
  const count = m[1] === 'cuda' ? native.buildInfo().cudaDevices : native.buildInfo().cpuDevices;
  const index = Number(m[2] ?? 0);
  if (index >= count) {
    const info = native.buildInfo();
    const why =
      m[1] === 'cuda'
        ? count === 0
          ? `no CUDA devices (${info.cudaStatus})`
          : `there are ${count} CUDA devices`
        : `there are ${count} CPU devices (configureCpuDevices(n) or PARALLM_CPU_DEVICES makes more)`;
    throw new Error(`unknown device "${device}": ${why}`);
  }
  return id;
}

export function devices(): DeviceInfo[] {
  return native.devices();
}

export function deviceInfo(device: string): DeviceInfo {
  return native.deviceInfo(parseDevice(device));
}

/** The first GPU if there is one, else cpu:0. */
export function defaultDevice(): string {
  return native.buildInfo().cudaDevices > 0 ? 'cuda:0' : 'cpu:0';
}

export function cudaDeviceCount(): number {
  return native.buildInfo().cudaDevices;
}

export function buildInfo(): ReturnType<typeof native.buildInfo> {
  return native.buildInfo();
}

/** Split the host into `count` CPU devices cpu:0..count-1, each with its share of the cores. */
export function configureCpuDevices(count: number): void {
  native.configureCpuDevices(count);
}

/** Wait for all work queued on the device. */
export function synchronize(device: string): void {
  native.synchronize(parseDevice(device));
}

export function memoryStats(device: string): MemoryStats {
  return native.memoryStats(parseDevice(device));
}

export function resetPeakMemory(device: string): void {
  native.resetPeakMemory(parseDevice(device));
}

/** Give cached blocks back to the driver (after waiting for the device). */
export function emptyCache(device: string): void {
  native.emptyCache(parseDevice(device));
}

/** Make sure cpu:N exists for every cpu:N listed (splitting the host into more CPU devices if needed). */
export function ensureCpuDevices(ids: string[]): void {
  const want = Math.max(0, ...ids.map((d) => /^cpu:(\d+)$/.exec(d.trim())).filter(Boolean).map((m) => Number(m![1]) + 1));
  if (want > native.buildInfo().cpuDevices) native.configureCpuDevices(want);
}
