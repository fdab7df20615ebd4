// AdamW over a stage's flat buffers (src/train/params.ts), global-norm clipping, and the learning-rate
// schedule (linear warmup, then cosine decay to a floor).
import * as ops from '../ops.js';
import type { FlatParams } from './params.js';

export interface LrSchedule {
  /** peak learning rate */
  lr: number;
  /** steps of linear warmup from lr / warmup up to lr */
  warmup: number;
  /** the run's total optimizer steps; the cosine reaches minLr there */
  total: number;
  /** the floor, as a fraction of lr; default 0.1 */
  minLrFrac?: number;
}

/** The learning rate of optimizer step `step` (1 on the first update): warmup, then cosine to the floor. */
export function lrAt(step: number, s: LrSchedule): number {
  const { lr, warmup, total } = s;
  const min = lr * (s.minLrFrac ?? 0.1);
  if (step <= warmup) return (lr * step) / warmup;
  if (step >= total) return min;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  return min + 0.5 * (1 + Math.cos(Math.PI * progress)) * (lr - min);
}

export interface AdamwHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** clip the gradient's global L2 norm to this; 0 (or Infinity) for no clipping */
  clip: number;
}

export const DEFAULT_ADAMW: AdamwHyper = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 };

/** The gradient's global L2 norm (one device read). */
export function gradNorm(p: FlatParams): number {
  const s = ops.sumSquares(p.grad);
  const v = s.toArray()[0]!;
  s.dispose();
  return Math.sqrt(v);
}

/**
 * One AdamW update (step counts from 1) with clipping: the gradient is scaled by clip / norm when its norm
 * exceeds clip. Returns the norm before clipping. The caller zeroes the gradient afterwards.
 */
export function adamwStep(p: FlatParams, step: number, lr: number, h: AdamwHyper, norm = gradNorm(p)): number {
  const gradScale = h.clip > 0 && Number.isFinite(h.clip) && norm > h.clip ? h.clip / norm : 1;
  ops.adamw(
    { master: p.master, param: p.param ?? undefined, grad: p.grad, m: p.m, v: p.v },
    { nDecay: p.nDecay, lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay, gradScale, step },
  );
  return norm;
}

/** The optimizer settings a run's options give (any left out take the defaults). */
export interface OptimizerOptions extends Partial<AdamwHyper> {
  lr?: number;
  warmup?: number;
  minLrFrac?: number;
}

/** The learning rate of `step` of a run of `total` steps and the AdamW settings, defaults filled in. */
export function stepSettings(o: OptimizerOptions, step: number, total: number): { lr: number; hyper: AdamwHyper } {
  return {
    lr: lrAt(step, { lr: o.lr ?? 3e-4, warmup: o.warmup ?? 0, total, minLrFrac: o.minLrFrac }),
    hyper: {
      beta1: o.beta1 ?? DEFAULT_ADAMW.beta1, beta2: o.beta2 ?? DEFAULT_ADAMW.beta2, eps: o.eps ?? DEFAULT_ADAMW.eps,
      weightDecay: o.weightDecay ?? DEFAULT_ADAMW.weightDecay, clip: o.clip ?? DEFAULT_ADAMW.clip,
    },
  };
}

/**
 * Stops a step whose loss or gradient norm is not finite, before any update: the weights stay as after the
 * step before (and so does the last checkpoint, named when there is one).
 */
export function checkStepFinite(step: number, loss: number, norm: number, lastSaved?: string | null): void {
  if (Number.isFinite(loss) && Number.isFinite(norm)) return;
  const what = !Number.isFinite(loss) ? `the loss is ${loss}` : `the gradient norm is ${norm}`;
  throw new Error(`training stopped at step ${step}: ${what}; the weights are left as after step ${step - 1}` + (lastSaved ? ` (last checkpoint: ${lastSaved})` : ''));
}
