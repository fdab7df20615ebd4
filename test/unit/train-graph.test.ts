// The training step as one graph (src/train/captured-step.ts), on a CPU device, whose graphs record ops
// as CUDA graphs do (PARALLM_TRAIN_GRAPH=1 turns the capture on there): the captured steps give the eager
// steps' losses, gradient norms and weights bit for bit (both families, gradient accumulation, a new batch
// shape captured again), a batch's ids reach the graph (not the ones it was captured with), the stage's
// borrowed device ids are left alone, and a capture that fails leaves the run going op by op.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ModelConfig } from '../../src/io/config.js';
import { CapturedStep } from '../../src/train/captured-step.js';
import { initParams } from '../../src/train/init.js';
import { adamwStep, DEFAULT_ADAMW, gradNorm } from '../../src/train/optim.js';
import { sumLosses, TrainStage } from '../../src/train/stage.js';
import { Trainer, type TokenData, type TrainOptions } from '../../src/train/trainer.js';
import { Tensor } from '../../src/tensor.js';
import { randomBatch, smallGpt2, smallLlama, tokens, trainSteps } from '../helpers/train.js';

const base = (cfg: ModelConfig, data: TokenData, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  model: cfg, data, device: 'cpu:0', batch: 2, seq: 8, steps: 5, lr: 3e-3, warmup: 1, evalEvery: 0, seed: 5, ...extra,
});

const run = trainSteps;

afterEach(() => {
  delete process.env.PARALLM_TRAIN_GRAPH;
  vi.restoreAllMocks();
});

describe('Trainer: a captured step is the eager step', () => {
  for (const cfg of [smallGpt2, smallLlama])
    for (const accum of [1, 2])
      it(`${cfg.family}, grad accumulation ${accum}: losses, norms and weights bit for bit`, async () => {
        const opts = base(cfg, tokens(cfg.vocabSize, 1500, 3 + accum), { gradAccum: accum });
        const eager = await run(opts, '0');
        const graph = await run(opts, '1');
        expect(eager.captured).toBeNull();
        expect(graph.captured).toBeInstanceOf(CapturedStep); // step 1 measured, steps 2.. replayed
        expect(graph.graphSteps).toBe(4);
        expect(graph.steps).toEqual(eager.steps);
        expect(graph.master).toEqual(eager.master);
        expect(eager.steps[4]!.loss).toBeLessThan(eager.steps[0]!.loss);
      });

  it('a capture that fails: said once, and the run goes on op by op with the same losses', async () => {
    const opts = base(smallGpt2, tokens(smallGpt2.vocabSize, 1500, 9));
    const eager = await run(opts, '0');
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    vi.spyOn(CapturedStep.prototype as unknown as { capture: () => void }, 'capture').mockImplementation(() => {
      throw new Error('capturing the training step on cpu:0 failed: injected');
    });
    const graph = await run(opts, '1');
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]![0])).toMatch(/capturing the training step on cpu:0 failed: injected; the steps run op by op instead/);
    expect(graph.captured).toBeNull();
    expect(graph.steps).toEqual(eager.steps);
  });

  it('after four captures (batches whose dscale keeps changing) the run goes on op by op, with the same losses', async () => {
    const opts = base(smallLlama, tokens(smallLlama.vocabSize, 1500, 4), { steps: 6 });
    const eager = await run(opts, '0');
    process.env.PARALLM_TRAIN_GRAPH = '1';
    const t = await Trainer.create(opts);
    try {
      const steps = [t.trainStep(), t.trainStep(), t.trainStep()];
      expect(t.graphSteps).toBe(2);
      const cs = (t as unknown as { captured: CapturedStep }).captured;
      expect(cs.captures).toBe(1);
      cs.captures = 4; // as if four shapes had come
      steps.push(t.trainStep(), t.trainStep(), t.trainStep());
      expect(t.graphSteps).toBe(2);
      expect((t as unknown as { captured: unknown }).captured).toBeNull();
      expect(steps).toEqual(eager.steps);
    } finally {
      t.dispose();
    }
  });
});

describe('CapturedStep', () => {
  it('replays with each batch ids, captures again for a new shape, and equals the eager step', () => {
    const V = smallLlama.vocabSize;
    const mk = () => initParams({ cfg: smallLlama, name: 'small', folder: null } as never, { device: 'cpu:0', dtype: 'f32', seed: 3 });
    const pa = mk(), pb = mk();
    const sa = new TrainStage(pa), sb = new TrainStage(pb);
    const cs = new CapturedStep(sb, pb);
    try {
      const batches = [randomBatch(V, 2, 8, 1), randomBatch(V, 2, 8, 2), randomBatch(V, 3, 4, 3), randomBatch(V, 2, 8, 4)];
      for (const [i, mb] of batches.entries()) {
        const dscale = 1 / mb.targets.length;
        // eager
        pa.zeroGrad();
        const f = sa.forward(0, mb, undefined, { dscale, deferLoss: true });
        sa.backward(0);
        sa.clear();
        const na = gradNorm(pa);
        const la = sumLosses(f.losses!);
        f.losses!.dispose();
        // captured
        const r = cs.run([mb], dscale);
        const nb = Math.sqrt(r.normSq.toArray()[0]!);
        expect(sumLosses(r.losses[0]!), `batch ${i}: loss`).toBe(la);
        expect(nb, `batch ${i}: norm`).toBe(na);
        expect(Array.from(pb.grad.toArray()), `batch ${i}: gradient`).toEqual(Array.from(pa.grad.toArray()));
        adamwStep(pa, i + 1, 1e-3, DEFAULT_ADAMW, na);
        adamwStep(pb, i + 1, 1e-3, DEFAULT_ADAMW, nb);
      }
      expect(pb.hostMaster()).toEqual(pa.hostMaster());
    } finally {
      cs.dispose();
      sa.dispose();
      sb.dispose();
      pa.dispose();
      pb.dispose();
    }
  });

  it("the stage reads borrowed device ids and leaves them alone; a wrong one is refused", () => {
    const p = initParams({ cfg: smallGpt2, name: 'small', folder: null } as never, { device: 'cpu:0', dtype: 'f32', seed: 1 });
    const st = new TrainStage(p);
    try {
      const mb = randomBatch(smallGpt2.vocabSize, 2, 4, 7);
      const ids = Tensor.from(mb.inputs, [8], { dtype: 'i32', device: 'cpu:0' });
      const tg = Tensor.from(mb.targets, [8], { dtype: 'i32', device: 'cpu:0' });
      const host = st.forward(0, mb, undefined, { dscale: false });
      const dev = st.forward(1, { ...mb, onDevice: { inputs: ids, targets: tg } }, undefined, { dscale: false });
      expect(dev.lossSum).toBe(host.lossSum);
      expect(ids.disposed || tg.disposed).toBe(false);
      expect(Array.from(ids.toArray())).toEqual(Array.from(mb.inputs));
      const bad = Tensor.from(mb.inputs, [8], { dtype: 'f32', device: 'cpu:0' });
      expect(() => st.forward(2, { ...mb, onDevice: { inputs: bad } }, undefined, { dscale: false })).toThrow(/onDevice.inputs must be i32 \[8\] on cpu:0, got f32/);
      [ids, tg, bad].forEach((t) => t.dispose());
    } finally {
      st.dispose();
      p.dispose();
    }
  });
});
