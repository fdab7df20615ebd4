// Communicator.reduceScatter on the CPU communicator: real worker threads, one rank each on cpu:0..3,
// fresh random inputs each run, outputs poisoned with NaN first, compared with a float64 reference; and
// against the same ranks' allReduce (same reduction order, so the blocks must be bit-identical).
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { configureCpuDevices } from '../../src/device.js';
import { packageRoot } from '../../src/native.js';
import { Communicator, newCommId } from '../../src/parallel/comm.js';
import { Tensor } from '../../src/tensor.js';
import { workerPrelude } from '../helpers/comm-worker.js';

const CPU_DEVICES = 4;

// Workers load the addon directly (they cannot import the TypeScript sources).
const WORKER = workerPrelude('cpu') + String.raw`
const read = (t) => Array.from(readF32(t));
const poisoned = (dt, n) => tensor(dt, new Float32Array(n).fill(NaN));
function tryOp(fn) { try { fn(); return null; } catch (e) { return e.message; } }
let c;
try {
  c = native.commCreate('cpu', W.id, W.rank, W.world, dev, 20000);
  const out = {};
  for (const { dt, op, n } of W.cases) {
    const data = W.inputs[dt + ' ' + op + ' ' + n];
    const inp = tensor(dt, data);
    const o = poisoned(dt, n);
    c.reduceScatter(o, inp, op);
    out['rs ' + dt + ' ' + op + ' ' + n] = read(o);
    // in place: out is a view of in's block rank
    const inp2 = tensor(dt, data);
    const v = inp2.view(n * W.rank, [n]);
    c.reduceScatter(v, inp2, op);
    out['inplace ' + dt + ' ' + op + ' ' + n] = read(v);
    const ar = tensor(dt, data);
    c.allReduce(ar, op);
    out['ar ' + dt + ' ' + op + ' ' + n] = read(ar).slice(n * W.rank, n * (W.rank + 1));
  }
  // argument errors (checked before the collective, on this rank only)
  out.errors = {
    size: tryOp(() => c.reduceScatter(poisoned('f32', 3), poisoned('f32', 3 * W.world + 1), 'sum')),
    dtype: tryOp(() => c.reduceScatter(poisoned('bf16', 3), poisoned('f32', 3 * W.world), 'sum')),
    op: tryOp(() => c.reduceScatter(poisoned('f32', 3), poisoned('f32', 3 * W.world), 'max')),
  };
  const whole = poisoned('f32', 4 * W.world);
  out.errors.overlap = tryOp(() => c.reduceScatter(whole.view(1, [4]), whole, 'sum'));
  // a size mismatch between ranks fails on every rank
  out.mismatch = tryOp(() => c.reduceScatter(poisoned('f32', W.rank === 0 ? 2 : 3), poisoned('f32', (W.rank === 0 ? 2 : 3) * W.world), 'sum'));
  parentPort.postMessage({ rank: W.rank, ok: true, value: out });
} catch (e) {
  parentPort.postMessage({ rank: W.rank, ok: false, error: e.message });
} finally {
  c?.destroy();
}
`;

interface RankResult {
  rank: number;
  ok: boolean;
  value?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  error?: string;
}

const CASES = (['f32', 'bf16'] as const).flatMap((dt) => (['sum', 'avg'] as const).flatMap((op) => [0, 1, 7, 1000].map((n) => ({ dt, op, n }))));

const bf16Round = (x: number) => {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  return new Float32Array(Uint32Array.of((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000).buffer)[0]!;
};

function run(world: number, inputs: Record<string, Float32Array>[]): Promise<RankResult[]> {
  const id = newCommId('cpu');
  return Promise.all(
    Array.from({ length: world }, (_, rank) => {
      const w = new Worker(WORKER, { eval: true, workerData: { root: packageRoot, rank, world, id, cases: CASES, inputs: inputs[rank], cpuDevices: CPU_DEVICES } });
      return new Promise<RankResult>((resolve, reject) => {
        let result: RankResult | undefined;
        w.on('message', (m) => (result = m));
        w.on('error', reject);
        w.on('exit', (code) => (result ? resolve(result) : reject(new Error(`rank ${rank} exited (${code}) without a result`))));
      });
    }),
  );
}

beforeAll(() => configureCpuDevices(CPU_DEVICES));

describe.each([2, 3, 4])('CPU reduceScatter, %i ranks', (world) => {
  it('each rank gets the reduction of its block (f32, bf16; sum, avg; in place too), equal to allReduce bit for bit', async () => {
    // fresh random inputs, as each rank holds them (bf16 cases: values exact in bf16)
    const inputs = Array.from({ length: world }, () =>
      Object.fromEntries(CASES.map(({ dt, op, n }) => {
        const a = Float32Array.from({ length: n * world }, () => (Math.random() * 2 - 1) * 4);
        return [`${dt} ${op} ${n}`, dt === 'bf16' ? a.map(bf16Round) : a];
      })),
    );
    const res = await run(world, inputs);
    for (const r of res) expect(r.error, `rank ${r.rank}`).toBeUndefined();
    for (const r of res) {
      const out = r.value as Record<string, number[]>;
      for (const { dt, op, n } of CASES) {
        const k = `${dt} ${op} ${n}`;
        // float64 reference of block r
        const want = Array.from({ length: n }, (_, i) => {
          let s = 0;
          for (let q = 0; q < world; q++) s += inputs[q]![k]![r.rank * n + i]!;
          return op === 'avg' ? s / world : s;
        });
        const got = out[`rs ${k}`]!;
        expect(got.length, k).toBe(n);
        // f32 sums of `world` terms of magnitude <= 4 (bf16: plus the output's rounding)
        const tol = dt === 'bf16' ? 2 ** -8 : 4 * world * 2 ** -23;
        got.forEach((g, i) => expect(Math.abs(g - want[i]!), `rank ${r.rank} ${k} [${i}]: ${g} vs ${want[i]}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(want[i]!))));
        expect(out[`inplace ${k}`], `in place, rank ${r.rank} ${k}`).toEqual(got);
        expect(out[`ar ${k}`], `allReduce's block, rank ${r.rank} ${k}`).toEqual(got);
      }
      const e = (r.value as { errors: Record<string, string | null> }).errors;
      expect(e.size).toMatch(new RegExp(`reduceScatter on rank ${r.rank} of ${world} \\(cpu:${r.rank}\\): in has ${3 * world + 1} elements`));
      expect(e.dtype).toMatch(/reduceScatter.*out is bf16 but in is f32/);
      expect(e.op).toMatch(/op must be 'sum' or 'avg', got 'max'/);
      expect(e.overlap).toMatch(/out overlaps in/);
      expect((r.value as { mismatch: string }).mismatch).toMatch(/ranks disagree on the collective.*reduceScatter\(sum\) of 2 x f32/);
    }
  });
});

describe('Communicator.reduceScatter (TypeScript)', () => {
  it('one rank alone: out is the input (sum and avg)', () => {
    const c = Communicator.create('cpu', newCommId('cpu'), 0, 1, 'cpu:0');
    try {
      const x = Float32Array.from({ length: 5 }, () => Math.random());
      for (const op of ['sum', 'avg'] as const) {
        const inp = Tensor.from(x, [5]);
        const out = Tensor.from(new Float32Array(5).fill(NaN), [5]);
        c.reduceScatter(out, inp, op);
        expect(out.toArray()).toEqual(x);
        inp.dispose();
        out.dispose();
      }
    } finally {
      c.destroy();
    }
  });
});
