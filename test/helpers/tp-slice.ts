// Tensor-parallel training tests (test/unit/train-tp.test.ts, test/gpu/train-tp.gpu.test.ts): the part of
// one device's tensor a tp rank must hold, cut by index arithmetic, independently of src/models/tp.ts.
import type { ModelConfig } from '../../src/io/config.js';

/** Rows `ranges` of a row-major [R, C] array, in order. */
function rowsOf(a: Float32Array, C: number, ranges: [number, number][]): Float32Array {
  return Float32Array.from(ranges.flatMap(([r0, r1]) => Array.from(a.subarray(r0 * C, r1 * C))));
}
/** Columns [c0, c1) of a row-major [R, C] array. */
function colsOf(a: Float32Array, C: number, c0: number, c1: number): Float32Array {
  const R = a.length / C, out = new Float32Array(R * (c1 - c0));
  for (let r = 0; r < R; r++) out.set(a.subarray(r * C + c0, r * C + c1), r * (c1 - c0));
  return out;
}

/**
 * Tp rank `rank` of `size`'s part of one device's tensor `key` (Megatron-LM's layout): q, k and v rows of
 * its heads (qkv and its bias), the out projection's columns of them, the MLP's rows of its features (gate
 * and up in LLaMA's stacked [2F, C]) and down's columns; the rest whole.
 */
export function tpSlice(cfg: ModelConfig, key: string, whole: Float32Array, rank: number, size: number): Float32Array {
  const { hidden: C, heads: H, kvHeads: KV, headDim: D, intermediate: F } = cfg;
  const hq = H / size, kv = KV / size, f = F / size;
  const k = key.split('.').pop()!;
  const q: [number, number] = [rank * hq * D, (rank + 1) * hq * D];
  const heads: [number, number][] = [q, [(H + rank * kv) * D, (H + (rank + 1) * kv) * D], [(H + KV + rank * kv) * D, (H + KV + (rank + 1) * kv) * D]];
  const feats: [number, number] = [rank * f, (rank + 1) * f];
  if (!key.startsWith('layers.')) return whole;
  switch (k) {
    case 'qkv': return rowsOf(whole, C, heads);
    case 'qkvBias': return rowsOf(whole, 1, heads);
    case 'out': return colsOf(whole, H * D, q[0], q[1]);
    case 'up': return rowsOf(whole, C, cfg.family === 'gpt2' ? [feats] : [feats, [F + feats[0], F + feats[1]]]);
    case 'upBias': return rowsOf(whole, 1, [feats]);
    case 'down': return colsOf(whole, F, feats[0], feats[1]);
    default: return whole;
  }
}

