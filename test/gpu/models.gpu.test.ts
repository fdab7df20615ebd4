// The models on a GPU: Hugging Face parity on the fixtures (f32: logits within tolerance, greedy tokens
// identical), bf16 close, captured decode step equal to the uncaptured one, presets drawn on the device
// equal to the CPU's draw. Skipped without a GPU.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tensor, cudaDeviceCount, ops } from '../../src/index.js';
import { generate } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { relError } from '../helpers/reference.js';
import { allLogits, expected, fixtures } from '../helpers/models.js';

const gpus = cudaDeviceCount();
const dev = 'cuda:0';
const fx = fixtures;

describe.skipIf(gpus === 0)('models on the GPU match Hugging Face', () => {
  for (const name of ['tiny-gpt2', 'tiny-llama'] as const) {
    const exp = expected[name]!;
    it(`${name} f32: logits and greedy tokens, alone and batched, captured and not`, async () => {
      const m = Model.load(path.join(fx, name), { device: dev, dtype: 'f32' });
      exp.prompts.forEach((p, i) => expect(relError(allLogits(m, p), exp.logits[i]!.flat()), `prompt ${i}`).toBeLessThan(1e-4));
      for (const [i, p] of exp.prompts.entries()) {
        const [g] = await generate(m, [p], { maxTokens: exp.new_tokens, stopTokens: [] });
        expect(g!.tokens, `prompt ${i}`).toEqual(exp.greedy[i]);
      }
      const batched = await generate(m, exp.prompts, { maxTokens: exp.new_tokens, stopTokens: [] });
      expect(batched.map((g) => g.tokens)).toEqual(exp.greedy);
      const plain = await generate(m, exp.prompts, { maxTokens: exp.new_tokens, stopTokens: [], graph: false });
      expect(plain.map((g) => g.tokens)).toEqual(exp.greedy);
      m.dispose();
    });

    it(`${name} bf16: logits close to Hugging Face`, () => {
      const m = Model.load(path.join(fx, name), { device: dev, dtype: 'bf16' });
      exp.prompts.forEach((p, i) => expect(relError(allLogits(m, p), exp.logits[i]!.flat()), `prompt ${i}`).toBeLessThan(3e-2));
      m.dispose();
    });
  }

  it('seeded sampling gives the same tokens on the GPU as on the CPU', async () => {
    const g = Model.load(path.join(fx, 'tiny-llama'), { device: dev, dtype: 'f32' });
    const c = Model.load(path.join(fx, 'tiny-llama'), { device: 'cpu:0', dtype: 'f32' });
    const o = { maxTokens: 12, temperature: 1.2, topK: 40, topP: 0.9, seed: 5, stopTokens: [] };
    const a = await generate(g, expected['tiny-llama']!.prompts, o);
    const b = await generate(c, expected['tiny-llama']!.prompts, o);
    expect(a.map((x) => x.tokens)).toEqual(b.map((x) => x.tokens));
    g.dispose();
    c.dispose();
  });

  it('decode one step ahead gives the tokens of a step at a time: greedy, sampled, op by op, with stops', async () => {
    const m = Model.load(path.join(fx, 'tiny-llama'), { device: dev, dtype: 'bf16' });
    const ps = expected['tiny-llama']!.prompts;
    for (const o of [{}, { temperature: 0.8, topK: 40, seed: 5 }, { graph: false }]) {
      const run = (prompts: number[][], extra: object) => generate(m, prompts, { maxTokens: 12, stopTokens: [], ...o, ...extra });
      const a = await run(ps, { ahead: false });
      expect(await run(ps, { ahead: true })).toEqual(a);
      // One sequence stopping at its fourth token: the step enqueued past it is dropped.
      const stop = a[0]!.tokens[3]!;
      const alone = await run([ps[0]!], { stopTokens: [stop], ahead: false });
      expect(alone[0]!.finish).toBe('stop-token');
      expect(await run([ps[0]!], { stopTokens: [stop], ahead: true })).toEqual(alone);
    }
    m.dispose();
  });

  it('readBegin reads what the work enqueued before it wrote, not what comes after', () => {
    const n = 1 << 20;
    const src = ops.fillUniform(Tensor.empty([n], { device: dev }), { seed: 3, low: -4, high: 4 });
    const y = Tensor.full([n], Number.NaN, { device: dev });
    ops.gelu(src, y);
    const r = y.readBegin();
    ops.fillUniform(y, { seed: 4, low: 10, high: 11 }); // enqueued after the read: must not show in it
    const onCpu = src.to('cpu:0');
    const wantT = ops.gelu(onCpu);
    const want = wantT.toArray();
    const got = r.wait();
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
    expect(worst).toBeLessThan(1e-5);
    expect(Math.min(...y.toArray().subarray(0, 1000))).toBeGreaterThanOrEqual(10);
    for (const t of [src, y, onCpu, wantT]) t.dispose();
  });

  it('fillUniform draws the same values on the GPU as on the CPU', () => {
    for (const dtype of ['f32', 'bf16'] as const) {
      const a = ops.fillUniform(Tensor.empty([100003], { dtype, device: dev }), { seed: 9, low: -0.5, high: 0.25 }).toArray();
      const b = ops.fillUniform(Tensor.empty([100003], { dtype, device: 'cpu:0' }), { seed: 9, low: -0.5, high: 0.25 }).toArray();
      expect(Array.from(a)).toEqual(Array.from(b));
    }
  });

  it('fillUniform with low = high = +-0 (a memset on the GPU) writes +0 over any contents, like the CPU', () => {
    for (const dtype of ['f32', 'bf16', 'f16'] as const)
      for (const low of [0, -0]) {
        const g = Tensor.full([100003], Number.NaN, { dtype, device: dev });
        const c = Tensor.full([100003], Number.NaN, { dtype, device: 'cpu:0' });
        const a = ops.fillUniform(g, { seed: 3, low, high: low }).toArray();
        const b = ops.fillUniform(c, { seed: 3, low, high: low }).toArray();
        expect(a.every((v) => Object.is(v, 0)), `${dtype} low ${Object.is(low, -0) ? '-0' : '0'}`).toBe(true);
        expect(Array.from(a)).toEqual(Array.from(b));
        [g, c].forEach((t) => t.dispose());
      }
  });
});
