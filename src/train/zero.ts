// ZeRO-1 for data-parallel training (DataParallelOptions.zero = 1): the optimizer state is split over
// the ranks. Rank r owns slice r of every gradient bucket (src/train/zero-layout.ts; one bucket [0, n)
// without bucketMiB): its FlatParams hold m, v (and, in bf16/f16, the f32 master) of those segments only;
// the compute weights and the gradient stay whole. A step:
//   backward, each bucket reduce-scattered 'avg' into its ranks' slices as soon as the backward completes
//   it (BucketedAllReduce with reduceBucket, on a second stream on GPUs; without buckets, the one bucket
//   after the backward; a bucket's tail of fewer than world elements is all-reduced) -> the global norm
//   (each rank's sum of squares over its segments, all-reduced) -> AdamW on each segment -> the weights
//   are stale on the other ranks until the next forward: its first read (TrainStage.beforeForward)
//   launches every bucket's all-gather, in the order the forward reads them, on a second stream, and
//   each layer waits for its bucket only, so the gathers overlap the forward (FSDP's prefetch).
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
   * AdamW on this rank's segments (as adamwStep, with the global norm's clipping). Weight decay applies
   * below nDecay: a segment gets nDecay relative to its start. The other ranks' slices of the compute
   * weights are stale afterwards, until the next forward gathers them (or gatherParams).
   */
  step(step: number, lr: number, h: AdamwHyper, norm: number): void {
    const p = this.p;
    const gradScale = h.clip > 0 && Number.isFinite(h.clip) && norm > h.clip ? h.clip / norm : 1;
    for (const seg of p.segments) {
      const n = seg.hi - seg.lo;
      const views = {
        master: p.master.view(p.masterSharded ? seg.local : seg.lo, [n]),
        param: p.param ? p.param.view(seg.lo, [n]) : undefined,
        grad: p.grad.view(seg.lo, [n]),
        m: p.m.view(seg.local, [n]),
        v: p.v.view(seg.local, [n]),
      };
      try {
        ops.adamw(views, {
          nDecay: Math.min(n, Math.max(0, p.nDecay - seg.lo)), lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay, gradScale, step,
        });
      } finally {
        for (const t of Object.values(views)) t?.dispose();
      }
    }
    this.stale = true;
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

  /** The whole compute weights on every rank now (before a save, a read of them, after a resume). */
  gatherParams(): void {
    if (this.stale) this.launchGathers();
    this.waitFor(Infinity);
  }

  /** Every bucket's all-gather of the updated weights (its tail broadcast from the last rank), in gatherOrder. */
  private launchGathers(): void {
    this.stale = false;
    this.waited = 0;
    if (!this.gpu) {
      for (const i of this.gatherOrder) this.gatherBucket(i);
      this.waited = this.buckets.length;
      return;
    }
    const { stream, start, done } = this.gpu;
    start.record(); // after AdamW on the compute stream
    stream.waitEvent(start);
    stream.use(() => {
      for (const i of this.gatherOrder) {
        this.gatherBucket(i);
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
  }
}
