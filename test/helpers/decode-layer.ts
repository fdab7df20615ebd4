// One GPT-2 decode layer's inputs, drawn from a seed (the same values on any device), and the layer run
// two ways: ops.decodeLayerGpt2 (one kernel on a GPU) and the ops it is defined as, apart, in the order
// Transformer.decodeLayers runs them. Shared by test/unit/decode-layer.test.ts and
// test/gpu/decode-layer.gpu.test.ts.
import { Tensor, ops, type DType } from '../../src/index.js';
import { uniformArray } from '../../src/random.js';

export interface LayerShape {
  B: number;
  H: number;
  D: number;
  maxLen: number;
  /** where each sequence's new token goes; lens = pos + 1 */
  pos: number[];
  /** cache strides [batch, token]; default contiguous */
  kvStrides?: [number, number];
}

export interface LayerInputs {
  x: Tensor;
  w: ops.Gpt2LayerWeights;
  kCache: Tensor;
  vCache: Tensor;
  pos: Tensor;
  lens: Tensor;
  dispose(): void;
}

export const strides = (s: LayerShape): [number, number] => s.kvStrides ?? [s.maxLen * s.H * s.D, s.H * s.D];

/**
 * Random inputs: x in [-2, 2], norms' gains in [0.5, 1.5], biases in [-0.2, 0.2], weights scaled by
 * 1/sqrt(in), caches in [-1, 1] with the rows the layer writes (pos[b]) poisoned (NaN), so a row it fails
 * to write before attention reads it shows.
 */
export function makeLayer(device: string, dtype: DType, s: LayerShape, seed: number): LayerInputs {
  const C = s.H * s.D;
  let k = 0;
  const r = (shape: number[], low: number, high: number) =>
    Tensor.from(uniformArray(shape.reduce((a, b) => a * b, 1), seed * 7919 + 31 * ++k, low, high), shape, { dtype, device });
  const ws = 1 / Math.sqrt(C);
  const [kB, kT] = strides(s);
  const cacheN = (s.B - 1) * kB + (s.maxLen - 1) * kT + C;
  const cache = () => {
    const v = uniformArray(cacheN, seed * 7919 + 31 * ++k, -1, 1);
    s.pos.forEach((p, b) => {
      if (p >= 0 && p < s.maxLen) v.fill(NaN, b * kB + p * kT, b * kB + p * kT + C);
    });
    return Tensor.from(v, [cacheN], { dtype, device });
  };
  const inp: LayerInputs = {
    x: r([s.B, C], -2, 2),
    w: {
      norm1: r([C], 0.5, 1.5), norm1Bias: r([C], -0.2, 0.2),
      qkv: r([3 * C, C], -ws, ws), qkvBias: r([3 * C], -0.2, 0.2),
      out: r([C, C], -ws, ws), outBias: r([C], -0.2, 0.2),
      norm2: r([C], 0.5, 1.5), norm2Bias: r([C], -0.2, 0.2),
      up: r([4 * C, C], -ws, ws), upBias: r([4 * C], -0.2, 0.2),
      down: r([C, 4 * C], -ws / 2, ws / 2), downBias: r([C], -0.2, 0.2),
    },
    kCache: cache(),
    vCache: cache(),
    pos: Tensor.from(s.pos, [s.B], { dtype: 'i32', device }),
    lens: Tensor.from(s.pos.map((p) => p + 1), [s.B], { dtype: 'i32', device }),
    dispose() {
      [inp.x, inp.kCache, inp.vCache, inp.pos, inp.lens, ...Object.values(inp.w)].forEach((t) => t?.dispose());
    },
  };
  return inp;
}

/** The layer as ops apart (Transformer.decodeLayers' GPT-2 decode path, one layer): x and the caches updated. */
export function runApart(inp: LayerInputs, s: LayerShape, eps = 1e-5): void {
  const { B, H, D, maxLen } = s;
  const C = H * D;
  const kvStrides = strides(s);
  const { w } = inp;
  const qkv = ops.layernormLinear(inp.x, w.norm1, w.norm1Bias!, w.qkv, { bias: w.qkvBias, eps });
  ops.ropeKvWrite(qkv, inp.kCache, inp.vCache, inp.pos, { batch: B, headsQ: H, headsKv: H, headDim: D, maxLen, qkvStride: 3 * C, kvStrides });
  const att = ops.attentionDecode(qkv, inp.kCache, inp.vCache, inp.lens, { batch: B, headsQ: H, headsKv: H, headDim: D, maxLen, qStride: 3 * C, kvStrides });
  const att2 = att.reshape([B, C]);
  ops.matmul(att2, w.out, { transB: true, bias: w.outBias, beta: 1, out: inp.x });
  const a = ops.layernormLinear(inp.x, w.norm2, w.norm2Bias!, w.up, { bias: w.upBias, eps, gelu: true });
  ops.matmul(a, w.down, { transB: true, bias: w.downBias, beta: 1, out: inp.x });
  [qkv, att, att2, a].forEach((t) => t.dispose());
}

/** The layer as the one op. */
export function runFused(inp: LayerInputs, s: LayerShape, counter?: Tensor, eps = 1e-5): void {
  ops.decodeLayerGpt2(inp.x, inp.w, inp.kCache, inp.vCache, inp.pos, inp.lens, {
    heads: s.H, headDim: s.D, maxLen: s.maxLen, kvStrides: s.kvStrides, eps, counter,
  });
}

/** The values a run leaves: x, and each sequence's new cache rows (k, then v). */
export function outputs(inp: LayerInputs, s: LayerShape): { x: Float32Array; kv: Float32Array } {
  const C = s.H * s.D;
  const [kB, kT] = strides(s);
  const k = inp.kCache.toArray(), v = inp.vCache.toArray();
  const kv: number[] = [];
  s.pos.forEach((p, b) => {
    if (p < 0 || p >= s.maxLen) return;
    kv.push(...k.subarray(b * kB + p * kT, b * kB + p * kT + C));
    kv.push(...v.subarray(b * kB + p * kT, b * kB + p * kT + C));
  });
  return { x: inp.x.toArray() as Float32Array, kv: Float32Array.from(kv) };
}
