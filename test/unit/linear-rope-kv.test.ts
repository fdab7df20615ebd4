// linearRopeKvWrite: decode's qkv projection with its rope and KV-cache write (and linearRopeKvAttentionDecode, with
// the attention too). On the CPU it is the two ops
// (linear, then ropeKvWrite); these tests hold it to them bit for bit, check its arguments, and decode with it
// and without (Transformer.ropeInProjection). The CUDA form (the rope in the product's split-K reduce) is held to
// the same ops in test/gpu/decode.gpu.test.ts and in the host emulation (native/cuda/emu/kernels_emu.cc).
import { afterEach, describe, expect, it } from 'vitest';
import { Tensor, ops } from '../../src/index.js';
import { generate } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { Transformer } from '../../src/models/transformer.js';
import { randT } from '../helpers/cases.js';

const dev = 'cpu:0';

describe('linearRopeKvWrite', () => {
  for (const [B, K, Hq, Hkv, D, rot, bias] of [
    [3, 64, 4, 2, 16, 16, true],
    [4, 40, 3, 3, 24, 8, false], // partial rotation
    [2, 32, 2, 1, 8, 0, true], // no rotation: the cache writes alone
    [1, 16, 1, 1, 4, 4, false],
  ] as const)
    for (const dt of ['f32', 'bf16'] as const)
      it(`B${B} K${K} Hq${Hq} Hkv${Hkv} D${D} rot${rot}${bias ? ', bias' : ''} [${dt}]: the bits of linear then ropeKvWrite`, () => {
        const maxLen = 10, N = (Hq + 2 * Hkv) * D;
        // (B > 2: the first sequence at -1 and the last past the cache: rotated, and written nowhere)
        const posv = Array.from({ length: B }, (_, b) => (B > 2 && b === 0 ? -1 : B > 2 && b === B - 1 ? maxLen : (3 + 5 * b) % maxLen));
        const pos = Tensor.from(posv, [B], { dtype: 'i32', device: dev });
        const x = randT([B, K], dt, dev, 1).t, w = randT([N, K], dt, dev, 2, -0.2, 0.2).t;
        const bv = bias ? randT([N], dt, dev, 3).t : undefined;
        const rope = rot ? { theta: 10000, rotaryDim: rot } : undefined;
        const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
        const outs = [true, false].map((fused) => {
          const kc = randT([B, maxLen, Hkv, D], dt, dev, 4).t, vc = randT([B, maxLen, Hkv, D], dt, dev, 5).t;
          let qkv: Tensor;
          if (fused) qkv = ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, rope, bias: bv });
          else {
            qkv = ops.linear(x, w, bv);
            ops.ropeKvWrite(qkv, kc, vc, pos, { ...shape, rope });
          }
          const r = [qkv, kc, vc].map((t) => Array.from(t.toArray()));
          [qkv, kc, vc].forEach((t) => t.dispose());
          return r;
        });
        expect(outs[0]).toEqual(outs[1]);
        expect(outs[0]![0]!.every(Number.isFinite)).toBe(true);
        [pos, x, w, bv].forEach((t) => t?.dispose());
      });

  it('names a bad weight, batch, bias or dtype', () => {
    const pos = Tensor.from([0, 1], [2], { dtype: 'i32', device: dev });
    const x = Tensor.zeros([2, 8], { device: dev });
    const kc = Tensor.zeros([2, 4, 1, 4], { device: dev }), vc = Tensor.zeros([2, 4, 1, 4], { device: dev });
    const shape = { batch: 2, headsQ: 2, headsKv: 1, headDim: 4, maxLen: 4 };
    const w = Tensor.zeros([16, 8], { device: dev });
    expect(() => ops.linearRopeKvWrite(x, Tensor.zeros([15, 8], { device: dev }), kc, vc, pos, shape)).toThrow(/weight has 15 rows, not .* = 16/);
    expect(() => ops.linearRopeKvWrite(x, Tensor.zeros([16, 7], { device: dev }), kc, vc, pos, shape)).toThrow(/linearRopeKvWrite/);
    expect(() => ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, batch: 3 })).toThrow(/x has 2 rows for a batch of 3/);
    expect(() => ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, bias: Tensor.zeros([15], { device: dev }) })).toThrow(/bias/);
    expect(() => ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, maxLen: 5 })).toThrow(/kCache/);
    expect(() => ops.linearRopeKvWrite(x, Tensor.zeros([16, 8], { dtype: 'bf16', device: dev }), kc, vc, pos, shape)).toThrow(/linearRopeKvWrite/);
    expect(() => ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, rope: { rotaryDim: 3 } })).toThrow(/rotaryDim 3/);
  });
});

describe('linearRopeKvAttentionDecode', () => {
  for (const [B, K, Hq, Hkv, D, rot, bias] of [
    [3, 64, 4, 2, 16, 16, true],
    [4, 40, 3, 3, 24, 8, false], // partial rotation
    [2, 32, 2, 1, 8, 0, true], // no rotation
  ] as const)
    for (const dt of ['f32', 'bf16'] as const)
      it(`B${B} K${K} Hq${Hq} Hkv${Hkv} D${D} rot${rot}${bias ? ', bias' : ''} [${dt}]: the bits of linearRopeKvWrite then attentionDecode`, () => {
        const maxLen = 10, N = (Hq + 2 * Hkv) * D;
        const posv = Array.from({ length: B }, (_, b) => (B > 2 && b === 0 ? -1 : B > 2 && b === B - 1 ? maxLen : (3 + 5 * b) % maxLen));
        const lensv = posv.map((p, b) => (p < 0 || p >= maxLen ? 1 + b : p + 1));
        const pos = Tensor.from(posv, [B], { dtype: 'i32', device: dev });
        const lens = Tensor.from(lensv, [B], { dtype: 'i32', device: dev });
        const x = randT([B, K], dt, dev, 1).t, w = randT([N, K], dt, dev, 2, -0.2, 0.2).t;
        const bv = bias ? randT([N], dt, dev, 3).t : undefined;
        const rope = rot ? { theta: 10000, rotaryDim: rot } : undefined;
        const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
        const outs = [true, false].map((fused) => {
          const kc = randT([B, maxLen, Hkv, D], dt, dev, 4).t, vc = randT([B, maxLen, Hkv, D], dt, dev, 5).t;
          let att: Tensor;
          if (fused) att = ops.linearRopeKvAttentionDecode(x, w, kc, vc, pos, lens, { ...shape, rope, bias: bv });
          else {
            const qkv = ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, rope, bias: bv });
            att = ops.attentionDecode(qkv, kc, vc, lens, { ...shape, qStride: N });
            qkv.dispose();
          }
          const r = [att, kc, vc].map((t) => Array.from(t.toArray()));
          [att, kc, vc].forEach((t) => t.dispose());
          return r;
        });
        expect(outs[0]![0]!.length).toBe(B * Hq * D);
        expect(outs[0]).toEqual(outs[1]);
        expect(outs[0]![0]!.every(Number.isFinite)).toBe(true);
        [pos, lens, x, w, bv].forEach((t) => t?.dispose());
      });

  it('names a bad weight, batch, lens, heads or counter', () => {
    const pos = Tensor.from([0, 1], [2], { dtype: 'i32', device: dev });
    const lens = Tensor.from([1, 2], [2], { dtype: 'i32', device: dev });
    const x = Tensor.zeros([2, 8], { device: dev });
    const kc = Tensor.zeros([2, 4, 1, 4], { device: dev }), vc = Tensor.zeros([2, 4, 1, 4], { device: dev });
    const shape = { batch: 2, headsQ: 2, headsKv: 1, headDim: 4, maxLen: 4 };
    const w = Tensor.zeros([16, 8], { device: dev });
    const op = ops.linearRopeKvAttentionDecode;
    expect(() => op(x, Tensor.zeros([15, 8], { device: dev }), kc, vc, pos, lens, shape)).toThrow(/weight has 15 rows, not .* = 16/);
    expect(() => op(x, w, kc, vc, pos, lens, { ...shape, batch: 3 })).toThrow(/x has 2 rows for a batch of 3/);
    expect(() => op(x, w, kc, vc, pos, Tensor.from([1], [1], { dtype: 'i32', device: dev }), shape)).toThrow(/lens/);
    expect(() => op(x, w, kc, vc, pos, Tensor.from([1, 2], [2], { device: dev }), shape)).toThrow(/lens must be i32/);
    const kc2 = Tensor.zeros([2, 4, 2, 4], { device: dev }), vc2 = Tensor.zeros([2, 4, 2, 4], { device: dev });
    expect(() => op(x, Tensor.zeros([28, 8], { device: dev }), kc2, vc2, pos, lens, { ...shape, headsQ: 3, headsKv: 2 })).toThrow(/headsQ \(3\) must be a multiple of headsKv \(2\)/);
    expect(() => op(x, w, kc, vc, pos, lens, { ...shape, counter: Tensor.zeros([3], { dtype: 'i32', device: dev }) })).toThrow(/counter/);
    expect(() => op(x, w, kc, vc, pos, lens, { ...shape, rope: { rotaryDim: 3 } })).toThrow(/rotaryDim 3/);
  });
});

// Decode with each of the two switches on and off: the same tokens (the attention in the projection needs the rope
// there, and the projection takes the rope only where the attention does not: the fused attention is forced off).
for (const key of ['ropeInProjection', 'attentionInProjection'] as const)
  describe(`decode with Transformer.${key}`, () => {
    const was = Transformer[key];
    afterEach(() => {
      Transformer[key] = was;
    });

    it('gives the tokens of the ops apart', async () => {
      const m = Model.load('tiny-llama', { device: dev, dtype: 'f32' });
      const fusedWas = Transformer.fusedDecodeAttention;
      try {
        Transformer.fusedDecodeAttention = false;
        const prompts = [[5, 9, 17, 3], [250, 1], [7, 7, 7]];
        const run = async (on: boolean) => {
          Transformer[key] = on;
          return generate(m, prompts, { maxTokens: 6, stopTokens: [], temperature: 0.7, seed: 3 });
        };
        const off = await run(false);
        expect(await run(true)).toEqual(off);
      } finally {
        Transformer.fusedDecodeAttention = fusedWas;
        m.dispose();
      }
    });
  });
