// Collective communication between devices, one rank per worker thread: NCCL on GPUs, an in-process
// shared-memory implementation on CPU devices, and TCP sockets between CPU ranks of different processes
// (native/comm/tcp.cc, the same results as the in-process one, bit for bit). Every rank of a communicator must make the
// same calls in the same order; a rank that errs, aborts or never arrives makes the others fail (CPU:
// within the timeout), never hang.
import { randomBytes } from 'node:crypto';
import { parseDevice } from '../device.js';
import { native, type NativeComm } from '../native.js';
import { add, rmsnorm } from '../ops.js';
import type { Tensor } from '../tensor.js';

export type CommKind = 'cpu' | 'tcp' | 'nccl';
export type ReduceOp = 'sum' | 'avg';
/**
 * How an all-reduce travels. 'auto': NCCL, except that ranks which are threads of one process on GPUs
 * with peer access (NVLink) add messages up to 1 MiB by writing into each other's memory
 * (native/cuda/allreduce.cu: the LL protocol up to 256 KiB, where each word travels with its flag; then
 * one exchange for 2 ranks, two above 64 KiB with more ranks). The others
 * force a way (benchmarks, tests): 'nccl' is the communicator's own collective (NCCL, or the CPU
 * implementation), and a peer path where `peerAllReduce` is not '' is an error.
 */
export type AllReducePath = 'auto' | 'nccl' | 'peer-ll' | 'peer-one-shot' | 'peer-two-shot';

export interface CommOptions {
  /** Bound on every wait of a CPU collective, and on an NCCL barrier (0: none). Default 60 s. */
  timeoutMs?: number;
  /**
   * A flag another thread may set (Int32Array of one element over a SharedArrayBuffer): once non-zero,
   * this rank's waits stop within 20 ms and break the communicator (DevicePool gives each worker one).
   */
  stopFlag?: Int32Array;
}

export interface NcclStatus {
  ok: boolean;
  /** NCCL_VERSION_CODE, e.g. 22803 for 2.28.3. */
  version?: number;
  /** Why NCCL cannot be used (the library looked for, and the loader's message). */
  error?: string;
}

/** Whether NCCL can be used here: found (PARALLM_NCCL_LIBRARY or libnccl.so.2) and a CUDA build. */
export function ncclStatus(): NcclStatus {
  return native.ncclAvailable();
}

/** A fresh id for a new communicator: created once (e.g. by the pool) and given to every rank. */
export function newCommId(kind: CommKind): string | Uint8Array {
  if (kind === 'cpu') return `cpu-comm-${randomBytes(12).toString('hex')}`;
  if (kind === 'nccl') return native.ncclUniqueId();
  if (kind === 'tcp') throw new Error("newCommId: a 'tcp' id names every rank's address: make it with tcpCommId(addresses) (the rendezvous does)");
  throw new Error(`newCommId: kind must be 'cpu', 'tcp' or 'nccl', got ${String(kind)}`);
}

/**
 * The id of a 'tcp' communicator: rank r listens on addresses[r] ("host:port", "[v6]:port"); a fresh
 * random token, checked when ranks connect, keeps other communicators' (and strangers') connections out.
 */
export function tcpCommId(addresses: string[], token: string = randomBytes(16).toString('hex')): string {
  if (!Array.isArray(addresses) || addresses.length === 0) throw new Error('tcpCommId: give one "host:port" per rank');
  for (const a of addresses)
    if (typeof a !== 'string' || !/^(\[[^\]]+\]|[^,@\s:]+):\d{1,5}$/.test(a)) throw new Error(`tcpCommId: '${String(a)}' is not host:port`);
  if (!/^[0-9A-Za-z_-]{1,1024}$/.test(token)) throw new Error('tcpCommId: the token must be 1..1024 letters, digits, _ or -');
  return `tcp:${token}@${addresses.join(',')}`;
}

export class Communicator {
  /** @internal */ readonly native: NativeComm;
  readonly rank: number;
  readonly world: number;
  readonly device: string;

  private constructor(n: NativeComm) {
    this.native = n;
    this.rank = n.rank;
    this.world = n.world;
    this.device = n.device;
  }

  /**
   * Join communicator `id` as `rank` of `world`, on `device` (cpu:N for 'cpu' and 'tcp', cuda:N for
   * 'nccl'). NCCL and 'tcp': block until every rank has joined (tcp: bounded by the timeout, ended by the
   * stop flag), so each rank must call it from its own thread.
   */
  static create(kind: CommKind, id: string | Uint8Array, rank: number, world: number, device: string, opts: CommOptions = {}): Communicator {
    const dev = parseDevice(device);
    const want = kind === 'nccl' ? 'cuda' : kind === 'cpu' || kind === 'tcp' ? 'cpu' : null;
    if (!want) throw new Error(`Communicator.create: kind must be 'cpu', 'tcp' or 'nccl', got ${String(kind)}`);
    if (!dev.startsWith(want + ':')) throw new Error(`Communicator.create: a '${kind}' communicator needs a ${want}:N device, got ${dev}`);
    if (kind === 'cpu' && typeof id !== 'string') throw new Error('Communicator.create: a CPU communicator id is a string (newCommId("cpu"))');
    if (kind === 'tcp' && typeof id !== 'string') throw new Error('Communicator.create: a tcp communicator id is a string (tcpCommId(addresses))');
    if (kind === 'nccl' && !(id instanceof Uint8Array)) throw new Error('Communicator.create: an NCCL id is a Uint8Array (newCommId("nccl"))');
    const timeoutMs = opts.timeoutMs ?? 60_000;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0) throw new Error(`Communicator.create: timeoutMs must be an integer >= 0, got ${timeoutMs}`);
    return new Communicator(native.commCreate(kind, id, rank, world, dev, timeoutMs, opts.stopFlag ?? null));
  }

  /**
   * In place: every rank's `t` becomes the sum (or mean) over all ranks. On the peer paths every rank
   * gets the same bits (summed in f32 in rank order), as with NCCL.
   */
  allReduce(t: Tensor, op: ReduceOp = 'sum', path: AllReducePath = 'auto'): void {
    this.native.allReduce(t.native, op, path);
  }
  /**
   * residual += the sum of `t` over ranks (t, residual: same shape and dtype): one kernel on the peer
   * paths (the sum rounded to the type, then added: the bits of allReduce then add), else allReduce
   * then ops.add. `t` is left unspecified.
   */
  allReduceAdd(t: Tensor, residual: Tensor, path: AllReducePath = 'auto'): void {
    if (this.native.allReduceAdd(t.native, residual.native, path)) return;
    this.allReduce(t, 'sum', path);
    add(residual, t, residual);
  }
  /**
   * allReduceAdd, then h = rmsnorm(residual, normW, { eps }) (t, residual, h: [rows, C] alike, normW [C]):
   * one kernel where the peer path's LL takes the message (tensor-parallel decode: the norm needs no
   * launch of its own), else the ops apart; the same bits either way.
   */
  allReduceAddNorm(t: Tensor, residual: Tensor, normW: Tensor, h: Tensor, eps: number): void {
    if (this.native.allReduceAddNorm(t.native, residual.native, normW.native, h.native, eps)) return;
    this.allReduceAdd(t, residual);
    rmsnorm(residual, normW, { eps, out: h });
  }
  /** '' when this communicator can take the peer all-reduce paths, else why not (AllReducePath). */
  get peerAllReduce(): string {
    return this.native.peerAllReduce;
  }
  /** Every rank's `t` becomes root's. */
  broadcast(t: Tensor, root: number): void {
    this.native.broadcast(t.native, root);
  }
  /** `out` (world x inp.numel elements) gets rank r's `inp` at element r * inp.numel. */
  allGather(out: Tensor, inp: Tensor): void {
    this.native.allGather(out.native, inp.native);
  }
  /**
   * `inp` holds world x out.numel elements; rank r's `out` becomes the sum (or mean) over all ranks of
   * their block r (elements [r * out.numel, (r + 1) * out.numel) of inp). In place when `out` is a view
   * of exactly that block of `inp`. CPU: summed in rank order in f32, as allReduce does, so a block
   * equals the same elements of an allReduce bit for bit.
   */
  reduceScatter(out: Tensor, inp: Tensor, op: ReduceOp = 'sum'): void {
    this.native.reduceScatter(out.native, inp.native, op);
  }
  /**
   * To `peer`, which must recv the same number of elements and dtype; messages arrive in order. Returns
   * without waiting for the recv (CPU: copied into a queue; NCCL: queued on the stream, though on the
   * GPU a large send still waits for its recv, so crossing large sends need a recv queued first).
   */
  send(t: Tensor, peer: number): void {
    this.native.send(t.native, peer);
  }
  recv(t: Tensor, peer: number): void {
    this.native.recv(t.native, peer);
  }
  /**
   * Sends and receives issued inside `fn` progress together (NCCL's group call), so two ranks may each
   * send to and receive from the other. Issue the sends first: a CPU send is queued at once, a CPU
   * receive waits for its message.
   */
  group<R>(fn: () => R): R {
    this.native.groupStart();
    try {
      return fn();
    } finally {
      this.native.groupEnd();
    }
  }
  /**
   * Returns once this rank's queued work (its sends and receives too) is done. On a GPU it polls, so a
   * failed peer, the timeout or the stop flag ends it with an error instead of a hang.
   */
  drain(): void {
    this.native.drain();
  }
  /** Returns once every rank has called it. */
  barrier(): void {
    this.native.barrier();
  }
  /** Peers waiting on this rank, or calling later, fail at once; this rank's later calls fail. */
  abort(): void {
    this.native.abort();
  }
  /**
   * Release this rank. CPU: collectives and receives from it fail on the other ranks (messages it sent
   * still arrive). NCCL: every rank should destroy together (recent NCCL synchronizes the ranks of a
   * node when freeing a communicator).
   */
  destroy(): void {
    this.native.destroy();
  }
}
