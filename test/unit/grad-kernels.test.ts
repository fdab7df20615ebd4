// The training kernels on the CPU: the shared reference and finite-difference checks
// (test/helpers/grad-cases.ts), the ops' argument checks, and bitwise determinism across thread counts.
import { describe, expect, it } from 'vitest';
import { Tensor, ops, type DType } from '../../src/index.js';
import { randT } from '../helpers/cases.js';
import { arr, gradKernelTests, newSeed } from '../helpers/grad-cases.js';

const DEV = 'cpu:0';

gradKernelTests(DEV);

describe('training op argument checks', () => {
  const z = (shape: number[], dtype: DType = 'f32') => Tensor.zeros(shape, { dtype, device: DEV });
  it('names the op and the sizes', () => {
    expect(() => ops.sumRows(z([3]))).toThrow(/sumRows: x must be at least 2-D/);
    expect(() => ops.sumRows(z([3, 4]), { accumulate: true })).toThrow(/accumulate needs an out/);
    expect(() => ops.layernormBackward(z([2, 4]), z([2, 4]), z([4]), z([3]), z([2]), { dx: z([2, 4]), dgamma: z([4]), dbeta: z([4]) })).toThrow(/layernormBackward: mean has 3 elements, expected 2/);
    expect(() => ops.rmsnormBackward(z([2, 4]), z([2, 4]), z([4]), z([2], 'bf16'), { dx: z([2, 4]), dw: z([4]) })).toThrow(/rstd must be f32/);
    expect(() => ops.geluBackward(z([5]), z([4]))).toThrow(/geluBackward: dy has shape \[4\], expected \[5\]/);
    expect(() => ops.siluGateBackward(z([2, 4]), z([2, 4]), z([2, 4]), { dgate: z([2, 4]), dup: z([2, 4]), rows: 2, cols: 4, inStride: 3 })).toThrow(/inStride 3 < cols 4/);
    expect(() => ops.ropeBackward(z([8]), z([2], 'i32'), { heads: 1, headDim: 4, rotaryDim: 3 })).toThrow(/rotaryDim 3/);
    const sh = { batch: 1, tokens: 4, headsQ: 4, headsKv: 3, headDim: 2 };
    expect(() => ops.attentionForward(z([32]), z([24]), z([24]), sh)).toThrow(/multiple/);
    expect(() => ops.attentionForward(z([32]), z([8]), z([16]), { ...sh, headsKv: 2 })).toThrow(/attentionForward: k has 8 elements, needs 16/);
    const f = { batch: 1, tokens: 2, headsQ: 2, headsKv: 1, headDim: 2 };
    expect(() => ops.attentionBackward(z([8]), z([4]), z([4]), z([1, 2, 2, 2]), z([1, 2, 2, 2]), z([1, 2, 2]), { ...f, dq: z([8]), dk: z([4]), dv: z([4]), workspace: z([5]) })).toThrow(/workspace has 5 elements, needs 12/);
    expect(() => ops.attentionBackward(z([8]), z([4]), z([4]), z([1, 2, 2, 2]), z([1, 2, 2, 2]), z([1, 2, 2], 'bf16'), { ...f, dq: z([8]), dk: z([4]), dv: z([4]) })).toThrow(/lse must be f32/);
    expect(() => ops.embeddingBackward(z([3]), z([3, 4]), z([5, 4]))).toThrow(/ids must be i32/);
    expect(() => ops.embeddingBackward(z([3], 'i32'), z([3, 5]), z([5, 4]))).toThrow(/dout has shape \[3, 5\], expected \[3, 4\]/);
    expect(() => ops.crossEntropy(z([2, 5]), z([3], 'i32'))).toThrow(/targets has 3 elements, expected 2/);
    expect(() => ops.crossEntropy(z([2, 5]), z([2], 'i32'), { dlogits: z([2, 5], 'bf16') })).toThrow(/dlogits is bf16 but logits is f32/);
    expect(() => ops.adamw({ master: z([4]), grad: z([4]), m: z([4]), v: z([3]) }, { nDecay: 2, lr: 1, step: 1 })).toThrow(/adamw: v has 3 elements, expected 4/);
    expect(() => ops.adamw({ master: z([4]), grad: z([4]), m: z([4]), v: z([4]) }, { nDecay: 2, lr: 1, step: 0 })).toThrow(/step must be an integer >= 1/);
    expect(() => ops.adamw({ master: z([4]), grad: z([4]), m: z([4]), v: z([4]) }, { nDecay: 5, lr: 1, step: 1 })).toThrow(/nDecay/);
    expect(() => ops.sumSquares(z([3], 'i32'))).toThrow(/sumSquares: x is i32/);
    expect(() => ops.crossEntropy(z([2, 5]), z([2], 'i32'), { vocab: 6 })).toThrow(/crossEntropy: vocab must be an integer in \[1, 5\]/);
  });
});

describe('geluBackward with the bias gradient', () => {
  for (const dt of ['f32', 'bf16'] as const)
    for (const accumulate of [false, true])
      it(`= geluBackward, then sumRows of dx${accumulate ? ' added' : ''} [${dt}]`, () => {
        const seed = newSeed(), R = 37, C = 24;
        const x = randT([R, C], dt, DEV, seed, -6, 6).t, dy = randT([R, C], dt, DEV, seed + 1).t;
        const b0 = randT([C], dt, DEV, seed + 2).t;
        const want = ops.geluBackward(x, dy);
        const wantB = Tensor.empty([C], { dtype: dt, device: DEV }).copyFrom(b0);
        ops.sumRows(want, { out: wantB, accumulate });
        const db = Tensor.empty([C], { dtype: dt, device: DEV }).copyFrom(b0);
        const got = ops.geluBackward(x, dy, dy, { biasGrad: db, accumulate }); // in place, as training runs it
        expect(got).toBe(dy);
        expect(arr(got)).toEqual(arr(want));
        expect(arr(db)).toEqual(arr(wantB));
        for (const t of [x, dy, b0, want, wantB, db]) t.dispose();
      });
  it('checks its arguments', () => {
    const z = (shape: number[], dtype: DType = 'f32') => Tensor.zeros(shape, { dtype, device: DEV });
    expect(() => ops.geluBackward(z([2, 4]), z([2, 4]), undefined, { accumulate: true })).toThrow(/geluBackward: accumulate needs a biasGrad/);
    expect(() => ops.geluBackward(z([2, 4]), z([2, 4]), undefined, { biasGrad: z([2]) })).toThrow(/geluBackward: biasGrad has shape \[2\], expected \[4\]/);
    expect(() => ops.geluBackward(z([2, 4]), z([2, 4]), undefined, { biasGrad: z([4], 'bf16') })).toThrow(/geluBackward: biasGrad is bf16/);
  });
});

describe('layernormBackward with the dx sums', () => {
  for (const dt of ['f32', 'bf16'] as const)
    for (const accumulate of [false, true])
      it(`= layernormBackward, then sumRows of dx${accumulate ? ' added' : ''} [${dt}]`, () => {
        const seed = newSeed(), R = 29, C = 40;
        const mk = (shape: number[], k: number, lo = -1, hi = 1) => randT(shape, dt, DEV, seed + k, lo, hi).t;
        const x = mk([R, C], 0, -2, 3), dy = mk([R, C], 1), gamma = mk([C], 2, 0.5, 1.5);
        const mean = Tensor.empty([R], { dtype: 'f32', device: DEV }), rstd = Tensor.empty([R], { dtype: 'f32', device: DEV });
        ops.layernorm(x, gamma, mk([C], 3), { mean, rstd }).dispose();
        const run = (fused: boolean) => {
          const dx = mk([R, C], 4), dgamma = mk([C], 5), dbeta = mk([C], 6), dxSum = mk([C], 7);
          const o = { dx, dgamma, dbeta };
          if (fused) ops.layernormBackward(dy, x, gamma, mean, rstd, { ...o, dxSum, dxSumAccumulate: accumulate });
          else {
            ops.layernormBackward(dy, x, gamma, mean, rstd, o);
            ops.sumRows(dx, { out: dxSum, accumulate });
          }
          const r = [dx, dgamma, dbeta, dxSum].map(arr);
          [dx, dgamma, dbeta, dxSum].forEach((t) => t.dispose());
          return r;
        };
        expect(run(true)).toEqual(run(false));
      });
  it('checks its arguments', () => {
    const z = (shape: number[]) => Tensor.zeros(shape, { dtype: 'f32', device: DEV });
    const g = { dx: z([2, 4]), dgamma: z([4]), dbeta: z([4]) };
    expect(() => ops.layernormBackward(z([2, 4]), z([2, 4]), z([4]), z([2]), z([2]), { ...g, dxSum: z([3]) })).toThrow(/layernormBackward: dxSum has shape \[3\], expected \[4\]/);
    expect(() => ops.layernormBackward(z([2, 4]), z([2, 4]), z([4]), z([2]), z([2]), { ...g, dxSumAccumulate: true })).toThrow(/dxSumAccumulate needs a dxSum/);
  });
});

describe('crossEntropy over padded rows (vocab < row length)', () => {
  for (const dt of ['f32', 'bf16'] as const)
    for (const [R, V, L] of [[7, 61, 64], [5, 1001, 1024], [3, 50257, 50304]] as const)
      it(`${R} rows of ${V} logits in ${L} [${dt}]: float64 losses and gradient, padding zeroed, in place`, () => {
        const seed = newSeed();
        // the padding holds random values too: in place, it must come back zero
        const { t: logits, v: x } = randT([R, L], dt, DEV, seed, -6, 6);
        const tg = Int32Array.from({ length: R }, (_, r) => (r === 1 ? -100 : (r * 7919 + seed) % V));
        const dscale = 0.25;
        const losses = ops.crossEntropy(logits, Tensor.from(tg, [R], { dtype: 'i32', device: DEV }), { dlogits: 'inplace', dscale, vocab: V });
        const l = arr(losses), g = arr(logits);
        const tol = dt === 'f32' ? 1e-5 : 1e-2;
        for (let r = 0; r < R; r++) {
          const row = Array.from(x.subarray(r * L, r * L + V));
          const m = Math.max(...row);
          const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
          const t = tg[r]!;
          expect(Math.abs(l[r]! - (t < 0 ? 0 : lse - row[t]!)), `loss ${r} (seed ${seed})`).toBeLessThan(1e-4 * Math.max(1, lse));
          for (let v = 0; v < L; v++) {
            const want = v >= V || t < 0 ? 0 : dscale * (Math.exp(row[v]! - lse) - (v === t ? 1 : 0));
            const got = g[r * L + v]!;
            if (v >= V || t < 0) expect(got, `padding / ignored [${r}, ${v}]`).toBe(0);
            else if (Math.abs(got - want) > tol * Math.max(Math.abs(want), 1e-3)) throw new Error(`dlogits[${r}, ${v}] = ${got}, want ${want} (seed ${seed})`);
          }
        }
        [logits, losses].forEach((t) => t.dispose());
      });
});

// Deterministic partial sums: the same bits whatever the thread count. cpu:0 was made with every hardware
// thread; with 256 devices configured, a new device gets hardware/256 threads, i.e. one (on any machine
// with fewer than 512 hardware threads). Sizes are large enough that cpu:0 does split the work.
describe('training kernels give the same bits on 1 thread and on all threads', () => {
  it('attentionBackward, layernormBackward, sumRows, embeddingBackward, crossEntropy, sumSquares', async (ctx) => {
    const { configureCpuDevices, deviceInfo } = await import('../../src/index.js');
    const seed = newSeed();
    const many = Tensor.zeros([1], { device: DEV });
    if (deviceInfo(DEV).threads! < 2) return ctx.skip(); // one hardware thread: nothing to compare
    configureCpuDevices(256);
    const ONE = 'cpu:255';
    expect(deviceInfo(ONE).threads).toBe(1);
    const run = (device: string) => {
      const mk = (shape: number[], s: number, dtype: DType = 'f32') => randT(shape, dtype, device, s).t;
      const res: number[][] = [];
      const [B, T, Hq, Hkv, D] = [2, 40, 4, 2, 16];
      const shape = { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D };
      const [q, k, v, dout] = [mk([B, T, Hq, D], seed), mk([B, T, Hkv, D], seed + 1), mk([B, T, Hkv, D], seed + 2), mk([B, T, Hq, D], seed + 3)];
      const f = ops.attentionForward(q, k, v, shape);
      const [dq, dk, dv] = [Tensor.empty(q.shape, { device }), Tensor.empty(k.shape, { device }), Tensor.empty(v.shape, { device })];
      ops.attentionBackward(q, k, v, f.out, dout, f.lse, { ...shape, dq, dk, dv });
      res.push(arr(f.out), arr(f.lse), arr(dq), arr(dk), arr(dv));
      const [R, C] = [300, 130];
      const [x, gm, bt, dy] = [mk([R, C], seed + 4), mk([C], seed + 5), mk([C], seed + 6), mk([R, C], seed + 7)];
      const mean = Tensor.empty([R], { device }), rstd = Tensor.empty([R], { device });
      ops.layernorm(x, gm, bt, { mean, rstd });
      const [dx, dg, db] = [Tensor.zeros([R, C], { device }), Tensor.zeros([C], { device }), Tensor.zeros([C], { device })];
      ops.layernormBackward(dy, x, gm, mean, rstd, { dx, dgamma: dg, dbeta: db });
      res.push(arr(dx), arr(dg), arr(db), arr(ops.sumRows(x)));
      const ids = Tensor.from(Array.from({ length: R }, (_, i) => (i * 13) % 17), [R], { dtype: 'i32', device });
      const table = Tensor.zeros([17, C], { device });
      ops.embeddingBackward(ids, dy, table);
      res.push(arr(table));
      const dl = Tensor.empty([R, C], { device });
      res.push(arr(ops.crossEntropy(x, ids, { dlogits: dl })), arr(dl));
      res.push(arr(ops.sumSquares(mk([100_003], seed + 8))));
      return res;
    };
    const a = run(DEV), b = run(ONE);
    a.forEach((r, i) => expect(b[i], `result ${i} (seed ${seed})`).toEqual(r));
    many.dispose();
  });
});
