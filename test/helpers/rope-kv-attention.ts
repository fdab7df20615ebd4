// ops.ropeKvAttentionDecode against what it is defined as (ropeKvWrite on a copy of qkv's rows, then
// attentionDecode), on one device, same inputs, in and out of decode's frozen weights: the CPU test
// (test/unit/rope-kv-attention.test.ts) and the GPU test (test/gpu/decode.gpu.test.ts) hold the outputs and both
// caches to the same bits.
import type { DType } from '../../src/dtype.js';
import { Tensor, ops, withFrozenWeights } from '../../src/index.js';
import { uniformArray } from '../../src/random.js';
import { poisoned, randT } from './cases.js';

export interface FusedDecodeCase {
  Hq: number;
  Hkv: number;
  D: number;
  /** rotated dims (0: none, GPT-2) */
  rot: number;
  /** rope's inverse frequencies as a table (else from theta) */
  table?: boolean;
  maxLen: number;
  /** the new token's position a sequence (may be -1 or >= maxLen: written nowhere) */
  pos: number[];
  /** keys attended a sequence (1..maxLen) */
  lens: number[];
  /** elements of padding after each qkv row */
  pad?: number;
}

export interface FusedDecodeResult {
  /** [out, k cache, v cache, qkv after] of the fused op, then of the ops apart (qkv: the rotated copy) */
  fused: Float32Array[];
  apart: Float32Array[];
  /** the fused op outside decode's frozen weights (on a GPU never decode_split's PRE form) */
  fusedThawed: Float32Array[];
  /** qkv before either */
  qkv: Float32Array;
}

/** Runs both on `device`; `counter` gives the fused op (and the apart attention) the caches' counters. */
export function fusedDecode(device: string, dt: DType, c: FusedDecodeCase, seed: number, counter = false): FusedDecodeResult {
  const B = c.pos.length;
  const { Hq, Hkv, D, maxLen } = c;
  const W3 = (Hq + 2 * Hkv) * D, qs = W3 + (c.pad ?? 0);
  const pos = Tensor.from(c.pos, [B], { dtype: 'i32', device });
  const lens = Tensor.from(c.lens, [B], { dtype: 'i32', device });
  const freqs = c.rot && c.table ? Tensor.from(uniformArray(c.rot / 2, seed + 9, 0.001, 1), [c.rot / 2], { dtype: 'f32', device }) : undefined;
  const rope = c.rot ? { theta: 500000, rotaryDim: c.rot, freqs } : undefined;
  const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
  const run = (fused: boolean, frozen: boolean) => {
    const qkv = randT([B, qs], dt, device, seed).t;
    const kc = randT([B, maxLen, Hkv, D], dt, device, seed + 1).t;
    const vc = randT([B, maxLen, Hkv, D], dt, device, seed + 2).t;
    const out = poisoned([B, Hq, D], dt, device);
    const cnt = counter ? Tensor.zeros([B * Hq], { dtype: 'i32', device }) : undefined;
    // (the fused op as decode runs it, under frozen weights: a GPU then runs decode_split's PRE form where it applies,
    // unless PARALLM_ATTN_PRE=0)
    const go = () => {
      if (fused) ops.ropeKvAttentionDecode(qkv, kc, vc, pos, lens, { ...shape, qkvStride: qs, rope, out, counter: cnt });
      else {
        ops.ropeKvWrite(qkv, kc, vc, pos, { ...shape, qkvStride: qs, rope });
        ops.attentionDecode(qkv, kc, vc, lens, { ...shape, qStride: qs, out, counter: cnt });
      }
    };
    if (frozen) withFrozenWeights(go);
    else go();
    const r = [out, kc, vc, qkv].map((t) => t.toArray() as Float32Array);
    if (cnt && !Array.from(cnt.toArray()).every((x) => x === 0)) throw new Error(`seed ${seed}: counters not rearmed (${fused ? 'fused' : 'apart'}${frozen ? ', frozen' : ''})`);
    [qkv, kc, vc, out, cnt].forEach((t) => t?.dispose());
    return r;
  };
  const qkv0 = randT([B, qs], dt, device, seed);
  const res = { fused: run(true, true), apart: run(false, false), fusedThawed: run(true, false), qkv: qkv0.v };
  [qkv0.t, pos, lens, freqs].forEach((t) => t?.dispose());
  return res;
}

/** Elements where a and b differ (NaN counts as differing). */
export function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let n = a.length === b.length ? 0 : Math.max(a.length, b.length);
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (!(a[i] === b[i])) n++;
  return n;
}

/** The cases both tests run: MHA, GQA, MQA; no rotation, full, partial (a tail), a table; odd positions. */
export const fusedDecodeCases: (FusedDecodeCase & { name: string })[] = [
  { name: 'LLaMA-like MHA, full rotation', Hq: 4, Hkv: 4, D: 64, rot: 64, maxLen: 24, pos: [5, 23, 0], lens: [6, 24, 1] },
  { name: 'GPT-2-like, no rotation, a padded row', Hq: 3, Hkv: 3, D: 64, rot: 0, maxLen: 17, pos: [16, 2], lens: [17, 3], pad: 8 },
  { name: 'GQA 8/2, a table, the new key mid-context and past it', Hq: 8, Hkv: 2, D: 128, rot: 128, table: true, maxLen: 40, pos: [10, 35, 7], lens: [30, 20, 8] },
  { name: 'MQA 6/1 (two head blocks a kv head), partial rotation', Hq: 6, Hkv: 1, D: 80, rot: 32, maxLen: 33, pos: [32, 4], lens: [33, 5] },
  { name: 'positions outside the cache (rotated, written nowhere)', Hq: 4, Hkv: 2, D: 64, rot: 64, maxLen: 12, pos: [-1, 12, 3], lens: [5, 12, 4] },
  { name: 'unaligned head size, odd rotation pairs', Hq: 2, Hkv: 1, D: 20, rot: 12, maxLen: 9, pos: [8], lens: [9] },
];
