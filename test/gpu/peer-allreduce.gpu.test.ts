// The peer all-reduce (native/cuda/allreduce.cu) on cuda:0 and cuda:1, one worker thread a rank: sums
// and means of fresh random f32 / bf16 buffers by each path (one-shot, two-shot, auto) against a float64
// reference rounded as the kernel adds (f32 in rank order, then the storage type: so bit for bit), and
// residual += sum (allReduceAdd, one kernel: the bits of an all-reduce then an add), both
// ranks the same bits; the same then rmsnorm (allReduceAddNorm) against the two apart; each buffer a view inside a NaN-poisoned one, whose outside must stay NaN; 48 calls
// of mixed sizes and paths queued back to back before anything is read (the double-buffered slots and
// per-block flags under reuse); a captured graph of three all-reduces replayed twice; the paths' refusals;
// and a rank that never comes: the other's wait ends within its timeout with an error naming it. Skipped
// unless there are two GPUs and NCCL loads.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/device.js';
import { packageRoot } from '../../src/native.js';
import { ncclStatus, newCommId } from '../../src/parallel/comm.js';
import { workerPrelude } from '../helpers/comm-worker.js';

const WORLD = 2;
const enabled = cudaDeviceCount() >= WORLD && ncclStatus().ok;

const WORKER = workerPrelude('cuda') + String.raw`
const read = readF32;
const PAD = 8; // the buffer is a view at element 8 of a NaN-filled one with 8 more after it
function poisonedView(dt, data) {
  const whole = tensor(dt, new Float32Array(data.length + 2 * PAD).fill(NaN));
  const v = whole.view(PAD, [data.length]);
  v.writeHost(dt === 'bf16' ? toBf16(data) : Float32Array.from(data));
  return { whole, v };
}
let c;
try {
  c = native.commCreate('nccl', W.id, W.rank, W.world, dev, W.timeoutMs ?? 60000);
  const out = { status: c.peerAllReduce };
  if (W.mode === 'cases') {
    // Every case queued before any is read.
    const fused = {};
    const held = W.cases.map(({ dt, op, path, key, residual }) => {
      const b = poisonedView(dt, W.inputs[key]);
      if (!residual) {
        c.allReduce(b.v, op, path);
        return b;
      }
      const r = poisonedView(dt, W.residuals[key]);
      fused[key] = c.allReduceAdd(b.v, r.v, path);
      return r;
    });
    W.cases.forEach(({ key }, i) => (out[key] = read(held[i].whole)));
    out.fused = fused;
    // A graph of three sums replayed twice: six sums in all.
    const g0 = tensor('f32', W.graphInput);
    native.captureBegin(dev);
    let graph;
    try { for (let i = 0; i < 3; i++) c.allReduce(g0, 'sum', i === 1 ? 'peer-one-shot' : 'auto'); } finally { graph = native.captureEnd(dev); }
    graph.replay();
    graph.replay();
    out.graph = read(g0);
    graph.dispose();
    // Refusals.
    const errs = {};
    const tryIt = (name, f) => { try { f(); errs[name] = null; } catch (e) { errs[name] = e.message; } };
    const big = native.empty(dev, 'f32', [(1 << 18) + 4]);
    tryIt('too big', () => c.allReduce(big, 'sum', 'peer-one-shot'));
    tryIt('ll too big', () => c.allReduce(native.empty(dev, 'f32', [(1 << 17) + 4]), 'sum', 'peer-ll'));
    const odd = tensor('bf16', new Float32Array(9).fill(1)).view(1, [8]);
    tryIt('unaligned', () => c.allReduce(odd, 'sum', 'peer-one-shot'));
    tryIt('two-shot partial pack', () => c.allReduce(tensor('bf16', new Float32Array(7).fill(1)), 'sum', 'peer-two-shot'));
    tryIt('bad path', () => c.allReduce(tensor('f32', [1]), 'sum', 'carrier-pigeon'));
    // auto on the unaligned view falls back to NCCL and is still right.
    c.allReduce(odd, 'sum');
    out.unalignedAuto = read(odd);
    out.errors = errs;
  } else if (W.mode === 'norm') {
    // allReduceAddNorm against allReduceAdd (LL) then rmsnorm, each case on fresh copies, h poisoned.
    for (const k of W.normCases) {
      const { dt, rows, cols } = k;
      const g = tensor(dt, W.norm[k.key].g);
      const run = (fused) => {
        const t = tensor(dt, W.norm[k.key].t);
        const x = tensor(dt, W.norm[k.key].x);
        const h = tensor(dt, new Float32Array(rows * cols).fill(NaN));
        let took = false;
        if (fused) took = c.allReduceAddNorm(t, x, g, h, 1e-5);
        if (fused && !took) {
          // Not taken (nothing done): the ops apart by auto, as Communicator.allReduceAddNorm falls back.
          c.allReduceAdd(t, x);
          native.rmsnorm(h, x, g, null, rows, cols, 1e-5);
        } else if (!fused) {
          c.allReduceAdd(t, x, 'peer-ll');
          native.rmsnorm(h, x, g, null, rows, cols, 1e-5);
        }
        return { took, x: read(x), h: read(h) };
      };
      const f = run(true), a = run(false);
      out[k.key] = { took: f.took, fx: f.x, fh: f.h, ax: a.x, ah: a.h };
    }
  } else if (W.mode === 'absent') {
    // Rank 0 all-reduces; rank 1 never does, and leaves once rank 0 has its error.
    if (W.rank === 0) {
      const t = tensor('bf16', new Float32Array(4096).fill(1));
      const t0 = Date.now();
      let err = null;
      try { c.allReduce(t, 'sum', 'peer-one-shot'); c.drain(); } catch (e) { err = e.message; }
      out.error = err;
      out.ms = Date.now() - t0;
    } else {
      await new Promise((resolve) => parentPort.once('message', resolve));
      c.abort();
    }
  }
  parentPort.postMessage({ rank: W.rank, ok: true, value: out });
} catch (e) {
  parentPort.postMessage({ rank: W.rank, ok: false, error: e.message });
} finally {
  c?.destroy();
}
`;

type Result = { rank: number; ok: boolean; value?: any; error?: string }; // eslint-disable-line @typescript-eslint/no-explicit-any

function run(workerData: (rank: number) => object, onStart?: (workers: Worker[]) => void): Promise<Result[]> {
  const id = newCommId('nccl');
  const workers = Array.from({ length: WORLD }, (_, rank) =>
    new Worker(`(async () => {${WORKER}})()`, { eval: true, workerData: { root: packageRoot, rank, world: WORLD, id, ...workerData(rank) } }));
  onStart?.(workers);
  return Promise.all(
    workers.map((w, rank) => new Promise<Result>((resolve, reject) => {
      let result: Result | undefined;
      w.on('message', (m) => (result = m));
      w.on('error', reject);
      w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`rank ${rank} exited (${code}) without a result`))));
    })),
  );
}

const f32 = Math.fround;
const bf16Round = (x: number) => {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  return new Float32Array(Uint32Array.of((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000).buffer)[0]!;
};

// Sizes around the 16-byte packs (1, 7, 8, 9 elements), the decode sizes (4 and 64 KiB of bf16), a
// partial last block, and the 1 MiB limit, by each path (LL and two-shot only on whole packs, LL up to
// 512 KiB); then residual += sum (allReduceAdd) by the paths that fuse it and by auto.
const SIZES = { f32: [1, 7, 8, 1000, 4096, 16384, 1 << 17, 1 << 18], bf16: [1, 9, 16, 2048, 32768, 100_008, 1 << 18, 1 << 19] } as const;
const wholePacks = (dt: string, n: number) => (n * (dt === 'f32' ? 4 : 2)) % 16 === 0;
const bytesOf = (dt: string, n: number) => n * (dt === 'f32' ? 4 : 2);
type Case = { dt: 'f32' | 'bf16'; op: 'sum' | 'avg'; path: string; n: number; key: string; residual: boolean };
const CASES: Case[] = (['f32', 'bf16'] as const).flatMap((dt) =>
  SIZES[dt].flatMap((n) => [
    ...(['sum', 'avg'] as const).flatMap((op) =>
      (['peer-ll', 'peer-one-shot', 'peer-two-shot', 'auto'] as const)
        .filter((path) => (path !== 'peer-two-shot' && path !== 'peer-ll') || wholePacks(dt, n))
        .filter((path) => path !== 'peer-ll' || bytesOf(dt, n) <= 1 << 19)
        .map((path) => ({ dt, op, path, n, key: `${dt} ${op} ${path} ${n}`, residual: false }))),
    ...(['peer-ll', 'peer-one-shot', 'auto'] as const)
      .filter((path) => path !== 'peer-ll' || (wholePacks(dt, n) && bytesOf(dt, n) <= 1 << 19))
      .map((path) => ({ dt, op: 'sum' as const, path, n, key: `${dt} residual ${path} ${n}`, residual: true })),
  ]));

describe.skipIf(!enabled)('the peer all-reduce on cuda:0 and cuda:1', () => {
  it('sums, means and residual adds match float64 rounded as added, bit for bit, on both ranks; queued back to back, in a graph; refusals', async () => {
    const rnd = (n: number) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * 4);
    const inputs = Array.from({ length: WORLD }, () => Object.fromEntries(CASES.map((k) => {
      const a = rnd(k.n);
      return [k.key, k.dt === 'bf16' ? a.map(bf16Round) : a];
    })));
    // The residual is the same on both ranks (as tensor parallelism's replicated activations are).
    const residuals = Object.fromEntries(CASES.filter((k) => k.residual).map((k) => {
      const a = rnd(k.n);
      return [k.key, k.dt === 'bf16' ? a.map(bf16Round) : a];
    }));
    // Mixed sizes and paths back to back: the case list shuffled (the same order on both ranks).
    const order = CASES.map((k, i) => [Math.random(), i] as const).sort((a, b) => a[0] - b[0]).map(([, i]) => CASES[i]!);
    const graphInput = Array.from({ length: WORLD }, () => rnd(1000));
    const res = await run((rank) => ({ mode: 'cases', cases: order, inputs: inputs[rank], residuals, graphInput: graphInput[rank] }));
    for (const r of res) expect(r.ok, r.error).toBe(true);
    const [a, b] = res.map((r) => r.value);
    expect(a.status, 'peerAllReduce on rank 0').toBe('');
    expect(b.status, 'peerAllReduce on rank 1').toBe('');
    for (const k of CASES) {
      const x = inputs[0]![k.key]!, y = inputs[1]![k.key]!;
      const round = k.dt === 'bf16' ? bf16Round : (v: number) => v;
      let want = Float32Array.from(x, (v, i) => round(k.op === 'sum' ? f32(v + y[i]!) : f32(f32(v + y[i]!) * 0.5)));
      if (k.residual) {
        const res0 = residuals[k.key]!;
        want = want.map((v, i) => round(f32(res0[i]! + v)));
        // Every peer path but two-shot fuses the add; auto on 1 x f32 or 9 x bf16 (not whole packs) still takes one-shot.
        expect(a.fused[k.key], `${k.key}: fused`).toBe(true);
      }
      for (const [rank, got] of [[0, a[k.key]], [1, b[k.key]]] as const) {
        const whole = got as Float32Array;
        const body = whole.subarray(8, 8 + k.n);
        let bad = -1;
        for (let i = 0; i < k.n && bad < 0; i++) if (!Object.is(body[i], want[i]) && body[i] !== want[i]) bad = i;
        expect(bad, `${k.key} rank ${rank}: first element off (${bad >= 0 ? `${body[bad]} vs ${want[bad]}` : ''})`).toBe(-1);
        for (const i of [...Array(8).keys(), ...Array.from({ length: 8 }, (_, j) => 8 + k.n + j)])
          expect(Number.isNaN(whole[i]!), `${k.key} rank ${rank}: element ${i - 8} outside the view was written`).toBe(true);
      }
    }
    // Six sums of identical values double them each time: 2^5 (x + y), exactly.
    const gx = graphInput[0]!, gy = graphInput[1]!;
    const wantG = Float32Array.from(gx, (v, i) => f32(f32(v + gy[i]!) * 32));
    expect(Array.from(a.graph as Float32Array)).toEqual(Array.from(wantG));
    expect(Array.from(b.graph as Float32Array)).toEqual(Array.from(wantG));
    expect(Array.from(a.unalignedAuto as Float32Array)).toEqual(Array(8).fill(2));
    expect(a.errors['too big']).toMatch(/at most 1048576 bytes/);
    expect(a.errors.unaligned).toMatch(/16-byte aligned/);
    expect(a.errors['two-shot partial pack']).toMatch(/16-byte packs/);
    expect(a.errors['bad path']).toMatch(/path must be/);
    expect(a.errors['ll too big']).toMatch(/\(LL\) takes .* at most 524288 bytes/);
  }, 120_000);

  it('allReduceAddNorm: residual += sum, then rmsnorm, in one kernel: the bits of allReduceAdd then rmsnorm, on both ranks', async () => {
    // Rows over and under the 32 blocks, norm.cu's threads a row from 32 (64 columns) to 256 (f32 4096).
    const normCases = [
      { dt: 'bf16', rows: 1, cols: 4096 },
      { dt: 'bf16', rows: 3, cols: 64 },
      { dt: 'bf16', rows: 16, cols: 5120 },
      { dt: 'bf16', rows: 33, cols: 2048 },
      { dt: 'f32', rows: 2, cols: 4096 },
      { dt: 'bf16', rows: 64, cols: 4096 }, // 512 KiB: past LL's automatic 256 KiB, so the ops apart
    ].map((k) => ({ ...k, key: `${k.dt} ${k.rows}x${k.cols}` }));
    const rnd = (n: number, lo = -4, hi = 4) => Float32Array.from({ length: n }, () => lo + Math.random() * (hi - lo));
    const round = (dt: string, a: Float32Array) => (dt === 'bf16' ? a.map(bf16Round) : a);
    // x and g the same on both ranks (tensor parallelism's replicated residual and norm weight), t per rank.
    const shared = Object.fromEntries(normCases.map((k) => [k.key, { x: round(k.dt, rnd(k.rows * k.cols)), g: round(k.dt, rnd(k.cols, 0.5, 1.5)) }]));
    const norm = Array.from({ length: WORLD }, () =>
      Object.fromEntries(normCases.map((k) => [k.key, { ...shared[k.key]!, t: round(k.dt, rnd(k.rows * k.cols)) }])));
    const res = await run((rank) => ({ mode: 'norm', normCases, norm: norm[rank] }));
    for (const r of res) expect(r.ok, r.error).toBe(true);
    for (const k of normCases) {
      const [a, b] = res.map((r) => r.value[k.key]);
      expect(a.took, `${k.key}: one kernel`).toBe(k.rows * k.cols * (k.dt === 'f32' ? 4 : 2) <= 256 << 10);
      for (const [rank, v] of [[0, a], [1, b]] as const) {
        for (const [what, got, want] of [['x', v.fx, v.ax], ['h', v.fh, v.ah]] as const) {
          let bad = -1;
          for (let i = 0; i < got.length && bad < 0; i++) if (!Number.isFinite(got[i]) || got[i] !== want[i]) bad = i;
          expect(bad, `${k.key} rank ${rank} ${what}: first element off (${bad >= 0 ? `${got[bad]} vs ${want[bad]}` : ''})`).toBe(-1);
        }
      }
      expect(Array.from(a.fh as Float32Array), `${k.key}: both ranks' h`).toEqual(Array.from(b.fh as Float32Array));
    }
  }, 120_000);

  it('a rank that never comes: the waiting rank fails within its timeout, naming it', async () => {
    let workers: Worker[] = [];
    const done = run(() => ({ mode: 'absent', timeoutMs: 2000 }), (w) => (workers = w));
    const first = await new Promise<Result>((resolve, reject) => {
      workers[0]!.once('message', resolve);
      workers[0]!.once('error', reject);
    });
    workers[1]!.postMessage('go');
    const res = await done;
    expect(first.ok, first.error).toBe(true);
    expect(first.value.error).toMatch(/waited more than 2000 ms for rank 1/);
    expect(first.value.ms).toBeLessThan(10_000);
    expect(res[1]!.ok, res[1]!.error).toBe(true);
  }, 60_000);
});
