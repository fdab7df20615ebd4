// ops.decodeLayerGpt2 on the CPU backend is defined as the ops apart (layernormLinear, ropeKvWrite,
// attentionDecode, matmul with beta = 1, layernormLinear with GELU, matmul with beta = 1): the same bits
// for x and the cache rows it writes, on fresh random inputs, B 1..4, several positions, f32 and bf16,
// contiguous and padded caches; and its argument checks. The CUDA kernel runs on the host emulation in
// decode-layer-emu.test.ts and on a GPU in test/gpu/decode-layer.gpu.test.ts.
import { describe, expect, it } from 'vitest';
import { Tensor, ops, type DType } from '../../src/index.js';
import { makeLayer, outputs, runApart, runFused, type LayerShape } from '../helpers/decode-layer.js';

const dev = 'cpu:0';
const seed = () => Math.floor(Math.random() * 1e6);

const CASES: LayerShape[] = [
  { B: 1, H: 2, D: 16, maxLen: 8, pos: [0] },
  { B: 1, H: 3, D: 64, maxLen: 70, pos: [69] },
  { B: 2, H: 2, D: 32, maxLen: 40, pos: [5, 39] },
  { B: 3, H: 1, D: 128, maxLen: 33, pos: [32, 0, 17] },
  { B: 4, H: 4, D: 8, maxLen: 300, pos: [299, 1, 257, 128] },
  { B: 2, H: 2, D: 16, maxLen: 12, pos: [3, 11], kvStrides: [12 * 40 + 8, 40] },  // padded cache rows
];

describe('decodeLayerGpt2 on the CPU: the ops apart', () => {
  for (const dt of ['f32', 'bf16'] as DType[])
    for (const s of CASES)
      it(`[${dt}] B${s.B} H${s.H} D${s.D} maxLen ${s.maxLen} pos ${s.pos.join(',')}${s.kvStrides ? ' strided' : ''}`, () => {
        const sd = seed();
        const a = makeLayer(dev, dt, s, sd), f = makeLayer(dev, dt, s, sd);
        try {
          const x0 = Array.from(f.x.toArray());
          runApart(a, s);
          runFused(f, s);
          const oa = outputs(a, s), of = outputs(f, s);
          expect(Array.from(of.x), 'the layer changed x').not.toEqual(x0);
          expect(of.x.every(Number.isFinite), `seed ${sd}`).toBe(true);
          expect(of.kv.every(Number.isFinite), `seed ${sd}`).toBe(true);
          expect(Array.from(of.x), `seed ${sd}`).toEqual(Array.from(oa.x));
          expect(Array.from(of.kv), `seed ${sd}`).toEqual(Array.from(oa.kv));
          // The rest of the caches as they were (the poisoned rows aside, both runs drew the same).
          expect(Array.from(f.kCache.toArray()).map(String)).toEqual(Array.from(a.kCache.toArray()).map(String));
        } finally {
          a.dispose();
          f.dispose();
        }
      });

  it('takes a counter (unused on the CPU) and null biases of the projections', () => {
    const s: LayerShape = { B: 2, H: 2, D: 16, maxLen: 10, pos: [4, 9] };
    const sd = seed();
    const a = makeLayer(dev, 'f32', s, sd), f = makeLayer(dev, 'f32', s, sd);
    const counter = Tensor.zeros([1], { dtype: 'i32', device: dev });
    try {
      for (const inp of [a, f]) {
        for (const k of ['qkvBias', 'outBias', 'upBias', 'downBias'] as const) inp.w[k]?.dispose();
        inp.w = { ...inp.w, qkvBias: undefined, outBias: undefined, upBias: undefined, downBias: undefined };
      }
      runApart(a, s);
      runFused(f, s, counter);
      expect(Array.from(outputs(f, s).x)).toEqual(Array.from(outputs(a, s).x));
      expect(Array.from(counter.toArray())).toEqual([0]);
    } finally {
      a.dispose();
      f.dispose();
      counter.dispose();
    }
  });
});

describe('decodeLayerGpt2 argument checks', () => {
  const s: LayerShape = { B: 2, H: 2, D: 16, maxLen: 8, pos: [1, 2] };
  const o = { heads: 2, headDim: 16, maxLen: 8 };
  const z = (shape: number[], dtype: DType | 'i32' = 'f32') => Tensor.zeros(shape, { dtype, device: dev });

  it('names the argument and the sizes', () => {
    const inp = makeLayer(dev, 'f32', s, 1);
    const { x, w, kCache: k, vCache: v, pos, lens } = inp;
    try {
      expect(() => ops.decodeLayerGpt2(z([2, 31]), w, k, v, pos, lens, o)).toThrow(/decodeLayerGpt2: x must be \[B, heads x headDim = 32\], got \[2, 31\]/);
      expect(() => ops.decodeLayerGpt2(z([64]), w, k, v, pos, lens, o)).toThrow(/x must be \[B/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, qkv: z([95, 32]) }, k, v, pos, lens, o)).toThrow(/qkv has shape \[95, 32\], expected \[96, 32\]/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, out: z([32, 31]) }, k, v, pos, lens, o)).toThrow(/out has shape/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, up: z([128, 31]) }, k, v, pos, lens, o)).toThrow(/up has shape/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, down: z([32, 127]) }, k, v, pos, lens, o)).toThrow(/down has shape/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, norm2: z([31]) }, k, v, pos, lens, o)).toThrow(/norm2 has shape \[31\], expected \[32\]/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, upBias: z([127]) }, k, v, pos, lens, o)).toThrow(/upBias has shape/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, norm1Bias: undefined }, k, v, pos, lens, o)).toThrow(/layernorms need their biases/);
      expect(() => ops.decodeLayerGpt2(x, { ...w, qkv: z([96, 32], 'bf16') }, k, v, pos, lens, o)).toThrow(/qkv is bf16 but x is f32/);
      expect(() => ops.decodeLayerGpt2(x, w, k, v, z([2]), lens, o)).toThrow(/pos must be i32, got f32/);
      expect(() => ops.decodeLayerGpt2(x, w, k, v, pos, z([1], 'i32'), o)).toThrow(/lens has 1 elements, needs 2/);
      expect(() => ops.decodeLayerGpt2(x, w, z([100]), v, pos, lens, o)).toThrow(/kCache has 100 elements, needs 512/);
      expect(() => ops.decodeLayerGpt2(x, w, k, v, pos, lens, { ...o, kvStrides: [256, 31] })).toThrow(/token stride >= heads x headDim = 32/);
      expect(() => ops.decodeLayerGpt2(x, w, k, k, pos, lens, o)).toThrow(/three tensors/);
      expect(() => ops.decodeLayerGpt2(x, w, k, v, pos, lens, { ...o, heads: 0 })).toThrow(/heads must be a positive integer/);
      expect(() => ops.decodeLayerGpt2(x, w, k, v, pos, lens, { ...o, counter: z([1]) })).toThrow(/counter must be an i32/);
      const d = z([32]);
      d.dispose();
      expect(() => ops.decodeLayerGpt2(x, { ...w, norm1: d }, k, v, pos, lens, o)).toThrow(/disposed/);
    } finally {
      inp.dispose();
    }
  });

  it('says where one kernel applies on a GPU', () => {
    expect(ops.decodeLayerGpt2Supported(1, 12, 64, 1024 * 768, 768)).toBe(true);  // GPT-2 124M
    expect(ops.decodeLayerGpt2Supported(4, 16, 64, 1024 * 1024, 1024)).toBe(true);  // GPT-2 medium
    expect(ops.decodeLayerGpt2Supported(5, 12, 64, 1024 * 768, 768)).toBe(false);  // B > 4
    expect(ops.decodeLayerGpt2Supported(1, 20, 64, 1024 * 1280, 1280)).toBe(false);  // C > 1024
    expect(ops.decodeLayerGpt2Supported(1, 12, 32, 1024 * 384, 384)).toBe(false);  // D 32
    expect(ops.decodeLayerGpt2Supported(1, 12, 64, 1024 * 768 + 4, 768)).toBe(false);  // 16-byte rows
  });
});
