// ops.ropeKvAttentionDecode on the CPU backend: the output and both caches are those of ropeKvWrite then
// attentionDecode bit for bit, and qkv is left as it was (the GPU test holds the CUDA kernel to the same).
import { describe, expect, it } from 'vitest';
import { Tensor, ops } from '../../src/index.js';
import { differing, fusedDecode, fusedDecodeCases } from '../helpers/rope-kv-attention.js';

describe('ropeKvAttentionDecode on the CPU', () => {
  for (const c of fusedDecodeCases)
    for (const dt of ['f32', 'bf16'] as const)
      it(`${c.name} [${dt}]: the bits of ropeKvWrite then attentionDecode; qkv unchanged`, () => {
        const s = 1000 + c.D + c.Hq;
        const r = fusedDecode('cpu:0', dt, c, s, true);
        for (const [i, what] of ['output', 'k cache', 'v cache'].entries()) {
          expect(r.fused[i]!.every(Number.isFinite), `${what} written`).toBe(true);
          expect(differing(r.fused[i]!, r.apart[i]!), `${what}: elements that differ`).toBe(0);
          expect(differing(r.fusedThawed[i]!, r.apart[i]!), `${what}: elements that differ (not frozen)`).toBe(0);
        }
        expect(differing(r.fused[3]!, r.qkv), 'qkv changed by the fused op').toBe(0);
        // (the apart path rotates its copy in place: a case with rotation shows it, so the check above bites)
        if (c.rot) expect(differing(r.apart[3]!, r.qkv)).toBeGreaterThan(0);
      });

  it('rejects bad input with the op named', () => {
    const dev = 'cpu:0';
    const qkv = Tensor.zeros([2, 3 * 2 * 8], { dtype: 'f32', device: dev });
    const kc = Tensor.zeros([2, 4, 2, 8], { dtype: 'f32', device: dev });
    const vc = Tensor.zeros([2, 4, 2, 8], { dtype: 'f32', device: dev });
    const pos = Tensor.from([0, 1], [2], { dtype: 'i32', device: dev });
    const lens = Tensor.from([1, 2], [2], { dtype: 'i32', device: dev });
    const shape = { batch: 2, headsQ: 2, headsKv: 2, headDim: 8, maxLen: 4 };
    expect(() => ops.ropeKvAttentionDecode(qkv, kc, vc, pos, lens, { ...shape, headsQ: 3 })).toThrow(/ropeKvAttentionDecode/);
    expect(() => ops.ropeKvAttentionDecode(qkv, kc, vc, pos, lens, { ...shape, rope: { rotaryDim: 7 } })).toThrow(/rotaryDim/);
    expect(() => ops.ropeKvAttentionDecode(qkv, kc, vc, lens.view(0, [1]), lens, shape)).toThrow(/pos/);
    const f = Tensor.zeros([2], { dtype: 'f32', device: dev });
    expect(() => ops.ropeKvAttentionDecode(qkv, kc, vc, pos, f, shape)).toThrow(/lens must be i32/);
    expect(() => ops.ropeKvAttentionDecode(qkv, kc, vc, pos, lens, { ...shape, maxLen: 5 })).toThrow(/kCache/);
    const bad = Tensor.from([0, 9], [2], { dtype: 'i32', device: dev });
    expect(() => ops.ropeKvAttentionDecode(qkv, kc, vc, pos, bad, shape)).toThrow(/lens/);
    [qkv, kc, vc, pos, lens, f, bad].forEach((t) => t.dispose());
  });
});
