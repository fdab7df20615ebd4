// The CPU communicator: real worker threads, one rank each on cpu:0..2, meeting in process memory.
// Workers load the addon directly (they cannot import the TypeScript sources); the TypeScript wrapper
// is exercised on the main thread, as rank 0 beside worker ranks.
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { configureCpuDevices } from '../../src/device.js';
import { packageRoot } from '../../src/native.js';
import { Communicator, ncclStatus, newCommId } from '../../src/parallel/comm.js';
import { Tensor } from '../../src/tensor.js';
import { rmsnorm } from '../../src/ops.js';

const CPU_DEVICES = 3;

// Inputs exact in f32 and bf16 (multiples of 1/8, small), so sums are exact whatever the order.
function input(rank: number, i: number, dt: string): number {
  const k = ((rank * 7 + i * 3) % 11) - 5;
  return dt === 'i32' ? k + rank * 100 : k * 0.25 + rank * 0.125;
}

// The worker: CommonJS (eval), scenarios run synchronously on the worker's own thread.
const WORKER = String.raw`
const { parentPort, workerData: W } = require('node:worker_threads');
const native = require('node:module').createRequire(W.root + '/package.json')('node-gyp-build')(W.root);
native.configureCpuDevices(W.cpuDevices);
const dev = 'cpu:' + W.rank;
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const range = (n) => Array.from({ length: n }, (_, i) => i);
const input = ${input.toString()};
function tensor(dt, values) {
  const t = native.empty(dev, dt, [values.length]);
  const f = Float32Array.from(values);
  if (dt === 'bf16') t.writeHost(Uint16Array.from(new Uint32Array(f.buffer), (u) => u >>> 16)); // exact values
  else if (dt === 'i32') t.writeHost(Int32Array.from(values));
  else t.writeHost(f);
  return t;
}
function read(t) {
  const b = t.toHost();
  if (t.dtype === 'bf16') return Array.from(new Float32Array(Uint32Array.from(new Uint16Array(b), (h) => h << 16).buffer));
  if (t.dtype === 'i32') return Array.from(new Int32Array(b));
  return Array.from(new Float32Array(b));
}
const vals = (rank, n, dt) => range(n).map((i) => input(rank, i, dt));
function tryOp(fn) {
  const t0 = Date.now();
  try { fn(); return { ok: true, ms: Date.now() - t0 }; } catch (e) { return { ok: false, error: e.message, ms: Date.now() - t0 }; }
}

const S = {
  collectives(c, rank, world) {
    const out = {};
    for (const dt of ['f32', 'bf16', 'i32'])
      for (const op of ['sum', 'avg'])
        for (const n of [0, 1, 5, 1001]) {
          const t = tensor(dt, vals(rank, n, dt));
          c.allReduce(t, op);
          out['allReduce ' + dt + ' ' + op + ' ' + n] = read(t);
          t.dispose();
        }
    for (const root of range(world)) {
      const t = tensor('f32', vals(rank, 7, 'f32'));
      c.broadcast(t, root);
      out['broadcast ' + root] = read(t);
    }
    for (const dt of ['f32', 'bf16']) {
      const inp = tensor(dt, vals(rank, 6, dt));
      const o = native.empty(dev, dt, [6 * world]);
      c.allGather(o, inp);
      out['allGather ' + dt] = read(o);
    }
    c.barrier();
    return out;
  },
  // 0 -> 1 -> 2, several messages in a row (the channel is reused), then 2 -> 0.
  chain(c, rank, world) {
    const got = [];
    for (let m = 0; m < 5; m++) {
      const t = tensor('f32', range(8).map((i) => i + m * 10));
      if (rank > 0) { c.recv(t, rank - 1); got.push(read(t)); }
      if (rank < world - 1) c.send(t, rank + 1);
    }
    const b = tensor('bf16', [0, 0, 0]);
    if (rank === world - 1) { b.writeHost(Uint16Array.from([0x3f80, 0x4000, 0x4040])); c.send(b, 0); }
    if (rank === 0) { c.recv(b, world - 1); got.push(read(b)); }
    return got;
  },
  // Both ranks send before receiving (as pipeline stages do): sends are queued, so no deadlock.
  // Then a size mismatch, and a message sent just before its sender is destroyed.
  crossing(c, rank) {
    const other = 1 - rank;
    const out = [];
    for (let m = 0; m < 10; m++) c.send(tensor('f32', [rank, m]), other);
    for (let m = 0; m < 10; m++) { const t = tensor('f32', [0, 0]); c.recv(t, other); out.push(read(t)); }
    if (rank === 0) c.send(tensor('f32', [1, 2, 3]), 1);
    const mismatch = rank === 1 ? tryOp(() => c.recv(tensor('f32', [0, 0]), 0)) : null;
    if (rank === 0) { c.send(tensor('i32', [42]), 1); c.destroy(); return { out }; }
    sleep(100);
    const last = tensor('i32', [0]);
    c.recv(last, 0);
    const after = tryOp(() => c.recv(tensor('i32', [0]), 0));
    return { out, mismatch, last: read(last), after };
  },
  // Many mixed operations: all-reduce, broadcast, a send/recv ring, barriers. Checks itself.
  loop(c, rank, world, args) {
    let bad = 0;
    for (let it = 0; it < args.iterations; it++) {
      const n = 1 + (it % 17);
      const t = tensor('f32', range(n).map((i) => rank + it + i));
      c.allReduce(t, 'sum');
      const want = range(n).map((i) => range(world).reduce((s, r) => s + r + it + i, 0));
      if (JSON.stringify(read(t)) !== JSON.stringify(want)) bad++;
      const root = it % world;
      const b = tensor('f32', [rank, it]);
      c.broadcast(b, root);
      if (read(b)[0] !== root) bad++;
      const msg = tensor('i32', [rank, it]);
      const next = (rank + 1) % world, prev = (rank + world - 1) % world;
      if (rank % 2 === 0) { c.send(msg, next); c.recv(msg, prev); } else { const keep = tensor('i32', [rank, it]); c.recv(msg, prev); c.send(keep, next); }
      if (read(msg)[0] !== prev || read(msg)[1] !== it) bad++;
      if (it % 10 === 0) c.barrier();
      [t, b, msg].forEach((x) => x.dispose());
    }
    return { bad };
  },
  // Rank 1 brings a different size (or rank 2 a different dtype); afterwards the communicator still works.
  mismatch(c, rank, world, args) {
    const dt = args.dtypeOf2 && rank === 2 ? 'bf16' : 'f32';
    const t = tensor(dt, vals(rank, args.sizeOf1 && rank === 1 ? 5 : 4, dt));
    const first = tryOp(() => c.allReduce(t));
    const u = tensor('f32', [rank]);
    c.allReduce(u);
    return { first, after: read(u) };
  },
  // Rank 2 arrives late (after the others' timeout), or aborts, or is destroyed, or its thread ends.
  straggler(c, rank, world, args) {
    const t = tensor('f32', [1, 2, 3]);
    if (rank === world - 1) {
      sleep(args.lateMs || 0);
      if (args.mode === 'abort') { c.abort(); return tryOp(() => c.barrier()); }
      if (args.mode === 'destroy') { c.destroy(); return 'destroyed'; }
      if (args.mode === 'exit') return 'exiting';
      return tryOp(() => c.allReduce(t));
    }
    const r = tryOp(() => c.allReduce(t));
    // After a peer was destroyed, the remaining ranks may still talk to each other.
    if (args.mode === 'destroy' || args.mode === 'exit') {
      const m = tensor('f32', [rank, 7]);
      if (rank === 0) c.send(m, 1); else c.recv(m, 0);
      r.p2p = read(m);
    }
    return r;
  },
  recvTimeout(c, rank, world, args) {
    if (rank === 1) { sleep(args.lateMs); return 'idle'; }
    return tryOp(() => c.recv(tensor('f32', [0, 0]), 1));
  },
  // Rank 1 sets rank 0's stop flag and at once completes the all-reduce rank 0 sleeps in: rank 0 must not
  // throw "stopped" for a round that completed (rank 1 would then wait for it in the round's second
  // barrier forever). Either both finish the round or both fail; never a hang.
  stopAsRoundCompletes(c, rank, world, args) {
    const t = tensor('f32', [rank + 1, 2]);
    if (rank === 1) {
      sleep(60); // rank 0 is asleep in its wait
      Atomics.store(new Int32Array(args.stop), 0, 1);
    }
    return tryOp(() => { c.allReduce(t, 'sum'); return read(t); });
  },
  // The main thread is rank 0 (through the TypeScript wrapper).
  wrapper(c, rank, world) {
    const t = tensor('f32', [rank, 10 * rank]);
    c.allReduce(t, 'sum');
    const o = native.empty(dev, 'f32', [2 * world]);
    c.allGather(o, t);
    const b = tensor('f32', [0, 0, 0]);
    c.broadcast(b, 0);
    c.barrier();
    return { sum: read(t), gathered: read(o), bcast: read(b) };
  },
};

let c;
const t0 = Date.now();
try {
  const stop = W.args && W.args.stop && W.rank === 0 ? new Int32Array(W.args.stop) : null;
  c = native.commCreate('cpu', W.id, W.rank, W.world, dev, W.timeoutMs, stop);
  parentPort.postMessage({ ready: true });
  const value = S[W.scenario](c, W.rank, W.world, W.args || {});
  parentPort.postMessage({ rank: W.rank, ok: true, value, ms: Date.now() - t0 });
} catch (e) {
  parentPort.postMessage({ rank: W.rank, ok: false, error: e.message, ms: Date.now() - t0 });
} finally {
  if (c && !(W.args && W.args.mode === 'exit')) c.destroy(); // 'exit': the thread ends holding it
}
`;

interface RankResult {
  rank: number;
  ok: boolean;
  value?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  error?: string;
  ms: number;
}

interface Spawned {
  ready: Promise<void>;
  done: Promise<RankResult[]>;
}

function spawn(world: number, scenario: string, opts: { ranks?: number[]; id?: string; timeoutMs?: number; args?: object } = {}): Spawned {
  const id = opts.id ?? (newCommId('cpu') as string);
  const ranks = opts.ranks ?? Array.from({ length: world }, (_, r) => r);
  const readies: Promise<void>[] = [];
  const results = ranks.map((rank) => {
    const w = new Worker(WORKER, {
      eval: true,
      workerData: { root: packageRoot, rank, world, id, scenario, timeoutMs: opts.timeoutMs ?? 20_000, args: opts.args, cpuDevices: CPU_DEVICES },
    });
    let setReady!: () => void;
    readies.push(new Promise<void>((r) => (setReady = r)));
    return new Promise<RankResult>((resolve, reject) => {
      let result: RankResult | undefined;
      w.on('message', (m) => (m.ready ? setReady() : (result = m)));
      w.on('error', reject);
      w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`rank ${rank} exited (${code}) without a result`))));
    });
  });
  return { ready: Promise.all(readies).then(() => undefined), done: Promise.all(results) };
}

const run = (world: number, scenario: string, opts: { timeoutMs?: number; args?: object } = {}) => spawn(world, scenario, opts).done;

function values(world: number, n: number, dt: string, op: string): number[] {
  return Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let r = 0; r < world; r++) s += input(r, i, dt);
    return op === 'sum' ? s : dt === 'i32' ? Math.trunc(s / world) : s / world;
  });
}

beforeAll(() => configureCpuDevices(CPU_DEVICES));

describe.each([2, 3])('CPU communicator, %i ranks', (world) => {
  it('all-reduce (sum, avg; f32, bf16, i32), broadcast, all-gather, barrier: right and identical on every rank', async () => {
    const res = await run(world, 'collectives');
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) expect(r.value, `rank ${r.rank} vs rank 0`).toEqual(res[0].value); // bit-identical
    const out = res[0].value as Record<string, number[]>;
    for (const dt of ['f32', 'bf16', 'i32'])
      for (const op of ['sum', 'avg'])
        for (const n of [0, 1, 5, 1001]) {
          const got = out[`allReduce ${dt} ${op} ${n}`];
          const want = values(world, n, dt, op);
          expect(got.length).toBe(n);
          if (op === 'sum' || dt === 'i32') expect(got, `${dt} ${op} ${n}`).toEqual(want);
          else {
            const tol = dt === 'bf16' ? 2 ** -8 : 1e-6;
            got.forEach((g, i) => expect(Math.abs(g - want[i]), `${dt} ${op} ${n} [${i}]`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(want[i]))));
          }
        }
    for (let root = 0; root < world; root++)
      expect(out[`broadcast ${root}`]).toEqual(Array.from({ length: 7 }, (_, i) => input(root, i, 'f32')));
    for (const dt of ['f32', 'bf16'])
      expect(out[`allGather ${dt}`]).toEqual(Array.from({ length: 6 * world }, (_, j) => input(Math.floor(j / 6), j % 6, dt)));
  });

  it('send/recv along a chain, several messages in a row', async () => {
    const res = await run(world, 'chain');
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    const msgs = Array.from({ length: 5 }, (_, m) => Array.from({ length: 8 }, (_, i) => i + m * 10));
    for (let r = 1; r < world; r++) expect(res[r].value).toEqual(msgs);
    expect(res[0].value).toEqual([[1, 2, 3]]);
  });

  it('many mixed operations in a loop: no deadlock, every result right', async () => {
    const res = await run(world, 'loop', { args: { iterations: 300 } });
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) expect(r.value.bad, `rank ${r.rank}`).toBe(0);
  });
});

describe('CPU send/recv', () => {
  it('ranks that send to each other before receiving do not deadlock; mismatch and departed sender', async () => {
    const res = await run(2, 'crossing', { timeoutMs: 5000 });
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) expect(r.value.out).toEqual(Array.from({ length: 10 }, (_, m) => [1 - r.rank, m]));
    const v = res[1].value;
    expect(v.mismatch.ok).toBe(false);
    expect(v.mismatch.error).toMatch(/recv on rank 1 of 2 \(cpu:1, 2 x f32\): rank 0 sent 3 x f32 but rank 1 receives 2 x f32/);
    expect(v.last).toEqual([42]); // sent before rank 0 was destroyed: still delivered
    expect(v.after.error).toMatch(/recv on rank 1 of 2 .*peer rank 0 aborted \(its communicator was destroyed\)/);
  });
});

describe('CPU communicator failures: every rank gets an error, nothing hangs', () => {
  it('a size mismatch fails on every rank, naming the ranks; the communicator still works after', async () => {
    const res = await run(3, 'mismatch', { args: { sizeOf1: true } });
    for (const r of res) {
      expect(r.error, `rank ${r.rank}`).toBeUndefined();
      expect(r.value.first.ok).toBe(false);
      expect(r.value.first.error).toMatch(new RegExp(`allReduce on rank ${r.rank} of 3 \\(cpu:${r.rank}, \\d x f32\\)`));
      expect(r.value.first.error).toMatch(/rank\(s\) 1 differ from rank 0/);
      expect(r.value.first.error).toMatch(/rank 1: allReduce\(sum\) of 5 x f32/);
      expect(r.value.after).toEqual([3]);
    }
  });

  it('a dtype mismatch names the rank too', async () => {
    const res = await run(3, 'mismatch', { args: { dtypeOf2: true } });
    for (const r of res) expect(r.value.first.error).toMatch(/rank\(s\) 2 differ from rank 0.*rank 2: allReduce\(sum\) of 4 x bf16/);
  });

  it('a rank that never arrives: the others time out instead of hanging', async () => {
    const res = await run(3, 'straggler', { timeoutMs: 300, args: { lateMs: 1500 } });
    for (const r of res.slice(0, 2)) {
      expect(r.value.ok, `rank ${r.rank}`).toBe(false);
      expect(r.value.error).toMatch(new RegExp(`allReduce on rank ${r.rank} of 3 \\(cpu:${r.rank}, 3 x f32\\)`));
      expect(r.value.error).toMatch(/timed out after 300 ms in allReduce waiting for rank\(s\) 2 to arrive/);
      expect(r.value.ms).toBeLessThan(1400);
    }
    // The late rank finds the communicator broken, rather than waiting for ranks that left.
    expect(res[2].value.ok).toBe(false);
    expect(res[2].value.error).toMatch(/peer rank [01] aborted \(rank [01] timed out/);
  });

  it('recv from a rank that never sends times out', async () => {
    const res = await run(2, 'recvTimeout', { timeoutMs: 200, args: { lateMs: 800 } });
    expect(res[0].value.ok).toBe(false);
    expect(res[0].value.error).toMatch(/recv on rank 0 of 2 \(cpu:0, 2 x f32\): timed out after 200 ms in recv waiting for rank 1 to send/);
  });

  it('abort() wakes the waiting ranks at once', async () => {
    const res = await run(3, 'straggler', { timeoutMs: 30_000, args: { lateMs: 200, mode: 'abort' } });
    for (const r of res.slice(0, 2)) {
      expect(r.value.ok).toBe(false);
      expect(r.value.error).toMatch(/peer rank 2 aborted \(abort\(\) was called\)/);
      expect(r.value.ms).toBeLessThan(10_000);
    }
    expect(res[2].value.error).toMatch(/this rank's communicator is closed/);
  });

  it('a stop flag set as the round completes: the round counts, or both ranks fail; never a hang (10 tries)', async () => {
    for (let i = 0; i < 10; i++) {
      const stop = new SharedArrayBuffer(4);
      const res = await run(2, 'stopAsRoundCompletes', { timeoutMs: 30_000, args: { stop } });
      const oks = res.map((r) => r.value.ok);
      expect(oks[0], JSON.stringify(res.map((r) => r.value))).toBe(oks[1]);
      for (const r of res) expect(r.value.ms).toBeLessThan(5_000);
    }
  }, 60_000);

  it.each(['destroy', 'exit'])('a rank that is destroyed (%s) fails the collectives, not traffic between the others', async (mode) => {
    const res = await run(3, 'straggler', { timeoutMs: 30_000, args: { lateMs: 200, mode } });
    for (const r of res.slice(0, 2)) {
      expect(r.value.ok).toBe(false);
      expect(r.value.error).toMatch(/allReduce on rank [01] of 3 .*peer rank 2 aborted \(its communicator was destroyed\)/);
      expect(r.value.ms).toBeLessThan(10_000);
      expect(r.value.p2p).toEqual([0, 7]);
    }
  });
});

describe('Communicator (TypeScript) on the main thread', () => {
  it('rank 0 on the main thread, ranks 1 and 2 in workers', async () => {
    const id = newCommId('cpu') as string;
    const s = spawn(3, 'wrapper', { ranks: [1, 2], id });
    await s.ready;
    const c = Communicator.create('cpu', id, 0, 3, 'cpu:0', { timeoutMs: 20_000 });
    expect([c.rank, c.world, c.device]).toEqual([0, 3, 'cpu:0']);
    const t = Tensor.from([0, 0], [2], { device: 'cpu:0' });
    c.allReduce(t);
    const o = Tensor.zeros([6], { device: 'cpu:0' });
    c.allGather(o, t);
    const b = Tensor.from([4, 5, 6], [3], { device: 'cpu:0' });
    c.broadcast(b, 0);
    c.barrier();
    const res = await s.done;
    expect(Array.from(t.toArray())).toEqual([3, 30]);
    expect(Array.from(o.toArray())).toEqual([3, 30, 3, 30, 3, 30]);
    for (const r of res) {
      expect(r.error).toBeUndefined();
      expect(r.value).toEqual({ sum: [3, 30], gathered: [3, 30, 3, 30, 3, 30], bcast: [4, 5, 6] });
    }
    c.destroy();
    expect(() => c.barrier()).toThrow(/barrier on rank 0 of 3 \(cpu:0\): the communicator has been destroyed/);
  });

  it('one rank alone; argument errors name the op, rank and device', () => {
    const c = Communicator.create('cpu', newCommId('cpu'), 0, 1, 'cpu:1');
    const t = Tensor.from([1, 2], [2], { device: 'cpu:1' });
    c.allReduce(t, 'avg');
    expect(Array.from(t.toArray())).toEqual([1, 2]);
    const elsewhere = Tensor.from([1], [1], { device: 'cpu:0' });
    expect(() => c.allReduce(elsewhere)).toThrow(/allReduce on rank 0 of 1 \(cpu:1\): tensor is on cpu:0 but the communicator is on cpu:1/);
    expect(() => c.allReduce(t, 'max' as 'sum')).toThrow(/op must be 'sum' or 'avg'/);
    // The peer all-reduce is for CUDA ranks; 'nccl' here is the communicator's own collective.
    expect(c.peerAllReduce).toMatch(/for CUDA ranks/);
    expect(() => c.allReduce(t, 'sum', 'peer-one-shot')).toThrow(/allReduce on rank 0 of 1 \(cpu:1, 2 x f32\): no peer path here: the peer all-reduce is for CUDA ranks/);
    expect(() => c.allReduce(t, 'sum', 'peer-two-shot')).toThrow(/no peer path here/);
    expect(() => c.allReduce(t, 'sum', 'peer-ll')).toThrow(/no peer path here/);
    expect(() => c.allReduce(t, 'sum', 'pigeon' as 'auto')).toThrow(/path must be 'auto', 'nccl', 'peer-ll', 'peer-one-shot' or 'peer-two-shot', got 'pigeon'/);
    c.allReduce(t, 'sum', 'nccl');
    expect(Array.from(t.toArray())).toEqual([1, 2]);
    // residual += sum: a CPU communicator all-reduces, then adds.
    const res = Tensor.from([10, 20], [2], { device: 'cpu:1' });
    c.allReduceAdd(t, res);
    expect(Array.from(res.toArray())).toEqual([11, 22]);
    expect(() => c.allReduceAdd(t, Tensor.from([1, 2, 3], [3], { device: 'cpu:1' }))).toThrow(/allReduceAdd on rank 0 of 1 \(cpu:1\): residual is 3 x f32 but tensor is 2 x f32/);
    // residual += sum, then h = rmsnorm(residual): a CPU communicator runs the ops apart.
    const x2 = Tensor.from([1, -2, 3, 4], [2, 2], { device: 'cpu:1' });
    const t2 = Tensor.from([0.5, 0.25, -1, 2], [2, 2], { device: 'cpu:1' });
    const g2 = Tensor.from([1, 2], [2], { device: 'cpu:1' });
    const h2 = Tensor.from([NaN, NaN, NaN, NaN], [2, 2], { device: 'cpu:1' });
    c.allReduceAddNorm(t2, x2, g2, h2, 1e-5);
    expect(Array.from(x2.toArray())).toEqual([1.5, -1.75, 2, 6]);
    const want = rmsnorm(Tensor.from([1.5, -1.75, 2, 6], [2, 2], { device: 'cpu:1' }), g2, { eps: 1e-5 });
    expect(Array.from(h2.toArray())).toEqual(Array.from(want.toArray()));
    expect(() => c.allReduceAddNorm(t2, x2, Tensor.from([1, 2, 3], [3], { device: 'cpu:1' }), h2, 1e-5)).toThrow(/allReduceAddNorm on rank 0 of 1 \(cpu:1\): tensor 4, residual 4 and h 4 elements must be equal rows of normW's 3/);
    expect(() => c.broadcast(t, 1)).toThrow(/root 1 is not a rank \(0..0\)/);
    expect(() => c.send(t, 0)).toThrow(/send on rank 0 of 1 \(cpu:1, 2 x f32\): peer 0 is not another rank/);
    expect(() => c.allGather(Tensor.zeros([3], { device: 'cpu:1' }), t)).toThrow(/out has 3 elements; it needs world x in = 1 x 2 = 2/);
    const gone = Tensor.from([1], [1], { device: 'cpu:1' });
    gone.dispose();
    expect(() => c.allReduce(gone)).toThrow(/allReduce on rank 0 of 1 \(cpu:1\): tensor has been disposed/);
    c.destroy();
  });

  it('creation errors', () => {
    expect(() => Communicator.create('cpu', 'x', 2, 2, 'cpu:0')).toThrow(/rank 2 of world 2/);
    expect(() => Communicator.create('cpu', 'x', 0, 2, 'cuda:0')).toThrow(/unknown device "cuda:0"|needs a cpu:N device/);
    expect(() => Communicator.create('nccl', 'x', 0, 2, 'cpu:0')).toThrow(/needs a cuda:N device/);
    const id = newCommId('cpu');
    const a = Communicator.create('cpu', id, 0, 2, 'cpu:0');
    expect(() => Communicator.create('cpu', id, 0, 2, 'cpu:1')).toThrow(/rank 0 .* has already joined/);
    expect(() => Communicator.create('cpu', id, 1, 3, 'cpu:1')).toThrow(/with world 3 but it was created with world 2/);
    a.destroy();
  });

  it('NCCL is reported unavailable here, saying what was looked for', () => {
    const s = ncclStatus();
    if (s.ok) return; // a machine with NCCL (the GPU tests cover it)
    expect(s.error).toMatch(/libnccl\.so\.2|PARALLM_NCCL_LIBRARY/);
    expect(() => newCommId('nccl')).toThrow(/NCCL is not available: dlopen\("(libnccl\.so\.2|[^"]+)"\) failed/);
  });
});
