// ZeRO-1 for data-parallel training (DataParallelOptions.zero = 1): the optimizer state is split over
// the ranks. Rank r owns the shard [lo, hi) of the flat buffers (zeroShard in src/train/params.ts:
// floor(n / world) each, the last rank also the remainder): its FlatParams hold m, v (and, in bf16/f16,
// the f32 master) of that shard only; the compute weights and the gradient stay whole. A step:
//   backward (the whole gradient) -> reduceScatter 'avg' (rank r gets its shard of the mean gradient; the
//   remainder, fewer than world elements, is all-reduced) -> the global norm (each rank's sum of squares
//   over its shard, all-reduced) -> AdamW on the shard -> allGather of the compute weights (the
//   remainder broadcast from the last rank), so every rank holds the whole updated model again.
// With the CPU communicator the mean gradient's elements are bit for bit the non-sharded all-reduce's,
// and AdamW is elementwise, so only the norm's summation order differs from the non-sharded run.
import * as ops from '../ops.js';
import type { Communicator } from '../parallel/comm.js';
import { Tensor } from '../tensor.js';
import type { HostOptimizerState } from './checkpoint.js';
import type { AdamwHyper } from './optim.js';
import { zeroShard, type FlatParams } from './params.js';

export class ZeroOptimizer {
  readonly rank: number;
  readonly world: number;
  /** elements per rank in the reduce-scatter and all-gather (floor(n / world)) */
  readonly per: number;
  /** the remainder after world x per, owned by the last rank */
  readonly tail: number;

  constructor(
    readonly p: FlatParams,
    readonly comm: Communicator,
  ) {
    this.rank = comm.rank;
    this.world = comm.world;
    const want = zeroShard(p.n, this.rank, this.world);
    if (p.shard.lo !== want.lo || p.shard.hi !== want.hi)
      throw new Error(`ZeRO-1 on ${p.device}: the parameters hold shard [${p.shard.lo}, ${p.shard.hi}), rank ${this.rank} of ${this.world} owns [${want.lo}, ${want.hi})`);
    if (p.n < this.world) throw new Error(`ZeRO-1 on ${p.device}: ${p.n} parameters cannot be split over ${this.world} ranks`);
    this.per = Math.floor(p.n / this.world);
    this.tail = p.n - this.per * this.world;
  }

  /** The compute weights: param, or master itself in f32. */
  private get compute(): Tensor {
    return this.p.param ?? this.p.master;
  }

  /** After the backward: this rank's shard of the mean gradient (the rest of grad is left as it was). */
  reduceGradients(): void {
    const { p, per, tail, world, rank } = this;
    const g = p.grad;
    const whole = g.view(0, [per * world]), mine = g.view(rank * per, [per]);
    try {
      this.comm.reduceScatter(mine, whole, 'avg');
    } finally {
      whole.dispose();
      mine.dispose();
    }
    if (tail) {
      const t = g.view(per * world, [tail]);
      try {
        this.comm.allReduce(t, 'avg');
      } finally {
        t.dispose();
      }
    }
  }

  /** The global L2 norm of the mean gradient: each rank's sum of squares over its shard, summed over ranks. */
  gradNorm(): number {
    const s = this.normSqOnDevice();
    try {
      return Math.sqrt(s.toArray()[0]!);
    } finally {
      s.dispose();
    }
  }

  /**
   * gradNorm's square as an f32 [1] on the device, queued and not read (so a captured step can hold it:
   * src/train/captured-step.ts); the caller owns it.
   */
  normSqOnDevice(): Tensor {
    const { lo, hi } = this.p.shard;
    const g = this.p.grad.view(lo, [hi - lo]);
    try {
      const s = ops.sumSquares(g);
      try {
        this.comm.allReduce(s, 'sum');
      } catch (e) {
        s.dispose();
        throw e;
      }
      return s;
    } finally {
      g.dispose();
    }
  }

  /**
   * AdamW on this rank's shard (as adamwStep, with the global norm's clipping), then the all-gather of the
   * compute weights. Weight decay applies below nDecay: a shard gets nDecay relative to its start, so the
   * shard straddling it decays its first part only.
   */
  step(step: number, lr: number, h: AdamwHyper, norm: number): void {
    const p = this.p;
    const { lo, hi } = p.shard;
    const n = hi - lo;
    const gradScale = h.clip > 0 && Number.isFinite(h.clip) && norm > h.clip ? h.clip / norm : 1;
    const master = p.master.numel === n ? p.master : p.master.view(lo, [n]);
    const param = p.param ? p.param.view(lo, [n]) : undefined;
    const grad = p.grad.view(lo, [n]);
    try {
      ops.adamw(
        { master, param, grad, m: p.m, v: p.v },
        { nDecay: Math.min(n, Math.max(0, p.nDecay - lo)), lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay, gradScale, step },
      );
    } finally {
      if (master !== p.master) master.dispose();
      param?.dispose();
      grad.dispose();
    }
    this.gatherParams();
  }

  /** Every rank's shard of the compute weights to every rank (after a step, and after a resume). */
  gatherParams(): void {
    const { per, tail, world, rank } = this;
    const c = this.compute;
    const whole = c.view(0, [per * world]), mine = c.view(rank * per, [per]);
    try {
      this.comm.allGather(whole, mine);
    } finally {
      whole.dispose();
      mine.dispose();
    }
    if (tail) {
      const t = c.view(per * world, [tail]);
      try {
        this.comm.broadcast(t, world - 1);
      } finally {
        t.dispose();
      }
    }
  }

  /**
   * The whole optimizer state on rank 0's host (for its checkpoint; null on the other ranks): each rank
   * sends its shards of master, m and v to rank 0, which reads them through one shard-sized device buffer,
   * so no device ever holds the whole state. Every rank must call it.
   */
  gatherToRoot(): HostOptimizerState | null {
    const p = this.p;
    const { lo } = p.shard;
    // in f32 master is the whole compute copy on every rank: rank 0 has it already
    const parts: [keyof HostOptimizerState, Tensor, boolean][] = [['master', p.master, p.master.numel !== p.n], ['m', p.m, true], ['v', p.v, true]];
    if (this.rank !== 0) {
      for (const [, t, sharded] of parts) if (sharded) this.comm.send(t, 0);
      this.comm.drain();
      return null;
    }
    const out = {} as HostOptimizerState;
    const shardOf = (r: number) => zeroShard(p.n, r, this.world);
    const biggest = Math.max(...Array.from({ length: this.world }, (_, r) => shardOf(r).hi - shardOf(r).lo));
    const buf = Tensor.empty([biggest], { dtype: 'f32', device: p.device });
    try {
      for (const [name, t, sharded] of parts) {
        if (!sharded) {
          out[name] = t.toArray() as Float32Array;
          continue;
        }
        const all = new Float32Array(p.n);
        all.set(t.toArray() as Float32Array, lo);
        for (let r = 1; r < this.world; r++) {
          const s = shardOf(r);
          const into = buf.view(0, [s.hi - s.lo]);
          try {
            this.comm.recv(into, r);
            all.set(into.toArray() as Float32Array, s.lo);
          } finally {
            into.dispose();
          }
        }
        out[name] = all;
      }
    } finally {
      buf.dispose();
    }
    return out;
  }
}
