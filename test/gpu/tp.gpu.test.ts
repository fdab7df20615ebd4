// Tensor parallelism on GPUs (NCCL all-reduces, captured in the decode graph): tp=2 on cuda:0 and cuda:1
// gives one GPU's greedy tokens (f32: every split must) and, in bf16, logits within bf16 rounding of one
// GPU's; with four GPUs, dp=2,tp=2 and pp=2,tp=2 meshes give one GPU's tokens too. Skipped without two
// GPUs and NCCL.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cudaDeviceCount } from '../../src/index.js';
import { generate } from '../../src/engine/generate.js';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { Model } from '../../src/models/model.js';
import { modelConfig } from '../../src/models/source.js';
import { KvCache } from '../../src/models/transformer.js';
import { ncclStatus, newCommId } from '../../src/parallel/comm.js';
import { DevicePool } from '../../src/parallel/pool.js';
import { rng } from '../../src/random.js';
import { Tensor } from '../../src/tensor.js';
import { ensureDist } from '../helpers/dist.js';
import { expected, fixtures } from '../helpers/models.js';
import { relError } from '../helpers/reference.js';

const gpus = cudaDeviceCount();
const ready = gpus >= 2 && ncclStatus().ok;
const root = path.resolve(__dirname, '../..');
const r = rng(31);
const prompts = [...expected['tiny-llama']!.prompts, ...Array.from({ length: 5 }, (_, b) => Array.from({ length: 2 + b }, () => Math.floor(r() * 256)))];
const N = 8;

async function oneGpu(source: string): Promise<number[][]> {
  const m = Model.load(source, { device: 'cuda:0', dtype: 'f32' });
  const out = (await generate(m, prompts, { maxTokens: N, stopTokens: [] })).map((g) => g.tokens);
  m.dispose();
  return out;
}

/** Prefill logits of every position and one decode step's, on one device, as the tp ranks compute them. */
function oneGpuLogits(source: string, prompt: number[], next: number) {
  const m = Model.load(source, { device: 'cuda:0', dtype: 'bf16' });
  const T = prompt.length, i32 = { dtype: 'i32' as const, device: 'cuda:0' };
  const cache = new KvCache(m.config, 1, T + 1, 'cuda:0', 'bf16');
  const ts = [Tensor.from(prompt, [T], i32), Tensor.from(prompt.map((_, t) => t), [T], i32), Tensor.zeros([1], i32)];
  const x = m.transformer.prefill(cache, ts[0]!, ts[1]!, ts[2]!, 1, T);
  const lp = m.transformer.logits(x);
  const ds = [Tensor.from([next], [1], i32), Tensor.from([T], [1], i32), Tensor.from([T + 1], [1], i32)];
  const ld = m.transformer.decode(cache, ds[0]!, ds[1]!, ds[2]!, 1);
  const out = { prefill: lp.toArray() as Float32Array, decode: ld.toArray() as Float32Array };
  [...ts, ...ds, x, lp, ld].forEach((t) => t.dispose());
  cache.dispose();
  m.dispose();
  return out;
}

describe.skipIf(!ready)('tensor parallel on two GPUs', () => {
  beforeAll(() => ensureDist(), 300_000);
  const open: ParallelModel[] = [];
  afterAll(async () => {
    for (const p of open) await p.close();
  });

  for (const source of [path.join(fixtures, 'tiny-gpt2'), path.join(fixtures, 'tiny-llama'), 'tiny-llama', 'tiny-qwen2'])
    it(`${path.basename(source)} f32, tp=2: greedy tokens equal one GPU's (decode captured with its all-reduces)`, async () => {
      const want = await oneGpu(source);
      const p = await ParallelModel.load(source, { strategy: 'tp', devices: ['cuda:0', 'cuda:1'], dtype: 'f32', commTimeoutMs: 30_000, timeoutMs: 60_000 });
      open.push(p);
      expect((await p.generate(prompts, { maxTokens: N })).tokens).toEqual(want);
      expect((await p.generate(prompts, { maxTokens: N })).tokens).toEqual(want); // a second run replays
    }, 180_000);

  it('bf16, tp=2: prefill and decode logits within bf16 rounding of one GPU\'s', async () => {
    const pool = await DevicePool.start(['cuda:0', 'cuda:1'], { modules: [path.join(root, 'test/helpers/tp-handlers.mjs')] });
    try {
      for (const source of [path.join(fixtures, 'tiny-gpt2'), path.join(fixtures, 'tiny-llama'), 'tiny-llama']) {
        const V = modelConfig(source).vocabSize;
        const prompt = Array.from({ length: 6 }, () => Math.floor(r() * V)), next = Math.floor(r() * V);
        const ref = oneGpuLogits(source, prompt, next);
        const id = newCommId('nccl');
        const got = await Promise.all(
          [0, 1].map((rank) => pool.call<{ prefill: Float32Array; decode: Float32Array }>(rank, 'logits', { source, seed: 0, tp: { rank, size: 2 }, id, prompt, next, dtype: 'bf16' })),
        );
        for (const g of got) {
          expect(relError(g.prefill, ref.prefill), source).toBeLessThan(3e-2);
          expect(relError(g.decode, ref.decode), source).toBeLessThan(3e-2);
        }
      }
    } finally {
      await pool.close();
    }
  }, 180_000);

  describe.skipIf(gpus < 4)('meshes on four GPUs', () => {
    for (const mesh of ['dp=2,tp=2', 'pp=2,tp=2'])
      it(`${mesh}: tiny-llama f32 gives one GPU's tokens`, async () => {
        const want = await oneGpu('tiny-llama');
        const p = await ParallelModel.load('tiny-llama', { mesh, devices: ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'], dtype: 'f32', commTimeoutMs: 30_000, timeoutMs: 60_000 });
        open.push(p);
        for (const mb of mesh.startsWith('pp') ? [1, 2, 4] : [undefined]) expect((await p.generate(prompts, { maxTokens: N, microBatches: mb })).tokens, `${mb ?? ''}`).toEqual(want);
      }, 180_000);
  });
});
