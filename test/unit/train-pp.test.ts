// Model- and pipeline-parallel training (src/train/pipeline-parallel.ts, pipeline-worker.ts,
// pipeline-column.ts) on 2, 3 and 4 CPU devices: every micro-batch count and both schedules give the loss
// curve and the weights of one device with the same batch (the single-device Trainer is the reference,
// itself checked against float64 and PyTorch in train-grad / train-fixture-grads); tied embeddings stay
// identical on the first and last stage; dp x pp with the global data order equals one device with the
// global batch; a pipeline checkpoint is a sharded Hugging Face folder that Model.load reads and that
// resumes the same run; a failing rank ends the run naming its device.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/io/config.js';
import { Model } from '../../src/models/model.js';
import { PipelineTrainer, trainPipeline, type PipelineTrainOptions } from '../../src/train/pipeline-parallel.js';
import { Trainer, type TokenData } from '../../src/train/trainer.js';
import { ensureDist } from '../helpers/dist.js';
import { allLogits } from '../helpers/models.js';
import { rng, smallGpt2, smallLlama, tokens } from '../helpers/train.js';

beforeAll(() => ensureDist());

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'parallm-pp-'));
const devs = (n: number) => Array.from({ length: n }, (_, i) => `cpu:${i}`);


const gpt2x4: ModelConfig = { ...smallGpt2, layers: 4 };
const llamax3: ModelConfig = { ...smallLlama, layers: 3 };

const base = (cfg: ModelConfig, data: TokenData, n: number, extra: Partial<PipelineTrainOptions> = {}): PipelineTrainOptions => ({
  model: cfg, data, devices: devs(n), batch: 4, seq: 8, steps: 4, lr: 3e-3, warmup: 1, evalEvery: 2, seed: 7, commTimeoutMs: 20_000, ...extra,
});

/** The single-device run of the same options. */
async function oneDevice(o: PipelineTrainOptions, batch = o.batch) {
  const { devices: _d, dp: _p, microBatches: _m, schedule: _s, chunks: _c, dataOrder: _o, placement: _pl, deferWeightGrads: _dw, ...rest } = o;
  const t = await Trainer.create({ ...rest, device: 'cpu:0', batch });
  const r = await t.run();
  const byKey = new Map(t.params.layout.map((e) => [e.key, t.params.hostMaster().slice(e.offset, e.offset + e.numel)]));
  t.dispose();
  return { r, byKey };
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Runs a pipeline to the end; its stages' weights by key (tied embeddings: both copies). */
async function runPipeline(o: PipelineTrainOptions) {
  const t = await PipelineTrainer.create(o);
  try {
    const r = await t.run();
    const states = (await t.stageStates()).flat();
    return { r, states, t };
  } finally {
    await t.close();
  }
}

function expectSameRun(pp: Awaited<ReturnType<typeof runPipeline>>, one: Awaited<ReturnType<typeof oneDevice>>, cfg: ModelConfig, replicas = 1) {
  const { r } = pp;
  expect(r.losses).toHaveLength(one.r.losses.length);
  expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]!);
  // f32 reduction order only (micro-batch gradients summed, the norm summed over stages): ~1e-7 relative
  for (const [i, l] of r.losses.entries()) expect(Math.abs(l - one.r.losses[i]!), `step ${i + 1}`).toBeLessThan(1e-4 * Math.abs(one.r.losses[i]!));
  expect(r.valLosses.map((e) => e.step)).toEqual(one.r.valLosses.map((e) => e.step));
  for (const [i, e] of r.valLosses.entries()) expect(Math.abs(e.valLoss - one.r.valLosses[i]!.valLoss)).toBeLessThan(1e-4 * e.valLoss);
  // every weight of the model, from the stage that holds it (as in train-dp: absolute, AdamW amplifies the
  // reduction-order noise of near-zero gradients up to lr)
  const seen = new Set<string>();
  const embedCopies: Float32Array[] = [];
  for (const s of pp.states) {
    for (const e of s.layout) {
      const got = s.master.subarray(e.offset, e.offset + e.numel);
      if (e.key === 'embed') embedCopies.push(got);
      expect(maxAbs(got, one.byKey.get(e.key)!), `${e.key} of stage ${s.index}`).toBeLessThan(2e-5);
      seen.add(e.key);
    }
  }
  expect([...seen].sort()).toEqual([...one.byKey.keys()].sort());
  // tied embeddings: the first stage's and the last stage's copies identical bit for bit (and across replicas)
  if (cfg.tieEmbeddings) {
    expect(embedCopies.length).toBe(2 * replicas);
    for (const c of embedCopies) expect(Buffer.from(c.buffer, c.byteOffset, c.byteLength).equals(Buffer.from(embedCopies[0]!.buffer, embedCopies[0]!.byteOffset, embedCopies[0]!.byteLength))).toBe(true);
  }
}

describe('pp on n devices = one device, for every micro-batch count and both schedules', () => {
  const cases: [ModelConfig, number, number, 'gpipe' | '1f1b', number][] = [
    [gpt2x4, 2, 1, 'gpipe', 1], // MP: one micro-batch
    [gpt2x4, 2, 2, '1f1b', 1],
    [gpt2x4, 2, 4, 'gpipe', 1],
    [gpt2x4, 2, 3, '1f1b', 1], // uneven micro-batches (2, 1, 1)
    [llamax3, 3, 4, '1f1b', 1],
    [llamax3, 3, 2, 'gpipe', 1],
    [gpt2x4, 2, 2, 'gpipe', 2], // interleaved: 4 stages on 2 devices
    [gpt2x4, 2, 4, '1f1b', 2], // interleaved 1F1B
  ];
  for (const [cfg, n, micro, schedule, chunks] of cases)
    it(`${cfg.family} (${cfg.layers} layers), ${n} devices, ${micro} micro-batches, ${schedule}${chunks > 1 ? `, ${chunks} chunks` : ''}`, async () => {
      const data = tokens(cfg.vocabSize, 1600, 11 + n + micro);
      const o = base(cfg, data, n, { microBatches: micro, schedule, chunks, gradAccum: micro === 3 ? 2 : 1 });
      const pp = await runPipeline(o);
      expect(pp.t.stages).toHaveLength(n * chunks);
      expectSameRun(pp, await oneDevice(o), cfg);
    });
});

describe('pp with deferred weight gradients (deferWeightGrads) = one device', () => {
  const llamax4: ModelConfig = { ...smallLlama, layers: 4 };
  // [model, devices, micro-batches, schedule, chunks, deferWeightGrads]
  const cases: [ModelConfig, number, number, 'gpipe' | '1f1b', number, true | number][] = [
    [gpt2x4, 2, 4, '1f1b', 1, true],
    [gpt2x4, 2, 3, 'gpipe', 1, true], // uneven micro-batches, two micro-steps a step
    [gpt2x4, 2, 4, '1f1b', 2, true], // interleaved: each stage flushed after its own last backward of the column
    [llamax4, 4, 4, '1f1b', 1, true],
    [llamax4, 4, 2, 'gpipe', 1, true],
    [llamax4, 2, 4, '1f1b', 1, 2], // flushed after every 2 micro-batches
    [gpt2x4, 2, 4, 'gpipe', 1, 3], // after 3, then after the last
  ];
  for (const [cfg, n, micro, schedule, chunks, defer] of cases)
    it(`${cfg.family} (${cfg.layers} layers), ${n} devices, ${micro} micro-batches, ${schedule}${chunks > 1 ? `, ${chunks} chunks` : ''}${defer === true ? '' : `, flushed every ${defer}`}`, async () => {
      const data = tokens(cfg.vocabSize, 1600, 31 + n + micro);
      const o = base(cfg, data, n, { microBatches: micro, schedule, chunks, gradAccum: micro === 3 ? 2 : 1, deferWeightGrads: defer });
      const pp = await runPipeline(o);
      expectSameRun(pp, await oneDevice(o), cfg);
    });

  it('reports the bytes held: every micro-batch of a column, each linear layer\'s dy and x (and the head\'s), until the flush', async () => {
    const cfg = gpt2x4;
    const t = await PipelineTrainer.create(base(cfg, tokens(cfg.vocabSize, 1600, 5), 2, { microBatches: 4, deferWeightGrads: true }));
    try {
      const r = await t.trainStep();
      const { hidden: C, heads, kvHeads, headDim: D, intermediate: F } = cfg;
      // per token and layer: qkv (dy 3C, x C), out (C, C), up (F, C), down (C, F); the head's logits (64 padded rows) and input
      const perLayer = (heads + 2 * kvHeads) * D + C + C + heads * D + F + C + C + F;
      const tokensPerStep = 4 * 8;
      expect(r.heldBytes).toEqual([4 * tokensPerStep * 2 * perLayer, 4 * tokensPerStep * (2 * perLayer + 64 + C)]);
      // flushed every 2 of the 4 equal micro-batches: half as much held
      const half = await PipelineTrainer.create(base(cfg, tokens(cfg.vocabSize, 1600, 5), 2, { microBatches: 4, deferWeightGrads: 2 }));
      try {
        expect((await half.trainStep()).heldBytes).toEqual(r.heldBytes!.map((b) => b / 2));
      } finally {
        await half.close();
      }
      await expect(PipelineTrainer.create(base(cfg, tokens(cfg.vocabSize, 1600, 5), 2, { deferWeightGrads: 0 }))).rejects.toThrow(/deferWeightGrads must be true, false or a number of micro-batches >= 1, got 0/);
      const off = await PipelineTrainer.create(base(cfg, tokens(cfg.vocabSize, 1600, 5), 2, { microBatches: 4 }));
      try {
        expect((await off.trainStep()).heldBytes).toBeUndefined();
      } finally {
        await off.close();
      }
    } finally {
      await t.close();
    }
  });
});

describe('dp x pp on 4 CPU devices', () => {
  it('2 pipelines of 2 stages with batch b = one device with batch 2b (global data order)', async () => {
    const cfg = gpt2x4;
    const data = tokens(cfg.vocabSize, 1600, 77);
    const o = base(cfg, data, 4, { dp: 2, batch: 2, microBatches: 2, dataOrder: 'global' });
    const pp = await runPipeline(o);
    expect(pp.t.mesh.toString()).toBe('dp=2,pp=2,tp=1');
    expectSameRun(pp, await oneDevice(o, 4), cfg, 2);
    // the replicas of each stage identical bit for bit
    const byIndex = new Map<number, Float32Array[]>();
    for (const s of pp.states) (byIndex.get(s.index) ?? byIndex.set(s.index, []).get(s.index)!).push(s.master);
    for (const [, copies] of byIndex) expect(Buffer.from(copies[1]!.buffer).equals(Buffer.from(copies[0]!.buffer))).toBe(true);
  });
});

describe('pipeline checkpoints', () => {
  it('a sharded Hugging Face folder Model.load reads; resume continues the same run bit for bit; another split is refused', async () => {
    const cfg = llamax3;
    const data = tokens(cfg.vocabSize, 1200, 31);
    const o = base(cfg, data, 3, { steps: 5, microBatches: 2 });
    const ra = await trainPipeline(o);
    const dir = path.join(tmp(), 'ck');
    const b = await PipelineTrainer.create({ ...o, save: dir });
    try {
      for (let i = 0; i < 3; i++) await b.trainStep();
      await b.save(dir);
    } finally {
      await b.close();
    }
    for (const k of [1, 2, 3]) {
      expect(existsSync(path.join(dir, `model-0000${k}-of-00003.safetensors`))).toBe(true);
      expect(existsSync(path.join(dir, `optimizer-0000${k}-of-00003.safetensors`))).toBe(true);
    }
    const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    expect(index.weight_map['model.embed_tokens.weight']).toBe('model-00001-of-00003.safetensors');
    expect(index.weight_map['lm_head.weight']).toBe('model-00003-of-00003.safetensors');
    expect(index.weight_map['model.layers.1.self_attn.q_proj.weight']).toBe('model-00002-of-00003.safetensors');
    const m = Model.load(dir, { device: 'cpu:0', dtype: 'f32' });
    expect(m.config.layers).toBe(3);
    m.dispose();
    const saved: number[] = [];
    const c = await PipelineTrainer.create({ ...o, model: undefined, resume: dir, onSave: (_d, s) => saved.push(s), save: path.join(tmp(), 'ck2') });
    try {
      expect(c.step).toBe(3);
      const rc = await c.run();
      expect(rc.losses).toEqual(ra.losses);
      expect(saved).toEqual([5]);
    } finally {
      await c.close();
    }
    await expect(PipelineTrainer.create({ ...o, devices: devs(2), resume: dir })).rejects.toThrow(/was run with stages \[\[0,1\],\[1,2\],\[2,3\]\]/);
    await expect(Trainer.create({ ...o, devices: undefined, device: 'cpu:0', resume: dir } as never)).rejects.toThrow(/was saved with 3 stage\(s\) of layers \[0-1, 1-2, 2-3\].*resume with the same split/);
  });

  it('the weights Model.load reads from a pipeline checkpoint are the ones a single device saves after the same run', async () => {
    const cfg = gpt2x4;
    const data = tokens(cfg.vocabSize, 1200, 35);
    const o = base(cfg, data, 2, { steps: 2, microBatches: 2 });
    const d1 = path.join(tmp(), 'pp'), d2 = path.join(tmp(), 'one');
    await trainPipeline({ ...o, save: d1 });
    const { devices: _d, microBatches: _m, ...rest } = o;
    const t = await Trainer.create({ ...rest, device: 'cpu:0', save: d2 });
    await t.run();
    t.dispose();
    const logits = (dir: string) => {
      const m = Model.load(dir, { device: 'cpu:0', dtype: 'f32' });
      const l = allLogits(m, [1, 2, 3, 4, 5, 6]);
      m.dispose();
      return l;
    };
    const a = logits(d1), b2 = logits(d2);
    // the two runs' weights differ by reduction order only (see expectSameRun): logits to ~1e-5
    expect(maxAbs(a, b2)).toBeLessThan(1e-3);
  });
});

describe('pipeline failures end the run with the device named', () => {
  for (const kind of ['exit', 'throw'] as const)
    it(`a stage that ${kind === 'exit' ? 'dies' : 'throws'} at step 2`, async () => {
      const o = base(gpt2x4, tokens(gpt2x4.vocabSize, 1200, 41), 2, { fault: { rank: 1, step: 2, kind } });
      const t = await PipelineTrainer.create(o);
      const t0 = performance.now();
      const err = await t.run().then(() => null, (e: Error) => e);
      expect(err?.message).toMatch(/pipeline training stopped at step 2 \(rank 0 = cpu:0 \(stage 0\), rank 1 = cpu:1 \(stage 1\)\)/);
      expect(err?.message).toMatch(kind === 'exit' ? /cpu:1.*exited with code 3/ : /cpu:1: injected fault/);
      expect(performance.now() - t0).toBeLessThan(10_000); // well within the 20 s communicator timeout
      expect(t.step).toBe(1);
      await t.close();
    });

  it('bad options are clear errors before any worker starts', async () => {
    const data = tokens(gpt2x4.vocabSize, 1200, 43);
    await expect(PipelineTrainer.create(base(gpt2x4, data, 2, { schedule: '1f1b', chunks: 2, microBatches: 3 }))).rejects.toThrow(/3 micro-batches must be a multiple of the 2 devices/);
    await expect(PipelineTrainer.create(base(gpt2x4, data, 3, { dp: 2 }))).rejects.toThrow(/dp 2 must be a positive integer dividing the 3 devices/);
    await expect(PipelineTrainer.create(base(gpt2x4, data, 2, { microBatches: 5 }))).rejects.toThrow(/5 micro-batches for a batch of 4/);
    await expect(PipelineTrainer.create(base(gpt2x4, data, 2, { devices: ['cpu:0', 'cpu:0'] }))).rejects.toThrow(/listed twice/);
    await expect(PipelineTrainer.create(base(smallGpt2, data, 3))).rejects.toThrow(/layers/);
  });
});

describe('parallm train --strategy pp|mp', () => {
  it('JSON lines as for one device, a sharded checkpoint; bad flag combinations are errors', async () => {
    const { spawnSync } = await import('node:child_process');
    const { writeFileSync } = await import('node:fs');
    const dir = tmp();
    const r = rng(3);
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran'];
    writeFileSync(path.join(dir, 'text.txt'), Array.from({ length: 3000 }, () => words[Math.floor(r() * words.length)]).join(' '));
    const cli = path.resolve('dist/cli/index.js');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [cli, 'train', '--model', 'tiny-gpt2', '--data', path.join(dir, 'text.txt'), '--data-cache', path.join(dir, 'cache'), '--seq', '8', '--batch', '4', ...args], { encoding: 'utf8', timeout: 120_000 });
    const ok = run('--strategy', 'pp', '--devices', 'cpu:0,cpu:1', '--micro-batches', '2', '--schedule', 'gpipe', '--steps', '2', '--eval-batches', '1', '--json', '--save', path.join(dir, 'ck'));
    expect(ok.status, ok.stderr).toBe(0);
    const lines = ok.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.type)).toEqual(['step', 'step', 'eval', 'save', 'done']);
    expect(lines[0].tokens).toBe(4 * 8);
    expect(existsSync(path.join(dir, 'ck', 'model-00002-of-00002.safetensors'))).toBe(true);
    const mp = run('--strategy', 'mp', '--devices', 'cpu:0,cpu:1,cpu:2,cpu:3', '--dp', '2', '--steps', '1', '--eval-batches', '1');
    expect(mp.status, mp.stderr).toBe(0);
    expect(mp.stderr).toMatch(/2 pipelines x 2 devices \(mp, layers 0-2@cpu:0 3-5@cpu:1, 1 micro-batch, 1f1b\)/);
    const dw = run('--strategy', 'pp', '--devices', 'cpu:0,cpu:1', '--micro-batches', '2', '--defer-dw', '--steps', '1', '--eval-batches', '1', '--json');
    expect(dw.status, dw.stderr).toBe(0);
    const done = JSON.parse(dw.stdout.trim().split('\n').at(-1)!);
    expect(done.type).toBe('done');
    expect(done.deferredBytes).toHaveLength(2);
    for (const b of done.deferredBytes) expect(b).toBeGreaterThan(0);
    const dwText = run('--strategy', 'pp', '--devices', 'cpu:0,cpu:1', '--micro-batches', '4', '--defer-dw', '2', '--steps', '1', '--eval-batches', '1');
    expect(dwText.status, dwText.stderr).toBe(0);
    expect(dwText.stderr).toMatch(/4 micro-batches, 1f1b, deferred weight gradients \(every 2 micro-batches\)\)/);
    expect(dwText.stderr).toMatch(/held for deferred weight gradients at most \S+ \S+ \/ \S+ \S+ per device/);
    for (const [args, msg] of [
      [['--strategy', 'pp', '--steps', '1'], /--strategy pp needs --devices/],
      [['--strategy', 'mp', '--devices', 'cpu:0,cpu:1', '--micro-batches', '2', '--steps', '1'], /mp runs one micro-batch/],
      [['--strategy', 'pp', '--devices', 'cpu:0,cpu:1', '--schedule', 'zigzag', '--steps', '1'], /--schedule must be gpipe or 1f1b/],
      [['--strategy', 'dp', '--devices', 'cpu:0,cpu:1', '--micro-batches', '2', '--steps', '1'], /are for --strategy pp/],
      [['--strategy', 'dp', '--devices', 'cpu:0,cpu:1', '--defer-dw', '--steps', '1'], /--defer-dw is for --strategy pp/],
      [['--strategy', 'pp', '--devices', 'cpu:0,cpu:1', '--defer-dw', '0', '--steps', '1'], /--defer-dw must be a positive integer, got "0"/],
    ] as const) {
      const bad = run(...args);
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toMatch(msg);
    }
  });
});
