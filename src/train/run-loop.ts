// The loop every trainer runs (one device, data parallel, pipeline): steps to the end with the per-step
// callback, validation at the end of each epoch (and every evalEvery steps, and at the end of the run),
// the epoch's time and mean tokens/s, and checkpoints every saveEvery steps and at the end. The trainers
// differ only in how a step, an evaluation and a save are done (StepDriver).
import type { EvalEvent, TrainOptions, TrainResult } from './trainer.js';

export interface StepOutcome {
  loss: number;
  gradNorm: number;
  lr: number;
}

export interface StepDriver {
  readonly opts: Pick<TrainOptions, 'onStep' | 'onEval' | 'onEpoch' | 'evalEvery' | 'save' | 'saveEvery'>;
  /** optimizer steps done (advanced by trainStep) */
  readonly step: number;
  readonly totalSteps: number;
  readonly stepsPerEpoch: number;
  /** tokens one optimizer step trains on, over every replica */
  readonly tokensPerStep: number;
  readonly losses: readonly number[];
  readonly valLosses: EvalEvent[];
  /** the checkpoint folder written last */
  readonly lastSaved: string | null;
  trainStep(): StepOutcome | Promise<StepOutcome>;
  evaluate(): number | Promise<number>;
  save(dir: string): void | Promise<void>;
}

export async function runSteps(d: StepDriver): Promise<TrainResult> {
  const o = d.opts;
  const tokensPerStep = d.tokensPerStep;
  const t0 = performance.now();
  let epochStart = t0;
  let epochRates: number[] = [];
  const first = d.step;
  const evalNow = async (epoch: number) => {
    const e = { step: d.step, epoch, valLoss: await d.evaluate() };
    d.valLosses.push(e);
    o.onEval?.(e);
    return e.valLoss;
  };
  while (d.step < d.totalSteps) {
    const ts = performance.now();
    const r = await d.trainStep();
    const now = performance.now();
    const stepMs = now - ts;
    const epoch = Math.floor((d.step - 1) / d.stepsPerEpoch);
    const avg = (now - t0) / (d.step - first);
    const tokensPerSec = tokensPerStep / (stepMs / 1e3);
    epochRates.push(tokensPerSec);
    o.onStep?.({
      step: d.step, totalSteps: d.totalSteps, epoch, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokens: tokensPerStep,
      tokensPerSec, stepMs, elapsedMs: now - t0, etaMs: avg * (d.totalSteps - d.step),
    });
    const endOfEpoch = d.step % d.stepsPerEpoch === 0;
    const last = d.step === d.totalSteps;
    let val: number | undefined;
    if (endOfEpoch || (o.evalEvery && d.step % o.evalEvery === 0) || last) val = await evalNow(epoch);
    if (endOfEpoch) {
      const tps = epochRates.reduce((a, b) => a + b, 0) / epochRates.length;
      o.onEpoch?.({ epoch, step: d.step, seconds: (performance.now() - epochStart) / 1e3, tokensPerSec: tps, valLoss: val! });
      epochStart = performance.now();
      epochRates = [];
    }
    if (o.save && ((o.saveEvery && d.step % o.saveEvery === 0) || last)) await d.save(o.save);
  }
  const secs = (performance.now() - t0) / 1e3;
  return { steps: d.step, losses: [...d.losses], valLosses: [...d.valLosses], checkpoint: d.lastSaved, tokensPerSec: ((d.step - first) * tokensPerStep) / Math.max(secs, 1e-9) };
}
