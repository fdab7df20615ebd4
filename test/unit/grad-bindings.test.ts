// The training ops' bindings (native/napi/ops.cc), called directly with what src/ops.ts would refuse: the
// native layer checks on its own that size products do not wrap, that strides (signed) stay inside their
// tensors, and the argument types and ranges, so a bad call from any caller fails with an Error naming the
// op and writes nothing.
import { describe, expect, it } from 'vitest';
import { Tensor, ops } from '../../src/index.js';
import { native } from '../../src/native.js';
import { uniformArray } from '../../src/random.js';

const dev = 'cpu:0';
let seed = 0x51ed;
const rand = (shape: number[]) =>
  Tensor.from(uniformArray(shape.reduce((a, b) => a * b, 1), seed++, -2, 2), shape, { device: dev });
const poison = (shape: number[]) => Tensor.full(shape, NaN, { device: dev });
const i32 = (n: number) => native.empty(dev, 'i32', [n]);
const allNaN = (...ts: Tensor[]) => ts.every((t) => Array.from(t.toArray()).every(Number.isNaN));

describe('training ops: size products are overflow-checked', () => {
  it('a reach that wraps 64 bits is refused, and nothing is written', () => {
    const x = rand([4]);
    const y = poison([4]), z = poison([4]);
    const [X, Y, Z] = [x.native, y.native, z.native];
    const big = 2 ** 32;
    expect(() => native.sumRows(X, Y, big, big, false)).toThrow(/sumRows: .*overflows 64 bits/);
    expect(() => native.layernormBackward(X, X, X, X, X, Y, Z, Z, big, big)).toThrow(/layernormBackward: .*overflows/);
    expect(() => native.rmsnormBackward(X, X, X, X, Y, Z, big, big)).toThrow(/rmsnormBackward: .*overflows/);
    expect(() => native.siluGateBackward(X, X, X, Y, Z, big, big, big)).toThrow(/siluGateBackward: .*overflows/);
    expect(() => native.ropeBackward(Y, i32(4), big, 2 ** 20, 2 ** 20, 2 ** 40, 2, 1e4)).toThrow(/ropeBackward: .*overflows/);
    expect(() => native.embeddingBackward(i32(4), X, Y, 0, big, big, 1)).toThrow(/embeddingBackward: .*overflows/);
    expect(() => native.crossEntropy(X, i32(4), Y, Z, big, big, -100, 1, big)).toThrow(/crossEntropy: .*overflows/);
    // attention: out's B x T x Hq x D, and (backward) the workspace's B x Hq x T x (D + 1)
    const m = 2 ** 20, h = 4096;
    expect(() => native.attentionForward(X, X, X, Y, Z, m, m, h, h, h, 0, 0, 0, 0, 1)).toThrow(/attentionForward: .*overflows/);
    expect(() => native.attentionBackward(X, X, X, X, X, X, Y, Y, Y, Z, m, m, h, h, h, 0, 0, 0, 0, 1)).toThrow(/attentionBackward: .*overflows/);
    expect(allNaN(y, z)).toBe(true);
  });

  it('a reach past the end of a tensor names it and its size', () => {
    const y = poison([4]);
    expect(() => native.sumSquares(rand([3]).native, y.native, 4)).toThrow(/sumSquares: x has 3 elements but the op reaches 4/);
    expect(() => native.adamw(y.native, null, rand([8]).native, rand([8]).native, rand([7]).native, 8, 0, 1e-3, 0.9, 0.95, 1e-8, 0, 1, 1))
      .toThrow(/adamw: master has 4 elements but the op reaches 8/);
    // attentionBackward's workspace: B x Hq x T x (D + 1) = 1 x 2 x 2 x 3 = 12 elements
    const q = rand([8]), kv = rand([4]), out = rand([8]), lse = rand([4]);
    const dq = poison([8]), dk = poison([4]), dv = poison([4]);
    expect(() => native.attentionBackward(q.native, kv.native, kv.native, out.native, out.native, lse.native, dq.native, dk.native, dv.native,
      native.empty(dev, 'f32', [11]), 1, 2, 2, 1, 2, 8, 4, 4, 2, 1)).toThrow(/attentionBackward: workspace has 11 elements but the op reaches 12/);
    expect(allNaN(y, dq, dk, dv)).toBe(true);
  });
});

describe('training ops: strides are checked with their sign', () => {
  const B = 2, T = 3, Hq = 2, Hkv = 1, D = 4;
  const shapeQ = [B, T, Hq, D], shapeKv = [B, T, Hkv, D];

  it('attention forward and backward refuse strides that reach before their tensors', () => {
    const q = rand(shapeQ), k = rand(shapeKv), v = rand(shapeKv);
    const out = poison(shapeQ), lse = poison([B, Hq, T]);
    const fw = (qB: number, qT: number, kB: number, kT: number) =>
      native.attentionForward(q.native, k.native, v.native, out.native, lse.native, B, T, Hq, Hkv, D, qB, qT, kB, kT, 0.5);
    expect(() => fw(-T * Hq * D, Hq * D, T * Hkv * D, Hkv * D)).toThrow(/attentionForward: the strides reach -24 elements before the start of q/);
    expect(() => fw(T * Hq * D, Hq * D, T * Hkv * D, -Hkv * D)).toThrow(/before the start of k and v/);
    expect(allNaN(out, lse)).toBe(true);

    const dq = poison(shapeQ), dk = poison(shapeKv), dv = poison(shapeKv);
    const ws = native.empty(dev, 'f32', [B * Hq * T * (D + 1)]);
    const bw = (qB: number, qT: number, kB: number, kT: number) =>
      native.attentionBackward(q.native, k.native, v.native, out.native, out.native, lse.native, dq.native, dk.native, dv.native, ws,
        B, T, Hq, Hkv, D, qB, qT, kB, kT, 0.5);
    expect(() => bw(T * Hq * D, -Hq * D, T * Hkv * D, Hkv * D)).toThrow(/attentionBackward: .*before the start of q and dq/);
    expect(() => bw(T * Hq * D, Hq * D, -T * Hkv * D, Hkv * D)).toThrow(/before the start of k, v, dk and dv/);
    expect(allNaN(dq, dk, dv)).toBe(true);
  });

  it('a negative batch stride over a single sequence is harmless and allowed', () => {
    const o = { batch: 1, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D };
    const q = rand([1, T, Hq, D]), k = rand([1, T, Hkv, D]), v = rand([1, T, Hkv, D]);
    const a = ops.attentionForward(q, k, v, o);
    const out = poison([1, T, Hq, D]), lse = poison([1, Hq, T]);
    native.attentionForward(q.native, k.native, v.native, out.native, lse.native, 1, T, Hq, Hkv, D, -1e12, Hq * D, -5, Hkv * D, 1 / Math.sqrt(D));
    expect(Array.from(out.toArray())).toEqual(Array.from(a.out.toArray()));
    expect(Array.from(lse.toArray())).toEqual(Array.from(a.lse.toArray()));
  });

  it('siluGateBackward and ropeBackward refuse a stride below a row', () => {
    const x = rand([8]), y = poison([8]);
    expect(() => native.siluGateBackward(x.native, x.native, x.native, y.native, y.native, 2, 4, -4)).toThrow(/siluGateBackward: bad sizes .*inStride=-4/);
    expect(() => native.ropeBackward(y.native, i32(2), 2, 1, 4, -4, 4, 1e4)).toThrow(/ropeBackward: bad sizes .*tstride=-4/);
    expect(allNaN(y)).toBe(true);
  });
});

describe('training ops: argument types and ranges', () => {
  it('names the op and the argument', () => {
    const x = rand([4]), y = poison([4]);
    expect(() => native.sumRows({} as never, y.native, 1, 4, false)).toThrow(/sumRows: x must be a tensor/);
    expect(() => native.geluBackward(x.native, x.native, y.native, 4.5)).toThrow(/geluBackward: n must be an integer/);
    expect(() => native.sumSquares(x.native, native.empty(dev, 'bf16', [1]), 4)).toThrow(/sumSquares: out is bf16, expected f32/);
    expect(() => native.crossEntropy(x.native, i32(1), y.native, null, 1, 4, 2 ** 31, 1, 4)).toThrow(/crossEntropy: ignoreIndex must fit 32 bits/);
    expect(() => native.adamw(y.native, null, x.native, y.native, y.native, 4, 0, 1e-3, 0.9, 0.95, 1e-8, 0, 1, 2 ** 31)).toThrow(/adamw: step must fit 32 bits/);
    expect(() => native.adamw(y.native, null, x.native, y.native, y.native, 4, 5, 1e-3, 0.9, 0.95, 1e-8, 0, 1, 1)).toThrow(/adamw: bad sizes n=4 nDecay=5/);
    expect(() => native.attentionForward(x.native, x.native, x.native, y.native, native.empty(dev, 'bf16', [1]), 1, 1, 1, 1, 4, 4, 4, 4, 4, 1))
      .toThrow(/attentionForward: lse is bf16, expected f32/);
    expect(allNaN(y)).toBe(true);
  });
});
