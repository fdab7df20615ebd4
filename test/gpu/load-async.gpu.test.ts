// Model.loadAsync on a GPU: the weights equal the synchronous load's (bf16, from files and drawn), an
// abort at any point gives the allocator back every byte it had, and the memory check names the GPU
// and its free bytes. ParallelModel.load's abort on two GPUs ends with both allocators at their baselines.
// Skipped without a GPU.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount, memoryStats } from '../../src/device.js';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { isAbortError } from '../../src/models/load-steps.js';
import { Model } from '../../src/models/model.js';
import type { Tensor } from '../../src/tensor.js';
import { fixtures } from '../helpers/models.js';
import { ensureDist } from '../helpers/dist.js';

const gpus = cudaDeviceCount();
const dev = 'cuda:0';

describe.skipIf(gpus === 0)('Model.loadAsync on the GPU', () => {
  for (const source of ['gpt2', path.join(fixtures, 'tiny-llama')]) {
    it(`${path.basename(source)} bf16: the sync load's weights, bit for bit`, async () => {
      let steps = 0;
      const m = await Model.loadAsync(source, { device: dev, dtype: 'bf16', onProgress: () => steps++ });
      const ref = Model.load(source, { device: dev, dtype: 'bf16' });
      try {
        expect(steps).toBeGreaterThan(m.weights.layers.length);
        const bytes = (t: Tensor) => Buffer.from((t.toArray() as Float32Array).buffer);
        m.weights.layers.forEach((l, i) => {
          for (const k of ['qkv', 'out', 'up', 'down', 'norm1'] as const) expect(Buffer.compare(bytes(l[k]), bytes(ref.weights.layers[i]![k])), `layer ${i} ${k}`).toBe(0);
        });
        expect(Buffer.compare(bytes(m.weights.head!), bytes(ref.weights.head!))).toBe(0);
      } finally {
        m.dispose();
        ref.dispose();
      }
    });

    for (const at of [1, 10, 40]) {
      it(`${path.basename(source)}: an abort after step ${at} gives back every byte`, async () => {
        const base = memoryStats(dev).allocated;
        const ac = new AbortController();
        let n = 0;
        const e = await Model.loadAsync(source, { device: dev, dtype: 'bf16', signal: ac.signal, onProgress: () => void (n++ === at && ac.abort()) }).then(
          (m) => (m.dispose(), null),
          (x: unknown) => x,
        );
        // A load with fewer steps than `at` finished; then dispose freed it.
        if (e !== null) expect(isAbortError(e)).toBe(true);
        expect(memoryStats(dev).allocated).toBe(base);
      });
    }
  }

  it('the memory check names the GPU, the need and its free bytes, before anything is allocated', () => {
    // The tiny-llama fixture's config claiming 2^20 hidden units: petabytes, more than any GPU has.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-fit-gpu-'));
    try {
      const c = JSON.parse(readFileSync(path.join(fixtures, 'tiny-llama', 'config.json'), 'utf8'));
      Object.assign(c, { hidden_size: 2 ** 20, intermediate_size: 2 ** 21, head_dim: 2 ** 20 / c.num_attention_heads });
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
      const base = memoryStats(dev).allocated;
      expect(() => Model.load(dir, { device: dev, dtype: 'bf16' })).toThrow(/cuda:0 needs [\d.]+ GiB \(\d+ bytes\) of weights but it has [\d.]+ GiB \(\d+ bytes\) free/);
      expect(memoryStats(dev).allocated).toBe(base);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(gpus < 2)('ParallelModel.load abort on two GPUs', () => {
  it('every worker stops; both GPUs back at their baselines', async () => {
    ensureDist();
    const base = [0, 1].map((i) => memoryStats(`cuda:${i}`).allocated);
    const ac = new AbortController();
    let n = 0;
    const e = await ParallelModel.load('gpt2-medium', {
      strategy: 'pp',
      devices: ['cuda:0', 'cuda:1'],
      signal: ac.signal,
      onProgress: () => void (++n === 5 && ac.abort()),
    }).then(
      async (pm) => (await pm.close(), null),
      (x: unknown) => x,
    );
    expect(isAbortError(e)).toBe(true);
    // The workers are threads of this process, on its allocator: each freed what its load had made.
    [0, 1].forEach((i) => expect(memoryStats(`cuda:${i}`).allocated, `cuda:${i}`).toBe(base[i]));
  }, 120_000);
});
