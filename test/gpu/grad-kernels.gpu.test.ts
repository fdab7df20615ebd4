// The training kernels on CUDA against the same ops on the CPU backend (itself held to float64 references
// in test/unit), on fresh random inputs: each case builds its inputs from one seed on either device, so
// both backends see the same values. "=" outputs are poisoned with NaN first; "+=" outputs start from
// random values (the same on both devices), so a kernel that overwrites instead of adding fails. Every
// output must be finite (written). Determinism: the CUDA op run twice on the same inputs gives the same
// bits. Skipped where there is no GPU (CI); run on the lent GPU machine.
import { describe, expect, it } from 'vitest';
import { Tensor, cudaDeviceCount, ops, type DType } from '../../src/index.js';
import { uniformArray } from '../../src/random.js';
import { relError } from '../helpers/reference.js';

const gpus = cudaDeviceCount();
const dev = 'cuda:0';
const cpu = 'cpu:0';
type FDT = 'f32' | 'bf16';
const DTYPES: FDT[] = ['f32', 'bf16'];

// f32: both backends accumulate in f32 in different orders; bf16: outputs rounded to bf16 (about 2^-9
// relative per element) after f32 sums in different orders.
const TOL: Record<FDT, number> = { f32: 2e-5, bf16: 1e-2 };

type Outs = Record<string, Float32Array | Int32Array>;

/** Host values for `n` elements from `seed` (the same on every call and device). */
const vals = (n: number, seed: number, low = -1, high = 1) => uniformArray(n, seed * 7919 + 13, low, high);

/** A tracker of the tensors one run creates, disposed together. */
function scope() {
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
  return {
    keep,
    from: (data: ArrayLike<number>, shape: number[], dtype: DType, device: string) => keep(Tensor.from(data, shape, { dtype, device })),
    poison: (shape: number[], dtype: DType, device: string) => keep(Tensor.full(shape, NaN, { dtype, device })),
    dispose: () => owned.forEach((t) => t.dispose()),
  };
}

function expectFinite(a: ArrayLike<number>, what: string) {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) throw new Error(`${what}: element ${i} is ${a[i]} (unwritten or NaN)`);
}

function sameBits(a: Float32Array | Int32Array, b: Float32Array | Int32Array, what: string) {
  expect(a.length, what).toBe(b.length);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let differ = 0, first = -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) (differ++, first < 0 && (first = i));
  expect(differ, `${what}: elements whose bits differ between two runs (first at ${first})`).toBe(0);
}

/**
 * Run on the GPU and the CPU, compare every output; with `deterministic`, run the GPU twice too. `floor`
 * gives an output's error a norm to be measured against when its own is smaller (an absolute scale where
 * the values can cancel to nothing, as a confident row's softmax minus one-hot does).
 */
function compare(run: (device: string) => Outs, tol: number | Record<string, number>, deterministic = false, floor: Record<string, number> = {}): Outs {
  const g = run(dev);
  const h = run(cpu);
  for (const key of Object.keys(h)) {
    const a = g[key]!, b = h[key]!;
    expect(a.length, key).toBe(b.length);
    expectFinite(a, `${key} (cuda)`);
    const t = typeof tol === 'number' ? tol : tol[key]!;
    expect(relError(a, b, floor[key]), `${key} vs CPU`).toBeLessThanOrEqual(t);
  }
  if (deterministic) {
    const g2 = run(dev);
    for (const key of Object.keys(g)) sameBits(g[key]!, g2[key]!, key);
  }
  return g;
}

describe.skipIf(gpus === 0)('CUDA training kernels match the CPU backend', () => {
  // ---------------------------------------------------------------------------------------- sum_rows
  for (const [R, C] of [[1, 1], [7, 5], [1000, 771], [4096, 768], [16384, 96], [33, 2048]] as const)
    for (const dt of DTYPES)
      for (const accumulate of [false, true])
        it(`sumRows ${R}x${C}${accumulate ? ' accumulate' : ''} [${dt}]`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          compare((d) => {
            const s = scope();
            const x = s.from(vals(R * C, seed), [R, C], dt, d);
            const out = accumulate ? s.from(vals(C, seed + 1), [C], dt, d) : s.poison([C], dt, d);
            ops.sumRows(x, { out, accumulate });
            const r = { out: out.toArray() };
            s.dispose();
            return r;
          }, TOL[dt], R >= 1000);
        });

  // ------------------------------------------------------------------------------------------- norms
  // mean and rstd come from the stored x in float64 (as the forward saves them), the same on both devices.
  function normStats(x: Float32Array, R: number, C: number, rms: boolean) {
    const mean = new Float32Array(R), rstd = new Float32Array(R);
    for (let r = 0; r < R; r++) {
      let m = 0, q = 0;
      for (let c = 0; c < C; c++) m += x[r * C + c]!;
      m = rms ? 0 : m / C;
      for (let c = 0; c < C; c++) q += (x[r * C + c]! - m) ** 2;
      mean[r] = m;
      rstd[r] = 1 / Math.sqrt(q / C + 1e-5);
    }
    return { mean, rstd };
  }

  for (const [R, C] of [[3, 50], [64, 771], [1000, 768], [257, 2048], [17, 4104], [8192, 768]] as const) // (8192: the most blocks' partials)
    for (const dt of DTYPES) {
      // with the dx sums (GPT-2's out and down biases), stored or added by shape
      for (const sums of [false, true])
        it(`layernormBackward ${R}x${C}${sums ? ' with the dx sums' : ''} [${dt}]`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          const accumulate = R % 2 === 0;
          compare((d) => {
            const s = scope();
            const x = s.from(vals(R * C, seed, -2, 3), [R, C], dt, d);
            const { mean, rstd } = normStats(x.toArray() as Float32Array, R, C, false);
            const dy = s.from(vals(R * C, seed + 1), [R, C], dt, d);
            const gamma = s.from(vals(C, seed + 2, 0.5, 1.5), [C], dt, d);
            const dx = s.from(vals(R * C, seed + 3), [R, C], dt, d);
            const dgamma = s.from(vals(C, seed + 4), [C], dt, d);
            const dbeta = s.from(vals(C, seed + 5), [C], dt, d);
            const dxSum = !sums ? undefined : accumulate ? s.from(vals(C, seed + 6), [C], dt, d) : s.poison([C], dt, d);
            ops.layernormBackward(dy, x, gamma, s.from(mean, [R], 'f32', d), s.from(rstd, [R], 'f32', d), { dx, dgamma, dbeta, dxSum, dxSumAccumulate: sums && accumulate });
            const r: Outs = { dx: dx.toArray(), dgamma: dgamma.toArray(), dbeta: dbeta.toArray() };
            if (dxSum) r.dxSum = dxSum.toArray();
            s.dispose();
            return r;
          }, TOL[dt], R >= 1000);
        });
      it(`rmsnormBackward ${R}x${C} [${dt}]`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        compare((d) => {
          const s = scope();
          const x = s.from(vals(R * C, seed, -2, 3), [R, C], dt, d);
          const { rstd } = normStats(x.toArray() as Float32Array, R, C, true);
          const dy = s.from(vals(R * C, seed + 1), [R, C], dt, d);
          const w = s.from(vals(C, seed + 2, 0.5, 1.5), [C], dt, d);
          const dx = s.from(vals(R * C, seed + 3), [R, C], dt, d);
          const dw = s.from(vals(C, seed + 4), [C], dt, d);
          ops.rmsnormBackward(dy, x, w, s.from(rstd, [R], 'f32', d), { dx, dw });
          const r = { dx: dx.toArray(), dw: dw.toArray() };
          s.dispose();
          return r;
        }, TOL[dt], R === 1000);
      });
    }

  // ------------------------------------------------------------------------------------- activations
  for (const n of [1, 13, 100003])
    for (const dt of DTYPES)
      for (const inPlace of [false, true])
        it(`geluBackward n=${n}${inPlace ? ' in place' : ''} [${dt}]`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          compare((d) => {
            const s = scope();
            const x = s.from(vals(n, seed, -6, 6), [n], dt, d);
            const dy = s.from(vals(n, seed + 1), [n], dt, d);
            const out = inPlace ? dy : s.poison([n], dt, d);
            const got = ops.geluBackward(x, dy, out);
            const r = { dx: got.toArray() };
            s.dispose();
            return r;
          }, TOL[dt]);
        });

  // with the bias gradient (GPT-2's up projection): one pass writing dx and its column partials
  for (const [R, C] of [[8192, 3072], [700, 136], [301, 13], [5, 768]] as const)
    for (const dt of DTYPES)
      for (const accumulate of [false, true])
        it(`geluBackward ${R}x${C} with the bias gradient${accumulate ? ' added' : ''} [${dt}]`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          compare((d) => {
            const s = scope();
            const x = s.from(vals(R * C, seed, -6, 6), [R, C], dt, d);
            const dy = s.from(vals(R * C, seed + 1), [R, C], dt, d);
            const db = accumulate ? s.from(vals(C, seed + 2), [C], dt, d) : s.poison([C], dt, d);
            ops.geluBackward(x, dy, dy, { biasGrad: db, accumulate });
            const r = { dx: dy.toArray(), dbias: db.toArray() };
            s.dispose();
            return r;
          }, TOL[dt], R >= 700);
        });

  for (const [R, F, fused] of [[3, 7, false], [129, 1000, true], [64, 2816, true], [5, 8, false]] as const)
    for (const dt of DTYPES)
      it(`siluGateBackward ${R}x${F}${fused ? ' (halves of one [R, 2F] buffer)' : ''} [${dt}]`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        compare((d) => {
          const s = scope();
          const dy = s.from(vals(R * F, seed + 2), [R, F], dt, d);
          let r: Outs;
          if (fused) {
            const n = R * 2 * F - F; // elements a strided half spans
            const gu = s.from(vals(R * 2 * F, seed, -8, 8), [R, 2 * F], dt, d);
            const grad = s.poison([R, 2 * F], dt, d);
            ops.siluGateBackward(s.keep(gu.view(0, [n])), s.keep(gu.view(F, [n])), dy, {
              dgate: s.keep(grad.view(0, [n])), dup: s.keep(grad.view(F, [n])), rows: R, cols: F, inStride: 2 * F,
            });
            r = { grad: grad.toArray() };
          } else {
            const gate = s.from(vals(R * F, seed, -8, 8), [R, F], dt, d);
            const up = s.from(vals(R * F, seed + 1), [R, F], dt, d);
            const dgate = s.poison([R, F], dt, d), dup = s.poison([R, F], dt, d);
            ops.siluGateBackward(gate, up, dy, { dgate, dup, rows: R, cols: F });
            r = { dgate: dgate.toArray(), dup: dup.toArray() };
          }
          s.dispose();
          return r;
        }, TOL[dt]);
      });

  // -------------------------------------------------------------------------------------------- rope
  for (const [T, H, D, rot, stride] of [[5, 3, 64, 64, 0], [37, 4, 128, 64, 0], [16, 2, 64, 64, 3 * 2 * 64]] as const)
    for (const dt of DTYPES)
      it(`ropeBackward T${T} H${H} D${D} rot${rot}${stride ? ' strided' : ''} [${dt}], and it undoes rope`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        const st = stride || H * D;
        const n = (T - 1) * st + H * D;
        const opts = { heads: H, headDim: D, rotaryDim: rot, tokenStride: st, theta: 10000 };
        compare((d) => {
          const s = scope();
          const pos = s.from(Int32Array.from({ length: T }, (_, i) => (i * 37 + seed) % 4096), [T], 'i32', d);
          const x = s.from(vals(n, seed), [n], dt, d);
          ops.ropeBackward(x, pos, opts);
          const r = { dx: x.toArray() };
          s.dispose();
          return r;
        }, TOL[dt]);
        // Round trip on the GPU: the inverse rotation of the rotation is the identity (up to rounding).
        const s = scope();
        const pos = s.from(Int32Array.from({ length: T }, (_, i) => i * 11), [T], 'i32', dev);
        const x0 = vals(n, seed + 9);
        const x = s.from(x0, [n], dt, dev);
        const stored = x.toArray();
        ops.rope(x, pos, opts);
        ops.ropeBackward(x, pos, opts);
        expect(relError(x.toArray(), stored)).toBeLessThan(dt === 'f32' ? 1e-5 : 2e-2);
        s.dispose();
      });

  // --------------------------------------------------------------------------------------- attention
  interface AttnShape { B: number; T: number; Hq: number; Hkv: number; D: number; fused: boolean }
  const ATTN: AttnShape[] = [
    { B: 1, T: 1, Hq: 1, Hkv: 1, D: 64, fused: false },
    { B: 2, T: 77, Hq: 4, Hkv: 2, D: 64, fused: false }, // grouped-query heads, a ragged last tile
    { B: 1, T: 130, Hq: 2, Hkv: 2, D: 128, fused: false },
    { B: 2, T: 96, Hq: 6, Hkv: 2, D: 64, fused: true }, // q, k, v (and dq, dk, dv) as views of one buffer
    { B: 1, T: 200, Hq: 8, Hkv: 2, D: 128, fused: true },
    { B: 1, T: 33, Hq: 2, Hkv: 1, D: 48, fused: false }, // a head dim off the tensor-core paths
    // bf16 at T <= 128, D 64, as many kv heads as query heads: the one-kernel backward (bwd_short_mma)
    { B: 3, T: 128, Hq: 4, Hkv: 4, D: 64, fused: true }, // GPT-2's layout at sequence 128
    { B: 2, T: 70, Hq: 3, Hkv: 3, D: 64, fused: false }, // a ragged last chunk
    { B: 2, T: 16, Hq: 2, Hkv: 2, D: 64, fused: false }, // one chunk
  ];
  const shortPath = (a: AttnShape) => a.D === 64 && a.T <= 128 && a.Hq === a.Hkv;
  const attnName = (a: AttnShape) => `B${a.B} T${a.T} Hq${a.Hq} Hkv${a.Hkv} D${a.D}${a.fused ? ' fused qkv' : ''}`;

  /**
   * q, k, v on `d` from one seed: separate [B, T, H, D] tensors, or column blocks of one [B, T, (Hq+2Hkv) D].
   * With `poison`, the same layout full of NaN (gradients); fused, in the buffer given.
   */
  function qkv(s: ReturnType<typeof scope>, a: AttnShape, dt: FDT, d: string, seed: number, poison?: { buffer?: Tensor }) {
    const { B, T, Hq, Hkv, D } = a;
    if (a.fused) {
      const W = (Hq + 2 * Hkv) * D, n = B * T * W;
      const x = poison?.buffer ?? s.from(vals(n, seed), [B, T, W], dt, d);
      return {
        q: s.keep(x.view(0, [n])), k: s.keep(x.view(Hq * D, [n - Hq * D])), v: s.keep(x.view((Hq + Hkv) * D, [n - (Hq + Hkv) * D])),
        qStrides: [T * W, W] as [number, number], kvStrides: [T * W, W] as [number, number], whole: x,
      };
    }
    const mk = (H: number, k: number) => poison ? s.poison([B, T, H, D], dt, d) : s.from(vals(B * T * H * D, seed + k), [B, T, H, D], dt, d);
    return { q: mk(Hq, 0), k: mk(Hkv, 1), v: mk(Hkv, 2), qStrides: undefined, kvStrides: undefined, whole: null };
  }

  /** dq, dk, dv on the GPU vs the CPU, from the same inputs and the CPU forward's out and lse. */
  function attentionBackwardCase(a: AttnShape, dt: FDT) {
    const { B, T, Hq, Hkv, D } = a;
    const seed = Math.floor(Math.random() * 1e6);
    // out and lse from the CPU forward, so both backends see the same saved activations.
    const h = scope();
    const hq = qkv(h, a, dt, cpu, seed);
    const fwd = ops.attentionForward(hq.q, hq.k, hq.v, { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D, qStrides: hq.qStrides, kvStrides: hq.kvStrides });
    h.keep(fwd.out), h.keep(fwd.lse);
    const outV = fwd.out.toArray(), lseV = fwd.lse.toArray();
    h.dispose();
    // bf16 on tensor cores rounds P and dS to bf16 before their products: a looser bound.
    const g = compare((d) => {
      const s = scope();
      const { q, k, v, qStrides, kvStrides } = qkv(s, a, dt, d, seed);
      const out = s.from(outV, [B, T, Hq, D], dt, d), lse = s.from(lseV, [B, Hq, T], 'f32', d);
      const dout = s.from(vals(B * T * Hq * D, seed + 7), [B, T, Hq, D], dt, d);
      let grads: Outs;
      const shape = { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D, qStrides, kvStrides };
      if (a.fused) {
        const g = s.poison([B, T, (Hq + 2 * Hkv) * D], dt, d);
        const gv = qkv(s, a, dt, d, seed, { buffer: g });
        ops.attentionBackward(q, k, v, out, dout, lse, { ...shape, dq: gv.q, dk: gv.k, dv: gv.v });
        grads = { dqkv: g.toArray() };
      } else {
        const gv = qkv(s, a, dt, d, seed, {});
        const ws = s.poison([B * Hq * T * (D + 1)], 'f32', d);
        ops.attentionBackward(q, k, v, out, dout, lse, { ...shape, dq: gv.q, dk: gv.k, dv: gv.v, workspace: ws });
        grads = { dq: gv.q.toArray(), dk: gv.k.toArray(), dv: gv.v.toArray() };
      }
      s.dispose();
      return grads;
    }, T === 1 && !a.fused ? { dq: Infinity, dk: Infinity, dv: dt === 'f32' ? TOL.f32 : 2e-2 } : dt === 'f32' ? TOL.f32 : 2e-2, dt === 'f32' || T >= 96);
    // One token: softmax over one key is 1 whatever the score, so dS = P (dP - D) is exactly 0, and so are
    // dq and dk; both backends give rounding noise (dP - D of two dot products), which a relative
    // comparison cannot judge, so they are checked against 0 in absolute terms (|dO|, |V|, |K| <= 1 here).
    if (T === 1 && !a.fused)
      for (const key of ['dq', 'dk'] as const) {
        const x = g[key]!;
        for (let i = 0; i < x.length; i++) if (Math.abs(x[i]!) > 1e-5 * D) throw new Error(`${key}[${i}] = ${x[i]} for one token (exactly 0 in exact arithmetic)`);
      }
  }

  for (const a of ATTN)
    for (const dt of DTYPES) {
      const { B, T, Hq, Hkv, D } = a;
      it(`attentionForward ${attnName(a)} [${dt}]: out and lse`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        compare((d) => {
          const s = scope();
          const { q, k, v, qStrides, kvStrides } = qkv(s, a, dt, d, seed);
          const out = s.poison([B, T, Hq, D], dt, d), lse = s.poison([B, Hq, T], 'f32', d);
          ops.attentionForward(q, k, v, { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D, qStrides, kvStrides, out, lse });
          const r = { out: out.toArray(), lse: lse.toArray() };
          s.dispose();
          return r;
        }, TOL[dt]);
      });

      it(`attentionBackward ${attnName(a)} [${dt}]: dq, dk, dv${dt === 'f32' || T >= 96 ? ', deterministic' : ''}`, () =>
        attentionBackwardCase(a, dt));
      // bf16 takes the tensor-core kernels where D is 64 or 128; the CUDA-core ones are forced by the
      // environment (read at each call), so both paths are held to the CPU.
      if (dt === 'bf16' && shortPath(a))
        it(`attentionBackward ${attnName(a)} [bf16], three kernels (PARALLM_ATTN_BWD_SHORT=0)`, () => {
          process.env.PARALLM_ATTN_BWD_SHORT = '0';
          try {
            attentionBackwardCase(a, dt);
          } finally {
            delete process.env.PARALLM_ATTN_BWD_SHORT;
          }
        });
      if (dt === 'bf16' && (D === 64 || D === 128))
        it(`attentionBackward ${attnName(a)} [bf16], CUDA-core path (PARALLM_ATTN_BWD=simt)`, () => {
          process.env.PARALLM_ATTN_BWD = 'simt';
          try {
            attentionBackwardCase(a, dt);
          } finally {
            delete process.env.PARALLM_ATTN_BWD;
          }
        });
    }

  // --------------------------------------------------------------------------------------- embedding
  for (const [N, V, C] of [[1, 3, 8], [300, 50, 33], [5000, 64, 768], [20000, 1000, 96]] as const)
    for (const dt of DTYPES)
      it(`embeddingBackward N${N} V${V} C${C} [${dt}]: repeated ids, out-of-range ids add nothing`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        const ids = Int32Array.from(vals(N, seed, 0, 1), (u, i) => (i % 97 === 5 ? (i % 2 ? -1 : V) : Math.floor(u * u * V)));
        compare((d) => {
          const s = scope();
          const idT = s.from(ids, [N], 'i32', d);
          const dout = s.from(vals(N * C, seed + 1), [N, C], dt, d);
          const dtable = s.from(vals(V * C, seed + 2), [V, C], dt, d);
          ops.embeddingBackward(idT, dout, dtable);
          const r = { dtable: dtable.toArray() };
          s.dispose();
          return r;
        }, TOL[dt], true);
      });

  // ------------------------------------------------------------------------------------- classifier
  for (const [R, V] of [[1, 2], [37, 1001], [64, 50304], [16, 50257], [600, 50304]] as const) // (600: more rows than blocks)
    for (const dt of DTYPES)
      for (const mode of ['loss only', 'separate', 'inplace'] as const)
        it(`crossEntropy ${R}x${V} ${mode} [${dt}]: ignored rows, out-of-range targets`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          const targets = Int32Array.from(vals(R, seed, 0, 1), (u, i) => (i % 5 === 3 ? -100 : i % 11 === 7 ? V + 3 : Math.floor(u * V)));
          const dscale = 1 / R;
          const g = compare((d) => {
            const s = scope();
            const logits = s.from(vals(R * V, seed + 1, -8, 8), [R, V], dt, d);
            const tg = s.from(targets, [R], 'i32', d);
            const losses = s.poison([R], 'f32', d);
            const dl = mode === 'separate' ? s.poison([R, V], dt, d) : undefined;
            ops.crossEntropy(logits, tg, { losses, dlogits: mode === 'inplace' ? 'inplace' : dl, dscale });
            const r: Outs = { losses: losses.toArray() };
            if (mode === 'separate') r.dlogits = dl!.toArray();
            if (mode === 'inplace') r.dlogits = logits.toArray();
            s.dispose();
            return r;
          }, { losses: 1e-5, dlogits: TOL[dt] }, V > 50000, { dlogits: dscale }); // a confident row's p − 1 is a few ulps of 1: measured against dscale
          // Ignored rows (and targets outside [0, V)) have loss exactly 0, and (with a gradient) a zero row.
          for (let r = 0; r < R; r++) {
            const t = targets[r]!;
            if (t >= 0 && t < V) continue;
            expect(g.losses![r], `loss of ignored row ${r}`).toBe(0);
            if (g.dlogits) for (let c = 0; c < V; c++) if (g.dlogits[c + r * V] !== 0) throw new Error(`dlogits[${r}, ${c}] of an ignored row is ${g.dlogits[c + r * V]}`);
          }
        });

  // Rows padded past the vocabulary (the trainer's GPT-2 head: 50257 logits in rows of 50304): the
  // padding's gradient comes back 0 though it held random values (in place) or poison (separate).
  for (const [R, V, L] of [[37, 1001, 1024], [16, 50257, 50304]] as const)
    for (const dt of DTYPES)
      for (const mode of ['separate', 'inplace'] as const)
        it(`crossEntropy ${R}x${V} in rows of ${L} ${mode} [${dt}]: vs CPU, padding zeroed`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          const targets = Int32Array.from(vals(R, seed, 0, 1), (u, i) => (i % 5 === 3 ? -100 : Math.floor(u * V)));
          const g = compare((d) => {
            const s = scope();
            const logits = s.from(vals(R * L, seed + 1, -8, 8), [R, L], dt, d);
            const tg = s.from(targets, [R], 'i32', d);
            const losses = s.poison([R], 'f32', d);
            const dl = mode === 'separate' ? s.poison([R, L], dt, d) : undefined;
            ops.crossEntropy(logits, tg, { losses, dlogits: mode === 'inplace' ? 'inplace' : dl, dscale: 1 / R, vocab: V });
            const r: Outs = { losses: losses.toArray(), dlogits: (mode === 'inplace' ? logits : dl!).toArray() };
            s.dispose();
            return r;
          }, { losses: 1e-5, dlogits: TOL[dt] }, V > 50000, { dlogits: 1 / R }); // a confident row's p − 1 is a few ulps of 1: measured against dscale
          for (let r = 0; r < R; r++) for (let c = V; c < L; c++) if (g.dlogits![r * L + c] !== 0) throw new Error(`dlogits[${r}, ${c}] (padding) is ${g.dlogits![r * L + c]}`);
        });

  // ------------------------------------------------------------------------------------ optimizer
  for (const n of [1, 5, 1003, 3_000_001, 20_000_017]) // the last: many unrolled passes a thread
    for (const dt of DTYPES)
      it(`sumSquares n=${n} [${dt}]: vs CPU, float64, and run twice`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        const g = compare((d) => {
          const s = scope();
          const x = s.from(vals(n, seed, -3, 3), [n], dt, d);
          const out = s.poison([1], 'f32', d);
          ops.sumSquares(x, out);
          const r = { out: out.toArray(), x: x.toArray() };
          s.dispose();
          return r;
        }, { out: 1e-4, x: 0 }, true); // (the CPU's own f32 order: 1e-4; the float64 sum below is the tight check)
        let ref = 0;
        for (const v of g.x!) ref += v * v;
        expect(Math.abs(g.out![0]! - ref) / ref).toBeLessThan(1e-5);
      });

  for (const [n, nDecay] of [[1, 1], [10007, 6000], [1 << 20, 1000]] as const)
    for (const dt of DTYPES)
      for (const withParam of [true, false])
        it(`adamw n=${n} nDecay=${nDecay}${withParam ? '' : ' (no param copy)'} [${dt}]: 5 steps`, () => {
          const seed = Math.floor(Math.random() * 1e6);
          compare((d) => {
            const s = scope();
            const master = s.from(vals(n, seed, -1, 1), [n], 'f32', d);
            const m = s.from(vals(n, seed + 1, -1e-2, 1e-2), [n], 'f32', d);
            const v = s.from(vals(n, seed + 2, 0, 1e-3), [n], 'f32', d);
            const param = withParam ? s.poison([n], dt, d) : undefined;
            for (let step = 1; step <= 5; step++) {
              const grad = s.from(vals(n, seed + 10 + step, -2, 2), [n], dt, d);
              ops.adamw({ master, param, grad, m, v }, { nDecay, lr: 1e-3 * step, weightDecay: 0.1, gradScale: 0.5, step });
            }
            const r: Outs = { master: master.toArray(), m: m.toArray(), v: v.toArray() };
            if (param) r.param = param.toArray();
            s.dispose();
            return r;
          }, { master: 1e-6, m: 1e-6, v: 1e-6, param: TOL[dt] }, n > 1000);
        });
});
