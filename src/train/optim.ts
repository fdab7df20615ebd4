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
