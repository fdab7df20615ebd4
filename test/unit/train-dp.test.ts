// Data-parallel training (src/train/data-parallel.ts, worker.ts, dp-data.ts) on 2 and 3 CPU devices:
// with the 'global' data order, n replicas with batch b give the loss curve and weights of one device with
// batch n x b (the single-device Trainer is the reference; it is checked against float64 and PyTorch in
// train-grad / train-fixture-grads); the replicas stay bit-identical; a dp checkpoint resumes the same run;
// a rank that dies or fails ends the run with an error naming its device, quickly.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/io/config.js';
import { TrainLoader } from '../../src/data/loader.js';
import { DataParallelTrainer, trainDataParallel, type DataParallelOptions } from '../../src/train/data-parallel.js';
import { initParams } from '../../src/train/init.js';
import { TrainStage } from '../../src/train/stage.js';
import { Trainer, type TokenData } from '../../src/train/trainer.js';
import { ensureDist } from '../helpers/dist.js';
import { rng, runDp, runOne, smallGpt2, smallLlama, tokens } from '../helpers/train.js';

// the workers run the compiled dist/
beforeAll(() => ensureDist());

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'parallm-dp-'));


const devs = (n: number) => Array.from({ length: n }, (_, i) => `cpu:${i}`);

const base = (cfg: ModelConfig, data: TokenData, n: number, extra: Partial<DataParallelOptions> = {}): DataParallelOptions => ({
  model: cfg, data, devices: devs(n), batch: 2, seq: 8, steps: 6, lr: 3e-3, warmup: 2, evalEvery: 3, seed: 7, commTimeoutMs: 20_000, ...extra,
});

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('dp on n devices with batch b = one device with batch n x b (global data order)', () => {
  for (const [cfg, n, accum] of [[smallGpt2, 2, 1], [smallLlama, 3, 2], [smallGpt2, 3, 1]] as const)
    it(`${cfg.family}, ${n} devices, grad accumulation ${accum}`, async () => {
      const data = tokens(cfg.vocabSize, 1600, 5 + n);
      const o = base(cfg, data, n, { dataOrder: 'global', gradAccum: accum });
      const { r, states } = await runDp(o);
      const { r1, master1 } = await runOne(o, 2 * n, 'cpu:0');
      expect(r.losses).toHaveLength(6);
      expect(r.losses[5]!).toBeLessThan(r.losses[0]!);
      // f32 reduction order only: the gradient is summed per rank then averaged, instead of in one kernel
      // over the whole batch (~1e-7 relative); six AdamW steps amplify it little.
      for (let i = 0; i < 6; i++) expect(Math.abs(r.losses[i]! - r1.losses[i]!), `step ${i + 1}`).toBeLessThan(1e-4 * Math.abs(r1.losses[i]!));
      expect(r.valLosses.map((e) => e.step)).toEqual(r1.valLosses.map((e) => e.step));
      for (const [i, e] of r.valLosses.entries()) expect(Math.abs(e.valLoss - r1.valLosses[i]!.valLoss)).toBeLessThan(1e-4 * e.valLoss);
      // weights (O(0.01..1)) within 2e-5 absolute (seen: <= 4e-6): AdamW's m / sqrt(v) turns the
      // reduction-order noise of a near-zero gradient into an update of up to lr, so relative checks of
      // near-zero weights say nothing
      expect(maxAbs(states[0]!.master, master1)).toBeLessThan(2e-5);
      // replicas identical bit for bit: weights and moments
      for (let k = 1; k < n; k++) {
        expect(Buffer.from(states[k]!.master.buffer).equals(Buffer.from(states[0]!.master.buffer)), `master of rank ${k}`).toBe(true);
        expect(Buffer.from(states[k]!.m.buffer).equals(Buffer.from(states[0]!.m.buffer)), `m of rank ${k}`).toBe(true);
        expect(Buffer.from(states[k]!.v.buffer).equals(Buffer.from(states[0]!.v.buffer)), `v of rank ${k}`).toBe(true);
      }
    });
});

describe('dp with the tied embeddings\' gradient in two parts (tiedGradSplit)', () => {
  for (const [n, accum] of [[2, 1], [3, 2]] as const)
    it(`gpt2, ${n} devices, grad accumulation ${accum}: one device's curve; the embeddings' bucket goes with the head's part`, async () => {
      const cfg = smallGpt2;
      const data = tokens(cfg.vocabSize, 1600, 61 + n);
      const o = base(cfg, data, n, { dataOrder: 'global', gradAccum: accum, bucketMiB: 1000 / 2 ** 20, tiedGradSplit: true });
      const { r, states } = await runDp(o);
      const { r1, master1 } = await runOne(o, 2 * n, 'cpu:0');
      // the same tolerances as the plain runs above: f32 reduction order only (the lookup's rows are added
      // after the head's part is averaged, each rank's scaled by 1 / n, instead of both summed then averaged)
      for (let i = 0; i < 6; i++) expect(Math.abs(r.losses[i]! - r1.losses[i]!), `step ${i + 1}`).toBeLessThan(1e-4 * Math.abs(r1.losses[i]!));
      expect(maxAbs(states[0]!.master, master1)).toBeLessThan(2e-5);
      for (let k = 1; k < n; k++) expect(Buffer.from(states[k]!.master.buffer).equals(Buffer.from(states[0]!.master.buffer)), `master of rank ${k}`).toBe(true);
      const { ranges, launchOrder } = states[0]!.buckets!;
      expect(ranges[0]!.start).toBe(0); // the embeddings lead the flat layout
      expect(ranges[0]!.ready).toBe(0); // and their bucket is complete at the head's event
      expect(launchOrder[0]).toBe(0);
    });

  it('needs buckets and no ZeRO-1', async () => {
    const data = tokens(smallGpt2.vocabSize, 400, 3);
    await expect(DataParallelTrainer.create(base(smallGpt2, data, 2, { tiedGradSplit: true }))).rejects.toThrow(/tiedGradSplit needs bucketMiB > 0 and no ZeRO-1/);
    await expect(DataParallelTrainer.create(base(smallGpt2, data, 2, { tiedGradSplit: true, bucketMiB: 1, zero: 1 }))).rejects.toThrow(/tiedGradSplit needs/);
  });
});

describe('dp with the sharded data order (the seed\'s partition_dataset)', () => {
  it('step 1 loss is the mean of each rank\'s own shard loss; replicas stay identical; progress events', async () => {
    const cfg = smallGpt2, n = 2;
    const data = tokens(cfg.vocabSize, 1600, 21);
    const steps: number[] = [];
    const epochs: number[] = [];
    const o = base(cfg, data, n, { epochs: 2, steps: undefined, batch: 4, onStep: (e) => steps.push(e.tokens), onEpoch: (e) => epochs.push(e.seconds) });
    const dp = await DataParallelTrainer.create(o);
    let r, states;
    try {
      r = await dp.run();
      states = await dp.replicaStates();
    } finally {
      await dp.close();
    }
    // independently: each rank's first batch from its own TrainLoader shard, at the initial weights
    let sum = 0;
    for (let k = 0; k < n; k++) {
      const b = new TrainLoader(data.train, { batch: 4, seq: 8, rank: k, world: n, seed: 1234 }).next();
      const p = initParams({ cfg, folder: null, name: 'x' }, { device: 'cpu:0', dtype: 'f32', seed: 7 });
      const st = new TrainStage(p);
      const f = st.forward(-1, b, undefined, { dscale: false });
      sum += f.lossSum! / f.count!;
      st.clear();
      p.dispose();
    }
    expect(Math.abs(r.losses[0]! - sum / n)).toBeLessThan(1e-5);
    const perRank = Math.floor(Math.floor(windows(data.train.length, 8) / n) / 4);
    expect(r.steps).toBe(2 * perRank);
    expect(epochs).toHaveLength(2);
    expect(steps.every((t) => t === 4 * 8 * n)).toBe(true); // tokens a step: global
    expect(Buffer.from(states[1]!.master.buffer).equals(Buffer.from(states[0]!.master.buffer))).toBe(true);
  });
});

function windows(tokensLen: number, seq: number): number {
  return Math.floor((tokensLen - 1) / seq);
}

describe('dp checkpoints', () => {
  it('resume continues the same run (losses bit for bit); a different world size is refused', async () => {
    const cfg = smallLlama;
    const data = tokens(cfg.vocabSize, 1200, 31);
    const o = base(cfg, data, 2);
    const ra = await trainDataParallel(o);
    const dir = path.join(tmp(), 'ck');
    const b = await DataParallelTrainer.create({ ...o, save: dir });
    const saved: number[] = [];
    try {
      for (let i = 0; i < 3; i++) await b.trainStep();
      await b.save(dir);
    } finally {
      await b.close();
    }
    const c = await DataParallelTrainer.create({ ...o, model: undefined, resume: dir, onSave: (_d, s) => saved.push(s), save: path.join(tmp(), 'ck2') });
    try {
      expect(c.step).toBe(3);
      const rc = await c.run();
      expect(rc.losses).toEqual(ra.losses);
      expect(saved).toEqual([6]);
    } finally {
      await c.close();
    }
    await expect(DataParallelTrainer.create({ ...o, devices: devs(3), resume: dir })).rejects.toThrow(/was run with world 2, this run has 3/);
    await expect(Trainer.create({ ...o, devices: undefined, device: 'cpu:0', resume: dir } as never)).rejects.toThrow(/world 2, this run has 1/);
  });
});

describe('dp failures end the run with the device named', () => {
  for (const kind of ['exit', 'throw'] as const)
    it(`a rank that ${kind === 'exit' ? 'dies' : 'throws'} at step 3`, async () => {
      const o = base(smallGpt2, tokens(smallGpt2.vocabSize, 1200, 41), 3, { fault: { rank: 1, step: 3, kind } });
      const dp = await DataParallelTrainer.create(o);
      const t0 = performance.now();
      const err = await dp.run().then(() => null, (e: Error) => e);
      expect(err?.message).toMatch(/stopped at step 3/);
      expect(err?.message).toContain('cpu:1');
      expect(err?.message).toMatch(kind === 'exit' ? /exited with code 3/ : /injected fault/);
      expect(performance.now() - t0).toBeLessThan(10_000); // well within the 20 s collective timeout
      expect(dp.step).toBe(2);
      await dp.close();
    });

  it('a rank that stalls: the others\' all-reduce times out, naming the late rank and its device', async () => {
    const o = base(smallGpt2, tokens(smallGpt2.vocabSize, 1200, 45), 2, { commTimeoutMs: 1500, fault: { rank: 1, step: 2, kind: 'stall' } });
    const dp = await DataParallelTrainer.create(o);
    const t0 = performance.now();
    const err = await dp.run().then(() => null, (e: Error) => e);
    const ms = performance.now() - t0;
    expect(err?.message).toMatch(/stopped at step 2 \(rank 0 = cpu:0, rank 1 = cpu:1\)/);
    expect(err?.message).toMatch(/timed out after 1500 ms .*waiting for rank(\(s\))? 1 /);
    expect(ms).toBeGreaterThan(1400);
    expect(ms).toBeLessThan(6000);
    await dp.close();
  });

  it('a worker terminated between steps', async () => {
    const o = base(smallGpt2, tokens(smallGpt2.vocabSize, 1200, 43), 2);
    let dp: DataParallelTrainer | null = null;
    o.onStep = (e) => {
      if (e.step === 2) void dp!.pool.terminate(1, 'killed by the test');
    };
    dp = await DataParallelTrainer.create(o);
    await expect(dp.run()).rejects.toThrow(/stopped at step 3 .*worker for cpu:1 .*killed by the test/);
    await dp.close();
  });
});

describe('parallm train --strategy dp', () => {
  it('prints the single-device JSON lines, with the global tokens a step; bad flag combinations are errors', async () => {
    const { spawnSync } = await import('node:child_process');
    const { writeFileSync } = await import('node:fs');
    const dir = tmp();
    const r = rng(3);
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran'];
    writeFileSync(path.join(dir, 'text.txt'), Array.from({ length: 3000 }, () => words[Math.floor(r() * words.length)]).join(' '));
    const cli = path.resolve('dist/cli/index.js');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [cli, 'train', '--model', 'tiny-gpt2', '--data', path.join(dir, 'text.txt'), '--data-cache', path.join(dir, 'cache'), '--seq', '8', '--batch', '2', ...args], { encoding: 'utf8', timeout: 120_000 });
    const ok = run('--strategy', 'dp', '--devices', 'cpu:0,cpu:1', '--bucket-mb', '1', '--steps', '2', '--eval-batches', '1', '--json', '--save', path.join(dir, 'ck'));
    expect(ok.status, ok.stderr).toBe(0);
    const lines = ok.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(['step', 'step', 'eval', 'save', 'done']);
    expect(lines[0].tokens).toBe(2 * 8 * 2);
    expect(lines[4].loss).toBe(lines[1].loss);
    expect(Number.isFinite(lines[2].valLoss)).toBe(true);
    const bad = run('--strategy', 'dp', '--steps', '2');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--strategy dp needs --devices/);
  });
});

describe('gradient buckets all-reduced during the backward (bucketMiB)', () => {
  it('TrainStage.onGradsReady fires head, the layers last to first, embed, once per backward', () => {
    const cfg = { ...smallLlama, layers: 3 };
    const p = initParams({ cfg, folder: null, name: 'x' }, { device: 'cpu:0', dtype: 'f32', seed: 3 });
    const st = new TrainStage(p);
    const seen: (string | number)[] = [];
    st.onGradsReady = (w) => seen.push(w);
    const b = new TrainLoader(tokens(cfg.vocabSize, 400, 9).train, { batch: 2, seq: 8 }).next();
    for (let i = 0; i < 2; i++) {
      st.forward(i, b);
      st.backward(i);
    }
    p.dispose();
    expect(seen).toEqual(['head', 2, 1, 0, 'embed', 'head', 2, 1, 0, 'embed']);
  });

  for (const [cfg, n, accum] of [[smallGpt2, 2, 1], [smallLlama, 3, 2]] as const)
    it(`${cfg.family}, ${n} devices, grad accumulation ${accum}: the same run bit for bit as one all-reduce after the backward`, async () => {
      const data = tokens(cfg.vocabSize, 1600, 51 + n);
      const o = base(cfg, data, n, { gradAccum: accum, steps: 4 });
      const runWith = async (bucketMiB: number) => {
        const t = await DataParallelTrainer.create({ ...o, bucketMiB });
        try {
          return { r: await t.run(), s: await t.replicaStates() };
        } finally {
          await t.close();
        }
      };
      const whole = await runWith(0);
      const bucketed = await runWith(1000 / 2 ** 20); // ~250 f32 elements: a bucket or more per layer
      expect(whole.s[0]!.buckets).toBeNull();
      expect(bucketed.r.losses).toEqual(whole.r.losses);
      for (let k = 0; k < n; k++) expect(Buffer.from(bucketed.s[k]!.master.buffer).equals(Buffer.from(whole.s[0]!.master.buffer)), `rank ${k}`).toBe(true);
      const { ranges, launchOrder } = bucketed.s[0]!.buckets!;
      // the buckets tile the flat gradient, and each went once, in the order the backward completed them
      const numel = whole.s[0]!.master.length;
      expect(ranges[0]!.start).toBe(0);
      expect(ranges[ranges.length - 1]!.end).toBe(numel);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.start).toBe(ranges[i - 1]!.end);
      expect(ranges.length).toBeGreaterThan(cfg.layers + 1);
      expect([...launchOrder].sort((a, b) => a - b)).toEqual(ranges.map((_, i) => i));
      const readiness = launchOrder.map((i) => ranges[i]!.ready);
      expect(readiness).toEqual([...readiness].sort((a, b) => a - b));
      expect(readiness[0]).toBeLessThan(readiness[readiness.length - 1]!); // some went before the backward ended
      expect(ranges[0]!.ready).toBe(cfg.layers + 1); // the embeddings' bucket (offset 0) waits for the last event
      for (let k = 1; k < n; k++) expect(bucketed.s[k]!.buckets!.launchOrder).toEqual(launchOrder);
    });
});
