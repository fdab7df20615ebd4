// The memory check before a load: what the stages will hold against what their devices have free, so
// a model that cannot fit is refused up front, naming the device, instead of failing half-way through
// its tensors (or, on the CPU, pushing the host into swap).
import { deviceInfo, memoryStats } from '../device.js';

export interface MemoryNeed {
  device: string;
  bytes: number;
}

/**
 * What a load can have: the driver's (or host's) free bytes plus the blocks this process's allocator
 * caches, which it reuses before asking for more (a model loaded and disposed earlier leaves them).
 */
export function availableBytes(device: string): number {
  return deviceInfo(device).memoryFree + memoryStats(device).cached;
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/**
 * Throws unless every device has `bytes` free (needs on one device are summed). CPU devices are views of
 * one host memory, so their needs are summed together and held against the host's free bytes. `op`
 * starts the message (e.g. "Model.load gpt2"); `freeBytes` is for tests.
 */
export function checkDeviceMemory(needs: MemoryNeed[], op: string, freeBytes: (device: string) => number = availableBytes): void {
  const groups = new Map<string, { devices: string[]; bytes: number }>();
  for (const n of needs) {
    const key = n.device.startsWith('cpu') ? 'cpu' : n.device;
    const g = groups.get(key) ?? { devices: [], bytes: 0 };
    if (!g.devices.includes(n.device)) g.devices.push(n.device);
    g.bytes += n.bytes;
    groups.set(key, g);
  }
  for (const g of groups.values()) {
    const free = freeBytes(g.devices[0]!);
    if (g.bytes <= free) continue;
    const who = g.devices.length > 1 ? `${g.devices.join(', ')} (CPU devices share the host's memory) together need` : `${g.devices[0]} needs`;
    throw new Error(`${op}: ${who} ${gib(g.bytes)} (${g.bytes} bytes) of weights but ${g.devices.length > 1 ? 'the host has' : 'it has'} ${gib(free)} (${free} bytes) free: the model does not fit; use a smaller dtype or more devices`);
  }
}
