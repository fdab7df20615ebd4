// Model.loadAsync / loadStagesAsync and ParallelModel.load's progress and abort; the memory check
// before a load. Every async load is held against the synchronous Model.load of the same source (the
// weights must be bit-identical), and every abort against the CPU allocator's baseline.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryStats } from '../../src/device.js';
import { ParallelModel, type ParallelLoadProgress } from '../../src/engine/parallel-model.js';
import { WeightStore } from '../../src/io/safetensors.js';
import { isAbortError, runLoadAsync, type LoadProgress } from '../../src/models/load-steps.js';
import { checkDeviceMemory } from '../../src/models/memory-check.js';
import { Model } from '../../src/models/model.js';
import { disposeWeights, fileWeightSteps, fileWeightTotals, openWeights, type ModelWeights } from '../../src/models/weights.js';
import { loadConfig } from '../../src/io/config.js';
import type { Tensor } from '../../src/tensor.js';
import { ensureDist } from '../helpers/dist.js';

const fx = path.resolve(__dirname, '../fixtures');
const cpu = { device: 'cpu:0', dtype: 'f32' as const };
const allocated = () => memoryStats('cpu:0').allocated;

/** Every tensor of a model's weights by slot, as a hex digest of its bytes (exact, and cheap to compare). */
function values(w: ModelWeights): Record<string, string> {
  const out: Record<string, string> = {};
  const put = (k: string, t: Tensor | undefined) => {
    if (!t) return;
    const a = t.toArray() as Float32Array;
    out[k] = `${t.shape.join('x')}:` + createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
  };
  for (const k of ['embed', 'positions', 'normF', 'normFBias', 'head'] as const) put(k, w[k]);
  w.layers.forEach((l, i) => Object.entries(l).forEach(([k, t]) => put(`${i}.${k}`, t as Tensor | undefined)));
  return out;
}

/** Progress is monotonic, starts at zero, ends at its totals, and its totals never change. */
function checkProgress<P extends LoadProgress>(ps: P[], fromZero = true): P {
  expect(ps.length).toBeGreaterThan(1);
  if (fromZero) expect(ps[0]).toMatchObject({ bytes: 0, tensors: 0 });
  const last = ps[ps.length - 1]!;
  for (let i = 1; i < ps.length; i++) {
    expect(ps[i]!.bytes).toBeGreaterThanOrEqual(ps[i - 1]!.bytes);
    expect(ps[i]!.tensors).toBeGreaterThanOrEqual(ps[i - 1]!.tensors);
    expect([ps[i]!.totalBytes, ps[i]!.totalTensors]).toEqual([ps[0]!.totalBytes, ps[0]!.totalTensors]);
  }
  expect(last.bytes).toBe(last.totalBytes);
  expect(last.tensors).toBe(last.totalTensors);
  return last;
}

// Buffers that are not weights and a saved copy of a tied head: in the files, never read.
const notRead = /(\.attn\.(masked_)?bias|rotary_emb\.inv_freq|^lm_head\.weight)$/;

describe('Model.loadAsync', () => {
  for (const name of ['tiny-gpt2', 'tiny-llama', 'tiny-llama-sharded']) {
    it(`${name}: the same weights as Model.load, with progress up to every byte the files hold for them`, async () => {
      const folder = path.join(fx, name);
      const ps: LoadProgress[] = [];
      const m = await Model.loadAsync(folder, { ...cpu, onProgress: (p) => ps.push({ ...p }) });
      const ref = Model.load(folder, cpu);
      try {
        expect(values(m.weights)).toEqual(values(ref.weights));
        const last = checkProgress(ps);
        // The totals, counted independently from the files: every tensor but the buffers.
        const store = WeightStore.open(folder);
        const read = store.names().filter((n) => !notRead.test(n) || (n === 'lm_head.weight' && !loadConfig(folder).tieEmbeddings));
        expect(last.totalTensors).toBe(read.length);
        expect(last.totalBytes).toBe(read.reduce((s, n) => s + store.info(n).nbytes, 0));
        store.close();
      } finally {
        m.dispose();
        ref.dispose();
      }
    });
  }

  it('a preset: the same seeded weights as Model.load, progress per tensor up to the bytes drawn', async () => {
    const ps: LoadProgress[] = [];
    const m = await Model.loadAsync('tiny-gpt2', { ...cpu, seed: 7, onProgress: (p) => ps.push({ ...p }) });
    const ref = Model.load('tiny-gpt2', { ...cpu, seed: 7 });
    try {
      expect(values(m.weights)).toEqual(values(ref.weights));
      const last = checkProgress(ps);
      // One step per tensor drawn; a tied head is the embedding, not a second tensor.
      const distinct = new Set([m.weights.embed, m.weights.positions, m.weights.normF, m.weights.normFBias, m.weights.head, ...m.weights.layers.flatMap((l) => Object.values(l))]);
      distinct.delete(undefined);
      expect(last.totalTensors).toBe(distinct.size);
      expect(ps.length).toBe(distinct.size + 1);
      expect(last.totalBytes).toBe([...distinct].reduce((s, t) => s + t!.numel * 4, 0));
    } finally {
      m.dispose();
      ref.dispose();
    }
  });

  it('several stages: one progress for all, each stage as its sync load', async () => {
    const folder = path.join(fx, 'tiny-llama-sharded');
    const stages = [
      { start: 0, end: 1, embed: true, head: false },
      { start: 1, end: 2, embed: false, head: true },
    ];
    const ps: LoadProgress[] = [];
    const ms = await Model.loadStagesAsync(folder, stages, { ...cpu, onProgress: (p) => ps.push({ ...p }) });
    const refs = Model.loadStages(folder, stages, cpu);
    try {
      ms.forEach((m, i) => expect(values(m.weights)).toEqual(values(refs[i]!.weights)));
      const whole = Model.load(folder, cpu);
      // A tied head stage reads the embedding again: one more tensor than the whole model.
      const wholeTensors: LoadProgress[] = [];
      whole.dispose();
      await Model.loadAsync(folder, { ...cpu, onProgress: (p) => wholeTensors.push(p) }).then((m) => m.dispose());
      const tied = loadConfig(folder).tieEmbeddings || !WeightStore.open(folder).has('lm_head.weight');
      expect(checkProgress(ps).totalTensors).toBe(checkProgress(wholeTensors).totalTensors + (tied ? 1 : 0));
    } finally {
      [...ms, ...refs].forEach((m) => m.dispose());
    }
  });

  it('reads a large tensor in pieces: a step per piece, the weights unchanged', async () => {
    const folder = path.join(fx, 'tiny-llama');
    const cfg = loadConfig(folder);
    const store = openWeights(cfg, folder);
    const stage = { start: 0, end: cfg.layers, embed: true, head: true };
    const ps: LoadProgress[] = [];
    try {
      const ws = await runLoadAsync(fileWeightSteps(cfg, store, 'cpu:0', 'f32', [stage], 1000), fileWeightTotals(cfg, store, [stage]), { onProgress: (p) => ps.push({ ...p }) }, 'test');
      const ref = Model.load(folder, cpu);
      expect(values(ws[0]!)).toEqual(values(ref.weights));
      ref.dispose();
      const last = checkProgress(ps);
      expect(ps.length - 1).toBeGreaterThan(last.totalTensors); // more steps than tensors
      expect(ps.length - 1).toBeGreaterThanOrEqual(Math.ceil(last.totalBytes / 1000));
      for (let i = 1; i < ps.length; i++) expect(ps[i]!.bytes - ps[i - 1]!.bytes).toBeLessThanOrEqual(1000);
      ws.forEach(disposeWeights);
    } finally {
      store.close();
    }
  });

  it('keeps the event loop turning: other work runs between the steps', async () => {
    // A chain of setImmediate callbacks: one runs per turn of the event loop.
    let ticks = 0;
    let on = true;
    const tick = () => on && (ticks++, setImmediate(tick));
    let steps = 0;
    setImmediate(tick);
    const m = await Model.loadAsync('tiny-llama', { ...cpu, onProgress: () => steps++ });
    m.dispose();
    expect(steps).toBeGreaterThan(10);
    expect(ticks).toBeGreaterThanOrEqual(steps - 2);
    // The synchronous load, for contrast, lets nothing run.
    ticks = 0;
    Model.load('tiny-llama', cpu).dispose();
    expect(ticks).toBe(0);
    on = false;
  });

  for (const source of ['tiny-gpt2', path.join(fx, 'tiny-llama-sharded')]) {
    for (const at of [1, 5, 12]) {
      it(`${path.basename(source)}: an abort after step ${at} rejects with an AbortError and frees everything`, async () => {
        const base = allocated();
        const ac = new AbortController();
        let n = 0;
        let after = 0;
        const p = Model.loadAsync(source, {
          ...cpu,
          signal: ac.signal,
          onProgress: () => {
            if (ac.signal.aborted) after++;
            if (n++ === at) ac.abort();
          },
        });
        const e = await p.then(() => null, (x: unknown) => x as Error);
        expect(e).toBeInstanceOf(Error);
        expect(isAbortError(e)).toBe(true);
        expect(e!.message).toMatch(/Model\.load .* on cpu:0 was aborted/);
        expect(after).toBe(0); // no step ran after the abort
        expect(allocated()).toBe(base);
      });
    }
  }

  it('an already aborted signal loads nothing; a throwing onProgress ends the load and frees what it made', async () => {
    const base = allocated();
    const ac = new AbortController();
    ac.abort(new Error('the user left'));
    let heard = 0;
    await expect(Model.loadAsync('tiny-llama', { ...cpu, signal: ac.signal, onProgress: () => heard++ })).rejects.toThrow(/aborted: the user left/);
    expect(heard).toBe(0);
    expect(allocated()).toBe(base);
    let n = 0;
    await expect(
      Model.loadAsync(path.join(fx, 'tiny-gpt2'), {
        ...cpu,
        onProgress: () => {
          if (++n === 4) throw new Error('listener broke');
        },
      }),
    ).rejects.toThrow('listener broke');
    expect(allocated()).toBe(base);
  });
});

describe('the memory check before a load', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-fit-'));
    // The tiny-llama fixture's config, claiming 2^20 hidden units: petabytes of weights. No weights file:
    // the check must refuse before any is looked for.
    const c = JSON.parse(readFileSync(path.join(fx, 'tiny-llama', 'config.json'), 'utf8'));
    c.hidden_size = 2 ** 20;
    c.intermediate_size = 2 ** 21;
    c.head_dim = 2 ** 20 / c.num_attention_heads;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names the device, the need and the free bytes; CPU devices are summed', () => {
    const free = () => 1000;
    expect(() => checkDeviceMemory([{ device: 'cuda:1', bytes: 1000 }], 'op', free)).not.toThrow();
    expect(() => checkDeviceMemory([{ device: 'cuda:1', bytes: 600 }, { device: 'cuda:1', bytes: 401 }], 'op', free)).toThrow(
      /^op: cuda:1 needs 0\.00 GiB \(1001 bytes\) of weights but it has 0\.00 GiB \(1000 bytes\) free/,
    );
    expect(() => checkDeviceMemory([{ device: 'cuda:0', bytes: 600 }, { device: 'cuda:1', bytes: 600 }], 'op', free)).not.toThrow();
    expect(() => checkDeviceMemory([{ device: 'cpu:0', bytes: 600 }, { device: 'cpu:1', bytes: 600 }], 'op', free)).toThrow(
      /cpu:0, cpu:1 \(CPU devices share the host's memory\) together need .*1200 bytes.* the host has .*1000 bytes/,
    );
  });

  it('Model.load and Model.loadAsync refuse a model larger than the device, before reading a file', async () => {
    const base = allocated();
    const msg = /Model\.load .*: cpu:0 needs \d+\.\d\d GiB \(\d+ bytes\) of weights but it has [\d.]+ GiB \(\d+ bytes\) free/;
    expect(() => Model.load(dir, cpu)).toThrow(msg);
    await expect(Model.loadAsync(dir, cpu)).rejects.toThrow(msg);
    expect(allocated()).toBe(base);
  });

  it('ParallelModel.load refuses before a worker starts', async () => {
    const t0 = performance.now();
    await expect(ParallelModel.load(dir, { strategy: 'pp', devices: ['cpu:0', 'cpu:1'] })).rejects.toThrow(
      /ParallelModel\.load .*: cpu:0, cpu:1 \(CPU devices share the host's memory\) together need .* bytes\) of weights but the host has/,
    );
    expect(performance.now() - t0).toBeLessThan(500); // no worker was started (one takes longer)
  });
});

describe('ParallelModel.load progress and abort', () => {
  beforeAll(() => ensureDist(), 120_000);

  it('sums the devices\' progress; each device reports its own share', async () => {
    const folder = path.join(fx, 'tiny-llama-sharded');
    const ps: ParallelLoadProgress[] = [];
    const pm = await ParallelModel.load(folder, { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], onProgress: (p) => ps.push(structuredClone(p)) });
    try {
      // The sum starts once every device has reported its totals: a device may be under way by then.
      const last = checkProgress(ps, false);
      expect(last.devices.map((d) => d.device)).toEqual(['cpu:0', 'cpu:1']);
      for (const p of ps) {
        expect(p.bytes).toBe(p.devices[0]!.bytes + p.devices[1]!.bytes);
        expect(p.totalTensors).toBe(p.devices[0]!.totalTensors + p.devices[1]!.totalTensors);
      }
      // Each device's totals are its stage's, as a single-device load of that stage reports them.
      for (const [i, stage] of pm.stages.entries()) {
        const one: LoadProgress[] = [];
        (await Model.loadAsync(folder, { ...cpu, stage, onProgress: (p) => one.push(p) })).dispose();
        expect(last.devices[i]!.totalBytes).toBe(one[one.length - 1]!.totalBytes);
      }
    } finally {
      await pm.close();
    }
  }, 60_000);

  it('an abort stops every worker\'s load: AbortError, workers ended', async () => {
    const ac = new AbortController();
    let n = 0;
    const e = await ParallelModel.load('tiny-gpt2', {
      strategy: 'dp',
      devices: ['cpu:0', 'cpu:1'],
      signal: ac.signal,
      onProgress: () => {
        if (++n === 3) ac.abort();
      },
    }).then(() => null, (x: unknown) => x as Error);
    expect(isAbortError(e)).toBe(true);
    expect(e!.message).toMatch(/ParallelModel\.load tiny-gpt2 \(dp on cpu:0, cpu:1\) was aborted/);
    // Already aborted: refused before any worker starts.
    const t0 = performance.now();
    await expect(ParallelModel.load('tiny-gpt2', { strategy: 'dp', devices: ['cpu:0', 'cpu:1'], signal: ac.signal })).rejects.toThrow(/was aborted/);
    expect(performance.now() - t0).toBeLessThan(500);
  }, 60_000);
});
