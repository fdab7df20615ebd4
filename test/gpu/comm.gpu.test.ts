// NCCL communicators: two worker threads, one rank each on cuda:0 and cuda:1, results against the host
// computation. Skipped unless there are two GPUs and NCCL loads (PARALLM_NCCL_LIBRARY or libnccl.so.2).
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/device.js';
import { packageRoot } from '../../src/native.js';
import { ncclStatus, newCommId } from '../../src/parallel/comm.js';

const WORLD = 2;
const enabled = cudaDeviceCount() >= WORLD && ncclStatus().ok;

// Multiples of 1/8 below 2: exact in f32 and bf16, so sums over two ranks are exact too.
function input(rank: number, i: number): number {
  return (((rank * 7 + i * 3) % 11) - 5) * 0.25 + rank * 0.125;
}

const WORKER = String.raw`
const { parentPort, workerData: W } = require('node:worker_threads');
const native = require('node:module').createRequire(W.root + '/package.json')('node-gyp-build')(W.root);
const dev = 'cuda:' + W.rank;
const range = (n) => Array.from({ length: n }, (_, i) => i);
const input = ${input.toString()};
function tensor(dt, values) {
  const t = native.empty(dev, dt, [values.length]);
  const f = Float32Array.from(values);
  t.writeHost(dt === 'bf16' ? Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16) : f);
  return t;
}
// A Float32Array (cheap to post back, even at a million elements).
function read(t) {
  const b = t.toHost(); // waits for the stream, so for the NCCL op queued on it
  if (t.dtype === 'bf16') return new Float32Array(Uint32Array.from(new Uint16Array(b), (h) => h << 16).buffer);
  return new Float32Array(b);
}
const vals = (rank, n) => range(n).map((i) => input(rank, i));
function tryOp(fn) {
  try { fn(); return { ok: true }; } catch (e) { return { ok: false, error: e.message }; }
}

const S = {
  collectives(c, rank, world, args) {
    const out = {};
    for (const dt of ['f32', 'bf16'])
      for (const op of ['sum', 'avg'])
        for (const n of args.sizes) {
          const t = tensor(dt, vals(rank, n));
          c.allReduce(t, op);
          out['allReduce ' + dt + ' ' + op + ' ' + n] = read(t);
          t.dispose();
        }
    for (const root of range(world)) {
      const t = tensor('f32', vals(rank, 7));
      c.broadcast(t, root);
      out['broadcast ' + root] = read(t);
    }
    for (const dt of ['f32', 'bf16']) {
      const inp = tensor(dt, vals(rank, 6));
      const o = native.empty(dev, dt, [6 * world]);
      c.allGather(o, inp);
      out['allGather ' + dt] = read(o);
    }
    // 0 -> 1, then 1 -> 0.
    const m = tensor('f32', rank === 0 ? [1, 2, 3] : [0, 0, 0]);
    if (rank === 0) c.send(m, 1); else c.recv(m, 0);
    const back = tensor('bf16', rank === 1 ? [4, 5] : [0, 0]);
    if (rank === 1) c.send(back, 0); else c.recv(back, 1);
    out.p2p = [read(m), read(back)];
    for (let i = 0; i < 20; i++) c.barrier();
    out.wrongDevice = tryOp(() => c.allReduce(native.empty('cpu:0', 'f32', [4])));
    return out;
  },
  // Rank 1 never joins the barrier: rank 0 times out (and aborts its communicator) instead of hanging.
  barrierTimeout(c, rank) {
    if (rank === 1) {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 4000);
      c.abort();
      return 'aborted';
    }
    const r = tryOp(() => c.barrier());
    r.after = tryOp(() => c.barrier());
    return r;
  },
};

let c;
try {
  c = native.commCreate('nccl', W.id, W.rank, W.world, dev, W.timeoutMs);
  const value = S[W.scenario](c, W.rank, W.world, W.args || {});
  parentPort.postMessage({ rank: W.rank, ok: true, value });
} catch (e) {
  parentPort.postMessage({ rank: W.rank, ok: false, error: e.message });
} finally {
  if (c) c.destroy();
}
`;

interface RankResult {
  rank: number;
  ok: boolean;
  value?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  error?: string;
}

function run(scenario: string, opts: { timeoutMs?: number; args?: object } = {}): Promise<RankResult[]> {
  const id = newCommId('nccl');
  return Promise.all(
    Array.from({ length: WORLD }, (_, rank) => {
      const w = new Worker(WORKER, {
        eval: true,
        workerData: { root: packageRoot, rank, world: WORLD, id, scenario, timeoutMs: opts.timeoutMs ?? 60_000, args: opts.args },
      });
      return new Promise<RankResult>((resolve, reject) => {
        let result: RankResult | undefined;
        w.on('message', (m) => (result = m));
        w.on('error', reject);
        w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`rank ${rank} exited (${code}) without a result`))));
      });
    }),
  );
}

describe.skipIf(!enabled)('NCCL communicator on cuda:0 and cuda:1', () => {
  it('all-reduce (sum, avg; f32, bf16), broadcast, all-gather, send/recv, barrier match the host', async () => {
    const sizes = [1, 1000, 1 << 20];
    const res = await run('collectives', { args: { sizes } });
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    const [a, b] = res.map((r) => r.value);
    for (const dt of ['f32', 'bf16'])
      for (const op of ['sum', 'avg'])
        for (const n of sizes) {
          const key = `allReduce ${dt} ${op} ${n}`;
          const got = a[key] as Float32Array, other = b[key] as Float32Array;
          expect([got.length, other.length]).toEqual([n, n]);
          const tol = dt === 'bf16' ? 2 ** -8 : 1e-6;
          let worst = 0, differ = 0;
          for (let i = 0; i < n; i++) {
            const s = input(0, i) + input(1, i);
            const want = op === 'sum' ? s : s / WORLD;
            worst = Math.max(worst, Math.abs(got[i] - want) / Math.max(1, Math.abs(want)));
            if (!Object.is(got[i], other[i])) differ++;
          }
          expect(differ, `${key}: elements where rank 1 differs from rank 0`).toBe(0);
          expect(worst, key).toBeLessThanOrEqual(op === 'sum' ? 0 : tol); // sums of these inputs are exact
        }
    for (const root of [0, 1]) {
      const want = Array.from({ length: 7 }, (_, i) => input(root, i));
      expect(Array.from(a[`broadcast ${root}`])).toEqual(want);
      expect(Array.from(b[`broadcast ${root}`])).toEqual(want);
    }
    for (const dt of ['f32', 'bf16']) {
      const want = Array.from({ length: 12 }, (_, j) => input(Math.floor(j / 6), j % 6));
      expect(Array.from(a[`allGather ${dt}`])).toEqual(want);
      expect(Array.from(b[`allGather ${dt}`])).toEqual(want);
    }
    expect(Array.from(b.p2p[0])).toEqual([1, 2, 3]);
    expect(Array.from(a.p2p[1])).toEqual([4, 5]);
    expect(a.wrongDevice.ok).toBe(false);
    expect(a.wrongDevice.error).toMatch(/allReduce on rank 0 of 2 \(cuda:0\): tensor is on cpu:0 but the communicator is on cuda:0/);
  });

  // Until 2026-11-25 this hung on 2 GPUs with NCCL 2.28: the barrier's first all-reduce blocked the host
  // thread inside NCCL, connecting to a peer that never came. The communicator now runs that all-reduce
  // once when it is created, while every rank is there (native/comm/communicator.cc).
  it('a barrier whose peer never comes times out and aborts, instead of hanging', async () => {
    const res = await run('barrierTimeout', { timeoutMs: 1500 });
    const r0 = res[0].value;
    expect(r0.ok).toBe(false);
    expect(r0.error).toMatch(/barrier on rank 0 of 2 \(cuda:0, 1 x f32\): timed out after 1500 ms .*aborted/);
    expect(r0.after.error).toMatch(/the communicator was aborted or destroyed/);
    expect(res[1].value).toBe('aborted');
  });
});
