// Communicator.reduceScatter over NCCL: two worker threads, one rank each on cuda:0 and cuda:1, fresh
// random inputs, outputs poisoned with NaN first, against a float64 reference; in place (out = in's block
// `rank`) gives the same. Skipped unless there are two GPUs and NCCL loads.
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
let c;
try {
  c = native.commCreate('nccl', W.id, W.rank, W.world, dev, 60000);
  const out = {};
  for (const { dt, op, n } of W.cases) {
    const data = W.inputs[dt + ' ' + op + ' ' + n];
    const o = tensor(dt, new Float32Array(n).fill(NaN));
    const inp = tensor(dt, data);
    c.reduceScatter(o, inp, op);
    out['rs ' + dt + ' ' + op + ' ' + n] = read(o);
    const inp2 = tensor(dt, data);
    const v = inp2.view(n * W.rank, [n]);
    c.reduceScatter(v, inp2, op);
    out['inplace ' + dt + ' ' + op + ' ' + n] = read(v);
  }
  let err = null;
  try { c.reduceScatter(tensor('f32', [0, 0]), tensor('f32', [0, 0, 0]), 'sum'); } catch (e) { err = e.message; }
  out.error = err;
  parentPort.postMessage({ rank: W.rank, ok: true, value: out });
} catch (e) {
  parentPort.postMessage({ rank: W.rank, ok: false, error: e.message });
} finally {
  c?.destroy();
}
`;

const CASES = (['f32', 'bf16'] as const).flatMap((dt) => (['sum', 'avg'] as const).flatMap((op) => [1, 1000, 1 << 20].map((n) => ({ dt, op, n }))));

const bf16Round = (x: number) => {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  return new Float32Array(Uint32Array.of((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000).buffer)[0]!;
};

describe.skipIf(!enabled)('NCCL reduceScatter on cuda:0 and cuda:1', () => {
  it('each rank gets the reduction of its block (f32, bf16; sum, avg; in place too)', async () => {
    const inputs = Array.from({ length: WORLD }, () =>
      Object.fromEntries(CASES.map(({ dt, op, n }) => {
        const a = Float32Array.from({ length: n * WORLD }, () => (Math.random() * 2 - 1) * 4);
        return [`${dt} ${op} ${n}`, dt === 'bf16' ? a.map(bf16Round) : a];
      })),
    );
    const id = newCommId('nccl');
    const res = await Promise.all(
      Array.from({ length: WORLD }, (_, rank) => {
        const w = new Worker(WORKER, { eval: true, workerData: { root: packageRoot, rank, world: WORLD, id, cases: CASES, inputs: inputs[rank] } });
        return new Promise<{ rank: number; ok: boolean; value?: any; error?: string }>((resolve, reject) => { // eslint-disable-line @typescript-eslint/no-explicit-any
          let result: { rank: number; ok: boolean; value?: any; error?: string } | undefined; // eslint-disable-line @typescript-eslint/no-explicit-any
          w.on('message', (m) => (result = m));
          w.on('error', reject);
          w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`rank ${rank} exited (${code}) without a result`))));
        });
      }),
    );
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) {
      const out = r.value as Record<string, Float32Array>;
      for (const { dt, op, n } of CASES) {
        const k = `${dt} ${op} ${n}`;
        const got = out[`rs ${k}`]!;
        expect(got.length, k).toBe(n);
        const tol = dt === 'bf16' ? 2 ** -7 : 8 * 2 ** -23;
        let worst = 0;
        for (let i = 0; i < n; i++) {
          let s = 0;
          for (let q = 0; q < WORLD; q++) s += inputs[q]![k]![r.rank * n + i]!;
          const want = op === 'avg' ? s / WORLD : s;
          worst = Math.max(worst, Math.abs(got[i]! - want) / Math.max(1, Math.abs(want)));
          if (!(worst <= tol)) break; // NaN (an element left unwritten) fails too
        }
        expect(worst, `rank ${r.rank} ${k}`).toBeLessThanOrEqual(tol);
        expect(Array.from(out[`inplace ${k}`]!), `in place, rank ${r.rank} ${k}`).toEqual(Array.from(got));
      }
      expect(r.value.error).toMatch(/reduceScatter on rank \d of 2 \(cuda:\d\): in has 3 elements; it needs world x out = 2 x 2 = 4/);
    }
  });
});
