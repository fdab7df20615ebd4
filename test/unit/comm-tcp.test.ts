// The 'tcp' communicator (native/comm/tcp.cc): ranks joined by sockets on 127.0.0.1. Worker threads
// (one rank each) check the collectives against the in-process CPU communicator (bit for bit, the same
// random inputs) and a float64 reference; child processes check what threads cannot show: a peer
// whose process dies is an error naming it, never a hang.
import { spawn as spawnChild } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { configureCpuDevices } from '../../src/device.js';
import { freePort } from '../../src/cluster/rendezvous.js';
import { packageRoot } from '../../src/native.js';
import { Communicator, newCommId, tcpCommId } from '../../src/parallel/comm.js';

const CPU_DEVICES = 4;

async function tcpId(world: number): Promise<string> {
  const ports = await Promise.all(Array.from({ length: world }, () => freePort('127.0.0.1')));
  return tcpCommId(ports.map((p) => `127.0.0.1:${p}`));
}

// CommonJS (eval): loads the addon directly; a scenario runs synchronously on the worker's thread.
const PRELUDE = String.raw`
const native = require('node:module').createRequire(W.root + '/package.json')('node-gyp-build')(W.root);
native.configureCpuDevices(W.cpuDevices);
const dev = 'cpu:' + W.rank;
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
// A seeded generator (mulberry32): every rank makes its own inputs, the test thread the same ones.
function rng(seed) { return () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }; }
function tensor(dt, values) {
  const t = native.empty(dev, dt, [values.length]);
  if (dt === 'bf16') t.writeHost(Uint16Array.from(values));
  else if (dt === 'i32') t.writeHost(Int32Array.from(values));
  else t.writeHost(Float32Array.from(values));
  return t;
}
const bytes = (t) => Array.from(new Uint8Array(t.toHost()));
function tryOp(fn) {
  const t0 = Date.now();
  try { fn(); return { ok: true, ms: Date.now() - t0 }; } catch (e) { return { ok: false, error: e.message, ms: Date.now() - t0 }; }
}
`;

const INPUTS = String.raw`
// raw inputs: f32 values in [-4, 4), bf16 bit patterns of such values, i32 in [-1e6, 1e6)
function inputs(seed, rank, n, dt) {
  const r = rng(seed * 7919 + rank * 104729 + n);
  return Array.from({ length: n }, () => {
    const x = (r() - 0.5) * 8;
    if (dt === 'bf16') return new Uint16Array(new Float32Array([x]).buffer)[1];
    if (dt === 'i32') return Math.floor((r() - 0.5) * 2e6);
    return x;
  });
}
`;

const WORKER = "const { parentPort, workerData: W } = require('node:worker_threads');\n" + PRELUDE + INPUTS + String.raw`
const S = {
  // Every collective on the tcp communicator and on the in-process one, same inputs: results as bytes.
  compare(tcp, cpu, rank, world, a) {
    const out = { tcp: {}, cpu: {} };
    for (const [name, c] of [['tcp', tcp], ['cpu', cpu]]) {
      const o = out[name];
      for (const dt of ['f32', 'bf16', 'i32'])
        for (const op of ['sum', 'avg'])
          for (const n of a.sizes) {
            const t = tensor(dt, inputs(a.seed, rank, n, dt));
            c.allReduce(t, op);
            o['allReduce ' + dt + ' ' + op + ' ' + n] = bytes(t);
            t.dispose();
          }
      for (let root = 0; root < world; root++) {
        const t = tensor('f32', rank === root ? inputs(a.seed, rank, 33, 'f32') : new Array(33).fill(NaN));
        c.broadcast(t, root);
        o['broadcast ' + root] = bytes(t);
      }
      for (const dt of ['f32', 'bf16']) {
        const inp = tensor(dt, inputs(a.seed, rank, 9, dt));
        const g = tensor(dt, new Array(9 * world).fill(dt === 'bf16' ? 0x7fc0 : NaN)); // poisoned
        c.allGather(g, inp);
        o['allGather ' + dt] = bytes(g);
      }
      c.barrier();
    }
    return out;
  },
  // Point to point: crossing sends larger than the socket buffers (no deadlock), in order, then a mismatch.
  p2p(tcp, cpu, rank, world, a) {
    const other = 1 - rank;
    const big = inputs(a.seed, rank, a.big, 'f32');
    for (let m = 0; m < 3; m++) tcp.send(tensor('f32', big.map((x) => x + m)), other);
    // what the other rank sent, checked here (the messages are large): elements that differ, per message
    const want = inputs(a.seed, other, a.big, 'f32');
    const got = [];
    for (let m = 0; m < 3; m++) {
      const t = tensor('f32', new Array(a.big).fill(NaN));
      tcp.recv(t, other);
      const v = new Float32Array(t.toHost()), w = Float32Array.from(want, (x) => x + m);
      let bad = 0;
      for (let i = 0; i < a.big; i++) if (!Object.is(v[i], w[i])) bad++;
      got.push(bad);
    }
    // a send issued before a collective does not get in the collective's way
    if (rank === 0) tcp.send(tensor('i32', [7, 8]), 1);
    const s = tensor('f32', [rank + 1]);
    tcp.allReduce(s, 'sum');
    let early = null, mismatch = null;
    if (rank === 1) { const t = tensor('i32', [0, 0]); tcp.recv(t, 0); early = Array.from(new Int32Array(t.toHost())); }
    if (rank === 0) tcp.send(tensor('f32', [1, 2, 3]), 1);
    if (rank === 1) mismatch = tryOp(() => tcp.recv(tensor('f32', [0, 0]), 0));
    return { got, sum: Array.from(new Float32Array(s.toHost())), early, mismatch };
  },
  mismatch(tcp, cpu, rank) {
    const t = tensor('f32', new Array(rank === 1 ? 5 : 4).fill(1));
    return tryOp(() => tcp.allReduce(t));
  },
  // The last rank never arrives (its thread sleeps): the others time out naming it.
  straggler(tcp, cpu, rank, world, a) {
    if (rank === world - 1) { sleep(a.lateMs); return tryOp(() => tcp.barrier()); }
    return tryOp(() => tcp.allReduce(tensor('f32', [1, 2, 3])));
  },
  abort(tcp, cpu, rank, world) {
    if (rank === world - 1) { sleep(200); tcp.abort(); return tryOp(() => tcp.barrier()); }
    return tryOp(() => tcp.allReduce(tensor('f32', [1, 2, 3])));
  },
};
let tcp, cpu;
const t0 = Date.now();
try {
  tcp = native.commCreate('tcp', W.id, W.rank, W.world, dev, W.timeoutMs, W.stop ? new Int32Array(W.stop) : null);
  cpu = native.commCreate('cpu', W.cpuId, W.rank, W.world, dev, W.timeoutMs);
  const value = S[W.scenario](tcp, cpu, W.rank, W.world, W.args || {});
  parentPort.postMessage({ rank: W.rank, ok: true, value, ms: Date.now() - t0 });
} catch (e) {
  parentPort.postMessage({ rank: W.rank, ok: false, error: e.message, ms: Date.now() - t0 });
} finally {
  if (tcp) tcp.destroy();
  if (cpu) cpu.destroy();
}
`;

interface RankResult {
  rank: number;
  ok: boolean;
  value?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  error?: string;
  ms: number;
}

async function run(world: number, scenario: string, opts: { timeoutMs?: number; args?: object; id?: string; stop?: SharedArrayBuffer } = {}): Promise<RankResult[]> {
  const id = opts.id ?? (await tcpId(world));
  const cpuId = newCommId('cpu') as string;
  return Promise.all(
    Array.from({ length: world }, (_, rank) => {
      const w = new Worker(WORKER, {
        eval: true,
        workerData: { root: packageRoot, rank, world, id, cpuId, scenario, timeoutMs: opts.timeoutMs ?? 20_000, args: opts.args, cpuDevices: CPU_DEVICES, stop: opts.stop },
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

// The same generator and inputs as the workers', for the float64 reference.
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const { inputs } = new Function(`${PRELUDE.split('\n').filter((l) => l.startsWith('function rng')).join('\n')}\n${INPUTS}\nreturn { inputs };`)() as {
  inputs: (seed: number, rank: number, n: number, dt: string) => number[];
};
const bf16 = (h: number) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
const f32 = (b: number[]) => Array.from(new Float32Array(Uint8Array.from(b).buffer));
const bf16s = (b: number[]) => Array.from(new Uint16Array(Uint8Array.from(b).buffer), bf16);

beforeAll(() => configureCpuDevices(CPU_DEVICES));

describe.each([2, 3, 4])('tcp communicator, %i ranks', (world) => {
  it('every collective equals the in-process CPU communicator bit for bit, and the float64 reference', async () => {
    const seed = Math.floor(Math.random() * 1e9);
    const sizes = [0, 1, 5, 1001, 20_001];
    const res = await run(world, 'compare', { args: { seed, sizes } });
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) {
      expect(Object.keys(r.value.tcp).length).toBeGreaterThan(0);
      expect(r.value.tcp, `rank ${r.rank}: tcp vs cpu (seed ${seed})`).toEqual(r.value.cpu);
      expect(r.value.tcp, `rank ${r.rank} vs rank 0`).toEqual(res[0]!.value.tcp);
    }
    const out = res[0]!.value.tcp as Record<string, number[]>;
    for (const n of sizes) {
      const ref = (dt: string) => {
        const x = Array.from({ length: world }, (_, r) => inputs(seed, r, n, dt).map((v) => (dt === 'bf16' ? bf16(v) : v)));
        return Array.from({ length: n }, (_, i) => x.reduce((s, xr) => s + xr[i]!, 0));
      };
      for (const op of ['sum', 'avg']) {
        const k = op === 'avg' ? 1 / world : 1;
        const wantF = ref('f32'), gotF = f32(out[`allReduce f32 ${op} ${n}`]!);
        expect(gotF.length).toBe(n);
        gotF.forEach((g, i) => expect(Math.abs(g - wantF[i]! * k)).toBeLessThanOrEqual(1e-5 * world));
        const wantB = ref('bf16'), gotB = bf16s(out[`allReduce bf16 ${op} ${n}`]!);
        gotB.forEach((g, i) => expect(Math.abs(g - wantB[i]! * k)).toBeLessThanOrEqual(2 ** -7 * Math.max(1, Math.abs(wantB[i]! * k))));
        const gotI = Array.from(new Int32Array(Uint8Array.from(out[`allReduce i32 ${op} ${n}`]!).buffer));
        const wantI = ref('i32').map((s) => (op === 'sum' ? s : Math.trunc(s / world) + 0)); // + 0: no -0
        expect(gotI).toEqual(wantI);
      }
    }
    for (let root = 0; root < world; root++) expect(f32(out[`broadcast ${root}`]!)).toEqual(Array.from(Float32Array.from(inputs(seed, root, 33, 'f32'))));
    expect(f32(out['allGather f32']!)).toEqual(Array.from(Float32Array.from(Array.from({ length: world }, (_, r) => inputs(seed, r, 9, 'f32')).flat())));
    expect(bf16s(out['allGather bf16']!)).toEqual(Array.from({ length: world }, (_, r) => inputs(seed, r, 9, 'bf16').map(bf16)).flat());
  });
});

describe('tcp send/recv', () => {
  it('crossing sends beyond the socket buffers do not deadlock; order kept; p2p and collectives apart; sizes checked', async () => {
    const seed = Math.floor(Math.random() * 1e9);
    const res = await run(2, 'p2p', { args: { seed, big: 1_500_000 } }); // 6 MB a message
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) {
      expect(r.value.got, 'elements that differ, per message').toEqual([0, 0, 0]);
      expect(r.value.sum).toEqual([3]);
    }
    expect(res[1]!.value.early).toEqual([7, 8]);
    expect(res[1]!.value.mismatch.error).toMatch(/recv on rank 1 of 2 \(cpu:1, 2 x f32\): rank 0 sent 3 x f32 but rank 1 receives 2 x f32/);
  }, 60_000);
});

describe('tcp communicator failures: errors name the rank, nothing hangs', () => {
  it('ranks that disagree on a collective fail, naming the rank and both calls', async () => {
    const res = await run(3, 'mismatch');
    for (const r of res) expect(r.value.ok, `rank ${r.rank}`).toBe(false);
    expect(res[0]!.value.error).toMatch(/allReduce on rank 0 of 3 \(cpu:0, 4 x f32\): ranks disagree on the collective: rank 1 called allReduce\(sum\) of 5 x f32 but rank 0 called allReduce\(sum\) of 4 x f32/);
  });

  it('a rank that never arrives: the others time out naming it', async () => {
    const res = await run(3, 'straggler', { timeoutMs: 300, args: { lateMs: 1500 } });
    for (const r of res.slice(0, 2)) {
      expect(r.value.ok, `rank ${r.rank}`).toBe(false);
      expect(r.value.error).toMatch(new RegExp(`allReduce on rank ${r.rank} of 3 \\(cpu:${r.rank}, 3 x f32\\): (timed out after 300 ms waiting for rank 2|peer rank [012] closed its connection)`));
      expect(r.value.ms).toBeLessThan(1400);
    }
    expect(res[2]!.value.ok).toBe(false);
    // it finds its peers gone, or first the all-reduce they sent before they timed out
    expect(res[2]!.value.error).toMatch(/barrier on rank 2 of 3 .*(peer rank [01] closed its connection|ranks disagree on the collective: rank [01] called allReduce\(sum\) of 3 x f32 but rank 2 called barrier)/);
  });

  it('abort() ends the peers\' waits at once, naming the rank', async () => {
    const res = await run(3, 'abort', { timeoutMs: 30_000 });
    for (const r of res.slice(0, 2)) {
      expect(r.value.ok).toBe(false);
      expect(r.value.error).toMatch(/peer rank 2 closed its connection/);
      expect(r.value.ms).toBeLessThan(10_000);
    }
    expect(res[2]!.value.error).toMatch(/barrier on rank 2 of 3 \(cpu:2, 0 x f32\): this rank's communicator is closed \(abort\(\) was called\)/);
  });

  it('setup: a rank that never comes times out naming it; the stop flag ends the wait', async () => {
    const id = await tcpId(3);
    // only ranks 0 and 1 of 3
    const only = (rank: number, stop?: SharedArrayBuffer) =>
      new Promise<RankResult>((resolve) => {
        const w = new Worker(WORKER, { eval: true, workerData: { root: packageRoot, rank, world: 3, id, cpuId: 'unused', scenario: 'mismatch', timeoutMs: stop ? 0 : 400, cpuDevices: CPU_DEVICES, stop } });
        w.on('message', resolve);
      });
    const [r0, r1] = await Promise.all([only(0), only(1)]);
    expect(r0.error).toMatch(/commCreate on rank 0 of 3 \(cpu:0.*\): waiting for rank\(s\) (1, )?2 to connect: timed out after 400 ms/);
    expect(r1.error).toMatch(/commCreate on rank 1 of 3 \(cpu:1.*\): waiting for rank\(s\) 2 to connect: timed out after 400 ms/);
    const stop = new SharedArrayBuffer(4);
    const t0 = Date.now();
    const p = only(0, stop);
    setTimeout(() => Atomics.store(new Int32Array(stop), 0, 1), 300);
    const r = await p;
    expect(r.error).toMatch(/commCreate on rank 0 of 3.*stopped by close\(\) or terminate\(\)/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('a connection with another communicator\'s token is refused, and named when the setup times out', async () => {
    const id = await tcpId(2);
    const wrong = id.replace(/^tcp:[0-9a-f]+@/, 'tcp:0123456789abcdef@');
    const one = (rank: number, cid: string) =>
      new Promise<RankResult>((resolve) => {
        const w = new Worker(WORKER, { eval: true, workerData: { root: packageRoot, rank, world: 2, id: cid, cpuId: 'unused', scenario: 'mismatch', timeoutMs: 600, cpuDevices: CPU_DEVICES } });
        w.on('message', resolve);
      });
    const [r0, r1] = await Promise.all([one(0, id), one(1, wrong)]);
    expect(r0.error).toMatch(/commCreate on rank 0 of 2 .*waiting for rank\(s\) 1 to connect: timed out after 600 ms \(refused: wrong communicator token/);
    expect(r1.error).toMatch(/commCreate on rank 1 of 2 .*connecting to rank 0 at 127\.0\.0\.1:\d+: .*(refused|closed|reset)/);
  });

  it('a peer whose process dies: the others fail naming its rank, well within the timeout', async () => {
    const id = await tcpId(3);
    // Each rank a process; rank 2 exits in the middle of a run of all-reduces.
    const script = PRELUDE + String.raw`
      const c = native.commCreate('tcp', W.id, W.rank, W.world, dev, 30000);
      const t0 = Date.now();
      let steps = 0;
      try {
        for (;;) {
          if (W.rank === 2 && steps === 5) process.exit(9);
          c.allReduce(tensor('f32', [1, 2, 3]), 'sum');
          steps++;
        }
      } catch (e) { process.stdout.write(JSON.stringify({ steps, error: e.message, ms: Date.now() - t0 })); }`;
    const procs = [0, 1, 2].map((rank) => {
      const W = { root: packageRoot, rank, world: 3, id, cpuDevices: CPU_DEVICES };
      const child = spawnChild(process.execPath, ['-e', `const W = ${JSON.stringify(W)};\n${script}`], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      return new Promise<{ code: number | null; out: string }>((resolve) => child.on('exit', (code) => resolve({ code, out })));
    });
    const [p0, p1, p2] = await Promise.all(procs);
    expect(p2!.code).toBe(9);
    for (const p of [p0!, p1!]) {
      const v = JSON.parse(p.out) as { steps: number; error: string; ms: number };
      expect(v.steps).toBeGreaterThanOrEqual(4);
      expect(v.error).toMatch(/allReduce on rank [01] of 3 \(cpu:[01], 3 x f32\): peer rank [012] closed its connection/);
      expect(v.ms).toBeLessThan(20_000);
    }
    // the rank that saw the dead process itself names rank 2
    expect([p0!, p1!].some((p) => /peer rank 2 closed its connection/.test(p.out))).toBe(true);
  }, 60_000);
});

describe('Communicator.create for tcp (TypeScript checks)', () => {
  it('refuses a non-string id; tcpCommId checks addresses', () => {
    expect(() => Communicator.create('tcp', new Uint8Array(4), 0, 1, 'cpu:0')).toThrow(/a tcp communicator id is a string/);
    expect(() => tcpCommId(['127.0.0.1'])).toThrow(/'127.0.0.1' is not host:port/);
    expect(() => newCommId('tcp')).toThrow(/tcpCommId/);
    expect(tcpCommId(['a:1', '[::1]:2'], 'tok')).toBe('tcp:tok@a:1,[::1]:2');
  });

  it('a world of one needs no peer; its collectives are the identity', () => {
    const c = Communicator.create('tcp', tcpCommId(['127.0.0.1:1']), 0, 1, 'cpu:0');
    expect([c.rank, c.world, c.device]).toEqual([0, 1, 'cpu:0']);
    c.barrier();
    c.destroy();
  });
});
