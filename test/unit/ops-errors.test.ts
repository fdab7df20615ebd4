// Shape, dtype and device mistakes are caught before the native call, with a message that names them;
// the native layer checks again (extents, disposed tensors) so nothing reaches a kernel out of bounds.
import { describe, expect, it } from 'vitest';
import { Tensor, configureCpuDevices, ops } from '../../src/index.js';
import { native } from '../../src/native.js';

const z = (shape: number[], dtype: 'f32' | 'bf16' | 'i32' = 'f32', device = 'cpu:0') => Tensor.zeros(shape, { dtype, device });

describe('op argument checks', () => {
  it('matmul', () => {
    expect(() => ops.matmul(z([2, 3]), z([4, 5]))).toThrow(/inner sizes differ/);
    expect(() => ops.matmul(z([2, 3]), z([3, 5], 'bf16'))).toThrow(/b is bf16 but a is f32/);
    expect(() => ops.matmul(z([2, 3]), z([3, 5]), { bias: z([4]) })).toThrow(/bias has shape \[4\], expected \[5\]/);
    expect(() => ops.matmul(z([2, 3]), z([3, 5]), { beta: 1 })).toThrow(/beta/);
    expect(() => ops.matmul(z([2, 3]), z([3, 5]), { out: z([2, 4]) })).toThrow(/out has shape/);
    expect(() => ops.matmul(z([2, 3], 'i32'), z([3, 5], 'i32'))).toThrow(/expected f32 or bf16 or f16/);
    configureCpuDevices(2);
    expect(() => ops.matmul(z([2, 3]), z([3, 5], 'f32', 'cpu:1'))).toThrow(/b is on cpu:1 but a is on cpu:0/);
    const d = z([3, 5]);
    d.dispose();
    expect(() => ops.matmul(z([2, 3]), d)).toThrow(/disposed/);
    expect(ops.matmul(z([4, 2, 3]), z([3, 5])).shape).toEqual([4, 2, 5]);
  });

  it('layernormLinear', () => {
    const x = z([2, 8]), g = z([8]), b = z([8]), w = z([5, 8]);
    expect(() => ops.layernormLinear(x, g, b, z([5, 7]))).toThrow(/must end in 7|x has/);
    expect(() => ops.layernormLinear(x, z([7]), b, w)).toThrow(/gamma has shape \[7\], expected \[8\]/);
    expect(() => ops.layernormLinear(x, g, z([8, 1]), w)).toThrow(/beta has shape \[8, 1\], expected \[8\]/);
    expect(() => ops.layernormLinear(x, g, b, w, { bias: z([4]) })).toThrow(/bias has shape \[4\], expected \[5\]/);
    expect(() => ops.layernormLinear(x, g, b, z([5]))).toThrow(/weight must be 2-D/);
    expect(() => ops.layernormLinear(x, g, b, w, { out: x })).toThrow(/out has shape|out must not be x/);
    expect(() => ops.layernormLinear(x, g, b, z([5, 8], 'bf16'))).toThrow(/bf16/);
    expect(ops.layernormLinear(z([3, 2, 8]), g, b, w, { gelu: true }).shape).toEqual([3, 2, 5]);
  });

  it('linearResidualNorm', () => {
    const a = z([2, 8]), w = z([5, 8]), x = z([2, 5]), g = z([5]);
    expect(() => ops.linearResidualNorm(a, w, z([2, 4]), g)).toThrow(/must end in 5/);
    expect(() => ops.linearResidualNorm(a, w, z([3, 5]), g)).toThrow(/must have a's 2 rows of 5/);
    expect(() => ops.linearResidualNorm(a, w, x, z([4]))).toThrow(/normW has shape \[4\], expected \[5\]/);
    expect(() => ops.linearResidualNorm(a, w, x, g, { normB: z([6]) })).toThrow(/normB has shape \[6\], expected \[5\]/);
    expect(() => ops.linearResidualNorm(a, w, x, g, { bias: z([4]) })).toThrow(/bias has shape \[4\], expected \[5\]/);
    expect(() => ops.linearResidualNorm(a, w, x, g, { counter: z([1]) })).toThrow(/counter must be i32 \[1\]/);
    expect(() => ops.linearResidualNorm(a, w, x, g, { out: x })).toThrow(/out must not be x or a/);
    expect(() => ops.linearResidualNorm(a, z([5]), x, g)).toThrow(/weight must be 2-D/);
    expect(() => ops.linearResidualNorm(a, z([5, 8], 'bf16'), x, g)).toThrow(/bf16/);
    expect(ops.linearResidualNorm(z([3, 2, 8]), w, z([3, 2, 5]), g, { normB: z([5]) }).shape).toEqual([3, 2, 5]);
  });

  it('linearSwiGLU, linearGelu', () => {
    const x = z([2, 8]);
    expect(() => ops.linearSwiGLU(x, z([5, 8]))).toThrow(/wGateUp must be 2-D \[2F, in\]/);
    expect(() => ops.linearSwiGLU(x, z([6, 7]))).toThrow(/must end in 7/);
    expect(() => ops.linearSwiGLU(x, z([6, 8]), { out: x })).toThrow(/out has shape|out must not be x/);
    expect(ops.linearSwiGLU(z([3, 2, 8]), z([6, 8])).shape).toEqual([3, 2, 3]);
    expect(() => ops.linearGelu(x, z([5]))).toThrow(/weight must be 2-D/);
    expect(() => ops.linearGelu(x, z([5, 8]), { bias: z([4]) })).toThrow(/bias has shape \[4\], expected \[5\]/);
    expect(() => ops.linearGelu(x, z([5, 8], 'bf16'))).toThrow(/bf16/);
    expect(ops.linearGelu(z([3, 2, 8]), z([5, 8])).shape).toEqual([3, 2, 5]);
  });

  it('attention', () => {
    const q = z([1, 4, 4, 8]);
    expect(() => ops.attentionPrefill(q, z([1, 4, 3, 8]), z([1, 4, 3, 8]), { batch: 1, queries: 4, headsQ: 4, headsKv: 3, headDim: 8 })).toThrow(/multiple/);
    expect(() => ops.attentionPrefill(q, z([1, 2, 4, 8]), z([1, 2, 4, 8]), { batch: 1, queries: 4, keys: 2, headsQ: 4, headsKv: 4, headDim: 8 })).toThrow(/keys \(2\) < queries/);
    expect(() => ops.attentionPrefill(q, z([1, 4, 4, 4]), z([1, 4, 4, 8]), { batch: 1, queries: 4, headsQ: 4, headsKv: 4, headDim: 8 })).toThrow(/k has 64 elements, needs 128/);
    expect(() => ops.attentionDecode(z([1, 4, 8]), z([1, 4, 4, 8]), z([1, 4, 4, 8]), z([1]), { batch: 1, headsQ: 4, headsKv: 4, headDim: 8, maxLen: 4 })).toThrow(/lens must be i32/);
    const dec = { batch: 1, headsQ: 4, headsKv: 4, headDim: 8, maxLen: 4 };
    expect(() => ops.attentionDecode(z([1, 4, 8]), z([1, 4, 4, 8]), z([1, 4, 4, 8]), z([1], 'i32'), { ...dec, counter: z([4]) })).toThrow(/counter must be i32 with at least batch x headsQ = 4/);
    expect(() => ops.attentionDecode(z([1, 4, 8]), z([1, 4, 4, 8]), z([1, 4, 4, 8]), z([1], 'i32'), { ...dec, counter: z([3], 'i32') })).toThrow(/counter must be i32/);
    // (a CPU device ignores a well-formed counter, and leaves it at zero)
    const lens = Tensor.from([3], [1], { dtype: 'i32', device: 'cpu:0' }), counter = z([4], 'i32');
    expect(ops.attentionDecode(z([1, 4, 8]), z([1, 4, 4, 8]), z([1, 4, 4, 8]), lens, { ...dec, counter }).shape).toEqual([1, 4, 8]);
    expect(Array.from(counter.toArray())).toEqual([0, 0, 0, 0]);
  });

  it('norms, activations, embedding, add, sampling', () => {
    expect(() => ops.layernorm(z([2, 5]), z([4]), z([4]))).toThrow(/must end in 4/);
    expect(() => ops.rmsnorm(z([2, 5]), z([5, 1]))).toThrow(/1-D/);
    expect(() => ops.embedding(z([3]), z([10, 4]))).toThrow(/ids must be i32/);
    expect(() => ops.add(z([2, 5]), z([3]))).toThrow(/must have a's shape/);
    expect(() => ops.rope(z([2, 8]), z([2], 'i32'), { heads: 1, headDim: 8, rotaryDim: 3 })).toThrow(/rotaryDim/);
    expect(() => ops.cast(z([2], 'i32'), 'f32')).toThrow(/only between/);
  });

  it('the native layer rejects extents beyond a tensor', () => {
    const a = z([2, 2]);
    expect(() => native.matmul(a.native, a.native, a.native, null, 3, 3, 3, false, false, 1, 0)).toThrow(/reaches 9/);
    expect(() => native.gelu(a.native, a.native, 5)).toThrow(/reaches 5/);
    expect(() => native.empty('cpu:0', 'f32', [-1])).toThrow(/bad dimension/);
    expect(() => native.empty('gpu:0', 'f32', [1])).toThrow(/unknown device/);
  });
});
