// The kernels as tensor operations. Each checks shapes, dtypes and devices before the native call (so a
// mistake reads as what it is, not as a kernel failure), allocates its output unless `out` is given, and
// enqueues the kernel; only reading values back waits for the device.
import { isFloat, type DType } from './dtype.js';
import { native } from './native.js';
import { Tensor, numelOf } from './tensor.js';

function alive(op: string, ...ts: (Tensor | undefined | null)[]): void {
  for (const t of ts) if (t) t.assertAlive(op);
}

function sameDevice(op: string, ts: Record<string, Tensor | undefined | null>): string {
  let dev: string | undefined;
  let first = '';
  for (const [name, t] of Object.entries(ts)) {
    if (!t) continue;
    t.assertAlive(op);
    if (dev === undefined) (dev = t.device), (first = name);
    else if (t.device !== dev) throw new Error(`${op}: ${name} is on ${t.device} but ${first} is on ${dev}`);
  }
  return dev!;
}

function sameDType(op: string, ts: Record<string, Tensor | undefined | null>, allowed: readonly DType[]): DType {
  let dt: DType | undefined;
  let first = '';
  for (const [name, t] of Object.entries(ts)) {
    if (!t) continue;
    if (dt === undefined) {
      dt = t.dtype;
      first = name;
      if (!allowed.includes(dt)) throw new Error(`${op}: ${name} is ${dt}; expected ${allowed.join(' or ')}`);
    } else if (t.dtype !== dt) throw new Error(`${op}: ${name} is ${t.dtype} but ${first} is ${dt}`);
  }
  return dt!;
}

function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  const s = t.shape;
  if (s.length !== shape.length || s.some((d, i) => d !== shape[i]))
    throw new Error(`${op}: ${name} has shape [${s.join(', ')}], expected [${shape.join(', ')}]`);
}

function expectNumel(op: string, name: string, t: Tensor, n: number): void {
  if (t.numel < n) throw new Error(`${op}: ${name} has ${t.numel} elements, needs ${n}`);
}

function output(op: string, out: Tensor | undefined, shape: number[], dtype: DType, device: string): Tensor {
  if (!out) return Tensor.empty(shape, { dtype, device });
  out.assertAlive(op);
  if (out.device !== device) throw new Error(`${op}: out is on ${out.device}, the inputs on ${device}`);
  if (out.dtype !== dtype) throw new Error(`${op}: out is ${out.dtype}, expected ${dtype}`);
  expectShape(op, 'out', out, shape);
  return out;
}

const FLOATS: readonly DType[] = ['f32', 'bf16'];
const MATMUL_FLOATS: readonly DType[] = ['f32', 'bf16', 'f16'];
const positive = (op: string, what: string, v: number) => {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${op}: ${what} must be a positive integer, got ${v}`);
};

// ------------------------------------------------------------------ matmul

export interface MatmulOptions {
  bias?: Tensor | null;
  /** a is stored [K, M] */
  transA?: boolean;
  /** b is stored [N, K] (a torch Linear weight) */
  transB?: boolean;
  alpha?: number;
  /** out = alpha * a.b + beta * out + bias (needs `out`) */
  beta?: number;
  out?: Tensor;
}

/**
 * a [..., K] x b [K, N] -> [..., N] (leading dims of a flattened into rows), f32 accumulation.
 * With transA, a must be 2-D [K, M]; with transB, b is [N, K].
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const op = 'matmul';
  const { bias, transA = false, transB = false, alpha = 1, beta = 0, out } = opts;
  const dev = sameDevice(op, { a, b, bias });
  const dt = sameDType(op, { a, b, bias }, MATMUL_FLOATS);
  if (b.shape.length !== 2) throw new Error(`${op}: b must be 2-D, got [${b.shape.join(', ')}]`);
  if (a.shape.length < 1 || (transA && a.shape.length !== 2))
    throw new Error(`${op}: a must be ${transA ? '2-D' : 'at least 1-D'}, got [${a.shape.join(', ')}]`);
  const K = transA ? a.shape[0]! : a.shape[a.shape.length - 1]!;
  const M = transA ? a.shape[1]! : a.numel / Math.max(K, 1);
  const [bK, N] = transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (bK !== K)
    throw new Error(
      `${op}: inner sizes differ: a [${a.shape.join(', ')}]${transA ? '^T' : ''} x b [${b.shape.join(', ')}]${transB ? '^T' : ''} (${K} vs ${bK})`,
    );
  if (bias) expectShape(op, 'bias', bias, [N]);
  if (beta !== 0 && !out) throw new Error(`${op}: beta != 0 needs an out tensor to accumulate into`);
  const outShape = transA ? [M, N] : [...a.shape.slice(0, -1), N];
  const c = output(op, out, outShape, dt, dev);
  native.matmul(c.native, a.native, b.native, bias?.native ?? null, M, N, K, transA, transB, alpha, beta);
  return c;
}

/** x [..., in] . W^T + bias, with W [out, in] as stored by torch. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null, out?: Tensor): Tensor {
  return matmul(x, weight, { transB: true, bias, out });
}

export interface RmsnormLinearOptions {
  eps?: number;
  bias?: Tensor | null;
  alpha?: number;
  /** beta != 0 adds beta * out (out required) */
  beta?: number;
  out?: Tensor;
}

/**
 * linear(rmsnorm(x, normW), weight): x [..., in], normW [in], weight [out, in] (torch's layout). The
 * normalized rows are rounded to the dtype as rmsnorm writes them; on a GPU, for up to 16 rows (decode),
 * the norm runs inside the projection's kernel (no launch of its own), with the same result.
 */
export function rmsnormLinear(x: Tensor, normW: Tensor, weight: Tensor, o: RmsnormLinearOptions = {}): Tensor {
  const op = 'rmsnormLinear';
  const { bias, alpha = 1, beta = 0, out } = o;
  const dev = sameDevice(op, { x, normW, weight, bias });
  const dt = sameDType(op, { x, normW, weight, bias }, FLOATS);
  if (weight.shape.length !== 2) throw new Error(`${op}: weight must be 2-D [out, in], got [${weight.shape.join(', ')}]`);
  const [N, K] = weight.shape as [number, number];
  const M = rowsCols(op, x, K);
  expectShape(op, 'normW', normW, [K]);
  if (bias) expectShape(op, 'bias', bias, [N]);
  if (beta !== 0 && !out) throw new Error(`${op}: beta != 0 needs an out tensor to accumulate into`);
  const c = output(op, out, [...x.shape.slice(0, -1), N], dt, dev);
  if (c.native === x.native) throw new Error(`${op}: out must not be x`);
  native.rmsnormMatmul(c.native, x.native, normW.native, weight.native, bias?.native ?? null, M, N, K, o.eps ?? 1e-5, alpha, beta);
  return c;
}

/**
 * layernorm(x, gamma, beta) then a projection (GPT-2's qkv; with `gelu`, its MLP's up projection and
 * GELU): act(layernorm(x) weight^T + bias), each step rounded to the dtype as the ops apart round it. On a
 * GPU with PARALLM_GEMV_FUSE=1, for up to 4 rows (decode), one kernel; otherwise the three ops.
 */
export function layernormLinear(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  weight: Tensor,
  o: { bias?: Tensor; eps?: number; gelu?: boolean; out?: Tensor } = {},
): Tensor {
  return normLinearAct('layernormLinear', x, { gamma, beta }, weight, o.bias, o.eps ?? 1e-5, !!o.gelu, o.out);
}

/** layernormLinear's checks and call; `norm` null: x is normalized already (linearGelu). */
function normLinearAct(
  op: string,
  x: Tensor,
  norm: { gamma: Tensor; beta: Tensor } | null,
  weight: Tensor,
  bias: Tensor | null | undefined,
  eps: number,
  gelu: boolean,
  out: Tensor | undefined,
): Tensor {
  const dev = sameDevice(op, { x, gamma: norm?.gamma, beta: norm?.beta, weight, bias });
  const dt = sameDType(op, { x, gamma: norm?.gamma, beta: norm?.beta, weight, bias }, FLOATS);
  if (weight.shape.length !== 2) throw new Error(`${op}: weight must be 2-D [out, in], got [${weight.shape.join(', ')}]`);
  const [N, K] = weight.shape as [number, number];
  const M = rowsCols(op, x, K);
  if (norm) {
    expectShape(op, 'gamma', norm.gamma, [K]);
    expectShape(op, 'beta', norm.beta, [K]);
  }
  if (bias) expectShape(op, 'bias', bias, [N]);
  const c = output(op, out, [...x.shape.slice(0, -1), N], dt, dev);
  if (c.native === x.native) throw new Error(`${op}: out must not be x`);
  native.layernormMatmul(c.native, x.native, norm?.gamma.native ?? null, norm?.beta.native ?? null, weight.native, bias?.native ?? null, M, N, K, eps, gelu);
  return c;
}

/**
 * x += a weight^T + bias (the bits of matmul with beta = 1: decode's residual projections, the attention
 * output and the MLP's down projection), then the norm of x that the next projection reads: rmsnorm(x,
 * normW), or layernorm(x, normW, normB) with normB; returns it, shaped as x. On a GPU, for up to 16 rows,
 * one kernel when `counter` is given (an i32 [1] of zero on x's device, which the kernel leaves zero: the
 * caller keeps one for calls on one stream); else, and on the CPU, the ops apart, with the same bits.
 */
export function linearResidualNorm(
  a: Tensor,
  weight: Tensor,
  x: Tensor,
  normW: Tensor,
  o: { bias?: Tensor | null; normB?: Tensor; eps?: number; counter?: Tensor; out?: Tensor } = {},
): Tensor {
  const op = 'linearResidualNorm';
  const { bias, normB, counter, out } = o;
  const dev = sameDevice(op, { a, weight, x, normW, normB, bias, counter });
  const dt = sameDType(op, { a, weight, x, normW, normB, bias }, FLOATS);
  if (weight.shape.length !== 2) throw new Error(`${op}: weight must be 2-D [out, in], got [${weight.shape.join(', ')}]`);
  const [N, K] = weight.shape as [number, number];
  const M = rowsCols(op, a, K);
  if (rowsCols(op, x, N) !== M) throw new Error(`${op}: x [${x.shape.join(', ')}] must have a's ${M} rows of ${N}`);
  expectShape(op, 'normW', normW, [N]);
  if (normB) expectShape(op, 'normB', normB, [N]);
  if (bias) expectShape(op, 'bias', bias, [N]);
  if (counter && (counter.dtype !== 'i32' || counter.numel !== 1)) throw new Error(`${op}: counter must be i32 [1]`);
  const h = output(op, out, [...x.shape], dt, dev);
  if (h.native === x.native || h.native === a.native) throw new Error(`${op}: out must not be x or a`);
  native.matmulResidualNorm(h.native, x.native, a.native, weight.native, bias?.native ?? null, normW.native, normB?.native ?? null,
    counter?.native ?? null, M, N, K, o.eps ?? 1e-5);
  return h;
}

/**
 * SwiGLU of rmsnorm(x, normW)'s gate+up projection: wGateUp [2F, in] holds the gate rows, then the up
 * rows (LLaMA's fused MLP weight); returns silu(gate) * up [..., F], the two products rounded to the dtype
 * first, as linear then siluGate give it. On a GPU, for up to 16 rows (decode), one kernel.
 */
export function rmsnormLinearSwiGLU(x: Tensor, normW: Tensor, wGateUp: Tensor, o: { eps?: number; out?: Tensor } = {}): Tensor {
  return normLinearSwiGLU('rmsnormLinearSwiGLU', x, normW, wGateUp, o.eps ?? 1e-5, o.out);
}

/** rmsnormLinearSwiGLU's checks and call; `normW` null: x is normalized already (linearSwiGLU). */
function normLinearSwiGLU(op: string, x: Tensor, normW: Tensor | null, wGateUp: Tensor, eps: number, out: Tensor | undefined): Tensor {
  const dev = sameDevice(op, { x, normW, wGateUp });
  const dt = sameDType(op, { x, normW, wGateUp }, FLOATS);
  if (wGateUp.shape.length !== 2 || wGateUp.shape[0]! % 2)
    throw new Error(`${op}: wGateUp must be 2-D [2F, in], got [${wGateUp.shape.join(', ')}]`);
  const [F2, K] = wGateUp.shape as [number, number];
  const F = F2 / 2;
  const M = rowsCols(op, x, K);
  if (normW) expectShape(op, 'normW', normW, [K]);
  const c = output(op, out, [...x.shape.slice(0, -1), F], dt, dev);
  if (c.native === x.native) throw new Error(`${op}: out must not be x`);
  native.rmsnormMatmulSwiglu(c.native, x.native, normW?.native ?? null, wGateUp.native, M, F, K, eps);
  return c;
}

/**
 * silu(gate) * up of x wGateUp^T (wGateUp [2F, in]: the gate rows, then the up rows), x already
 * normalized (ops.linearResidualNorm's output): the two products rounded to the dtype first, as linear
 * then siluGate give it. On a GPU, for up to 16 rows, one GEMV with SwiGLU in its epilogue.
 */
export function linearSwiGLU(x: Tensor, wGateUp: Tensor, o: { out?: Tensor } = {}): Tensor {
  return normLinearSwiGLU('linearSwiGLU', x, null, wGateUp, 0, o.out);
}

/**
 * gelu(x weight^T + bias), the product rounded to the dtype first (linear then gelu's bits), x already
 * normalized (GPT-2's MLP up projection after ops.linearResidualNorm). On a GPU, for up to 16 rows, one
 * GEMV with GELU in its epilogue.
 */
export function linearGelu(x: Tensor, weight: Tensor, o: { bias?: Tensor | null; out?: Tensor } = {}): Tensor {
  return normLinearAct('linearGelu', x, null, weight, o.bias, 0, true, o.out);
}

// ------------------------------------------------------------------ attention

export interface AttentionShape {
  batch: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  /** 1/sqrt(headDim) by default */
  scale?: number;
}

export interface PrefillOptions extends AttentionShape {
  queries: number;
  /** keys (>= queries; the last `queries` keys are the queries' own positions); default = queries */
  keys?: number;
  /** element strides [batch, token] of q; default contiguous [B, Tq, Hq, D] */
  qStrides?: [number, number];
  /** element strides [batch, token] of k and v; default contiguous [B, Tk, Hkv, D] */
  kvStrides?: [number, number];
  out?: Tensor;
}

/** Causal attention over a prompt: out [B, Tq, Hq, D]. */
export function attentionPrefill(q: Tensor, k: Tensor, v: Tensor, o: PrefillOptions): Tensor {
  const op = 'attentionPrefill';
  const dev = sameDevice(op, { q, k, v });
  const dt = sameDType(op, { q, k, v }, FLOATS);
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, queries: Tq } = o;
  const Tk = o.keys ?? Tq;
  for (const [n, val] of Object.entries({ batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, queries: Tq, keys: Tk }))
    positive(op, n, val);
  if (Hq % Hkv) throw new Error(`${op}: headsQ (${Hq}) must be a multiple of headsKv (${Hkv})`);
  if (Tk < Tq) throw new Error(`${op}: keys (${Tk}) < queries (${Tq})`);
  const [qB, qT] = o.qStrides ?? [Tq * Hq * D, Hq * D];
  const [kB, kT] = o.kvStrides ?? [Tk * Hkv * D, Hkv * D];
  expectNumel(op, 'q', q, (B - 1) * qB + (Tq - 1) * qT + Hq * D);
  expectNumel(op, 'k', k, (B - 1) * kB + (Tk - 1) * kT + Hkv * D);
  expectNumel(op, 'v', v, (B - 1) * kB + (Tk - 1) * kT + Hkv * D);
  const out = output(op, o.out, [B, Tq, Hq, D], dt, dev);
  native.attentionPrefill(out.native, q.native, k.native, v.native, B, Tq, Tk, Hq, Hkv, D, qB, qT, kB, kT, o.scale ?? 1 / Math.sqrt(D));
  return out;
}

export interface DecodeOptions extends AttentionShape {
  /** capacity of the cache in tokens */
  maxLen: number;
  /** element stride between q rows of consecutive sequences; default Hq * D */
  qStride?: number;
  /** element strides [batch, token] of the caches; default [maxLen * Hkv * D, Hkv * D] */
  kvStrides?: [number, number];
  out?: Tensor;
  /**
   * i32 [>= batch * headsQ] of zeros on q's device, which the op leaves zero: on a GPU the split kernel's
   * last block of each head group then merges the key chunks (one launch fewer; the same bits). Made
   * before a graph capture (KvCache.counter), as the host may not write during one. Ignored on a CPU.
   */
  counter?: Tensor;
}

/** One query per sequence over a KV cache of lens[b] tokens (lens: i32 [B] on the device): out [B, Hq, D]. */
export function attentionDecode(q: Tensor, kCache: Tensor, vCache: Tensor, lens: Tensor, o: DecodeOptions): Tensor {
  const op = 'attentionDecode';
  const dev = sameDevice(op, { q, kCache, vCache, lens, counter: o.counter });
  const dt = sameDType(op, { q, kCache, vCache }, FLOATS);
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen } = o;
  if (o.counter && (o.counter.dtype !== 'i32' || o.counter.numel < B * Hq))
    throw new Error(`${op}: counter must be i32 with at least batch x headsQ = ${B * Hq} elements, got ${o.counter.dtype} [${o.counter.shape.join(', ')}]`);
  for (const [n, val] of Object.entries({ batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen })) positive(op, n, val);
  if (Hq % Hkv) throw new Error(`${op}: headsQ (${Hq}) must be a multiple of headsKv (${Hkv})`);
  if (lens.dtype !== 'i32') throw new Error(`${op}: lens must be i32, got ${lens.dtype}`);
  expectNumel(op, 'lens', lens, B);
  const qS = o.qStride ?? Hq * D;
  const [kB, kT] = o.kvStrides ?? [maxLen * Hkv * D, Hkv * D];
  expectNumel(op, 'q', q, (B - 1) * qS + Hq * D);
  expectNumel(op, 'kCache', kCache, (B - 1) * kB + (maxLen - 1) * kT + Hkv * D);
  expectNumel(op, 'vCache', vCache, (B - 1) * kB + (maxLen - 1) * kT + Hkv * D);
  const out = output(op, o.out, [B, Hq, D], dt, dev);
  native.attentionDecode(out.native, q.native, kCache.native, vCache.native, lens.native, B, Hq, Hkv, D, qS, kB, kT, maxLen, o.scale ?? 1 / Math.sqrt(D), o.counter?.native ?? null);
  return out;
}

export interface KvWriteOptions {
  batch: number;
  tokens: number;
  /** elements per token row */
  width: number;
  maxLen: number;
  srcStrides?: [number, number];
  dstStrides?: [number, number];
}

/** dst[b, pos[b] + t, :] = src[b, t, :] for t < tokens (pos: i32 [B] on the device). */
export function kvWrite(dst: Tensor, src: Tensor, pos: Tensor, o: KvWriteOptions): void {
  const op = 'kvWrite';
  sameDevice(op, { dst, src, pos });
  sameDType(op, { dst, src }, FLOATS);
  const { batch: B, tokens: T, width: W, maxLen } = o;
  for (const [n, val] of Object.entries({ batch: B, tokens: T, width: W, maxLen })) positive(op, n, val);
  if (pos.dtype !== 'i32') throw new Error(`${op}: pos must be i32, got ${pos.dtype}`);
  const [sB, sT] = o.srcStrides ?? [T * W, W];
  const [dB, dT] = o.dstStrides ?? [maxLen * W, W];
  native.kvWrite(dst.native, src.native, pos.native, B, T, W, sB, sT, dB, dT, maxLen);
}

export interface RopeKvWriteOptions {
  batch: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  maxLen: number;
  /** elements between consecutive sequences' rows of qkv; default (headsQ + 2 headsKv) * headDim */
  qkvStride?: number;
  /** element strides [batch, token] of both caches; default contiguous [B, maxLen, headsKv, headDim] */
  kvStrides?: [number, number];
  /** rotate q and k as rope does (theta, rotaryDim, freqs as in RopeOptions); omitted: no rotation (GPT-2) */
  rope?: Pick<RopeOptions, 'theta' | 'rotaryDim' | 'freqs'>;
}

/**
 * Decode's rope and KV-cache write in one op, one token per sequence: qkv [B, (Hq + 2 Hkv) D] rows hold
 * the q heads, k heads and v heads. With `rope`, the q and k heads are rotated in place at pos[b] (as
 * rope over Hq + Hkv heads); then kCache[b, pos[b]] = k heads and vCache[b, pos[b]] = v heads (as
 * kvWrite with one token; a pos outside [0, maxLen) writes nothing). pos: i32 [B] on the device.
 */
export function ropeKvWrite(qkv: Tensor, kCache: Tensor, vCache: Tensor, pos: Tensor, o: RopeKvWriteOptions): void {
  const op = 'ropeKvWrite';
  sameDevice(op, { qkv, kCache, vCache, pos, freqs: o.rope?.freqs });
  sameDType(op, { qkv, kCache, vCache }, FLOATS);
  const { qs, kB, kT, rot, freqs } = ropeKvShape(op, qkv, kCache, vCache, pos, o);
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen } = o;
  native.ropeKvWrite(qkv.native, kCache.native, vCache.native, pos.native, freqs?.native ?? null, B, Hq, Hkv, D, qs, rot, o.rope?.theta ?? 10000, kB, kT, maxLen);
}

/**
 * Decode's qkv projection with its rope and KV-cache write: qkv = linear(x, weight, bias) (x [B, in], weight
 * [(Hq + 2 Hkv) D, in]), then ropeKvWrite(qkv, kCache, vCache, pos, o). Returns qkv [B, (Hq + 2 Hkv) D] (its q and
 * k heads rotated). On a GPU, where the product is cut in K slices (the W-as-A tile at 9-16 rows), the slices'
 * sum and the rope are one launch; the same values as the two ops.
 */
export function linearRopeKvWrite(
  x: Tensor,
  weight: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  pos: Tensor,
  o: Omit<RopeKvWriteOptions, 'qkvStride'> & { bias?: Tensor | null; out?: Tensor },
): Tensor {
  const op = 'linearRopeKvWrite';
  const { bias, out } = o;
  const dev = sameDevice(op, { x, weight, bias, kCache, vCache, pos, freqs: o.rope?.freqs });
  const dt = sameDType(op, { x, weight, bias, kCache, vCache }, FLOATS);
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen } = o;
  // (qkv is this op's output, made below at the size the checks ask for)
  const { N, K, kB, kT, rot, freqs } = qkvProjectionShape(op, x, weight, kCache, vCache, pos, o);
  if (out && out.native === x.native) throw new Error(`${op}: out must not be x`);
  const c = output(op, out, [B, N], dt, dev);
  native.matmulRopeKvWrite(c.native, x.native, weight.native, bias?.native ?? null, kCache.native, vCache.native, pos.native, freqs?.native ?? null,
    B, K, Hq, Hkv, D, rot, o.rope?.theta ?? 10000, kB, kT, maxLen);
  return c;
}

/**
 * Decode's qkv projection, rope, KV-cache write and attention for one new token per sequence:
 * linearRopeKvWrite(x, weight, kCache, vCache, pos, o), then attentionDecode of its q heads over the caches for
 * lens[b] tokens. Returns out [B, Hq, D]. On a GPU, where the product is cut in K slices (the W-as-A tile at 9-16
 * rows), the attention kernel sums the slices, rotates and writes the caches itself: one launch where the reduce
 * and the attention took two, the same bits as the ops apart. pos, lens: i32 [B] on the device.
 */
export function linearRopeKvAttentionDecode(
  x: Tensor,
  weight: Tensor,
  kCache: Tensor,
  vCache: Tensor,
  pos: Tensor,
  lens: Tensor,
  o: Omit<RopeKvAttentionDecodeOptions, 'qkvStride'> & { bias?: Tensor | null },
): Tensor {
  const op = 'linearRopeKvAttentionDecode';
  const dev = sameDevice(op, { x, weight, bias: o.bias, kCache, vCache, pos, lens, freqs: o.rope?.freqs, counter: o.counter });
  const dt = sameDType(op, { x, weight, bias: o.bias, kCache, vCache }, FLOATS);
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen } = o;
  const { N, K, kB, kT, rot, freqs } = qkvProjectionShape(op, x, weight, kCache, vCache, pos, o);
  attentionArgs(op, lens, o);
  const out = output(op, o.out, [B, Hq, D], dt, dev);
  const qkv = Tensor.empty([B, N], { dtype: dt, device: dev });  // scratch (unwritten where the GPU fuses)
  try {
    native.matmulRopeKvAttentionDecode(out.native, qkv.native, x.native, weight.native, o.bias?.native ?? null, kCache.native, vCache.native,
      pos.native, lens.native, freqs?.native ?? null, o.counter?.native ?? null, B, K, Hq, Hkv, D, rot, o.rope?.theta ?? 10000, kB, kT,
      maxLen, o.scale ?? 1 / Math.sqrt(D));
  } finally {
    qkv.dispose();
  }
  return out;
}

/** The checks of the ops with decode attention after the rope (ropeKvAttentionDecode, linearRopeKvAttentionDecode). */
function attentionArgs(op: string, lens: Tensor, o: RopeKvAttentionDecodeOptions): void {
  const { batch: B, headsQ: Hq, headsKv: Hkv } = o;
  if (Hq % Hkv) throw new Error(`${op}: headsQ (${Hq}) must be a multiple of headsKv (${Hkv})`);
  if (lens.dtype !== 'i32') throw new Error(`${op}: lens must be i32, got ${lens.dtype}`);
  expectNumel(op, 'lens', lens, B);
  if (o.counter && (o.counter.dtype !== 'i32' || o.counter.numel < B * Hq))
    throw new Error(`${op}: counter must be i32 with at least batch x headsQ = ${B * Hq} elements, got ${o.counter.dtype} [${o.counter.shape.join(', ')}]`);
}

/**
 * The checks of the ops with the qkv projection in them (linearRopeKvWrite, linearRopeKvAttentionDecode): weight
 * [(Hq + 2 Hkv) D, K], x [B, K], the bias [N], then ropeKvShape's.
 */
function qkvProjectionShape(op: string, x: Tensor, weight: Tensor, kCache: Tensor, vCache: Tensor, pos: Tensor, o: RopeKvWriteOptions & { bias?: Tensor | null }) {
  if (weight.shape.length !== 2) throw new Error(`${op}: weight must be 2-D [out, in], got [${weight.shape.join(', ')}]`);
  const [N, K] = weight.shape as [number, number];
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D } = o;
  const M = rowsCols(op, x, K);
  if (M !== B) throw new Error(`${op}: x has ${M} rows for a batch of ${B}`);
  const shape = ropeKvShape(op, null, kCache, vCache, pos, o);
  if (N !== (Hq + 2 * Hkv) * D) throw new Error(`${op}: weight has ${N} rows, not (headsQ + 2 headsKv) x headDim = ${(Hq + 2 * Hkv) * D}`);
  if (o.bias) expectShape(op, 'bias', o.bias, [N]);
  return { N, K, ...shape };
}

/**
 * The checks ropeKvWrite, ropeKvAttentionDecode and linearRopeKvWrite share: sizes, pos, strides, rows and the
 * rotation (qkv null: the op makes it).
 */
function ropeKvShape(op: string, qkv: Tensor | null, kCache: Tensor, vCache: Tensor, pos: Tensor, o: RopeKvWriteOptions) {
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen } = o;
  for (const [n, val] of Object.entries({ batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen })) positive(op, n, val);
  if (pos.dtype !== 'i32') throw new Error(`${op}: pos must be i32, got ${pos.dtype}`);
  expectNumel(op, 'pos', pos, B);
  const row = (Hq + 2 * Hkv) * D;
  const qs = o.qkvStride ?? row;
  if (qs < row) throw new Error(`${op}: qkvStride ${qs} < (headsQ + 2 headsKv) x headDim = ${row}`);
  const [kB, kT] = o.kvStrides ?? [maxLen * Hkv * D, Hkv * D];
  if (kT < Hkv * D) throw new Error(`${op}: cache token stride ${kT} < headsKv x headDim = ${Hkv * D}`);
  if (qkv) expectNumel(op, 'qkv', qkv, (B - 1) * qs + row);
  expectNumel(op, 'kCache', kCache, (B - 1) * kB + (maxLen - 1) * kT + Hkv * D);
  expectNumel(op, 'vCache', vCache, (B - 1) * kB + (maxLen - 1) * kT + Hkv * D);
  let rot = 0;
  let freqs: Tensor | undefined;
  if (o.rope) {
    rot = o.rope.rotaryDim ?? D;
    if (rot % 2 || rot > D || rot < 2) throw new Error(`${op}: rotaryDim ${rot} must be even and <= headDim ${D}`);
    freqs = ropeFreqs(op, { heads: Hq + Hkv, headDim: D, ...o.rope }, rot);
  }
  return { qs, kB, kT, rot, freqs };
}

export interface RopeKvAttentionDecodeOptions extends RopeKvWriteOptions {
  /** softmax scale; default 1/sqrt(headDim) */
  scale?: number;
  out?: Tensor;
  /** as attentionDecode's `counter` */
  counter?: Tensor;
}

/**
 * Decode's rope, KV-cache write and attention for one new token per sequence: ropeKvWrite on a copy of
 * qkv's rows, then attentionDecode of their q heads over the caches for lens[b] tokens (out [B, Hq, D]).
 * qkv is only read (its q and k heads are not rotated in place, unlike ropeKvWrite). On a GPU one launch
 * with the bits of the two ops; on a CPU the two ops on a copy. pos, lens: i32 [B] on the device.
 */
export function ropeKvAttentionDecode(qkv: Tensor, kCache: Tensor, vCache: Tensor, pos: Tensor, lens: Tensor, o: RopeKvAttentionDecodeOptions): Tensor {
  const op = 'ropeKvAttentionDecode';
  const dev = sameDevice(op, { qkv, kCache, vCache, pos, lens, freqs: o.rope?.freqs, counter: o.counter });
  const dt = sameDType(op, { qkv, kCache, vCache }, FLOATS);
  const { qs, kB, kT, rot, freqs } = ropeKvShape(op, qkv, kCache, vCache, pos, o);
  const { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen } = o;
  attentionArgs(op, lens, o);
  const out = output(op, o.out, [B, Hq, D], dt, dev);
  native.ropeKvAttentionDecode(out.native, qkv.native, kCache.native, vCache.native, pos.native, lens.native, freqs?.native ?? null, o.counter?.native ?? null, B, Hq, Hkv, D, qs, rot, o.rope?.theta ?? 10000, kB, kT, maxLen, o.scale ?? 1 / Math.sqrt(D));
  return out;
}

/** A GPT-2 layer's weights as decodeLayerGpt2 reads them (the fields of models/weights.ts LayerWeights). */
export interface Gpt2LayerWeights {
  norm1: Tensor;
  norm1Bias?: Tensor;
  /** [3C, C] (the q rows, the k rows, the v rows) */
  qkv: Tensor;
  qkvBias?: Tensor;
  /** [C, C] */
  out: Tensor;
  outBias?: Tensor;
  norm2: Tensor;
  norm2Bias?: Tensor;
  /** [4C, C] */
  up: Tensor;
  upBias?: Tensor;
  /** [C, 4C] */
  down: Tensor;
  downBias?: Tensor;
}

export interface DecodeLayerOptions {
  /** query heads (= KV heads: GPT-2 has no grouped-query attention); C = heads x headDim */
  heads: number;
  headDim: number;
  /** capacity of the caches in tokens */
  maxLen: number;
  /** element strides [batch, token] of both caches; default contiguous [B, maxLen, heads, headDim] */
  kvStrides?: [number, number];
  /** the layernorms' epsilon (default 1e-5) */
  eps?: number;
  /**
   * An i32 tensor on x's device whose first element is zero (its low 31 bits): the CUDA kernel's grid
   * barrier counts on it and leaves it as it found it, so one counter serves every call on a stream (the
   * zero counter of linearResidualNorm serves too). Required on a GPU; unused on the CPU.
   */
  counter?: Tensor;
}

/**
 * One GPT-2 decode layer, one token per sequence, x [B, C] (the residual stream) updated in place:
 * defined as the ops apart in this order, each rounding to the dtype as they do:
 *   qkv = layernormLinear(x, norm1, norm1Bias, qkv, qkvBias);
 *   ropeKvWrite(qkv, kCache, vCache, pos) (no rotation: k and v into the caches at pos[b]);
 *   att = attentionDecode(q of qkv, kCache, vCache, lens) (scale 1/sqrt(headDim));
 *   x += att out^T + outBias (matmul with beta = 1: one f32 sum, one rounding);
 *   a = layernormLinear(x, norm2, norm2Bias, up, upBias, gelu);  x += a down^T + downBias.
 * pos, lens: i32 [B] on the device (lens[b] = pos[b] + 1 in decode; a pos outside [0, maxLen) writes
 * nothing). The CPU runs exactly that composition (f32 or bf16). On a GPU (bf16 only) it is ONE
 * persistent cooperative kernel (native/cuda/decode_layer.cu), equal to the composition to bf16 rounding
 * (its sums add in another order), for 1 <= B <= 4, headDim 64 or 128, C <= 1024, cache strides multiples
 * of 8; other sizes throw an Error naming the op, the device and the sizes (the caller falls back to the
 * ops apart). Does not apply to a tensor-parallel shard (its projections need an all-reduce between).
 */
export function decodeLayerGpt2(x: Tensor, w: Gpt2LayerWeights, kCache: Tensor, vCache: Tensor, pos: Tensor, lens: Tensor, o: DecodeLayerOptions): void {
  const op = 'decodeLayerGpt2';
  const { counter } = o;
  const dev = sameDevice(op, { x, ...w, kCache, vCache, pos, lens, counter });
  const dt = sameDType(op, { x, ...w, kCache, vCache }, FLOATS);
  const { heads: H, headDim: D, maxLen } = o;
  for (const [n, val] of Object.entries({ heads: H, headDim: D, maxLen })) positive(op, n, val);
  const C = H * D;
  if (x.shape.length !== 2 || x.shape[1] !== C)
    throw new Error(`${op}: x must be [B, heads x headDim = ${C}], got [${x.shape.join(', ')}]`);
  const B = x.shape[0]!;
  positive(op, 'the batch (x\'s rows)', B);
  if (!w.norm1Bias || !w.norm2Bias) throw new Error(`${op}: GPT-2's layernorms need their biases (norm1Bias, norm2Bias)`);
  for (const [n, t] of Object.entries({ norm1: w.norm1, norm1Bias: w.norm1Bias, norm2: w.norm2, norm2Bias: w.norm2Bias, outBias: w.outBias, downBias: w.downBias }))
    if (t) expectShape(op, n, t, [C]);
  expectShape(op, 'qkv', w.qkv, [3 * C, C]);
  if (w.qkvBias) expectShape(op, 'qkvBias', w.qkvBias, [3 * C]);
  expectShape(op, 'out', w.out, [C, C]);
  expectShape(op, 'up', w.up, [4 * C, C]);
  if (w.upBias) expectShape(op, 'upBias', w.upBias, [4 * C]);
  expectShape(op, 'down', w.down, [C, 4 * C]);
  for (const [n, t] of Object.entries({ pos, lens })) {
    if (t.dtype !== 'i32') throw new Error(`${op}: ${n} must be i32, got ${t.dtype}`);
    expectNumel(op, n, t, B);
  }
  const [kB, kT] = o.kvStrides ?? [maxLen * C, C];
  if (!Number.isInteger(kB) || !Number.isInteger(kT) || kB < 0 || kT < C)
    throw new Error(`${op}: cache strides [${kB}, ${kT}] must be non-negative integers with the token stride >= heads x headDim = ${C}`);
  expectNumel(op, 'kCache', kCache, (B - 1) * kB + (maxLen - 1) * kT + C);
  expectNumel(op, 'vCache', vCache, (B - 1) * kB + (maxLen - 1) * kT + C);
  if (kCache.native === vCache.native || x.native === kCache.native || x.native === vCache.native)
    throw new Error(`${op}: x, kCache and vCache must be three tensors`);
  if (counter && (counter.dtype !== 'i32' || counter.numel < 1)) throw new Error(`${op}: counter must be an i32 tensor of at least one element`);
  if (dev.startsWith('cuda')) {
    const sizes = `B=${B} C=${C} heads=${H} headDim=${D} maxLen=${maxLen} cache strides [${kB}, ${kT}] on ${dev}`;
    if (dt !== 'bf16') throw new Error(`${op}: ${dt} is not supported on a GPU (bf16 only; ${sizes})`);
    if (!counter) throw new Error(`${op}: a counter (i32, zero, on ${dev}) is required on a GPU (${sizes})`);
    if (!decodeLayerGpt2Supported(B, H, D, kB, kT))
      throw new Error(`${op}: unsupported sizes ${sizes} (need 1 <= B <= 4, headDim 64 or 128, C <= 1024, cache strides multiples of 8)`);
  }
  native.decodeLayerGpt2(x.native, w.norm1.native, w.norm1Bias.native, w.qkv.native, w.qkvBias?.native ?? null, w.out.native, w.outBias?.native ?? null,
    w.norm2.native, w.norm2Bias.native, w.up.native, w.upBias?.native ?? null, w.down.native, w.downBias?.native ?? null,
    kCache.native, vCache.native, pos.native, lens.native, counter?.native ?? null, B, C, H, D, kB, kT, maxLen, o.eps ?? 1e-5);
}

/**
 * Whether decodeLayerGpt2 runs as one kernel on a GPU at these sizes (B sequences, `heads` x `headDim`,
 * cache strides [batch, token] in elements); where false, a GPU call throws and the caller runs the ops apart.
 */
export function decodeLayerGpt2Supported(B: number, heads: number, headDim: number, kvBatchStride: number, kvTokenStride: number): boolean {
  const C = heads * headDim;
  return B >= 1 && B <= 4 && (headDim === 64 || headDim === 128) && C <= 1024 && kvTokenStride >= C && kvTokenStride % 8 === 0 && kvBatchStride % 8 === 0;
}

// ------------------------------------------------------------------ norms and activations

function rowsCols(op: string, x: Tensor, C: number): number {
  const last = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || last !== C) throw new Error(`${op}: x [${x.shape.join(', ')}] must end in ${C}`);
  return x.numel / C;
}

export interface NormOptions {
  eps?: number;
  out?: Tensor;
  /** f32 [R] per-row statistics, for a backward pass */
  mean?: Tensor;
  rstd?: Tensor;
}

export function layernorm(x: Tensor, gamma: Tensor, beta: Tensor, o: NormOptions = {}): Tensor {
  const op = 'layernorm';
  const dev = sameDevice(op, { x, gamma, beta, mean: o.mean, rstd: o.rstd });
  const dt = sameDType(op, { x, gamma, beta }, FLOATS);
  if (gamma.shape.length !== 1) throw new Error(`${op}: gamma must be 1-D`);
  const C = gamma.shape[0]!;
  expectShape(op, 'beta', beta, [C]);
  const R = rowsCols(op, x, C);
  for (const [n, t] of Object.entries({ mean: o.mean, rstd: o.rstd }))
    if (t) {
      if (t.dtype !== 'f32') throw new Error(`${op}: ${n} must be f32`);
      expectShape(op, n, t, [R]);
    }
  const y = output(op, o.out, x.shape, dt, dev);
  native.layernorm(y.native, x.native, gamma.native, beta.native, o.mean?.native ?? null, o.rstd?.native ?? null, R, C, o.eps ?? 1e-5);
  return y;
}

export function rmsnorm(x: Tensor, weight: Tensor, o: NormOptions = {}): Tensor {
  const op = 'rmsnorm';
  const dev = sameDevice(op, { x, weight, rstd: o.rstd });
  const dt = sameDType(op, { x, weight }, FLOATS);
  if (weight.shape.length !== 1) throw new Error(`${op}: weight must be 1-D`);
  const C = weight.shape[0]!;
  const R = rowsCols(op, x, C);
  if (o.rstd) {
    if (o.rstd.dtype !== 'f32') throw new Error(`${op}: rstd must be f32`);
    expectShape(op, 'rstd', o.rstd, [R]);
  }
  const y = output(op, o.out, x.shape, dt, dev);
  native.rmsnorm(y.native, x.native, weight.native, o.rstd?.native ?? null, R, C, o.eps ?? 1e-5);
  return y;
}

/** GELU, tanh form (GPT-2). */
export function gelu(x: Tensor, out?: Tensor): Tensor {
  const dev = sameDevice('gelu', { x });
  const dt = sameDType('gelu', { x }, FLOATS);
  const y = output('gelu', out, x.shape, dt, dev);
  native.gelu(y.native, x.native, x.numel);
  return y;
}

export interface SiluGateOptions {
  rows?: number;
  cols?: number;
  /** elements between rows of gate and of up (e.g. 2F when both halves of one [R, 2F] tensor) */
  inStride?: number;
  out?: Tensor;
}

/** silu(gate) * up -> [R, F]. By default gate and up are both [..., F]. */
export function siluGate(gate: Tensor, up: Tensor, o: SiluGateOptions = {}): Tensor {
  const op = 'siluGate';
  const dev = sameDevice(op, { gate, up });
  const dt = sameDType(op, { gate, up }, FLOATS);
  const F = o.cols ?? gate.shape[gate.shape.length - 1]!;
  const R = o.rows ?? gate.numel / F;
  const st = o.inStride ?? F;
  positive(op, 'cols', F);
  if (!Number.isInteger(R) || R < 0) throw new Error(`${op}: rows must be an integer >= 0`);
  if (st < F) throw new Error(`${op}: inStride ${st} < cols ${F}`);
  const reach = R ? (R - 1) * st + F : 0;
  expectNumel(op, 'gate', gate, reach);
  expectNumel(op, 'up', up, reach);
  const y = output(op, o.out, o.rows !== undefined || o.inStride !== undefined ? [R, F] : gate.shape, dt, dev);
  native.siluGate(y.native, gate.native, up.native, R, F, st);
  return y;
}

export interface RopeOptions {
  heads: number;
  headDim: number;
  theta?: number;
  rotaryDim?: number;
  /** elements between consecutive tokens; default heads * headDim */
  tokenStride?: number;
  /** number of tokens; default numel(pos) */
  tokens?: number;
  /**
   * Per-dimension inverse frequencies, f32 [rotaryDim / 2] on x's device, replacing theta^(-2i/rotaryDim):
   * scaled RoPE (LLaMA 3's "llama3" rope_scaling; see models/rope.ts ropeFrequencies).
   */
  freqs?: Tensor;
}

function ropeFreqs(op: string, o: RopeOptions, rot: number): Tensor | undefined {
  const f = o.freqs;
  if (f === undefined) {
    const theta = o.theta ?? 10000;
    if (!(theta > 0) || !Number.isFinite(theta)) throw new Error(`${op}: theta ${theta} must be a positive number`);
    return undefined;
  }
  if (f.dtype !== 'f32') throw new Error(`${op}: freqs must be f32, got ${f.dtype}`);
  if (f.numel !== rot / 2) throw new Error(`${op}: freqs has ${f.numel} elements, expected rotaryDim / 2 = ${rot / 2}`);
  return f;
}

/** The checks rope and its backward share: tokens, token stride, rotary width and the frequency table. */
function ropeGeometry(op: string, x: Tensor, name: string, pos: Tensor, o: RopeOptions): { R: number; st: number; rot: number; freqs?: Tensor } {
  sameDevice(op, { [name]: x, pos, freqs: o.freqs });
  sameDType(op, { [name]: x }, FLOATS);
  if (pos.dtype !== 'i32') throw new Error(`${op}: pos must be i32, got ${pos.dtype}`);
  const R = o.tokens ?? pos.numel;
  const st = o.tokenStride ?? o.heads * o.headDim;
  const rot = o.rotaryDim ?? o.headDim;
  positive(op, 'heads', o.heads);
  positive(op, 'headDim', o.headDim);
  if (rot % 2 || rot > o.headDim || rot < 2) throw new Error(`${op}: rotaryDim ${rot} must be even and <= headDim ${o.headDim}`);
  if (st < o.heads * o.headDim) throw new Error(`${op}: tokenStride ${st} < heads x headDim = ${o.heads * o.headDim}`);
  expectNumel(op, 'pos', pos, R);
  expectNumel(op, name, x, R ? (R - 1) * st + o.heads * o.headDim : 0);
  return { R, st, rot, freqs: ropeFreqs(op, o, rot) };
}

/** Rotary embedding in place (Hugging Face rotate_half layout); pos: i32 [tokens] on the device. */
export function rope(x: Tensor, pos: Tensor, o: RopeOptions): Tensor {
  const g = ropeGeometry('rope', x, 'x', pos, o);
  native.rope(x.native, pos.native, g.R, o.heads, o.headDim, g.st, g.rot, o.theta ?? 10000, g.freqs?.native ?? null);
  return x;
}

/** table[ids] -> [...ids.shape, C]. Ids are i32; out-of-range ids give zero rows. */
export function embedding(ids: Tensor, table: Tensor, out?: Tensor): Tensor {
  const op = 'embedding';
  const dev = sameDevice(op, { ids, table });
  if (ids.dtype !== 'i32') throw new Error(`${op}: ids must be i32, got ${ids.dtype}`);
  const dt = sameDType(op, { table }, FLOATS);
  if (table.shape.length !== 2) throw new Error(`${op}: table must be 2-D [V, C]`);
  const [V, C] = table.shape as [number, number];
  const y = output(op, out, [...ids.shape, C], dt, dev);
  native.embedding(y.native, ids.native, table.native, ids.numel, V, C);
  return y;
}

/** a + b, where b has a's shape or a's last dimension (broadcast over rows). */
export function add(a: Tensor, b: Tensor, out?: Tensor): Tensor {
  const op = 'add';
  const dev = sameDevice(op, { a, b });
  const dt = sameDType(op, { a, b }, FLOATS);
  const n = a.numel;
  const last = a.shape[a.shape.length - 1] ?? 1;
  const sameShape = b.numel === n && b.shape.length === a.shape.length && b.shape.every((d, i) => d === a.shape[i]);
  const rowBroadcast = b.shape.length === 1 && b.shape[0] === last;
  if (!sameShape && !rowBroadcast)
    throw new Error(`${op}: b [${b.shape.join(', ')}] must have a's shape [${a.shape.join(', ')}] or be [${last}]`);
  const y = output(op, out, a.shape, dt, dev);
  if (n > 0) native.add(y.native, a.native, b.native, n, sameShape ? n : last);
  return y;
}

/** Convert between f32, bf16 and f16. */
export function cast(x: Tensor, dtype: DType, out?: Tensor): Tensor {
  const op = 'cast';
  alive(op, x);
  if (!isFloat(x.dtype) || !isFloat(dtype)) throw new Error(`${op}: only between f32, bf16 and f16 (${x.dtype} -> ${dtype})`);
  const y = output(op, out, x.shape, dtype, x.device);
  native.cast(y.native, x.native, x.numel);
  return y;
}

/** softmax(scale * x) over the last dimension. */
export function softmax(x: Tensor, o: { scale?: number; out?: Tensor } = {}): Tensor {
  const op = 'softmax';
  const dev = sameDevice(op, { x });
  const dt = sameDType(op, { x }, FLOATS);
  const C = x.shape[x.shape.length - 1] ?? 0;
  positive(op, 'last dimension', C);
  const y = output(op, o.out, x.shape, dt, dev);
  native.softmax(y.native, x.native, x.numel / C, C, o.scale ?? 1);
  return y;
}

/** Index of the largest value of each row of the last dimension: i32 [...]. */
export function argmax(x: Tensor, out?: Tensor): Tensor {
  const op = 'argmax';
  const dev = sameDevice(op, { x });
  sameDType(op, { x }, FLOATS);
  const C = x.shape[x.shape.length - 1] ?? 0;
  positive(op, 'last dimension', C);
  const y = output(op, out, x.shape.slice(0, -1), 'i32', dev);
  native.argmax(y.native, x.native, x.numel / C, C);
  return y;
}

/** How tokens are drawn from logits: the one declaration (engine/sampling.ts resolves the defaults). */
export interface SamplingOptions {
  /** <= 0: greedy */
  temperature?: number;
  /** 0: no top-k cut */
  topK?: number;
  /** 1: no top-p cut */
  topP?: number;
  /** any integer below 2^53 */
  seed?: number;
}

export interface SampleOptions extends SamplingOptions {
  /** i32 [R] per-row counters mixed into the random draw (e.g. each sequence's position) */
  offsets?: Tensor | null;
  /**
   * i32 [R]: the key of each row's draw in place of its index in this call (e.g. each sequence's row of
   * the whole batch), so sampling part of a batch gives the tokens the whole batch would
   */
  rows?: Tensor | null;
  out?: Tensor;
}

/** One token id per row of logits [..., V], seeded: the same seed and offsets give the same tokens. */
export function sample(logits: Tensor, o: SampleOptions = {}): Tensor {
  const op = 'sample';
  const dev = sameDevice(op, { logits, offsets: o.offsets, rows: o.rows });
  sameDType(op, { logits }, FLOATS);
  const V = logits.shape[logits.shape.length - 1] ?? 0;
  positive(op, 'vocabulary', V);
  const R = logits.numel / V;
  const { temperature = 1, topK = 0, topP = 1, seed = 0 } = o;
  if (!Number.isFinite(temperature)) throw new Error(`${op}: temperature must be a finite number`);
  if (!Number.isInteger(topK) || topK < 0) throw new Error(`${op}: topK must be an integer >= 0, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`${op}: topP must be in (0, 1], got ${topP}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${op}: seed must be an integer in [0, 2^53), got ${seed}`);
  if (o.offsets) {
    if (o.offsets.dtype !== 'i32') throw new Error(`${op}: offsets must be i32`);
    expectNumel(op, 'offsets', o.offsets, R);
  }
  if (o.rows) {
    if (o.rows.dtype !== 'i32') throw new Error(`${op}: rows must be i32`);
    if (o.rows.numel !== R) throw new Error(`${op}: rows has ${o.rows.numel} elements, expected one per row (${R})`);
  }
  const y = output(op, o.out, logits.shape.slice(0, -1), 'i32', dev);
  native.sample(y.native, logits.native, o.offsets?.native ?? null, o.rows?.native ?? null, R, V, temperature, topK, topP, Math.floor(seed / 2 ** 32), seed % 2 ** 32);
  return y;
}

/** Fill `t` in place with uniform values in [low, high) drawn on its device; the same seed gives the
 * same values on any device. */
export function fillUniform(t: Tensor, o: { seed?: number; low?: number; high?: number } = {}): Tensor {
  const op = 'fillUniform';
  sameDevice(op, { t });
  sameDType(op, { t }, MATMUL_FLOATS);
  const { seed = 0, low = -1, high = 1 } = o;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`${op}: seed must be an integer in [0, 2^53), got ${seed}`);
  if (!(high >= low)) throw new Error(`${op}: high (${high}) < low (${low})`);
  native.fillUniform(t.native, t.numel, Math.floor(seed / 2 ** 32), seed % 2 ** 32, low, high);
  return t;
}

// ------------------------------------------------------------------ training
// Backward kernels, the fused classifier and AdamW (native/core/kernels.h, section "training"). Gradients
// have the dtype of the activations; "+=" ops add into what their gradient tensors hold (zero them once).

function f32Tensor(op: string, name: string, t: Tensor, n: number): void {
  if (t.dtype !== 'f32') throw new Error(`${op}: ${name} must be f32, got ${t.dtype}`);
  if (t.numel !== n) throw new Error(`${op}: ${name} has ${t.numel} elements, expected ${n}`);
}

/**
 * Column sums of x [R, C] (leading dimensions flattened into R) -> [C], f32 accumulation; with
 * `accumulate`, added into `out` (the bias gradient).
 */
export function sumRows(x: Tensor, o: { out?: Tensor; accumulate?: boolean } = {}): Tensor {
  const op = 'sumRows';
  const dev = sameDevice(op, { x, out: o.out });
  const dt = sameDType(op, { x, out: o.out }, FLOATS);
  if (x.shape.length < 2) throw new Error(`${op}: x must be at least 2-D [R, C], got [${x.shape.join(', ')}]`);
  const C = x.shape[x.shape.length - 1]!;
  positive(op, 'columns', C);
  const R = x.numel / C;
  if (o.accumulate && !o.out) throw new Error(`${op}: accumulate needs an out tensor to add into`);
  const y = output(op, o.out, [C], dt, dev);
  native.sumRows(x.native, y.native, R, C, o.accumulate ?? false);
  return y;
}

/**
 * LayerNorm backward (mean, rstd: f32 [R] from `layernorm`): dx, dgamma, dbeta += their gradients. With `dxSum`
 * ([C]), also dxSum (+)= the rows' sum of the dx it leaves (dxSumAccumulate: +=): the gradient of the bias of
 * the linear layer whose output the normed stream adds, in the same pass (sumRows(dx) within f32 order).
 */
export function layernormBackward(
  dy: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor,
  g: { dx: Tensor; dgamma: Tensor; dbeta: Tensor; dxSum?: Tensor; dxSumAccumulate?: boolean },
): void {
  const op = 'layernormBackward';
  const { dx, dgamma, dbeta, dxSum } = g;
  sameDevice(op, { dy, x, gamma, mean, rstd, dx, dgamma, dbeta, dxSum });
  sameDType(op, { dy, x, gamma, dx, dgamma, dbeta, dxSum }, FLOATS);
  if (gamma.shape.length !== 1) throw new Error(`${op}: gamma must be 1-D`);
  const C = gamma.shape[0]!;
  positive(op, 'columns', C);
  const R = rowsCols(op, x, C);
  expectShape(op, 'dy', dy, x.shape);
  expectShape(op, 'dx', dx, x.shape);
  expectShape(op, 'dgamma', dgamma, [C]);
  expectShape(op, 'dbeta', dbeta, [C]);
  if (dxSum) expectShape(op, 'dxSum', dxSum, [C]);
  else if (g.dxSumAccumulate) throw new Error(`${op}: dxSumAccumulate needs a dxSum to add into`);
  f32Tensor(op, 'mean', mean, R);
  f32Tensor(op, 'rstd', rstd, R);
  native.layernormBackward(dy.native, x.native, gamma.native, mean.native, rstd.native, dx.native, dgamma.native, dbeta.native, R, C, dxSum?.native, g.dxSumAccumulate ?? false);
}

/** RMSNorm backward (rstd: f32 [R] from `rmsnorm`): dx, dw += their gradients. */
export function rmsnormBackward(dy: Tensor, x: Tensor, weight: Tensor, rstd: Tensor, g: { dx: Tensor; dw: Tensor }): void {
  const op = 'rmsnormBackward';
  const { dx, dw } = g;
  sameDevice(op, { dy, x, weight, rstd, dx, dw });
  sameDType(op, { dy, x, weight, dx, dw }, FLOATS);
  if (weight.shape.length !== 1) throw new Error(`${op}: weight must be 1-D`);
  const C = weight.shape[0]!;
  positive(op, 'columns', C);
  const R = rowsCols(op, x, C);
  expectShape(op, 'dy', dy, x.shape);
  expectShape(op, 'dx', dx, x.shape);
  expectShape(op, 'dw', dw, [C]);
  f32Tensor(op, 'rstd', rstd, R);
  native.rmsnormBackward(dy.native, x.native, weight.native, rstd.native, dx.native, dw.native, R, C);
}

/**
 * dx = dy * gelu'(x) (tanh form); `out` may be dy itself. With `biasGrad` ([C], C the last dimension of x),
 * also the gradient of the bias added before the GELU, biasGrad (+)= the rows' sum of dx (accumulate: +=),
 * in the same pass over dx (sumRows(dx) within f32 order).
 */
export function geluBackward(x: Tensor, dy: Tensor, out?: Tensor, o: { biasGrad?: Tensor; accumulate?: boolean } = {}): Tensor {
  const op = 'geluBackward';
  const dev = sameDevice(op, { x, dy, biasGrad: o.biasGrad });
  const dt = sameDType(op, { x, dy, biasGrad: o.biasGrad }, FLOATS);
  expectShape(op, 'dy', dy, x.shape);
  if (o.accumulate && !o.biasGrad) throw new Error(`${op}: accumulate needs a biasGrad to add into`);
  const dx = output(op, out, x.shape, dt, dev);
  if (!o.biasGrad) {
    native.geluBackward(x.native, dy.native, dx.native, x.numel);
    return dx;
  }
  const C = x.shape[x.shape.length - 1] ?? 1;
  positive(op, 'columns', C);
  expectShape(op, 'biasGrad', o.biasGrad, [C]);
  native.geluBackwardBias(x.native, dy.native, dx.native, o.biasGrad.native, x.numel / C, C, o.accumulate ?? false);
  return dx;
}

/** Backward of siluGate: dgate, dup (=) laid out like gate and up (rows `inStride` apart); dy is [rows, cols]. */
export function siluGateBackward(gate: Tensor, up: Tensor, dy: Tensor, o: { dgate: Tensor; dup: Tensor; rows: number; cols: number; inStride?: number }): void {
  const op = 'siluGateBackward';
  const { dgate, dup, rows: R, cols: F } = o;
  sameDevice(op, { gate, up, dy, dgate, dup });
  sameDType(op, { gate, up, dy, dgate, dup }, FLOATS);
  positive(op, 'cols', F);
  if (!Number.isInteger(R) || R < 0) throw new Error(`${op}: rows must be an integer >= 0, got ${R}`);
  const st = o.inStride ?? F;
  if (!Number.isInteger(st) || st < F) throw new Error(`${op}: inStride ${st} < cols ${F}`);
  const reach = R ? (R - 1) * st + F : 0;
  for (const [n, t] of Object.entries({ gate, up, dgate, dup })) expectNumel(op, n, t, reach);
  if (dy.numel !== R * F) throw new Error(`${op}: dy has ${dy.numel} elements, expected rows x cols = ${R * F}`);
  native.siluGateBackward(gate.native, up.native, dy.native, dgate.native, dup.native, R, F, st);
}

/** Backward of rope, in place on dx: the inverse rotation (same options as `rope`). */
export function ropeBackward(dx: Tensor, pos: Tensor, o: RopeOptions): Tensor {
  const g = ropeGeometry('ropeBackward', dx, 'dx', pos, o);
  native.ropeBackward(dx.native, pos.native, g.R, o.heads, o.headDim, g.st, g.rot, o.theta ?? 10000, g.freqs?.native ?? null);
  return dx;
}

export interface AttentionTrainShape {
  batch: number;
  tokens: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
  /** element strides [batch, token] of q (and dq); default contiguous [B, T, Hq, D] */
  qStrides?: [number, number];
  /** element strides [batch, token] of k, v (and dk, dv); default contiguous [B, T, Hkv, D] */
  kvStrides?: [number, number];
  /** 1/sqrt(headDim) by default */
  scale?: number;
}

interface AttnGeometry {
  B: number; T: number; Hq: number; Hkv: number; D: number; qB: number; qT: number; kB: number; kT: number; scale: number;
  qReach: number; kvReach: number;
}

function attnGeometry(op: string, o: AttentionTrainShape): AttnGeometry {
  const { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D } = o;
  for (const [n, val] of Object.entries({ batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D })) positive(op, n, val);
  if (Hq % Hkv) throw new Error(`${op}: headsQ (${Hq}) must be a multiple of headsKv (${Hkv})`);
  const [qB, qT] = o.qStrides ?? [T * Hq * D, Hq * D];
  const [kB, kT] = o.kvStrides ?? [T * Hkv * D, Hkv * D];
  for (const [n, val] of Object.entries({ 'q batch stride': qB, 'q token stride': qT, 'kv batch stride': kB, 'kv token stride': kT }))
    if (!Number.isInteger(val) || val < 0) throw new Error(`${op}: ${n} must be an integer >= 0, got ${val}`);
  if (qT < Hq * D) throw new Error(`${op}: q token stride ${qT} < headsQ x headDim = ${Hq * D}`);
  if (kT < Hkv * D) throw new Error(`${op}: kv token stride ${kT} < headsKv x headDim = ${Hkv * D}`);
  const scale = o.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new Error(`${op}: scale must be finite, got ${scale}`);
  return { B, T, Hq, Hkv, D, qB, qT, kB, kT, scale, qReach: (B - 1) * qB + (T - 1) * qT + Hq * D, kvReach: (B - 1) * kB + (T - 1) * kT + Hkv * D };
}

/** Causal attention for training: out [B, T, Hq, D] and lse f32 [B, Hq, T] (the softmax's log-normalizer, for the backward). */
export function attentionForward(q: Tensor, k: Tensor, v: Tensor, o: AttentionTrainShape & { out?: Tensor; lse?: Tensor }): { out: Tensor; lse: Tensor } {
  const op = 'attentionForward';
  const dev = sameDevice(op, { q, k, v, out: o.out, lse: o.lse });
  const dt = sameDType(op, { q, k, v }, FLOATS);
  const g = attnGeometry(op, o);
  expectNumel(op, 'q', q, g.qReach);
  expectNumel(op, 'k', k, g.kvReach);
  expectNumel(op, 'v', v, g.kvReach);
  const out = output(op, o.out, [g.B, g.T, g.Hq, g.D], dt, dev);
  let lse = o.lse;
  if (lse) {
    if (lse.dtype !== 'f32') throw new Error(`${op}: lse must be f32, got ${lse.dtype}`);
    expectShape(op, 'lse', lse, [g.B, g.Hq, g.T]);
  } else lse = Tensor.empty([g.B, g.Hq, g.T], { dtype: 'f32', device: dev });
  native.attentionForward(q.native, k.native, v.native, out.native, lse.native, g.B, g.T, g.Hq, g.Hkv, g.D, g.qB, g.qT, g.kB, g.kT, g.scale);
  return { out, lse };
}

/** Elements of f32 workspace attentionBackward needs (B * Hq * T * (D + 1)). */
export function attentionBackwardWorkspace(batch: number, tokens: number, headsQ: number, headDim: number): number {
  return batch * headsQ * tokens * (headDim + 1);
}

/**
 * Attention backward from the forward's out and lse: dq, dk, dv (=), laid out with qStrides / kvStrides
 * like q, k, v (so they may be views of one fused qkv gradient), and not overlapping the inputs. A
 * workspace (f32, attentionBackwardWorkspace elements) is allocated when not given.
 */
export function attentionBackward(
  q: Tensor, k: Tensor, v: Tensor, out: Tensor, dout: Tensor, lse: Tensor,
  o: AttentionTrainShape & { dq: Tensor; dk: Tensor; dv: Tensor; workspace?: Tensor },
): void {
  const op = 'attentionBackward';
  const { dq, dk, dv } = o;
  const dev = sameDevice(op, { q, k, v, out, dout, lse, dq, dk, dv, workspace: o.workspace });
  sameDType(op, { q, k, v, out, dout, dq, dk, dv }, FLOATS);
  const g = attnGeometry(op, o);
  for (const [n, t] of Object.entries({ q, dq })) expectNumel(op, n, t, g.qReach);
  for (const [n, t] of Object.entries({ k, v, dk, dv })) expectNumel(op, n, t, g.kvReach);
  expectShape(op, 'out', out, [g.B, g.T, g.Hq, g.D]);
  expectShape(op, 'dout', dout, [g.B, g.T, g.Hq, g.D]);
  if (lse.dtype !== 'f32') throw new Error(`${op}: lse must be f32, got ${lse.dtype}`);
  expectShape(op, 'lse', lse, [g.B, g.Hq, g.T]);
  const need = attentionBackwardWorkspace(g.B, g.T, g.Hq, g.D);
  let ws = o.workspace;
  if (ws) {
    if (ws.dtype !== 'f32') throw new Error(`${op}: workspace must be f32, got ${ws.dtype}`);
    expectNumel(op, 'workspace', ws, need);
  } else ws = Tensor.empty([need], { dtype: 'f32', device: dev });
  try {
    native.attentionBackward(q.native, k.native, v.native, out.native, dout.native, lse.native, dq.native, dk.native, dv.native, ws.native,
      g.B, g.T, g.Hq, g.Hkv, g.D, g.qB, g.qT, g.kB, g.kT, g.scale);
  } finally {
    // An own workspace goes back to the cache at once: blocks are reused in stream order
    // (native/core/allocator.h), and a graph being captured keeps the blocks it uses.
    if (!o.workspace) ws.dispose();
  }
}

/** dtable[ids[n], :] += scale * dout[n, :] (scale default 1; rows of one id summed in n order, then scaled); ids i32 [...] (N of them; out-of-range ids add nothing), dout [...ids, C] or [N, C], dtable [V, C]. */
export function embeddingBackward(ids: Tensor, dout: Tensor, dtable: Tensor, o: { scale?: number } = {}): void {
  const op = 'embeddingBackward';
  const scale = o.scale ?? 1;
  if (!Number.isFinite(scale)) throw new Error(`${op}: scale must be a finite number, got ${scale}`);
  sameDevice(op, { ids, dout, dtable });
  if (ids.dtype !== 'i32') throw new Error(`${op}: ids must be i32, got ${ids.dtype}`);
  sameDType(op, { dout, dtable }, FLOATS);
  if (dtable.shape.length !== 2) throw new Error(`${op}: dtable must be 2-D [V, C]`);
  const [V, C] = dtable.shape as [number, number];
  positive(op, 'V', V);
  positive(op, 'C', C);
  if (dout.shape[dout.shape.length - 1] !== C || dout.numel !== ids.numel * C)
    throw new Error(`${op}: dout has shape [${dout.shape.join(', ')}], expected [${ids.numel}, ${C}] (ids [${ids.shape.join(', ')}], dtable [${V}, ${C}])`);
  native.embeddingBackward(ids.native, dout.native, dtable.native, ids.numel, V, C, scale);
}

export interface CrossEntropyOptions {
  /** f32 [R] */
  losses?: Tensor;
  /** the logits' gradient [R, V], or 'inplace' to write it over the logits */
  dlogits?: Tensor | 'inplace';
  /** rows whose target is this (or outside [0, V)) have loss 0 and a zero gradient; default -100 */
  ignoreIndex?: number;
  /** the gradient's scale (e.g. 1 / number of counted rows); default 1 */
  dscale?: number;
  /**
   * The vocabulary: only the first `vocab` of each row's L elements are logits (default: all of them).
   * Rows padded to a multiple of 64 (GPT-2's 50257 to 50304, as llm.c does) give the matmuls over the
   * gradient aligned rows; the padding's gradient is written as 0.
   */
  vocab?: number;
}

/**
 * Per-row cross-entropy of logits [R, L] (leading dimensions flattened into R; the first `vocab` of each
 * row are the logits) against targets i32 (R of them, any shape); returns the losses (f32 [R]).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, o: CrossEntropyOptions = {}): Tensor {
  const op = 'crossEntropy';
  const d = o.dlogits === 'inplace' ? logits : o.dlogits;
  const dev = sameDevice(op, { logits, targets, losses: o.losses, dlogits: d });
  sameDType(op, { logits, dlogits: d }, FLOATS);
  if (logits.shape.length < 1) throw new Error(`${op}: logits must be [R, V], got a scalar`);
  const L = logits.shape[logits.shape.length - 1]!;
  positive(op, 'row length', L);
  const V = o.vocab ?? L;
  if (!Number.isInteger(V) || V < 1 || V > L) throw new Error(`${op}: vocab must be an integer in [1, ${L}] (the row length), got ${V}`);
  const R = logits.numel / L;
  if (targets.dtype !== 'i32') throw new Error(`${op}: targets must be i32, got ${targets.dtype}`);
  if (targets.numel !== R) throw new Error(`${op}: targets has ${targets.numel} elements, expected ${R} (one per row of logits [${logits.shape.join(', ')}])`);
  if (d) expectShape(op, 'dlogits', d, logits.shape);
  const ignore = o.ignoreIndex ?? -100;
  if (!Number.isInteger(ignore) || ignore < -(2 ** 31) || ignore >= 2 ** 31) throw new Error(`${op}: ignoreIndex must be an i32, got ${ignore}`);
  const dscale = o.dscale ?? 1;
  if (!Number.isFinite(dscale)) throw new Error(`${op}: dscale must be finite, got ${dscale}`);
  const losses = output(op, o.losses, [R], 'f32', dev);
  native.crossEntropy(logits.native, targets.native, losses.native, d?.native ?? null, R, V, ignore, dscale, L);
  return losses;
}

/** sum of x^2 over all elements, f32 [1] (summed in f32 in a fixed order). */
export function sumSquares(x: Tensor, out?: Tensor): Tensor {
  const op = 'sumSquares';
  const dev = sameDevice(op, { x, out });
  sameDType(op, { x }, FLOATS);
  const y = output(op, out, [1], 'f32', dev);
  native.sumSquares(x.native, y.native, x.numel);
  return y;
}

export interface AdamwTensors {
  /** f32 [n]: the weights the optimizer owns */
  master: Tensor;
  /** [n] of grad's dtype, receives dtype(master); absent when the model computes on master itself */
  param?: Tensor;
  grad: Tensor;
  /** f32 [n] moments */
  m: Tensor;
  v: Tensor;
}

export interface AdamwOptions {
  /** elements [0, nDecay) get weight decay */
  nDecay: number;
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** the gradient is multiplied by this first (e.g. clipping, loss-scale undo) */
  gradScale?: number;
  /** 1 on the first update */
  step: number;
}

/** One fused AdamW update of a flat parameter buffer, in place on master, m, v (and param). */
export function adamw(t: AdamwTensors, o: AdamwOptions): void {
  const op = 'adamw';
  const { master, param, grad, m, v } = t;
  sameDevice(op, { master, param, grad, m, v });
  const dt = sameDType(op, { grad, param }, FLOATS);
  const n = master.numel;
  for (const [name, x] of Object.entries({ master, m, v })) f32Tensor(op, name, x, n);
  if (grad.numel !== n) throw new Error(`${op}: grad has ${grad.numel} elements, master ${n}`);
  if (param && param.numel !== n) throw new Error(`${op}: param has ${param.numel} elements, master ${n}`);
  if (param && param.dtype !== dt) throw new Error(`${op}: param is ${param.dtype} but grad is ${dt}`);
  const { nDecay, lr, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weightDecay = 0.1, gradScale = 1, step } = o;
  if (!Number.isInteger(nDecay) || nDecay < 0 || nDecay > n) throw new Error(`${op}: nDecay must be an integer in [0, ${n}], got ${nDecay}`);
  if (!Number.isInteger(step) || step < 1 || step >= 2 ** 31) throw new Error(`${op}: step must be an integer >= 1, got ${step}`);
  for (const [name, x] of Object.entries({ lr, eps, weightDecay, gradScale }))
    if (!Number.isFinite(x)) throw new Error(`${op}: ${name} must be finite, got ${x}`);
  for (const [name, b] of Object.entries({ beta1, beta2 }))
    if (!(b >= 0 && b < 1)) throw new Error(`${op}: ${name} must be in [0, 1), got ${b}`);
  native.adamw(master.native, param?.native ?? null, grad.native, m.native, v.native, n, nDecay, lr, beta1, beta2, eps, weightDecay, gradScale, step);
}

export { numelOf };
