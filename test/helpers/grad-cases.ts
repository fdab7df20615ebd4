// The training kernels' checks on one device, shared by the CPU tests (test/unit/grad-kernels.test.ts)
// and the GPU tests (test/gpu/grad-references.gpu.test.ts): each op against its float64 reference
// (test/helpers/reference-grad.ts) on fresh random inputs with odd sizes; "=" outputs are poisoned with
// NaN first, "+=" outputs start from known random values, which the references add to. Then finite
// differences of a scalar loss through the forward ops check the backward ops' formulas.
// Tolerances (relative Frobenius error): f32 1e-5; bf16 1e-2, i.e. a few bf16 ulps (2^-8 = 0.0039) per
// element: inputs are exact bf16 values, arithmetic is f32, and the one rounding of each output to bf16
// gives ~0.002 RMS relative error; sums of a few hundred terms do not add to that at these sizes.
import { describe, expect, it } from 'vitest';
import { Tensor, ops, type DType } from '../../src/index.js';
import { poisoned, randT } from './cases.js';
import { relError } from './reference.js';
import * as ref from './reference.js';
import * as g from './reference-grad.js';

export const newSeed = () => Math.floor(Math.random() * 1e6);
export const arr = (t: Tensor) => Array.from(t.toArray());
export const free = (...ts: (Tensor | undefined | null)[]) => ts.forEach((t) => t?.dispose());

/** Defines the reference and finite-difference tests of every training op on `DEV`. */
export function gradKernelTests(DEV: string): void {
  const DTYPES: DType[] = ['f32', 'bf16'];
  const tol = (dt: DType) => (dt === 'f32' ? 1e-5 : 1e-2);

  function close(out: ArrayLike<number>, want: ArrayLike<number>, dt: DType, what: string, seed: number, t = tol(dt)) {
    expect(relError(out, want), `${what} (seed ${seed})`).toBeLessThanOrEqual(t);
  }

  describe('training kernels match float64 references', () => {
    for (const dt of DTYPES) {
      for (const [R, C] of [[37, 300], [1, 5], [6, 1]] as const)
        it(`sumRows ${R}x${C} [${dt}]`, () => {
          const seed = newSeed();
          const x = randT([R, C], dt, DEV, seed);
          const out = poisoned([C], dt, DEV);
          ops.sumRows(x.t, { out });
          close(arr(out), g.sumRowsRef(x.v, R, C, null), dt, 'sumRows =', seed);
          const base = randT([C], dt, DEV, seed + 1);
          ops.sumRows(x.t, { out: base.t, accumulate: true });
          close(arr(base.t), g.sumRowsRef(x.v, R, C, base.v), dt, 'sumRows +=', seed);
          free(x.t, out, base.t);
        });

      for (const [R, C] of [[7, 45], [3, 130]] as const)
        it(`layernormBackward ${R}x${C} [${dt}]`, () => {
          const seed = newSeed();
          const x = randT([R, C], dt, DEV, seed, -2, 3);
          const gamma = randT([C], dt, DEV, seed + 1);
          const beta = randT([C], dt, DEV, seed + 2);
          const mean = poisoned([R], 'f32', DEV), rstd = poisoned([R], 'f32', DEV);
          const y = ops.layernorm(x.t, gamma.t, beta.t, { mean, rstd });
          const f = ref.layernormRef(x.v, gamma.v, beta.v, R, C, 1e-5);
          close(arr(mean), f.mean, 'f32', 'mean', seed, 1e-5);
          close(arr(rstd), f.rstd, 'f32', 'rstd', seed, 1e-5);
          const dy = randT([R, C], dt, DEV, seed + 3);
          const dx = randT([R, C], dt, DEV, seed + 4), dgamma = randT([C], dt, DEV, seed + 5), dbeta = randT([C], dt, DEV, seed + 6);
          ops.layernormBackward(dy.t, x.t, gamma.t, mean, rstd, { dx: dx.t, dgamma: dgamma.t, dbeta: dbeta.t });
          const r = g.layernormBackwardRef(dy.v, x.v, gamma.v, f.mean, f.rstd, R, C, dx.v, dgamma.v, dbeta.v);
          close(arr(dx.t), r.dx, dt, 'dx', seed);
          close(arr(dgamma.t), r.dgamma, dt, 'dgamma', seed);
          close(arr(dbeta.t), r.dbeta, dt, 'dbeta', seed);
          free(x.t, gamma.t, beta.t, mean, rstd, y, dy.t, dx.t, dgamma.t, dbeta.t);
        });

      for (const [R, C] of [[9, 33], [2, 129]] as const)
        it(`rmsnormBackward ${R}x${C} [${dt}]`, () => {
          const seed = newSeed();
          const x = randT([R, C], dt, DEV, seed, -2, 3);
          const w = randT([C], dt, DEV, seed + 1);
          const rstd = poisoned([R], 'f32', DEV);
          const y = ops.rmsnorm(x.t, w.t, { rstd });
          const f = ref.rmsnormRef(x.v, w.v, R, C, 1e-5);
          close(arr(rstd), f.rstd, 'f32', 'rstd', seed, 1e-5);
          const dy = randT([R, C], dt, DEV, seed + 3);
          const dx = randT([R, C], dt, DEV, seed + 4), dw = randT([C], dt, DEV, seed + 5);
          ops.rmsnormBackward(dy.t, x.t, w.t, rstd, { dx: dx.t, dw: dw.t });
          const r = g.rmsnormBackwardRef(dy.v, x.v, w.v, f.rstd, R, C, dx.v, dw.v);
          close(arr(dx.t), r.dx, dt, 'dx', seed);
          close(arr(dw.t), r.dw, dt, 'dw', seed);
          free(x.t, w.t, rstd, y, dy.t, dx.t, dw.t);
        });

      it(`geluBackward 1001, and in place [${dt}]`, () => {
        const seed = newSeed();
        const x = randT([1001], dt, DEV, seed, -6, 6);
        const dy = randT([1001], dt, DEV, seed + 1);
        const out = poisoned([1001], dt, DEV);
        ops.geluBackward(x.t, dy.t, out);
        const want = g.geluBackwardRef(x.v, dy.v);
        close(arr(out), want, dt, 'dx', seed);
        expect(ops.geluBackward(x.t, dy.t, dy.t)).toBe(dy.t);
        close(arr(dy.t), want, dt, 'dx in place', seed);
        free(x.t, dy.t, out);
      });

      it(`siluGateBackward: contiguous, and the halves of one [R, 2F] buffer [${dt}]`, () => {
        const seed = newSeed();
        const [R, F] = [5, 37];
        const gate = randT([R, F], dt, DEV, seed, -5, 5), up = randT([R, F], dt, DEV, seed + 1);
        const dy = randT([R, F], dt, DEV, seed + 2);
        const dgate = poisoned([R, F], dt, DEV), dup = poisoned([R, F], dt, DEV);
        ops.siluGateBackward(gate.t, up.t, dy.t, { dgate, dup, rows: R, cols: F });
        const r = g.siluGateBackwardRef(gate.v, up.v, dy.v, R, F, F, new Float64Array(R * F), new Float64Array(R * F));
        close(arr(dgate), r.dgate, dt, 'dgate', seed);
        close(arr(dup), r.dup, dt, 'dup', seed);
        // fused: gate | up in one [R, 2F] tensor, the gradient into one poisoned [R, 2F] tensor
        const gu = randT([R, 2 * F], dt, DEV, seed + 3, -5, 5);
        const dgu = poisoned([R, 2 * F], dt, DEV);
        const n = R * 2 * F;
        ops.siluGateBackward(gu.t.view(0, [n]), gu.t.view(F, [n - F]), dy.t, { dgate: dgu.view(0, [n]), dup: dgu.view(F, [n - F]), rows: R, cols: F, inStride: 2 * F });
        const rf = g.siluGateBackwardRef(gu.v, gu.v.subarray(F), dy.v, R, F, 2 * F, new Float64Array(n), new Float64Array(n - F));
        const want = Float64Array.from({ length: n }, (_, i) => (i % (2 * F) < F ? rf.dgate[i]! : rf.dup[i - F]!));
        close(arr(dgu), want, dt, 'dgate|dup fused', seed);
        free(gate.t, up.t, dy.t, dgate, dup, gu.t, dgu);
      });

      it(`ropeBackward: partial rotary dim, strided rows; inverts rope [${dt}]`, () => {
        const seed = newSeed();
        const [R, H, D, rot, st] = [6, 3, 10, 8, 3 * 10 + 4];
        const posv = [0, 1, 5, 17, 300, 4095];
        const pos = Tensor.from(posv, [R], { dtype: 'i32', device: DEV });
        const x = randT([R * st], dt, DEV, seed);
        const o = { heads: H, headDim: D, rotaryDim: rot, tokenStride: st, theta: 10000 };
        expect(ops.ropeBackward(x.t, pos, o)).toBe(x.t);
        close(arr(x.t), g.ropeBackwardRef(x.v, posv, R, H, D, st, rot, 10000), dt, 'ropeBackward', seed);
        if (dt === 'f32') {
          const y = randT([R * st], dt, DEV, seed + 1);
          ops.ropeBackward(ops.rope(y.t, pos, o), pos, o);
          close(arr(y.t), y.v, dt, 'ropeBackward(rope(x)) = x', seed);
          free(y.t);
        }
        free(pos, x.t);
      });

      const attnCases = [
        { B: 2, T: 7, Hq: 4, Hkv: 2, D: 12, fused: false },
        { B: 1, T: 37, Hq: 4, Hkv: 1, D: 8, fused: false },
        { B: 2, T: 5, Hq: 4, Hkv: 2, D: 6, fused: true },
        { B: 1, T: 33, Hq: 2, Hkv: 2, D: 17, fused: true },
      ];
      for (const c of attnCases)
        it(`attentionForward + attentionBackward B${c.B} T${c.T} Hq${c.Hq} Hkv${c.Hkv} D${c.D}${c.fused ? ' fused qkv' : ''} [${dt}]`, () => {
          const seed = newSeed();
          const { B, T, Hq, Hkv, D } = c;
          const W = (Hq + 2 * Hkv) * D;
          const owned: Tensor[] = [];
          let q: Tensor, k: Tensor, v: Tensor, dq: Tensor, dk: Tensor, dv: Tensor;
          let qv: Float32Array, kv: Float32Array, vv: Float32Array;
          let dims: g.AttnDims;
          let dqkv: Tensor | undefined;
          const scale = 1 / Math.sqrt(D);
          if (c.fused) {
            // q, k, v (and dq, dk, dv) are column blocks of one [B, T, (Hq + 2 Hkv) D] tensor
            const x = randT([B, T, W], dt, DEV, seed, -2, 2);
            const n = B * T * W;
            q = x.t.view(0, [n]);
            k = x.t.view(Hq * D, [n - Hq * D]);
            v = x.t.view((Hq + Hkv) * D, [n - (Hq + Hkv) * D]);
            qv = x.v;
            kv = x.v.subarray(Hq * D);
            vv = x.v.subarray((Hq + Hkv) * D);
            dqkv = poisoned([B, T, W], dt, DEV);
            dq = dqkv.view(0, [n]);
            dk = dqkv.view(Hq * D, [n - Hq * D]);
            dv = dqkv.view((Hq + Hkv) * D, [n - (Hq + Hkv) * D]);
            owned.push(x.t, dqkv);
            dims = { B, T, Hq, Hkv, D, qB: T * W, qT: W, kB: T * W, kT: W, scale };
          } else {
            const a = randT([B, T, Hq, D], dt, DEV, seed, -2, 2), b = randT([B, T, Hkv, D], dt, DEV, seed + 1, -2, 2), cc = randT([B, T, Hkv, D], dt, DEV, seed + 2);
            [q, k, v, qv, kv, vv] = [a.t, b.t, cc.t, a.v, b.v, cc.v];
            dq = poisoned([B, T, Hq, D], dt, DEV);
            dk = poisoned([B, T, Hkv, D], dt, DEV);
            dv = poisoned([B, T, Hkv, D], dt, DEV);
            owned.push(q, k, v, dq, dk, dv);
            dims = { B, T, Hq, Hkv, D, qB: T * Hq * D, qT: Hq * D, kB: T * Hkv * D, kT: Hkv * D, scale };
          }
          const shape = { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D, qStrides: [dims.qB, dims.qT] as [number, number], kvStrides: [dims.kB, dims.kT] as [number, number] };
          const out = poisoned([B, T, Hq, D], dt, DEV), lse = poisoned([B, Hq, T], 'f32', DEV);
          ops.attentionForward(q, k, v, { ...shape, out, lse });
          const f = g.attentionForwardRef(qv, kv, vv, dims);
          close(arr(out), f.out, dt, 'out', seed);
          close(arr(lse), f.lse, 'f32', 'lse', seed, dt === 'f32' ? 1e-5 : 1e-4);
          const dout = randT([B, T, Hq, D], dt, DEV, seed + 5);
          ops.attentionBackward(q, k, v, out, dout.t, lse, { ...shape, dq, dk, dv });
          const outv = out.toArray();
          if (c.fused) {
            const n = B * T * W;
            const r = g.attentionBackwardRef(qv, kv, vv, dout.v, dims, new Float64Array(n), new Float64Array(n - Hq * D), new Float64Array(n - (Hq + Hkv) * D), outv);
            // reassemble the one [B, T, W] gradient from the three strided results
            const want = Float64Array.from({ length: n }, (_, i) => {
              const col = i % W;
              return col < Hq * D ? r.dq[i]! : col < (Hq + Hkv) * D ? r.dk[i - Hq * D]! : r.dv[i - (Hq + Hkv) * D]!;
            });
            close(arr(dqkv!), want, dt, 'dq|dk|dv fused', seed);
          } else {
            const r = g.attentionBackwardRef(qv, kv, vv, dout.v, dims, new Float64Array(q.numel), new Float64Array(k.numel), new Float64Array(v.numel), outv);
            close(arr(dq), r.dq, dt, 'dq', seed);
            close(arr(dk), r.dk, dt, 'dk', seed);
            close(arr(dv), r.dv, dt, 'dv', seed);
            if (dt === 'f32') {
              // the same gradients from P alone (not the stored out), and bit-identical on a second run
              const exact = g.attentionBackwardRef(qv, kv, vv, dout.v, dims, new Float64Array(q.numel), new Float64Array(k.numel), new Float64Array(v.numel));
              close(arr(dq), exact.dq, dt, 'dq (exact)', seed, 1e-4);
              const first = [arr(dq), arr(dk), arr(dv)];
              ops.attentionBackward(q, k, v, out, dout.t, lse, { ...shape, dq, dk, dv, workspace: Tensor.empty([g2ws(B, T, Hq, D)], { dtype: 'f32', device: DEV }) });
              expect([arr(dq), arr(dk), arr(dv)]).toEqual(first);
            }
          }
          free(...owned, out, lse, dout.t);
        });

      it(`embeddingBackward with repeated and out-of-range ids [${dt}]`, () => {
        const seed = newSeed();
        const [N, V, C] = [50, 11, 19];
        const idv = Array.from({ length: N }, (_, i) => (i * 7 + seed) % (V + 3) - 1); // -1 .. V+1, repeats
        const ids = Tensor.from(idv, [N], { dtype: 'i32', device: DEV });
        const dout = randT([N, C], dt, DEV, seed);
        const dtable = randT([V, C], dt, DEV, seed + 1);
        ops.embeddingBackward(ids, dout.t, dtable.t);
        close(arr(dtable.t), g.embeddingBackwardRef(idv, dout.v, V, C, dtable.v), dt, 'dtable', seed);
        // scaled (data parallel's gathered lookup rows, 1 / world each): the rows of an id summed, then scaled
        const before = arr(dtable.t);
        ops.embeddingBackward(ids, dout.t, dtable.t, { scale: 1 / 3 });
        close(arr(dtable.t), g.embeddingBackwardRef(idv, dout.v, V, C, before, 1 / 3), dt, 'dtable, scale 1/3', seed);
        expect(() => ops.embeddingBackward(ids, dout.t, dtable.t, { scale: NaN })).toThrow(/scale must be a finite number/);
        free(ids, dout.t, dtable.t);
      });

      it(`crossEntropy: ignored and out-of-range targets, separate / in-place / no gradient [${dt}]`, () => {
        const seed = newSeed();
        const [R, V] = [9, 203];
        const tv = Array.from({ length: R }, (_, r) => (r * 37 + seed) % V);
        tv[2] = -100; // the default ignore index
        tv[5] = V; // out of range: ignored
        tv[7] = -3;
        const targets = Tensor.from(tv, [R], { dtype: 'i32', device: DEV });
        const x = randT([R, V], dt, DEV, seed, -4, 4);
        const want = g.crossEntropyRef(x.v, tv, R, V, -100, 0.37);
        const dl = poisoned([R, V], dt, DEV), losses = poisoned([R], 'f32', DEV);
        expect(ops.crossEntropy(x.t, targets, { losses, dlogits: dl, dscale: 0.37 })).toBe(losses);
        close(arr(losses), want.losses, 'f32', 'losses', seed, dt === 'f32' ? 1e-5 : 1e-4);
        close(arr(dl), want.dlogits, dt, 'dlogits', seed);
        expect(arr(losses)[2]).toBe(0);
        expect(arr(dl).slice(5 * V, 6 * V).every((e) => e === 0)).toBe(true);
        close(arr(ops.crossEntropy(x.t, targets)), want.losses, 'f32', 'losses only', seed, dt === 'f32' ? 1e-5 : 1e-4);
        // a custom ignore index; -100 is then an out-of-range target, still ignored
        const tv2 = tv.map((t, r) => (r === 4 ? 11 : t));
        const t2 = Tensor.from(tv2, [R], { dtype: 'i32', device: DEV });
        const want2 = g.crossEntropyRef(x.v, tv2, R, V, 11, 1);
        const l2 = ops.crossEntropy(x.t, t2, { dlogits: 'inplace', ignoreIndex: 11 });
        close(arr(l2), want2.losses, 'f32', 'losses (in place)', seed, dt === 'f32' ? 1e-5 : 1e-4);
        close(arr(x.t), want2.dlogits, dt, 'dlogits in place', seed);
        free(targets, x.t, dl, losses, t2, l2);
      });

      it(`sumSquares over 40001 elements and 3 [${dt}]`, () => {
        const seed = newSeed();
        for (const n of [40001, 3]) {
          const x = randT([n], dt, DEV, seed + n);
          const out = poisoned([1], 'f32', DEV);
          ops.sumSquares(x.t, out);
          close(arr(out), [g.sumSquaresRef(x.v)], 'f32', `sumSquares n=${n}`, seed, 1e-5);
          free(x.t, out);
        }
      });

      for (const withParam of [true, false])
        it(`adamw, 5 steps, ${withParam ? 'param written' : 'no param'} [${dt}]`, () => {
          const seed = newSeed();
          const [n, nDecay] = [1003, 611];
          const o = { nDecay, lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 };
          const master = randT([n], 'f32', DEV, seed);
          const m = Tensor.zeros([n], { dtype: 'f32', device: DEV }), v = Tensor.zeros([n], { dtype: 'f32', device: DEV });
          const param = withParam ? poisoned([n], dt, DEV) : undefined;
          const grads: Float32Array[] = [];
          for (let s = 1; s <= 5; s++) {
            // a gradient with some exact zeros and a wide range of magnitudes
            const gr = randT([n], dt, DEV, seed + 10 * s, -2, 2);
            grads.push(gr.v);
            ops.adamw({ master: master.t, param, grad: gr.t, m, v }, { ...o, step: s });
            free(gr.t);
          }
          const r = g.adamwRef(master.v, new Float64Array(n), new Float64Array(n), grads, o);
          const mo = master.t.toArray();
          // the change of the weights, which is what the update computes (the weights themselves are ~1)
          close(Array.from(mo, (x, i) => x - master.v[i]!), Array.from(r.master, (x, i) => x - master.v[i]!), 'f32', 'master update', seed, 1e-4);
          close(arr(m), r.m, 'f32', 'm', seed, 1e-5);
          close(arr(v), r.v, 'f32', 'v', seed, 1e-5);
          if (param) {
            const rounded = Tensor.from(mo, [n], { dtype: dt, device: DEV });
            expect(arr(param)).toEqual(arr(rounded));
            free(rounded);
          }
          free(master.t, m, v, param);
        });
    }
  });

  describe('training ops flatten leading dimensions', () => {
    it('sumRows [2, 3, C], embeddingBackward ids [2, 3], crossEntropy logits [2, 3, V]', () => {
      const seed = newSeed();
      const [C, V] = [7, 5];
      const x = randT([2, 3, C], 'f32', DEV, seed);
      const s = ops.sumRows(x.t);
      expect(s.shape).toEqual([C]);
      close(arr(s), g.sumRowsRef(x.v, 6, C, null), 'f32', 'sumRows', seed);
      const idv = [0, 4, 4, 1, 9, 0];
      const ids = Tensor.from(idv, [2, 3], { dtype: 'i32', device: DEV });
      const table = randT([V, C], 'f32', DEV, seed + 1);
      ops.embeddingBackward(ids, x.t, table.t);
      close(arr(table.t), g.embeddingBackwardRef(idv, x.v, V, C, table.v), 'f32', 'dtable', seed);
      const lg = randT([2, 3, V], 'f32', DEV, seed + 2);
      const dl = poisoned([2, 3, V], 'f32', DEV);
      const l = ops.crossEntropy(lg.t, ids, { dlogits: dl });
      const want = g.crossEntropyRef(lg.v, idv, 6, V, -100, 1);
      expect(l.shape).toEqual([6]);
      close(arr(l), want.losses, 'f32', 'losses', seed);
      close(arr(dl), want.dlogits, 'f32', 'dlogits', seed);
      free(x.t, s, ids, table.t, lg.t, dl, l);
    });
  });

  const g2ws = (B: number, T: number, Hq: number, D: number) => ops.attentionBackwardWorkspace(B, T, Hq, D);

  // ---------------------------------------------------------------------------------------- finite differences
  // L = sum(w * f(inputs)) with the forward op f run in f32; dL/dx_i by central differences (the step taken
  // as the f32 values actually stored, the loss summed in float64) against the backward op given dy = w.

  function numericGrad(x: Float32Array, loss: (x: Float32Array) => number, h = 1e-2): Float64Array {
    const gr = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i]!;
      const xp = Math.fround(x0 + h), xm = Math.fround(x0 - h);
      x[i] = xp;
      const lp = loss(x);
      x[i] = xm;
      const lm = loss(x);
      x[i] = x0;
      gr[i] = (lp - lm) / (xp - xm);
    }
    return gr;
  }

  const dotW = (t: Tensor, w: ArrayLike<number>) => {
    const a = t.toArray();
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i]! * w[i]!;
    return s;
  };
  const tf = (v: ArrayLike<number>, shape: number[]) => Tensor.from(v, shape, { dtype: 'f32', device: DEV });
  const FD_TOL = 2e-3;

  describe('backward ops against finite differences (f32 forward ops, float64 loss)', () => {
    it('layernorm: dx, dgamma, dbeta', () => {
      const seed = newSeed();
      const [R, C] = [3, 5];
      const x = randT([R, C], 'f32', DEV, seed, -2, 2).v, gm = randT([C], 'f32', DEV, seed + 1).v, bt = randT([C], 'f32', DEV, seed + 2).v;
      const w = randT([R, C], 'f32', DEV, seed + 3).v;
      const L = (xv: Float32Array, gv: Float32Array, bv: Float32Array) => {
        const [a, b, c] = [tf(xv, [R, C]), tf(gv, [C]), tf(bv, [C])];
        const y = ops.layernorm(a, b, c);
        const s = dotW(y, w);
        free(a, b, c, y);
        return s;
      };
      const [xt, gt, dy] = [tf(x, [R, C]), tf(gm, [C]), tf(w, [R, C])];
      const mean = Tensor.empty([R], { dtype: 'f32', device: DEV }), rstd = Tensor.empty([R], { dtype: 'f32', device: DEV });
      ops.layernorm(xt, gt, tf(bt, [C]), { mean, rstd });
      const dx = tf(new Float32Array(R * C), [R, C]), dgamma = tf(new Float32Array(C), [C]), dbeta = tf(new Float32Array(C), [C]);
      ops.layernormBackward(dy, xt, gt, mean, rstd, { dx, dgamma, dbeta });
      expect(relError(arr(dx), numericGrad(x, (v) => L(v, gm, bt))), `dx seed ${seed}`).toBeLessThan(FD_TOL);
      expect(relError(arr(dgamma), numericGrad(gm, (v) => L(x, v, bt))), `dgamma seed ${seed}`).toBeLessThan(FD_TOL);
      expect(relError(arr(dbeta), numericGrad(bt, (v) => L(x, gm, v))), `dbeta seed ${seed}`).toBeLessThan(FD_TOL);
    });

    it('rmsnorm: dx, dw', () => {
      const seed = newSeed();
      const [R, C] = [3, 6];
      const x = randT([R, C], 'f32', DEV, seed, -2, 2).v, wt = randT([C], 'f32', DEV, seed + 1).v;
      const w = randT([R, C], 'f32', DEV, seed + 3).v;
      const L = (xv: Float32Array, wv: Float32Array) => {
        const [a, b] = [tf(xv, [R, C]), tf(wv, [C])];
        const y = ops.rmsnorm(a, b);
        const s = dotW(y, w);
        free(a, b, y);
        return s;
      };
      const [xt, wtt, dy] = [tf(x, [R, C]), tf(wt, [C]), tf(w, [R, C])];
      const rstd = Tensor.empty([R], { dtype: 'f32', device: DEV });
      ops.rmsnorm(xt, wtt, { rstd });
      const dx = tf(new Float32Array(R * C), [R, C]), dw = tf(new Float32Array(C), [C]);
      ops.rmsnormBackward(dy, xt, wtt, rstd, { dx, dw });
      expect(relError(arr(dx), numericGrad(x, (v) => L(v, wt))), `dx seed ${seed}`).toBeLessThan(FD_TOL);
      expect(relError(arr(dw), numericGrad(wt, (v) => L(x, v))), `dw seed ${seed}`).toBeLessThan(FD_TOL);
    });

    it('gelu and siluGate', () => {
      const seed = newSeed();
      const n = 12;
      const x = randT([n], 'f32', DEV, seed, -4, 4).v, u = randT([n], 'f32', DEV, seed + 1).v, w = randT([n], 'f32', DEV, seed + 2).v;
      const Lg = (xv: Float32Array) => {
        const a = tf(xv, [n]);
        const y = ops.gelu(a);
        const s = dotW(y, w);
        free(a, y);
        return s;
      };
      expect(relError(arr(ops.geluBackward(tf(x, [n]), tf(w, [n]))), numericGrad(x, Lg, 1e-3)), `gelu seed ${seed}`).toBeLessThan(FD_TOL);
      const Ls = (gv: Float32Array, uv: Float32Array) => {
        const [a, b] = [tf(gv, [3, 4]), tf(uv, [3, 4])];
        const y = ops.siluGate(a, b);
        const s = dotW(y, w);
        free(a, b, y);
        return s;
      };
      const dgate = Tensor.empty([3, 4], { dtype: 'f32', device: DEV }), dup = Tensor.empty([3, 4], { dtype: 'f32', device: DEV });
      ops.siluGateBackward(tf(x, [3, 4]), tf(u, [3, 4]), tf(w, [3, 4]), { dgate, dup, rows: 3, cols: 4 });
      expect(relError(arr(dgate), numericGrad(x, (v) => Ls(v, u), 1e-3)), `dgate seed ${seed}`).toBeLessThan(FD_TOL);
      expect(relError(arr(dup), numericGrad(u, (v) => Ls(x, v), 1e-3)), `dup seed ${seed}`).toBeLessThan(FD_TOL);
    });

    it('attention (grouped heads): dq, dk, dv', () => {
      const seed = newSeed();
      const [B, T, Hq, Hkv, D] = [1, 4, 2, 1, 3];
      const shape = { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D };
      const q = randT([B, T, Hq, D], 'f32', DEV, seed, -1.5, 1.5).v, k = randT([B, T, Hkv, D], 'f32', DEV, seed + 1, -1.5, 1.5).v, v = randT([B, T, Hkv, D], 'f32', DEV, seed + 2).v;
      const w = randT([B, T, Hq, D], 'f32', DEV, seed + 3).v;
      const L = (qv: Float32Array, kv: Float32Array, vv: Float32Array) => {
        const [a, b, c] = [tf(qv, [B, T, Hq, D]), tf(kv, [B, T, Hkv, D]), tf(vv, [B, T, Hkv, D])];
        const r = ops.attentionForward(a, b, c, shape);
        const s = dotW(r.out, w);
        free(a, b, c, r.out, r.lse);
        return s;
      };
      const [qt, kt, vt] = [tf(q, [B, T, Hq, D]), tf(k, [B, T, Hkv, D]), tf(v, [B, T, Hkv, D])];
      const f = ops.attentionForward(qt, kt, vt, shape);
      const dq = Tensor.empty([B, T, Hq, D], { dtype: 'f32', device: DEV }), dk = Tensor.empty([B, T, Hkv, D], { dtype: 'f32', device: DEV }), dv = Tensor.empty([B, T, Hkv, D], { dtype: 'f32', device: DEV });
      ops.attentionBackward(qt, kt, vt, f.out, tf(w, [B, T, Hq, D]), f.lse, { ...shape, dq, dk, dv });
      expect(relError(arr(dq), numericGrad(q, (x) => L(x, k, v))), `dq seed ${seed}`).toBeLessThan(FD_TOL);
      expect(relError(arr(dk), numericGrad(k, (x) => L(q, x, v))), `dk seed ${seed}`).toBeLessThan(FD_TOL);
      expect(relError(arr(dv), numericGrad(v, (x) => L(q, k, x))), `dv seed ${seed}`).toBeLessThan(FD_TOL);
    });

    it('crossEntropy and rope', () => {
      const seed = newSeed();
      const [R, V] = [3, 7];
      const x = randT([R, V], 'f32', DEV, seed, -3, 3).v;
      const tv = [2, -100, 6];
      const targets = Tensor.from(tv, [R], { dtype: 'i32', device: DEV });
      const L = (xv: Float32Array) => {
        const a = tf(xv, [R, V]);
        const l = ops.crossEntropy(a, targets);
        const s = arr(l).reduce((p, c) => p + c, 0);
        free(a, l);
        return s;
      };
      const dl = Tensor.empty([R, V], { dtype: 'f32', device: DEV });
      ops.crossEntropy(tf(x, [R, V]), targets, { dlogits: dl });
      expect(relError(arr(dl), numericGrad(x, L, 1e-3)), `dlogits seed ${seed}`).toBeLessThan(FD_TOL);
      // rope is linear: its backward is the transpose, so sum(w * rope(x)) has gradient ropeBackward(w)
      const [Rr, H, D] = [3, 2, 6];
      const pos = Tensor.from([0, 3, 11], [Rr], { dtype: 'i32', device: DEV });
      const xr = randT([Rr * H * D], 'f32', DEV, seed + 1).v, w = randT([Rr * H * D], 'f32', DEV, seed + 2).v;
      const o = { heads: H, headDim: D, rotaryDim: 4 };
      const Lr = (xv: Float32Array) => {
        const a = tf(xv, [Rr * H * D]);
        const s = dotW(ops.rope(a, pos, o), w);
        free(a);
        return s;
      };
      expect(relError(arr(ops.ropeBackward(tf(w, [Rr * H * D]), pos, o)), numericGrad(xr, Lr)), `rope seed ${seed}`).toBeLessThan(FD_TOL);
    });
  });
}
