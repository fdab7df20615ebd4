// The typed surface of the native addon (native/napi/), and the loader that finds its binary:
// prebuilds/<platform>-<arch>/ first when installed from a package, build/Release when built here.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type DTypeName = 'f32' | 'bf16' | 'f16' | 'i32';

export interface NativeTensor {
  readonly device: string;
  readonly dtype: DTypeName;
  readonly shape: number[];
  readonly nbytes: number;
  readonly disposed: boolean;
  dispose(): void;
  toHost(): ArrayBuffer;
  /** Begin a read to the host (CUDA: queued on the current stream after the work before it); wait() for it. */
  readBegin(): NativeHostRead;
  writeHost(data: ArrayBufferView): void;
  copyFrom(src: NativeTensor): void;
  view(elementOffset: number, shape: number[]): NativeTensor;
}

/** A read begun by NativeTensor.readBegin: wait() blocks until the copy is done and returns the bytes, once. */
export interface NativeHostRead {
  wait(): ArrayBuffer;
}

export interface NativeGraph {
  readonly ops: number;
  readonly device: string | null;
  replay(): void;
  dispose(): void;
}

export interface NativeEvent {
  record(): void;
  synchronize(): void;
  wait(): void;
  elapsedMs(end: NativeEvent): number;
}

export interface NativeStream {
  synchronize(): void;
  waitEvent(e: NativeEvent): void;
}

export interface NativeDeviceInfo {
  id: string;
  kind: 'cpu' | 'cuda';
  index: number;
  name: string;
  memoryTotal: number;
  memoryFree: number;
  computeCapability?: [number, number];
  multiprocessors?: number;
  peers?: number[];
  threads?: number;
}

export interface NativeMemoryStats {
  allocated: number;
  cached: number;
  peakAllocated: number;
  driverAllocs: number;
}

type T = NativeTensor;
type OptT = NativeTensor | null;

export interface NativeBinding {
  NativeTensor: abstract new () => NativeTensor;
  empty(device: string, dtype: DTypeName, shape: number[]): NativeTensor;
  devices(): NativeDeviceInfo[];
  deviceInfo(device: string): NativeDeviceInfo;
  /** cudaRuntimeVersion: the CUDA runtime linked (13000 for 13.0); cudaDriverVersion: the newest CUDA the
   * driver supports (0 without a driver); both 0 in a build with no CUDA backend */
  buildInfo(): { cuda: boolean; cudaStatus: string; cudaDevices: number; cpuDevices: number; cudaRuntimeVersion: number; cudaDriverVersion: number };
  configureCpuDevices(count: number): void;
  synchronize(device: string): void;
  memoryStats(device: string): NativeMemoryStats;
  resetPeakMemory(device: string): void;
  emptyCache(device: string): void;
  captureBegin(device: string): void;
  captureEnd(device: string): NativeGraph;
  eventCreate(device: string): NativeEvent;
  streamCreate(device: string): NativeStream;
  setStream(device: string, stream: NativeStream | null): void;
  /** Decode's frozen-weights setting on the calling thread (runtime.ts's withFrozenWeights); returns the one before. */
  frozenWeights(on: boolean): boolean;

  matmul(c: T, a: T, b: T, bias: OptT, M: number, N: number, K: number, transA: boolean, transB: boolean, alpha: number, beta: number): void;
  attentionPrefill(out: T, q: T, k: T, v: T, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number, qB: number, qT: number, kvB: number, kvT: number, scale: number): void;
  attentionDecode(out: T, q: T, k: T, v: T, lens: T, B: number, Hq: number, Hkv: number, D: number, qB: number, kvB: number, kvT: number, maxLen: number, scale: number, counter?: T | null): void;
  kvWrite(dst: T, src: T, pos: T, B: number, T: number, W: number, srcB: number, srcT: number, dstB: number, dstT: number, maxLen: number): void;
  rmsnormMatmul(c: T, x: T, normW: T, b: T, bias: T | null, M: number, N: number, K: number, eps: number, alpha: number, beta: number): void;
  rmsnormMatmulSwiglu(c: T, x: T, normW: T | null, wGateUp: T, M: number, F: number, K: number, eps: number): void;
  layernormMatmul(c: T, x: T, gamma: T | null, beta: T | null, b: T, bias: T | null, M: number, N: number, K: number, eps: number, gelu: boolean): void;
  matmulResidualNorm(h: T, r: T, a: T, b: T, bias: T | null, normW: T, normB: T | null, counter: T | null, M: number, N: number, K: number, eps: number): void;
  decodeLayerGpt2(x: T, norm1: T, norm1Bias: T, qkv: T, qkvBias: OptT, out: T, outBias: OptT, norm2: T, norm2Bias: T, up: T, upBias: OptT, down: T, downBias: OptT,
    kCache: T, vCache: T, pos: T, lens: T, counter: OptT, B: number, C: number, H: number, D: number, kvB: number, kvT: number, maxLen: number, eps: number): void;
  ropeKvWrite(qkv: T, kCache: T, vCache: T, pos: T, freqs: T | null, B: number, Hq: number, Hkv: number, D: number, qkvStride: number, rotDim: number, theta: number, kvB: number, kvT: number, maxLen: number): void;
  matmulRopeKvWrite(qkv: T, x: T, w: T, bias: T | null, kCache: T, vCache: T, pos: T, freqs: T | null, M: number, K: number, Hq: number, Hkv: number, D: number, rotDim: number, theta: number, kvB: number, kvT: number, maxLen: number): void;
  matmulRopeKvAttentionDecode(out: T, qkv: T, x: T, w: T, bias: T | null, kCache: T, vCache: T, pos: T, lens: T, freqs: T | null, counter: T | null, M: number, K: number, Hq: number, Hkv: number, D: number, rotDim: number, theta: number, kvB: number, kvT: number, maxLen: number, scale: number): void;
  ropeKvAttentionDecode(out: T, qkv: T, kCache: T, vCache: T, pos: T, lens: T, freqs: T | null, counter: T | null, B: number, Hq: number, Hkv: number, D: number, qkvStride: number, rotDim: number, theta: number, kvB: number, kvT: number, maxLen: number, scale: number): void;
  layernorm(y: T, x: T, gamma: T, beta: T, mean: OptT, rstd: OptT, R: number, C: number, eps: number): void;
  rmsnorm(y: T, x: T, w: T, rstd: OptT, R: number, C: number, eps: number): void;
  gelu(y: T, x: T, n: number): void;
  siluGate(y: T, gate: T, up: T, R: number, F: number, inStride: number): void;
  /** freqs: null, or f32 [rotDim / 2] per-dimension frequencies that replace theta's (scaled RoPE). */
  rope(x: T, pos: T, R: number, H: number, D: number, tstride: number, rotDim: number, theta: number, freqs: T | null): void;
  embedding(out: T, ids: T, table: T, N: number, V: number, C: number): void;
  add(y: T, a: T, b: T, n: number, bPeriod: number): void;
  cast(y: T, x: T, n: number): void;
  softmax(y: T, x: T, R: number, C: number, scale: number): void;
  argmax(out: T, x: T, R: number, C: number): void;
  fillUniform(out: T, n: number, seedHi: number, seedLo: number, low: number, high: number): void;
  sample(out: T, logits: T, offsets: OptT, rows: OptT, R: number, V: number, temperature: number, topK: number, topP: number, seedHi: number, seedLo: number): void;
  // training ops (native/core/kernels.h, section "training"); arguments in the kernel's order
  sumRows(x: T, out: T, R: number, C: number, accumulate: boolean): void;
  layernormBackward(dy: T, x: T, gamma: T, mean: T, rstd: T, dx: T, dgamma: T, dbeta: T, R: number, C: number, dxSum?: T, dxSumAccumulate?: boolean): void;
  rmsnormBackward(dy: T, x: T, w: T, rstd: T, dx: T, dw: T, R: number, C: number): void;
  geluBackward(x: T, dy: T, dx: T, n: number): void;
  geluBackwardBias(x: T, dy: T, dx: T, dbias: T, R: number, C: number, accumulate: boolean): void;
  siluGateBackward(gate: T, up: T, dy: T, dgate: T, dup: T, R: number, F: number, inStride: number): void;
  ropeBackward(dx: T, pos: T, R: number, H: number, D: number, tstride: number, rotDim: number, theta: number, freqs: T | null): void;
  attentionForward(q: T, k: T, v: T, out: T, lse: T, B: number, T: number, Hq: number, Hkv: number, D: number, qB: number, qT: number, kvB: number, kvT: number, scale: number): void;
  attentionBackward(q: T, k: T, v: T, out: T, dout: T, lse: T, dq: T, dk: T, dv: T, workspace: T, B: number, T: number, Hq: number, Hkv: number, D: number, qB: number, qT: number, kvB: number, kvT: number, scale: number): void;
  embeddingBackward(ids: T, dout: T, dtable: T, N: number, V: number, C: number, scale: number): void;
  crossEntropy(logits: T, targets: T, losses: T, dlogits: OptT, R: number, V: number, ignoreIndex: number, dscale: number, ld: number): void;
  sumSquares(x: T, out: T, n: number): void;
  adamw(master: T, param: OptT, grad: T, m: T, v: T, n: number, nDecay: number, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, gradScale: number, step: number): void;

  ncclAvailable(): { ok: boolean; version?: number; error?: string };
  ncclUniqueId(): Uint8Array;
  /** stop: an Int32Array of one element over a SharedArrayBuffer; once non-zero, a wait of this rank stops (close, terminate) */
  commCreate(kind: 'cpu' | 'tcp' | 'nccl', id: string | Uint8Array, rank: number, world: number, device: string, timeoutMs: number, stop?: Int32Array | null): NativeComm;

  /** Hooks for tests and benchmarks only: not part of the public ops (see NativeTestingHooks). */
  testing: NativeTestingHooks;
}

/**
 * Knobs of the kernels that exist for tests and benchmarks only (native/napi/ops.cc). No-ops in a build
 * without CUDA.
 */
export interface NativeTestingHooks {
  /** K slices of the sm90 matmul: -1 chosen per call (the default), 1 split-K off, up to 32. */
  matmulSplitK(n: number): void;
  /**
   * The K slices the sm90 matmul's wave rule (native/core/split_rule.h) gives a compute-bound GEMM of `tiles`
   * 128 x 256 tiles and `kTiles` k-tiles of 64, M x N, on `sms` SMs: a pure function, in every build.
   */
  matmulWaveSplits(tiles: number, kTiles: number, M: number, N: number, sms: number): number;
  /** The sm90 matmul stores C through the TMA (true, the default where it applies) or from registers. */
  matmulTmaStore(on: boolean): void;
  /** The sm90 matmul's tile: -1 by M (the default: 64 rows up to M = 64, else 128), 64 or 128 forced. */
  matmulTileRows(rows: -1 | 64 | 128): void;
  /**
   * The 128-row sm90 tile's width: -1 by the product (the default: matmulTileWidth's rule; PARALLM_TILE192=0 keeps
   * 256, =all takes 192), 192 or 256 forced.
   */
  matmulTileCols(cols: -1 | 192 | 256): void;
  /**
   * The width (192 or 256 columns) the sm90 matmul gives the 128-row tile of an M x N product of `kTiles` k-tiles of
   * 64 on `sms` SMs, cut in s256 or s192 K slices at each width (native/core/split_rule.h): a pure function, in every
   * build.
   */
  matmulTileWidth(M: number, N: number, kTiles: number, sms: number, s256: number, s192: number): number;
  /**
   * Which products the sm90 W-as-A tile takes (the weight as the wgmma's A operand, X's few rows as B): -1 the
   * dispatch's choice (PARALLM_WTILE's setting where set, else products of 9-16 rows with K >= 4096 and N x K >= 2^24), 0 none, 1 those of
   * at most 64 rows the 64-row tile would take, 2 also the GEMV's. No-op without CUDA.
   */
  matmulWTile(mode: -1 | 0 | 1 | 2): void;
  /**
   * The GEMV (M <= 16, B^T) kernel: -1 chosen (the default: the register kernel, its load form by N, the
   * norms apart), 0 the same, 1 pipelined (with rmsnormMatmul fused), 2 and 3 pipelined in alternative shapes
   * (for sweeps; 3 splits K over 16 warps, so its sums round differently), 4 the register kernel in its
   * single-plain-load form at every N (by default it takes that form below N = 6144 only; same bits either
   * way), 5 as -1 with rmsnormLinear(SwiGLU) and layernormLinear fused into the register kernel at M <= 4
   * (PARALLM_GEMV_FUSE=1 does the same), 6 the register kernel on 16 W rows a block (same bits), 7 no GEMV
   * on compute capability 9.0: the sm90 GEMM's 64-row tile takes those products (its sums round differently),
   * 8 and 9 the register kernel on 32 W rows a block (unroll 4, 2; linearSwiGLU's on 2 gate and 2 up sets), the
   * same bits as 0: faster than the W-as-A tile on the kernel benchmark at 16 rows, slower in decode (bench/RESULTS.md
   * S26-1, S26-4).
   */
  matmulGemv(path: number): void;
  /** Key chunks of decode attention: -1 chosen per call (the default), n >= 1 asks for n (capped by the length). */
  attentionDecodeSplits(n: number): void;
  /**
   * The bf16 prefill kernel of attentionPrefill and attentionForward where both apply (D 64 or 128 on
   * compute capability 9.0, layouts the TMA can express): 0 automatic (PARALLM_ATTN_PREFILL = mma, sm90,
   * sm90-overlap, sm90-pingpong or sm90-overlap-pingpong, else the wgmma kernel with the overlap for D 128
   * and the mma.sync one for D 64), 1 the mma.sync kernel, 2 the wgmma (sm90) kernel, 3 it with FlashAttention-3's
   * intra-warpgroup overlap, 4 with its inter-warpgroup ping-pong, 5 with both.
   */
  attentionPrefillKernel(kernel: 0 | 1 | 2 | 3 | 4 | 5): void;
  /**
   * Programmatic dependent launch on sm_90+: 0 none, 1 the decode GEMVs (the default), 2 the small decode
   * kernels too (not yet timed on a GPU). PARALLM_PDL=0|1|2 sets the starting level.
   */
  pdl(level: 0 | 1 | 2): void;
  /**
   * Blocks of decodeLayerGpt2's persistent cooperative kernel: 0 one a multiprocessor (the default), n >= 1
   * n (at most what the device holds at once). No-op without CUDA.
   */
  decodeLayerGrid(blocks: number): void;
  /**
   * How the 128-row sm90 tile's blocks take their tiles: -1 PARALLM_GEMM_SCHEDULE's setting (unset: strided), 0 strided
   * (block b takes b, b + grid, ...), 1 drawn from a counter, so blocks that start late (their SMs held by another
   * stream's kernel) take fewer, 2 drawn after each block's own first. The same bits each way. No-op without CUDA.
   */
  matmulSchedule(mode: -1 | 0 | 1 | 2): void;
  /**
   * `blocks` SMs of cuda:`device` taken by a spinning kernel on a stream of its own, as NCCL's blocks take them beside
   * the backward in data-parallel training; back once they all run. Until releaseSms(device), or 30 s. Throws without
   * CUDA.
   */
  holdSms(device: number, blocks: number): void;
  /** Ends holdSms's kernel on cuda:`device` and waits for it (nothing when none is held). */
  releaseSms(device: number): void;
  /**
   * `blocks` SMs of a CUDA device held for `microseconds` by a kernel queued on its current stream (a graph being
   * captured holds it): bench train's rehearsal of a data-parallel rank's gradient reductions. Throws on a CPU device.
   */
  busySms(device: string, blocks: number, microseconds: number): void;
}

/** One rank of a communicator (native/comm): collectives over NativeTensors on its device. */
export interface NativeComm {
  readonly rank: number;
  readonly world: number;
  readonly device: string;
  /** '' when the peer all-reduce paths are available, else why not. */
  readonly peerAllReduce: string;
  allReduce(t: T, op?: 'sum' | 'avg', path?: 'auto' | 'nccl' | 'peer-ll' | 'peer-one-shot' | 'peer-two-shot'): void;
  /** residual += the sum of t over ranks in one kernel; false (nothing done) where the path cannot. */
  allReduceAdd(t: T, residual: T, path?: 'auto' | 'nccl' | 'peer-ll' | 'peer-one-shot' | 'peer-two-shot'): boolean;
  /** residual += the sum of t over ranks, then h = rmsnorm(residual, normW, eps), in one kernel; false (nothing done) where the peer path cannot. */
  allReduceAddNorm(t: T, residual: T, normW: T, h: T, eps: number): boolean;
  broadcast(t: T, root: number): void;
  allGather(out: T, inp: T): void;
  reduceScatter(out: T, inp: T, op?: 'sum' | 'avg'): void;
  send(t: T, peer: number): void;
  recv(t: T, peer: number): void;
  barrier(): void;
  drain(): void;
  groupStart(): void;
  groupEnd(): void;
  abort(): void;
  destroy(): void;
}

/**
 * Every name the addon exports, listed once so test/unit/native-surface.test.ts can hold the binary to
 * this file: `satisfies` rejects a name NativeBinding lacks, and ListsEvery rejects a key left out.
 */
export const NATIVE_KEYS = [
  'NativeTensor', 'empty', 'devices', 'deviceInfo', 'buildInfo', 'configureCpuDevices', 'synchronize',
  'memoryStats', 'resetPeakMemory', 'emptyCache', 'captureBegin', 'captureEnd', 'eventCreate', 'streamCreate',
  'setStream', 'frozenWeights', 'matmul', 'attentionPrefill', 'attentionDecode', 'kvWrite', 'ropeKvWrite', 'matmulRopeKvWrite', 'matmulRopeKvAttentionDecode', 'ropeKvAttentionDecode', 'rmsnormMatmul', 'rmsnormMatmulSwiglu', 'layernormMatmul', 'matmulResidualNorm', 'decodeLayerGpt2', 'layernorm', 'rmsnorm', 'gelu',
  'siluGate', 'rope', 'embedding', 'add', 'cast', 'softmax', 'argmax', 'fillUniform', 'sample', 'sumRows',
  'layernormBackward', 'rmsnormBackward', 'geluBackward', 'geluBackwardBias', 'siluGateBackward', 'ropeBackward', 'attentionForward',
  'attentionBackward', 'embeddingBackward', 'crossEntropy', 'sumSquares', 'adamw', 'ncclAvailable', 'ncclUniqueId',
  'commCreate', 'testing',
] as const satisfies readonly (keyof NativeBinding)[];

/** Every name of NativeTestingHooks, held to the addon's `testing` object the same way. */
export const NATIVE_TESTING_KEYS = ['matmulSplitK', 'matmulWaveSplits', 'matmulTmaStore', 'matmulTileRows', 'matmulTileCols', 'matmulTileWidth', 'matmulWTile', 'matmulGemv', 'attentionDecodeSplits', 'attentionPrefillKernel', 'pdl', 'decodeLayerGrid', 'matmulSchedule', 'holdSms', 'releaseSms', 'busySms'] as const satisfies readonly (keyof NativeTestingHooks)[];

// A compile error names the keys of T missing from the list L.
type ListsEvery<T, L extends readonly PropertyKey[]> = [Exclude<keyof T, L[number]>] extends [never] ? true : Exclude<keyof T, L[number]>;
const nativeKeysComplete: ListsEvery<NativeBinding, typeof NATIVE_KEYS> = true;
const testingKeysComplete: ListsEvery<NativeTestingHooks, typeof NATIVE_TESTING_KEYS> = true;
void nativeKeysComplete, testingKeysComplete;

/** The package root: one level above src/ or dist/. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function load(): NativeBinding {
  const require = createRequire(import.meta.url);
  const gypBuild = require('node-gyp-build') as (dir: string) => unknown;
  try {
    return gypBuild(packageRoot) as NativeBinding;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(
      `parallm: could not load its native addon for ${process.platform}-${process.arch} (Node ${process.version}). ` +
        `Looked in ${path.join(packageRoot, 'prebuilds')} and ${path.join(packageRoot, 'build/Release')}. ` +
        `Build it with 'npm run build:native' (needs cmake and a C++17 compiler; nvcc for the CUDA backend). Cause: ${why}`,
    );
  }
}

export const native: NativeBinding = load();
