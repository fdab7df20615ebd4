// Kernel test cases shared by the CPU tests (test/unit) and the GPU tests (test/gpu): each draws fresh
// random inputs, runs one op on the given device into a poisoned output, and returns the output with
// its float64 reference computed from the inputs as stored (after rounding to the dtype).
import { Tensor, ops, type DType } from '../../src/index.js';
import { uniformArray } from '../../src/random.js';
import * as ref from './reference.js';

export interface CaseResult {
  out: Float32Array | Int32Array;
  ref: ArrayLike<number>;
  exact?: boolean; // integer outputs
}

export interface KernelCase {
  name: string;
  dtypes: DType[];
  run(device: string, dtype: DType, seed: number): CaseResult;
}

/** A random tensor drawn from `seed` (the same seed gives the same values on any device), and the values it holds. */
export function randT(shape: number[], dtype: DType, device: string, seed: number, low = -1, high = 1) {
  const t = Tensor.from(uniformArray(shape.reduce((a, b) => a * b, 1), seed * 7919 + 17, low, high), shape, { dtype, device });
  return { t, v: t.toArray() as Float32Array };
}

/** An output tensor full of NaN (floats) or a sentinel (i32), so unwritten elements fail the check. */
export function poisoned(shape: number[], dtype: DType, device: string): Tensor {
  return Tensor.full(shape, dtype === 'i32' ? -123456789 : NaN, { dtype, device });
}

const tol = (dt: DType) => (dt === 'f32' ? 1e-5 : 1e-2);
export const tolerance = tol;

function gemm(M: number, N: number, K: number, transA: boolean, transB: boolean, withBias: boolean, beta = 0): KernelCase {
  return {
    name: `matmul ${M}x${N}x${K}${transA ? ' A^T' : ''}${transB ? ' B^T' : ''}${withBias ? ' +bias' : ''}${beta ? ` beta=${beta}` : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const a = randT(transA ? [K, M] : [M, K], dt, device, seed);
      const b = randT(transB ? [N, K] : [K, N], dt, device, seed + 1);
      const bias = withBias ? randT([N], dt, device, seed + 2) : null;
      let out: Tensor;
      let c0: Float32Array | null = null;
      if (beta) {
        const c = randT([M, N], dt, device, seed + 3);
        out = c.t;
        c0 = c.v;
      } else out = poisoned([M, N], dt, device);
      ops.matmul(a.t, b.t, { transA, transB, bias: bias?.t, out, beta, alpha: 0.75 });
      const r = ref.matmulRef(a.v, b.v, bias?.v ?? null, c0, M, N, K, transA, transB, 0.75, beta);
      const res = { out: out.toArray(), ref: r };
      [a.t, b.t, bias?.t, out].forEach((t) => t?.dispose());
      return res;
    },
  };
}

function prefill(B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number, fused = false): KernelCase {
  return {
    name: `attentionPrefill B${B} Tq${Tq} Tk${Tk} Hq${Hq} Hkv${Hkv} D${D}${fused ? ' fused-qkv' : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      // fused: q, k, v are column blocks of one [B, T, (Hq + 2 Hkv) D] tensor, as a QKV projection gives.
      const W = (Hq + 2 * Hkv) * D;
      let q, k, v, qB, qT, kB, kT;
      const owned: Tensor[] = [];
      let qv: Float32Array, kv: Float32Array, vv: Float32Array;
      if (fused) {
        if (Tq !== Tk) throw new Error('fused case needs Tq == Tk');
        const x = randT([B, Tq, W], dt, device, seed);
        owned.push(x.t);
        q = x.t.view(0, [B * Tq * W]);
        k = x.t.view(Hq * D, [B * Tq * W - Hq * D]);
        v = x.t.view((Hq + Hkv) * D, [B * Tq * W - (Hq + Hkv) * D]);
        qv = x.v;
        kv = x.v.subarray(Hq * D);
        vv = x.v.subarray((Hq + Hkv) * D);
        [qB, qT, kB, kT] = [Tq * W, W, Tq * W, W];
      } else {
        const a = randT([B, Tq, Hq, D], dt, device, seed);
        const b = randT([B, Tk, Hkv, D], dt, device, seed + 1);
        const c = randT([B, Tk, Hkv, D], dt, device, seed + 2);
        owned.push(a.t, b.t, c.t);
        [q, k, v, qv, kv, vv] = [a.t, b.t, c.t, a.v, b.v, c.v];
        [qB, qT, kB, kT] = [Tq * Hq * D, Hq * D, Tk * Hkv * D, Hkv * D];
      }
      const out = poisoned([B, Tq, Hq, D], dt, device);
      const scale = 1 / Math.sqrt(D);
      ops.attentionPrefill(q, k, v, { batch: B, queries: Tq, keys: Tk, headsQ: Hq, headsKv: Hkv, headDim: D, qStrides: [qB, qT], kvStrides: [kB, kT], out });
      const r = ref.attentionPrefillRef(qv, kv, vv, B, Tq, Tk, Hq, Hkv, D, qB, qT, kB, kT, scale);
      const res = { out: out.toArray(), ref: r };
      [...owned, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function decode(lens: number[], maxLen: number, Hq: number, Hkv: number, D: number): KernelCase {
  const B = lens.length;
  return {
    name: `attentionDecode lens=[${lens.join(',')}] max${maxLen} Hq${Hq} Hkv${Hkv} D${D}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const q = randT([B, Hq, D], dt, device, seed);
      const k = randT([B, maxLen, Hkv, D], dt, device, seed + 1);
      const v = randT([B, maxLen, Hkv, D], dt, device, seed + 2);
      const L = Tensor.from(lens, [B], { dtype: 'i32', device });
      const out = poisoned([B, Hq, D], dt, device);
      ops.attentionDecode(q.t, k.t, v.t, L, { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen, out });
      const r = ref.attentionDecodeRef(q.v, k.v, v.v, lens, B, Hq, Hkv, D, Hq * D, maxLen * Hkv * D, Hkv * D, 1 / Math.sqrt(D));
      const res = { out: out.toArray(), ref: r };
      [q.t, k.t, v.t, L, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function kvWrite(B: number, T: number, W: number, maxLen: number): KernelCase {
  return {
    name: `kvWrite B${B} T${T} W${W} max${maxLen}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const dst = randT([B, maxLen, W], dt, device, seed);
      const src = randT([B, T, W], dt, device, seed + 1);
      const posv = Array.from({ length: B }, (_, b) => (b * 7 + seed) % (maxLen - T + 1));
      // Positions that would write outside the cache: that sequence writes nothing.
      if (B > 1) posv[B - 1] = maxLen - T + 1;
      if (B > 2) posv[0] = -1;
      const pos = Tensor.from(posv, [B], { dtype: 'i32', device });
      ops.kvWrite(dst.t, src.t, pos, { batch: B, tokens: T, width: W, maxLen });
      const r = Float64Array.from(dst.v);
      for (let b = 0; b < B; b++)
        if (posv[b]! >= 0 && posv[b]! + T <= maxLen)
          for (let t = 0; t < T; t++)
            for (let w = 0; w < W; w++) r[(b * maxLen + posv[b]! + t) * W + w] = src.v[(b * T + t) * W + w]!;
      const res = { out: dst.t.toArray(), ref: r };
      [dst.t, src.t, pos].forEach((t) => t.dispose());
      return res;
    },
  };
}

function layernorm(R: number, C: number): KernelCase {
  return {
    name: `layernorm ${R}x${C}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([R, C], dt, device, seed, -2, 3);
      const g = randT([C], dt, device, seed + 1);
      const b = randT([C], dt, device, seed + 2);
      const out = poisoned([R, C], dt, device);
      const mean = poisoned([R], 'f32', device);
      const rstd = poisoned([R], 'f32', device);
      ops.layernorm(x.t, g.t, b.t, { eps: 1e-5, out, mean, rstd });
      const r = ref.layernormRef(x.v, g.v, b.v, R, C, 1e-5);
      // Statistics are f32 whatever the dtype: check them with the output in one vector.
      const o = out.toArray(), m = mean.toArray(), s = rstd.toArray();
      const all = new Float32Array(o.length + 2 * R);
      all.set(o);
      all.set(m, o.length);
      all.set(s, o.length + R);
      const allRef = new Float64Array(all.length);
      allRef.set(r.y);
      allRef.set(r.mean, o.length);
      allRef.set(r.rstd, o.length + R);
      [x.t, g.t, b.t, out, mean, rstd].forEach((t) => t.dispose());
      return { out: all, ref: allRef };
    },
  };
}

function rmsnorm(R: number, C: number): KernelCase {
  return {
    name: `rmsnorm ${R}x${C}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([R, C], dt, device, seed, -2, 3);
      const w = randT([C], dt, device, seed + 1);
      const out = poisoned([R, C], dt, device);
      ops.rmsnorm(x.t, w.t, { eps: 1e-6, out });
      const r = ref.rmsnormRef(x.v, w.v, R, C, 1e-6);
      const res = { out: out.toArray(), ref: r.y };
      [x.t, w.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

/** x rounded to the nearest bf16 (ties to even), as a kernel storing it in bf16 does. */
function roundBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000;
  return f[0]!;
}

/**
 * rmsnormLinear: c = rmsnorm(x, normW) W^T (+ bias) against float64. The op gives the bits of rmsnorm then
 * linear, so in bf16 the norm's rows are rounded to bf16 before the product; the reference rounds them
 * too (unrounded, one output of a short product can differ by more than the tolerance through cancellation).
 */
function rmsnormLinear(M: number, N: number, K: number, withBias: boolean): KernelCase {
  return {
    name: `rmsnormLinear ${M}x${N}x${K}${withBias ? ' +bias' : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([M, K], dt, device, seed, -2, 3);
      const g = randT([K], dt, device, seed + 1, 0.5, 1.5);
      const w = randT([N, K], dt, device, seed + 2);
      const bias = withBias ? randT([N], dt, device, seed + 3) : undefined;
      const out = poisoned([M, N], dt, device);
      ops.rmsnormLinear(x.t, g.t, w.t, { eps: 1e-6, bias: bias?.t, out });
      const h0 = ref.rmsnormRef(x.v, g.v, M, K, 1e-6).y;
      const h = dt === 'bf16' ? h0.map(roundBf16) : h0;
      const r = ref.matmulRef(h, w.v, bias?.v ?? null, null, M, N, K, false, true);
      const res = { out: out.toArray(), ref: r };
      [x.t, g.t, w.t, bias?.t, out].forEach((t) => t?.dispose());
      return res;
    },
  };
}

/**
 * layernormLinear: c = act(layernorm(x, gamma, beta) W^T + bias) against float64, act GELU or none. As
 * the ops apart, in bf16 the norm's rows and the product are rounded to bf16 (the reference too).
 */
function layernormLinear(M: number, N: number, K: number, gelu: boolean): KernelCase {
  return {
    name: `layernormLinear ${M}x${N}x${K}${gelu ? ' +gelu' : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([M, K], dt, device, seed, -2, 3);
      const g = randT([K], dt, device, seed + 1, 0.5, 1.5);
      const b = randT([K], dt, device, seed + 2, -0.5, 0.5);
      const w = randT([N, K], dt, device, seed + 3);
      const bias = randT([N], dt, device, seed + 4);
      const out = poisoned([M, N], dt, device);
      ops.layernormLinear(x.t, g.t, b.t, w.t, { eps: 1e-5, bias: bias.t, gelu, out });
      const round = (a: Float64Array) => (dt === 'bf16' ? a.map(roundBf16) : a);
      const h = round(ref.layernormRef(x.v, g.v, b.v, M, K, 1e-5).y);
      const y = ref.matmulRef(h, w.v, bias.v, null, M, N, K, false, true);
      const res = { out: out.toArray(), ref: gelu ? ref.geluRef(round(y)) : y };
      [x.t, g.t, b.t, w.t, bias.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

/**
 * linearResidualNorm: x += a W^T + bias (rounded once, as matmul with beta = 1), then h = rmsnorm(x) or
 * layernorm(x) (`ln`) against float64; out is x then h. On CUDA with a counter (the fused GEMV epilogue up
 * to 16 rows), which must come back zero.
 */
function linearResidualNorm(M: number, N: number, K: number, ln: boolean): KernelCase {
  return {
    name: `linearResidualNorm ${M}x${N}x${K}${ln ? ' layernorm' : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const a = randT([M, K], dt, device, seed, -1, 1);
      const w = randT([N, K], dt, device, seed + 1);
      const bias = randT([N], dt, device, seed + 2);
      const x = randT([M, N], dt, device, seed + 3, -2, 3);
      const g = randT([N], dt, device, seed + 4, 0.5, 1.5);
      const b = ln ? randT([N], dt, device, seed + 5, -0.5, 0.5) : undefined;
      const counter = device.startsWith('cuda') ? Tensor.zeros([1], { dtype: 'i32', device }) : undefined;
      const h = poisoned([M, N], dt, device);
      ops.linearResidualNorm(a.t, w.t, x.t, g.t, { bias: bias.t, normB: b?.t, eps: 1e-5, counter, out: h });
      if (counter && counter.toArray()[0] !== 0) throw new Error(`linearResidualNorm: the block counter was left at ${counter.toArray()[0]}`);
      const round = (v: Float64Array) => (dt === 'bf16' ? v.map(roundBf16) : v);
      const xr = round(ref.matmulRef(a.v, w.v, bias.v, x.v, M, N, K, false, true, 1, 1));
      const hr = ln ? ref.layernormRef(xr, g.v, b!.v, M, N, 1e-5).y : ref.rmsnormRef(xr, g.v, M, N, 1e-5).y;
      const xo = x.t.toArray() as Float32Array, ho = h.toArray() as Float32Array;
      const out = new Float32Array(2 * M * N);
      out.set(xo), out.set(ho, M * N);
      const want = new Float64Array(2 * M * N);
      want.set(xr), want.set(hr, M * N);
      [a.t, w.t, bias.t, x.t, g.t, b?.t, counter, h].forEach((t) => t?.dispose());
      return { out, ref: want };
    },
  };
}

/** linearSwiGLU (x normalized already) or linearGelu (`gelu`, with a bias) against float64. */
function linearAct(M: number, N: number, K: number, gelu: boolean): KernelCase {
  return {
    name: `${gelu ? 'linearGelu' : 'linearSwiGLU'} ${M}x${N}x${K}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([M, K], dt, device, seed, -2, 2);
      const w = randT([gelu ? N : 2 * N, K], dt, device, seed + 1, -0.2, 0.2);
      const bias = gelu ? randT([N], dt, device, seed + 2) : undefined;
      const out = poisoned([M, N], dt, device);
      if (gelu) ops.linearGelu(x.t, w.t, { bias: bias!.t, out });
      else ops.linearSwiGLU(x.t, w.t, { out });
      const round = (a: Float64Array) => (dt === 'bf16' ? a.map(roundBf16) : a);
      let r: Float64Array;
      if (gelu) r = ref.geluRef(round(ref.matmulRef(x.v, w.v, bias!.v, null, M, N, K, false, true)));
      else {
        const gu = round(ref.matmulRef(x.v, w.v, null, null, M, 2 * N, K, false, true));
        r = new Float64Array(M * N);
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            const g = gu[m * 2 * N + n]!, u = gu[m * 2 * N + N + n]!;
            r[m * N + n] = (g / (1 + Math.exp(-g))) * u;
          }
      }
      const res = { out: out.toArray(), ref: r };
      [x.t, w.t, bias?.t, out].forEach((t) => t?.dispose());
      return res;
    },
  };
}

/** rmsnormLinearSwiGLU: silu(gate) * up of rmsnorm(x) [gate; up]^T against float64. */
function rmsnormSwiGLU(M: number, F: number, K: number): KernelCase {
  return {
    name: `rmsnormLinearSwiGLU ${M}x${F}x${K}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([M, K], dt, device, seed, -2, 3);
      const g = randT([K], dt, device, seed + 1, 0.5, 1.5);
      const w = randT([2 * F, K], dt, device, seed + 2, -0.2, 0.2);
      const out = poisoned([M, F], dt, device);
      ops.rmsnormLinearSwiGLU(x.t, g.t, w.t, { eps: 1e-6, out });
      const h0 = ref.rmsnormRef(x.v, g.v, M, K, 1e-6).y;
      const h = dt === 'bf16' ? h0.map(roundBf16) : h0;
      const gu0 = ref.matmulRef(h, w.v, null, null, M, 2 * F, K, false, true);
      const gu = dt === 'bf16' ? gu0.map(roundBf16) : gu0; // stored in bf16 between the product and SwiGLU, as the two ops do
      const r = new Float64Array(M * F);
      for (let m = 0; m < M; m++)
        for (let f = 0; f < F; f++) {
          const a = gu[m * 2 * F + f]!, u = gu[m * 2 * F + F + f]!;
          r[m * F + f] = (a / (1 + Math.exp(-a))) * u;
        }
      const res = { out: out.toArray(), ref: r };
      [x.t, g.t, w.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function unary(name: string, n: number): KernelCase {
  return {
    name: `${name} n=${n}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([n], dt, device, seed, -5, 5);
      const out = poisoned([n], dt, device);
      ops.gelu(x.t, out);
      const res = { out: out.toArray(), ref: ref.geluRef(x.v) };
      [x.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function siluGate(R: number, F: number): KernelCase {
  return {
    name: `siluGate ${R}x${F} (halves of [R, 2F])`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([R, 2 * F], dt, device, seed, -4, 4);
      const out = poisoned([R, F], dt, device);
      const gate = x.t.view(0, [R * 2 * F]);
      const up = x.t.view(F, [R * 2 * F - F]);
      ops.siluGate(gate, up, { rows: R, cols: F, inStride: 2 * F, out });
      const res = { out: out.toArray(), ref: ref.siluGateRef(x.v, x.v.subarray(F), R, F, 2 * F) };
      [x.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

/**
 * ropeKvWrite: qkv rows (q heads, k heads, v heads; `extra` elements of padding a row) rotated at pos
 * (rot 0: not rotated), k and v heads written into random caches; one sequence past the cache and one
 * at -1 (when B allows) write nothing there. Output: qkv, then the k cache, then the v cache.
 */
function ropeKvWrite(B: number, Hq: number, Hkv: number, D: number, rot: number, maxLen: number, extra: number): KernelCase {
  return {
    name: `ropeKvWrite B${B} Hq${Hq} Hkv${Hkv} D${D} rot${rot} max${maxLen}${extra ? ` stride+${extra}` : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const row = (Hq + 2 * Hkv) * D, qs = row + extra, W = Hkv * D;
      const qkv = randT([B, qs], dt, device, seed);
      const kc = randT([B, maxLen, Hkv, D], dt, device, seed + 1);
      const vc = randT([B, maxLen, Hkv, D], dt, device, seed + 2);
      const posv = Array.from({ length: B }, (_, b) => (b * 5 + seed) % maxLen);
      if (B > 1) posv[B - 1] = maxLen;
      if (B > 2) posv[0] = -1;
      const pos = Tensor.from(posv, [B], { dtype: 'i32', device });
      ops.ropeKvWrite(qkv.t, kc.t, vc.t, pos, { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen, qkvStride: qs, rope: rot ? { theta: 10000, rotaryDim: rot } : undefined });
      const q = rot ? ref.ropeRef(qkv.v, posv, B, Hq + Hkv, D, qs, rot, 10000) : Float64Array.from(qkv.v);
      const k = Float64Array.from(kc.v), v = Float64Array.from(vc.v);
      for (let b = 0; b < B; b++)
        if (posv[b]! >= 0 && posv[b]! < maxLen)
          for (let w = 0; w < W; w++) {
            k[(b * maxLen + posv[b]!) * W + w] = q[b * qs + Hq * D + w]!;
            v[(b * maxLen + posv[b]!) * W + w] = q[b * qs + Hq * D + W + w]!;
          }
      const out = new Float32Array(q.length + k.length + v.length);
      out.set(qkv.t.toArray()), out.set(kc.t.toArray(), q.length), out.set(vc.t.toArray(), q.length + k.length);
      const r = new Float64Array(out.length);
      r.set(q), r.set(k, q.length), r.set(v, q.length + k.length);
      [qkv.t, kc.t, vc.t, pos].forEach((t) => t.dispose());
      return { out, ref: r };
    },
  };
}

function rope(R: number, H: number, D: number, rot: number, extraStride: number): KernelCase {
  return {
    name: `rope R${R} H${H} D${D} rot${rot}${extraStride ? ' strided' : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const st = H * D + extraStride;
      const x = randT([R * st], dt, device, seed);
      const posv = Array.from({ length: R }, (_, i) => (i * 37 + seed) % 4096);
      const pos = Tensor.from(posv, [R], { dtype: 'i32', device });
      ops.rope(x.t, pos, { heads: H, headDim: D, rotaryDim: rot, theta: 10000, tokenStride: st });
      const res = { out: x.t.toArray(), ref: ref.ropeRef(x.v, posv, R, H, D, st, rot, 10000) };
      [x.t, pos].forEach((t) => t.dispose());
      return res;
    },
  };
}

function embedding(N: number, V: number, C: number): KernelCase {
  return {
    name: `embedding N${N} V${V} C${C}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const table = randT([V, C], dt, device, seed);
      const idv = Array.from({ length: N }, (_, i) => (i * 131 + seed) % V);
      if (N > 2) idv[1] = V + 5; // out of range: a zero row
      const ids = Tensor.from(idv, [N], { dtype: 'i32', device });
      const out = poisoned([N, C], dt, device);
      ops.embedding(ids, table.t, out);
      const res = { out: out.toArray(), ref: ref.embeddingRef(idv, table.v, V, C) };
      [table.t, ids, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function add(R: number, C: number, broadcast: boolean): KernelCase {
  return {
    name: `add ${R}x${C}${broadcast ? ' row-broadcast' : ''}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const a = randT([R, C], dt, device, seed);
      const b = randT(broadcast ? [C] : [R, C], dt, device, seed + 1);
      const out = poisoned([R, C], dt, device);
      ops.add(a.t, b.t, out);
      const r = Float64Array.from(a.v, (x, i) => x + b.v[broadcast ? i % C : i]!);
      const res = { out: out.toArray(), ref: r };
      [a.t, b.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function cast(n: number, from: DType, to: DType): KernelCase {
  return {
    name: `cast ${from}->${to} n=${n}`,
    dtypes: [from],
    run(device, dt, seed) {
      const x = randT([n], dt, device, seed, -100, 100);
      const out = poisoned([n], to, device);
      ops.cast(x.t, to, out);
      // Expected: the input rounded to the target type, as the host converter rounds it.
      const expect = Tensor.from(x.v, [n], { dtype: to, device: 'cpu:0' });
      const res = { out: out.toArray(), ref: expect.toArray(), exact: true };
      [x.t, out, expect].forEach((t) => t.dispose());
      return res;
    },
  };
}

function softmax(R: number, C: number): KernelCase {
  return {
    name: `softmax ${R}x${C}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      const x = randT([R, C], dt, device, seed, -8, 8);
      const out = poisoned([R, C], dt, device);
      ops.softmax(x.t, { scale: 0.7, out });
      const res = { out: out.toArray(), ref: ref.softmaxRef(x.v, R, C, 0.7) };
      [x.t, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

function argmax(R: number, C: number): KernelCase {
  return {
    name: `argmax ${R}x${C}`,
    dtypes: ['f32', 'bf16'],
    run(device, dt, seed) {
      // Distinct values (a permutation scaled), so the answer is unique in either dtype.
      const vals = new Float32Array(R * C);
      for (let r = 0; r < R; r++) {
        const perm = Array.from({ length: C }, (_, i) => i).sort(() => Math.sin(seed + r) - 0.5);
        const shift = (seed * 31 + r * 17) % C;
        for (let c = 0; c < C; c++) vals[r * C + c] = ((perm[c]! + shift) % C) - C / 2;
      }
      const x = Tensor.from(vals, [R, C], { dtype: dt, device });
      const out = poisoned([R], 'i32', device);
      ops.argmax(x, out);
      const xv = x.toArray();
      const res = { out: out.toArray(), ref: ref.argmaxRef(xv, R, C), exact: true };
      [x, out].forEach((t) => t.dispose());
      return res;
    },
  };
}

export const KERNEL_CASES: KernelCase[] = [
  gemm(1, 1, 1, false, false, false),
  gemm(7, 33, 13, false, false, true),
  gemm(33, 7, 65, true, false, false),
  gemm(17, 29, 31, false, true, true),
  gemm(5, 40, 19, true, true, false),
  gemm(1, 100, 257, false, true, false), // GEMV path
  gemm(16, 67, 128, false, true, true), // GEMV path, 16 rows
  gemm(130, 70, 150, false, false, true, 0.5), // accumulate into C
  gemm(200, 136, 264, false, true, false),
  prefill(1, 1, 1, 1, 1, 16),
  prefill(2, 7, 7, 4, 2, 32),
  prefill(1, 33, 33, 2, 2, 64),
  prefill(1, 5, 40, 4, 1, 64), // queries after a cached prefix
  prefill(2, 19, 19, 4, 2, 16, true), // fused QKV layout, GQA
  prefill(1, 70, 70, 2, 1, 128),
  decode([1], 1, 1, 1, 16),
  decode([5, 1, 17], 20, 4, 2, 32),
  decode([33, 64], 64, 8, 2, 64),
  decode([100], 129, 4, 4, 128),
  kvWrite(1, 1, 1, 1),
  kvWrite(3, 4, 33, 9),
  kvWrite(4, 2, 128, 16),
  layernorm(1, 1),
  layernorm(3, 7),
  layernorm(9, 768),
  layernorm(4, 1001),
  rmsnorm(1, 1),
  rmsnorm(5, 33),
  rmsnorm(3, 4096),
  unary('gelu', 1),
  unary('gelu', 1037),
  siluGate(1, 1),
  siluGate(3, 37),
  siluGate(2, 688),
  rmsnormLinear(1, 5, 8, false), // several outputs: one alone can cancel to near 0, and its relative error says nothing
  rmsnormLinear(3, 37, 64, true),
  rmsnormLinear(16, 100, 264, false),
  rmsnormLinear(20, 64, 96, true), // more than 16 rows: rmsnorm then matmul on every backend
  layernormLinear(1, 5, 8, false),
  layernormLinear(3, 37, 64, true),
  layernormLinear(4, 100, 768, true), // GPT-2's width; the rows a fused GPU kernel takes
  layernormLinear(9, 64, 96, false), // more rows than the fusion takes: the three ops apart on every backend
  linearAct(1, 64, 96, false),
  linearAct(16, 21, 520, false), // F not a multiple of 8
  linearAct(3, 203, 768, true),
  linearAct(20, 40, 64, true), // more than 16 rows: matmul, then the activation, on every backend
  linearResidualNorm(1, 64, 96, false),
  linearResidualNorm(3, 4096, 128, false), // 128 threads a row for the norm (LLaMA's width)
  linearResidualNorm(4, 768, 200, true), // GPT-2's width, layernorm
  linearResidualNorm(16, 40, 64, true),
  linearResidualNorm(20, 64, 96, false), // more than 16 rows: the matmul, then the norm, on every backend
  rmsnormSwiGLU(1, 8, 64),
  rmsnormSwiGLU(5, 21, 264),
  rmsnormSwiGLU(17, 40, 96), // more than 16 rows: the three steps apart
  ropeKvWrite(1, 1, 1, 2, 2, 1, 0),
  ropeKvWrite(3, 4, 2, 16, 16, 5, 0),
  ropeKvWrite(4, 6, 3, 64, 32, 9, 8),
  ropeKvWrite(2, 2, 2, 128, 0, 4, 0), // GPT-2: the cache writes alone
  rope(1, 1, 2, 2, 0),
  rope(5, 3, 16, 16, 0),
  rope(7, 4, 64, 32, 24),
  rope(3, 2, 128, 128, 8),
  embedding(1, 1, 1),
  embedding(9, 50, 33),
  embedding(4, 1000, 768),
  add(1, 1, false),
  add(7, 33, false),
  add(5, 97, true),
  cast(1, 'f32', 'bf16'),
  cast(1001, 'f32', 'bf16'),
  cast(1001, 'bf16', 'f32'),
  cast(1001, 'f32', 'f16'),
  softmax(1, 1),
  softmax(3, 7),
  softmax(4, 1000),
  softmax(2, 50257),
  argmax(1, 1),
  argmax(5, 33),
  argmax(3, 50257), // on a GPU cut into chunks of 4096 and merged (from 16384 on)
  argmax(2, 16383),
  argmax(2, 16384),
];

/** Sizes that reach the GPU's tensor-core, split-K and vectorized paths (too slow for every CI run). */
export const GPU_LARGE_CASES: KernelCase[] = [
  prefill(1, 512, 512, 8, 2, 128),
  prefill(2, 300, 300, 4, 4, 64, true),
  prefill(1, 64, 1000, 4, 4, 128),
  prefill(1, 257, 257, 2, 2, 80),
  decode([2048, 700], 2048, 8, 2, 128),
  decode([4096], 4096, 32, 8, 128),
  ropeKvWrite(16, 32, 8, 128, 128, 64, 0), // LLaMA-3-8B's heads at batch 16
  rmsnormLinear(1, 12288, 4096, false), // LLaMA-7B's norm + qkv at batch 1
  rmsnormLinear(16, 2048, 8192, true),
  rmsnormSwiGLU(1, 11008, 4096), // LLaMA-7B's MLP at batch 1
  rmsnormSwiGLU(16, 1000, 2048),
  layernorm(64, 4096),
  rmsnorm(64, 4096),
  softmax(8, 50257),
  add(1024, 1024, false),
  unary('gelu', 1 << 20),
];
