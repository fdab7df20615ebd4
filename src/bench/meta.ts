// What a benchmark ran on, for its JSON: parallm's version, the date, the host, the devices, the CUDA
// runtime and driver, and the NCCL the binding found. Only what can be read without a GPU call that could fail: a
// field the machine cannot tell is left out, never guessed.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildInfo, deviceInfo, devices as listDevices } from '../device.js';
import { packageRoot } from '../native.js';
import { ncclStatus } from '../parallel/comm.js';

export interface BenchMeta {
  parallm: string;
  /** ISO 8601, UTC */
  date: string;
  host: { name: string; os: string; cpu: string; cpus: number; memoryBytes: number; node: string };
  /** the devices the run used: id and name */
  devices: { id: string; name: string }[];
  /** every CUDA device present (names), whether or not the run used it */
  gpus: string[];
  /** compiled: this addon has a CUDA backend; status: why there are no CUDA devices, if there are none;
   * runtime: the CUDA runtime it links; driverSupports: the newest CUDA the driver runs ("13.0") */
  cuda: { compiled: boolean; status: string; runtime?: string; driverSupports?: string };
  /** the NVIDIA kernel driver's version (from /proc on Linux) */
  driver?: string;
  /** NCCL's version (e.g. "2.28.3"), or why it cannot be used */
  nccl: { version?: string; error?: string };
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** The NVIDIA driver's version, e.g. "580.95.05", as its kernel module reports it; undefined without one. */
export function nvidiaDriverVersion(): string | undefined {
  for (const f of ['/sys/module/nvidia/version', '/proc/driver/nvidia/version']) {
    try {
      const m = /(\d+\.\d+(?:\.\d+)?)/.exec(readFileSync(f, 'utf8'));
      if (m) return m[1];
    } catch {
      // not this file: try the next one
    }
  }
  return undefined;
}

/** CUDA's version code (13000) as "13.0"; undefined for 0 (no CUDA backend, or no driver). */
export function cudaVersionString(code: number | undefined): string | undefined {
  return code ? `${Math.floor(code / 1000)}.${Math.floor(code / 10) % 100}` : undefined;
}

/** NCCL_VERSION_CODE (22803) as "2.28.3"; codes before 2.9 were major*1000 + minor*100 + patch. */
export function ncclVersionString(code: number): string {
  if (code >= 10000) return `${Math.floor(code / 10000)}.${Math.floor(code / 100) % 100}.${code % 100}`;
  return `${Math.floor(code / 1000)}.${Math.floor(code / 100) % 10}.${code % 100}`;
}

export function benchMeta(used: string[]): BenchMeta {
  const info = buildInfo();
  const nccl = ncclStatus();
  const driver = nvidiaDriverVersion();
  return {
    parallm: packageVersion(),
    date: new Date().toISOString(),
    host: { name: os.hostname(), os: `${os.type()} ${os.release()} ${os.arch()}`, cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, memoryBytes: os.totalmem(), node: process.version },
    devices: used.map((d) => ({ id: d, name: deviceInfo(d).name })),
    gpus: listDevices().filter((d) => d.kind === 'cuda').map((d) => d.name),
    cuda: {
      compiled: info.cuda,
      status: info.cudaStatus,
      ...(cudaVersionString(info.cudaRuntimeVersion) ? { runtime: cudaVersionString(info.cudaRuntimeVersion) } : {}),
      ...(cudaVersionString(info.cudaDriverVersion) ? { driverSupports: cudaVersionString(info.cudaDriverVersion) } : {}),
    },
    ...(driver ? { driver } : {}),
    nccl: nccl.ok && nccl.version ? { version: ncclVersionString(nccl.version) } : { error: nccl.error ?? 'NCCL is not available' },
  };
}
