// ZeRO-1 for data-parallel training (DataParallelOptions.zero = 1): the optimizer state is split over
// the ranks. Rank r owns slice r of every gradient bucket (src/train/zero-layout.ts; one bucket [0, n)
// without bucketMiB): its FlatParams hold m, v (and, in bf16/f16, the f32 master) of those segments only;
// the compute weights and the gradient stay whole. A step:
//   backward, each bucket reduce-scattered 'avg' into its ranks' slices as soon as the backward completes
//   it (BucketedAllReduce with reduceBucket, on a second stream on GPUs; without buckets, the one bucket
//   after the backward; a bucket's tail of fewer than world elements is all-reduced) -> the global norm
//   (each rank's sum of squares over its segments, all-reduced) -> the step's AdamW settings written to
//   the device (ops.writeAdamwSettings) and the update left pending: the next forward's first read
//   (TrainStage.beforeForward) launches, bucket by bucket in the order the forward reads them, AdamW on
//   this rank's slice, the bucket's gradient zeroed for the coming backward, and its all-gather, on a
//   second stream; each layer waits for its own bucket only, so the update and the gathers overlap the
//   forward of the layers before (FSDP's prefetch, with ZeroRedundancyOptimizer's overlap of the step).
//   A captured step (src/train/captured-step.ts) holds all of it; reads between steps (evaluation, saves)
//   apply the pending update first (gatherParams, on every rank).
// With the CPU communicator the mean gradient's elements are bit for bit the non-sharded all-reduce's,
// and AdamW is elementwise, so only the norm's summation order differs from the non-sharded run.
import * as ops from '../ops.js';
import type { Communicator } from '../parallel/comm.js';
import { DeviceEvent, DeviceStream } from '../runtime.js';
import { Tensor } from '../tensor.js';
import type { HostOptimizerState } from './checkpoint.js';
import { BucketedAllReduce, type GradBucket } from './grad-buckets.js';
import type { AdamwHyper } from './optim.js';
import type { FlatParams } from './params.js';
import { bucketSplit, gatherOrder, segmentsSize, zeroSegments, type ZeroSegment } from './zero-layout.js';

export class ZeroOptimizer {
  readonly rank: number;
  readonly world: number;
  readonly buckets: readonly GradBucket[];
  /** with bucketed reduction: the backward's hook launches each bucket's reduce-scatter (TrainStage.onGradsReady) */
  readonly bucketed: BucketedAllReduce | null;
  /** bucket indices in the order the forward reads them (the all-gathers' order) */
  readonly gatherOrder: readonly number[];
  /** the other ranks' slices of the compute weights are a step behind: gather before reading them */
  private stale = false;
  /** the last step's update is still to run (AdamW, the gradient zeroed, then the gathers) */
  private pending = false;
  /** its AdamW settings, f32 [8] on the device (read when the AdamW kernels run: a graph's replay too) */
  private readonly settings: Tensor;
  /** gatherOrder's buckets before this one have been waited for since the last launch */
  private waited: number;
  private readonly gpu: { stream: DeviceStream; start: DeviceEvent; done: DeviceEvent[] } | null;

  constructor(
    readonly p: FlatParams,
    readonly comm: Communicator,
    /** micro-steps a step (BucketedAllReduce's: the last one's backward completes the gradient) */
    accum = 1,
    /** reduce-scatter bucket by bucket during the backward (p's zero buckets), not all after it */
    bucketed = false,
  ) {
    this.rank = comm.rank;
    this.world = comm.world;
    if (!p.zeroBuckets) throw new Error(`ZeRO-1 on ${p.device}: the parameters were made without a ZeRO split`);
    this.buckets = p.zeroBuckets;
    const want = zeroSegments(this.buckets, this.rank, this.world);
    if (JSON.stringify(want) !== JSON.stringify(p.segments))
      throw new Error(`ZeRO-1 on ${p.device}: the parameters hold other segments than rank ${this.rank} of ${this.world} owns`);
    if (p.n < this.world) throw new Error(`ZeRO-1 on ${p.device}: ${p.n} parameters cannot be split over ${this.world} ranks`);
    this.bucketed = bucketed ? new BucketedAllReduce(p, comm, this.buckets, accum, (i) => this.reduceBucket(i)) : null;
    this.gatherOrder = gatherOrder(this.buckets.map((b) => b.needed));
    this.waited = this.buckets.length;
    this.gpu = p.device.startsWith('cuda')
      ? { stream: new DeviceStream(p.device), start: new DeviceEvent(p.device), done: this.buckets.map(() => new DeviceEvent(p.device)) }
      : null;
    this.settings = Tensor.zeros([8], { dtype: 'f32', device: p.device });
  }

  /** The compute weights: param, or master itself in f32. */
  private get compute(): Tensor {
    return this.p.param ?? this.p.master;
  }

  /** Queues bucket i's reduce-scatter 'avg' in place (rank r's slice gets the mean), its tail all-reduced. */
  reduceBucket(i: number): void {
    const b = this.buckets[i]!;
    const { per, tail } = bucketSplit(b, this.world);
    const g = this.p.grad;
    if (per) {
      const whole = g.view(b.start, [per * this.world]), mine = g.view(b.start + this.rank * per, [per]);
      try {
        this.comm.reduceScatter(mine, whole, 'avg');
      } finally {
        whole.dispose();
        mine.dispose();
      }
    }
    if (tail) {
      const t = g.view(b.start + per * this.world, [tail]);
      try {
        this.comm.allReduce(t, 'avg');
      } finally {
        t.dispose();
      }
    }
  }

  /**
   * After the backward: this rank's segments of the mean gradient (the rest of grad is left as it was):
   * the buckets' reductions waited for (bucketed; `inGraph`: by the compute stream, as a captured step
   * needs), or all of them queued now.
   */
  reduceGradients(inGraph = false): void {
    if (this.bucketed) this.bucketed.finish(inGraph);
    else for (let i = 0; i < this.buckets.length; i++) this.reduceBucket(i);
  }

  /** The global L2 norm of the mean gradient: each rank's sum of squares over its segments, summed over ranks. */
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
    let s: Tensor | null = null;
    try {
      for (const seg of this.p.segments) {
        const g = this.p.grad.view(seg.lo, [seg.hi - seg.lo]);
        try {
          const q = ops.sumSquares(g);
          if (!s) s = q;
          else {
            ops.add(s, q, s);
            q.dispose();
          }
        } finally {
          g.dispose();
        }
      }
      s ??= Tensor.zeros([1], { dtype: 'f32', device: this.p.device });
      this.comm.allReduce(s, 'sum');
      return s;
    } catch (e) {
      s?.dispose();
      throw e;
    }
  }

  /**
   * The step's update (as adamwStep, with the global norm's clipping), left pending: its settings are
   * written to the device now, and the next forward (or gatherParams) runs AdamW on this rank's slice of
   * each bucket, zeroes the bucket's gradient and gathers it (updateBucket).
   */
  step(step: number, lr: number, h: AdamwHyper, norm: number): void {
    const gradScale = h.clip > 0 && Number.isFinite(h.clip) && norm > h.clip ? h.clip / norm : 1;
    ops.writeAdamwSettings(this.settings, { lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay, gradScale, step });
    this.pending = true;
    this.stale = true;
  }

  /** Whether the last step's update is still to run (the next forward runs it, or gatherParams). */
  get updatePending(): boolean {
    return this.pending;
  }

  /**
   * A step's first work, in place of zeroing the gradient: with an update pending the forward's hooks zero
   * each bucket after its AdamW has read it; without one (the first step, or after gatherParams) the
   * gradient is zeroed here. `captured`: a graph must hold the update (every replay runs it), so one
   * cannot be captured without it.
   */
  beginStep(captured = false): void {
    if (this.pending) return;
    if (captured) throw new Error(`ZeRO-1 on ${this.p.device}: a captured step must begin with a pending update`);
    this.p.zeroGrad();
  }

  /** AdamW on this rank's part of bucket i (its segments cut to the bucket; nDecay relative to each), then the bucket's gradient zeroed. */
  private updateBucket(i: number): void {
    const p = this.p;
    const b = this.buckets[i]!;
    for (const seg of p.segments) {
      const lo = Math.max(seg.lo, b.start), hi = Math.min(seg.hi, b.end);
      if (lo >= hi) continue;
      const n = hi - lo, local = seg.local + lo - seg.lo;
      const views = {
        master: p.master.view(p.masterSharded ? local : lo, [n]),
        param: p.param ? p.param.view(lo, [n]) : undefined,
        grad: p.grad.view(lo, [n]),
        m: p.m.view(local, [n]),
        v: p.v.view(local, [n]),
      };
      try {
        ops.adamw(views, { nDecay: Math.min(n, Math.max(0, p.nDecay - lo)), settings: this.settings });
      } finally {
        for (const t of Object.values(views)) t?.dispose();
      }
    }
    const g = p.grad.view(b.start, [b.end - b.start]);
    try {
      ops.fillUniform(g, { low: 0, high: 0 }); // (a memset on GPUs)
    } finally {
      g.dispose();
    }
  }

  /** The other ranks' slices are to be gathered before the next read (after a resume; a captured step's prologue). */
  markStale(): void {
    this.stale = true;
  }

  /** Whether the other ranks' slices of the compute weights are a step behind (gatherParams on every rank first). */
  get isStale(): boolean {
    return this.stale;
  }

  /**
   * TrainStage.beforeForward: the first read after a step launches the gathers; each group of weights
   * waits for the buckets the forward has reached.
   */
  beforeForward = (what: 'head' | 'embed' | number): void => {
    const { start, end } = this.p.stage;
    const at = what === 'embed' ? 0 : what === 'head' ? 1 + end - start : 1 + what - start;
    if (this.stale) this.launchGathers();
    this.waitFor(at);
  };

  /** The pending update applied and the whole compute weights on every rank now (before a save, a read of them, after a resume). */
  gatherParams(): void {
    if (this.stale) this.launchGathers();
    this.waitFor(Infinity);
  }

  /**
   * Bucket by bucket in gatherOrder: the pending update (updateBucket), then the all-gather of the updated
   * weights (its tail broadcast from the last rank); on GPUs on the second stream, an event after each.
   */
  private launchGathers(): void {
    const update = this.pending;
    this.stale = false;
    this.pending = false;
    this.waited = 0;
    const one = (i: number) => {
      if (update) this.updateBucket(i);
      this.gatherBucket(i);
    };
    if (!this.gpu) {
      for (const i of this.gatherOrder) one(i);
      this.waited = this.buckets.length;
      return;
    }
    const { stream, start, done } = this.gpu;
    start.record(); // after the last step's backward and norm on the compute stream
    stream.waitEvent(start);
    stream.use(() => {
      for (const i of this.gatherOrder) {
        one(i);
        done[i]!.record();
      }
    });
  }

  /** The compute stream waits for the gathers of the buckets the forward reads up to step `at`. */
  private waitFor(at: number): void {
    while (this.waited < this.gatherOrder.length && this.buckets[this.gatherOrder[this.waited]!]!.needed <= at) {
      this.gpu?.done[this.gatherOrder[this.waited]!]!.wait();
      this.waited++;
    }
  }

  private gatherBucket(i: number): void {
    const b = this.buckets[i]!;
    const { per, tail } = bucketSplit(b, this.world);
    const c = this.compute;
    if (per) {
      const whole = c.view(b.start, [per * this.world]), mine = c.view(b.start + this.rank * per, [per]);
      try {
        this.comm.allGather(whole, mine);
      } finally {
        whole.dispose();
        mine.dispose();
      }
    }
    if (tail) {
      const t = c.view(b.start + per * this.world, [tail]);
      try {
        this.comm.broadcast(t, this.world - 1);
      } finally {
        t.dispose();
      }
    }
  }

  /**
   * The whole optimizer state on rank 0's host (for its checkpoint; null on the other ranks): each rank
   * sends its segments' master, m and v to rank 0, which reads them through one device buffer of the
   * largest rank's size and places them by that rank's segments, so no device holds the whole state.
   * Every rank must call it.
   */
  gatherToRoot(): HostOptimizerState | null {
    const p = this.p;
    // the compute copy whole on every rank (the checkpoint's weights; in f32 it is master, whole)
    this.gatherParams();
    const parts: [keyof HostOptimizerState, Tensor, boolean][] = [['master', p.master, p.masterSharded], ['m', p.m, true], ['v', p.v, true]];
    if (this.rank !== 0) {
      for (const [, t, sharded] of parts) if (sharded) this.comm.send(t, 0);
      this.comm.drain();
      return null;
    }
    const out = {} as HostOptimizerState;
    const segs: ZeroSegment[][] = Array.from({ length: this.world }, (_, r) => zeroSegments(this.buckets, r, this.world));
    const biggest = Math.max(...segs.map(segmentsSize));
    const buf = Tensor.empty([biggest], { dtype: 'f32', device: p.device });
    const place = (all: Float32Array, local: Float32Array, r: number) => {
      for (const g of segs[r]!) all.set(local.subarray(g.local, g.local + g.hi - g.lo), g.lo);
    };
    try {
      for (const [name, t, sharded] of parts) {
        if (!sharded) {
          out[name] = t.toArray() as Float32Array;
          continue;
        }
        const all = new Float32Array(p.n);
        place(all, t.toArray() as Float32Array, 0);
        for (let r = 1; r < this.world; r++) {
          const into = buf.view(0, [segmentsSize(segs[r]!)]);
          try {
            this.comm.recv(into, r);
            place(all, into.toArray() as Float32Array, r);
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

  dispose(): void {
    this.bucketed?.dispose();
    this.settings.dispose();
  }
}
