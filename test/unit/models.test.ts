// GPT-2 and LLaMA (grouped-query) against Hugging Face transformers: logits of every prompt position and
// greedy continuations from the fixtures made by test/fixtures/make_fixtures.py, on the CPU backend.
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, readdirSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../../src/models/model.js';
import { Transformer } from '../../src/models/transformer.js';
import { generate, generateSteps, streamText } from '../../src/engine/generate.js';
import { relError } from '../helpers/reference.js';
import { allLogits, expected, fixtures } from '../helpers/models.js';

const fx = fixtures;

for (const [name, folder] of [
  ['tiny-gpt2', 'tiny-gpt2'],
  ['tiny-llama', 'tiny-llama'],
  ['tiny-llama', 'tiny-llama-sharded'],
] as const) {
  describe(`${folder} matches Hugging Face`, () => {
    const exp = expected[name]!;
    const m = Model.load(path.join(fx, folder), { device: 'cpu:0', dtype: 'f32' });

    it('logits of every prompt position (f32)', () => {
      exp.prompts.forEach((p, i) => {
        expect(relError(allLogits(m, p), exp.logits[i]!.flat()), `prompt ${i}`).toBeLessThan(1e-4);
      });
    });

    it('greedy continuations, each prompt alone and all in one batch', async () => {
      for (const [i, p] of exp.prompts.entries()) {
        const [g] = await generate(m, [p], { maxTokens: exp.new_tokens, stopTokens: [] });
        expect(g!.tokens, `prompt ${i}`).toEqual(exp.greedy[i]);
      }
      const all = await generate(m, exp.prompts, { maxTokens: exp.new_tokens, stopTokens: [] });
      expect(all.map((g) => g.tokens)).toEqual(exp.greedy);
    });

    it('the same tokens with and without a captured decode step', async () => {
      const a = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [], graph: false });
      const b = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] });
      expect(a).toEqual(b);
    });

    it('the same tokens with the norms in the GEMV epilogues (Transformer.normInGemv)', async () => {
      const was = Transformer.normInGemv;
      try {
        Transformer.normInGemv = false;
        const a = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] });
        Transformer.normInGemv = true;
        const b = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] });
        expect(b).toEqual(a);
        // in the epilogue at batch 1 only (one prompt here, the batch apart above), then by rows (the default)
        for (const mode of ['batch1', 'auto'] as const) {
          Transformer.normInGemv = mode;
          const one = await generate(m, exp.prompts.slice(0, 1), { maxTokens: 8, stopTokens: [] });
          expect(one).toEqual(a.slice(0, 1));
          expect(await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] })).toEqual(a);
        }
      } finally {
        Transformer.normInGemv = was;
      }
    });

    it('the same tokens with rope, cache write and attention as one op or two (Transformer.fusedDecodeAttention)', async () => {
      const was = Transformer.fusedDecodeAttention;
      try {
        const runs = [];
        for (const mode of [false, true, 'auto'] as const) {
          Transformer.fusedDecodeAttention = mode;
          runs.push(await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] }));
        }
        expect(runs[1]).toEqual(runs[0]);
        expect(runs[2]).toEqual(runs[0]);
      } finally {
        Transformer.fusedDecodeAttention = was;
      }
    });

    it('the same tokens with each decode layer as one op (Transformer.decodeLayerKernel)', async () => {
      const was = Transformer.decodeLayerKernel;
      try {
        Transformer.decodeLayerKernel = false;
        const a = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] });
        Transformer.decodeLayerKernel = true; // GPT-2 only: LLaMA's layers keep the ops apart
        const b = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [] });
        expect(b).toEqual(a);
        const c = await generate(m, exp.prompts, { maxTokens: 8, stopTokens: [], graph: false });
        expect(c).toEqual(a);
      } finally {
        Transformer.decodeLayerKernel = was;
      }
    });

    it('bf16 logits stay close to f32', () => {
      const mb = Model.load(path.join(fx, folder), { device: 'cpu:0', dtype: 'bf16' });
      expect(relError(allLogits(mb, exp.prompts[0]!), exp.logits[0]!.flat())).toBeLessThan(3e-2);
      mb.dispose();
    });
  });
}

describe('generation options', () => {
  const m = Model.load(path.join(fx, 'tiny-llama'), { device: 'cpu:0', dtype: 'f32' });
  const prompt = expected['tiny-llama']!.prompts[0]!;

  it('seeded sampling is reproducible and differs across seeds', async () => {
    const o = { maxTokens: 12, temperature: 1.5, topK: 50, topP: 0.95, stopTokens: [] };
    const a = await generate(m, [prompt], { ...o, seed: 7 });
    const b = await generate(m, [prompt], { ...o, seed: 7 });
    const c = await generate(m, [prompt], { ...o, seed: 8 });
    expect(a[0]!.tokens).toEqual(b[0]!.tokens);
    expect(a[0]!.tokens).not.toEqual(c[0]!.tokens);
  });

  it('stops at a stop token, and reports why', async () => {
    const greedy = expected['tiny-llama']!.greedy[0]!;
    const [g] = await generate(m, [prompt], { maxTokens: 16, stopTokens: [greedy[3]!] });
    expect(g!.tokens).toEqual(greedy.slice(0, greedy.indexOf(greedy[3]!) + 1));
    expect(g!.finish).toBe('stop-token');
    const [h] = await generate(m, [prompt], { maxTokens: 5, stopTokens: [] });
    expect(h!.tokens.length).toBe(5);
    expect(h!.finish).toBe('length');
  });

  it('stops at a stop string and streams text', async () => {
    const [full] = await generate(m, ['Hello world'], { maxTokens: 10, stopTokens: [] });
    expect(typeof full!.text).toBe('string');
    let streamed = '';
    for await (const piece of streamText(m, 'Hello world', { maxTokens: 10, stopTokens: [] })) streamed += piece;
    expect(streamed).toBe(full!.text);
    const cutAt = full!.text!.slice(2, 4);
    if (cutAt.length === 2) {
      const [s] = await generate(m, ['Hello world'], { maxTokens: 10, stopTokens: [], stopStrings: [cutAt] });
      expect(s!.finish).toBe('stop-string');
      expect(s!.text).toBe(full!.text!.slice(0, full!.text!.indexOf(cutAt)));
    }
  });

  it('rejects bad prompts with a clear error', async () => {
    await expect(generate(m, [[1, 2, 999]])).rejects.toThrow(/token id 999, outside the vocabulary \[0, 256\)/);
    await expect(generate(m, [Array(60).fill(1)], { maxTokens: 10 })).rejects.toThrow(/over the model's context of 64/);
    await expect(generate(m, [[]])).rejects.toThrow(/prompt 0 is empty/);
    await expect(generate(m, [[1]], { maxTokens: 0 })).rejects.toThrow(/maxTokens/);
    const it = generateSteps(m, [[1, 2]], { maxTokens: 3 });
    await it.next();
    await it.return(undefined); // an abandoned stream frees its cache
  });
});

describe('loading checks', () => {
  const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'parallm-model-'));
  const copyFolder = (from: string) => {
    const d = tmp();
    for (const f of readdirSync(from)) copyFileSync(path.join(from, f), path.join(d, f));
    return d;
  };

  it('a truncated safetensors file is an error naming the file', () => {
    const d = copyFolder(path.join(fx, 'tiny-gpt2'));
    truncateSync(path.join(d, 'model.safetensors'), 100_000);
    expect(() => Model.load(d, { device: 'cpu:0' })).toThrow(/model\.safetensors/);
  });

  it('a config that does not match the weights names the tensor and both shapes', () => {
    const d = copyFolder(path.join(fx, 'tiny-llama'));
    const cfg = JSON.parse(readFileSync(path.join(d, 'config.json'), 'utf8'));
    cfg.intermediate_size = 96;
    writeFileSync(path.join(d, 'config.json'), JSON.stringify(cfg));
    expect(() => Model.load(d, { device: 'cpu:0' })).toThrow(/mlp\.gate_proj\.weight" has shape \[128, 64\], the config implies \[96, 64\]/);
  });

  it('unknown models and devices are named', () => {
    expect(() => Model.load('no-such-model')).toThrow(/unknown model "no-such-model"/);
    expect(() => Model.load('tiny-gpt2', { device: 'cuda:5' })).toThrow(/unknown device "cuda:5"/);
  });

  it('presets draw seeded random weights and generate text', async () => {
    const a = Model.load('tiny-gpt2', { device: 'cpu:0', seed: 1 });
    const b = Model.load('tiny-gpt2', { device: 'cpu:0', seed: 1 });
    const [ga] = await generate(a, ['Hello world'], { maxTokens: 6, stopTokens: [] });
    const [gb] = await generate(b, ['Hello world'], { maxTokens: 6, stopTokens: [] });
    expect(ga!.tokens).toEqual(gb!.tokens);
    expect(typeof ga!.text).toBe('string');
    a.dispose();
    b.dispose();
  });
});
