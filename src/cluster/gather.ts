// What the main threads of a multi-process run exchange: small JSON values (a process's share of
// generated tokens), through the processes' 'tcp' communicator (DistWorld.processComm) on cpu:0.
import { Communicator } from '../parallel/comm.js';
import { Tensor } from '../tensor.js';
import type { DistWorld } from './rendezvous.js';

/** Joins the processes' communicator (blocks until every process has: call it on all of them at once). */
export function processCommunicator(w: DistWorld, timeoutMs = 60_000): Communicator | null {
  return w.processComm ? Communicator.create('tcp', w.processComm, w.process, w.processes, 'cpu:0', { timeoutMs }) : null;
}

/** Every process's `value`, in process order (each process must call it, in the same order). */
export function allGatherJson(comm: Communicator, value: unknown): unknown[] {
  const bytes = Buffer.from(JSON.stringify(value) ?? 'null', 'utf8');
  const len = Tensor.from([bytes.length], [1], { device: 'cpu:0', dtype: 'i32' });
  const lens = Tensor.empty([comm.world], { device: 'cpu:0', dtype: 'i32' });
  let mine: Tensor | null = null;
  let all: Tensor | null = null;
  try {
    comm.allGather(lens, len);
    const sizes = Array.from(lens.toArray());
    const words = Math.ceil(Math.max(...sizes) / 4);
    // each value padded to the longest, as i32 words (the bytes cross unchanged)
    const padded = new Uint8Array(words * 4);
    padded.set(bytes);
    mine = Tensor.from(new Int32Array(padded.buffer), [words], { device: 'cpu:0', dtype: 'i32' });
    all = Tensor.empty([words * comm.world], { device: 'cpu:0', dtype: 'i32' });
    comm.allGather(all, mine);
    const raw = Buffer.from((all.toArray() as Int32Array).buffer);
    return sizes.map((n, p) => JSON.parse(raw.subarray(p * words * 4, p * words * 4 + n).toString('utf8')) as unknown);
  } finally {
    len.dispose();
    lens.dispose();
    mine?.dispose();
    all?.dispose();
  }
}
