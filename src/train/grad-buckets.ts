// Gradient all-reduce in buckets overlapped with the backward (as PyTorch DDP does): the flat gradient
// (src/train/params.ts) is cut into contiguous buckets of whole tensors, each all-reduced ('avg') as soon
// as the backward of the step's last micro-batch has finished every tensor in it (TrainStage.onGradsReady:
// the head, then the layers last to first, then the embeddings).
//
// The flat layout puts the matrices of every layer first (layer order, embeddings before them) and the
// norms and biases after, so the matrix buckets of the top layers are ready first and go while the lower
// layers' backward runs; a bucket mixing layers waits for the lowest one, the embeddings' bucket for the end.
// Every rank has the same layout and events, so every rank launches the same buckets in the same order, as
// collectives need. CPU communicators are synchronous: a bucket is reduced inside the hook (the order
// changes, not the wall time). On a GPU each bucket is queued on a second stream after an event on the
// compute stream, so NCCL runs beside the remaining backward kernels; finish() waits for that stream.
//
// All-reduce 'avg' works element by element, so the buckets give the same values as one all-reduce of the
// whole buffer (the tests check it bit for bit on CPU devices). ZeRO-1 (src/train/zero.ts) reduce-scatters
// the same buckets instead, each into its ranks' slices (src/train/zero-layout.ts), through `reduce`.
//
// Tied embeddings in two parts (`tiedSplit`): the embedding matrix's gradient is the head's product, done at
// the start of the backward, plus the lookup's rows, added at its very end; its bucket (the largest: GPT-2's
// 38.6 M elements) would wait for the end, exposed. Split, the bucket goes with the head's part at once
// (ready at 'head'), and the last micro-batch's lookup (its ids and the [tokens, C] gradient, a few MB) is
// all-gathered at the end and added on every rank, each rank's rows scaled by 1 / world: the same sum,
// within f32 rounding order, as reducing the whole (the tests check the loss curve against one device).
import type { Communicator } from '../parallel/comm.js';
import * as ops from '../ops.js';
import { DeviceEvent, DeviceStream } from '../runtime.js';
import { Tensor } from '../tensor.js';
import type { FlatParams, ParamEntry } from './params.js';

export interface GradBucket {
  /** element range [start, end) of the flat gradient */
  start: number;
  end: number;
  /** the index of the backward event (0: 'head', then one per layer, last: 'embed') after which it is complete */
  ready: number;
  /** the forward step that first reads its weights (0: the embeddings, 1 + i - start: layer i, then the head) */
  needed: number;
}

/** What BucketedAllReduce asks of its communicator (bench train's rehearsal of DP on one GPU brings its own). */
export type BucketComm = Pick<Communicator, 'world' | 'allReduce' | 'allGather' | 'drain'>;

/** The parts of FlatParams the buckets are cut from. */
type Layout = Pick<FlatParams, 'layout' | 'stage'>;

/**
 * The backward event index after which entry `e` is final (see TrainStage.onGradsReady); `embedAtHead`: the
 * tied embeddings' bucket goes after the head's part (their lookup's part is added after the reductions).
 */
function readyAt(e: ParamEntry, p: Layout, embedAtHead = false): number {
  const { start, end } = p.stage;
  const m = /^layers\.(\d+)\./.exec(e.key);
  if (m) return 1 + (end - 1 - Number(m[1]));
  const embedEvent = 1 + (end - start);
  if (e.key === 'positions') return embedEvent;
  if (e.key === 'embed') return p.stage.embed && !embedAtHead ? embedEvent : 0; // tied: the head writes it too
  return 0; // head, normF, normFBias
}

/** The forward step (TrainStage.beforeForward's order) that first reads entry `e`. */
function neededAt(e: ParamEntry, p: Layout): number {
  const { start, end } = p.stage;
  const m = /^layers\.(\d+)\./.exec(e.key);
  if (m) return 1 + Number(m[1]) - start;
  if (e.key === 'embed' || e.key === 'positions') return p.stage.embed ? 0 : 1 + end - start;
  return 1 + end - start; // head, normF, normFBias
}

/** Buckets of consecutive whole tensors, each closed once it holds at least `bucketElems` elements. */
export function gradBuckets(p: Layout, bucketElems: number, o: { embedAtHead?: boolean } = {}): GradBucket[] {
  if (!Number.isInteger(bucketElems) || bucketElems < 1) throw new Error(`gradBuckets: bucketElems must be a positive integer, got ${bucketElems}`);
  const out: GradBucket[] = [];
  let cur: GradBucket | null = null;
  for (const e of p.layout) {
    cur ??= { start: e.offset, end: e.offset, ready: 0, needed: Infinity };
    cur.end = e.offset + e.numel;
    cur.ready = Math.max(cur.ready, readyAt(e, p, o.embedAtHead));
    cur.needed = Math.min(cur.needed, neededAt(e, p));
    if (cur.end - cur.start >= bucketElems) {
      out.push(cur);
      cur = null;
    }
  }
  if (cur) out.push(cur);
  return out;
}

export class BucketedAllReduce {
  readonly buckets: GradBucket[];
  /** bucket indices in the order they were launched in the last step (tests check the overlap) */
  readonly launchOrder: number[] = [];
  private readonly views: Tensor[];
  private readonly launched: boolean[];
  private readonly events: Map<string | number, number>;
  private readonly finalEvent: number;
  private micro = 0;
  private readonly gpu: { stream: DeviceStream; event: DeviceEvent; done: DeviceEvent } | null;
  /** tiedSplit: the embeddings' gradient (a view), and the last micro-batch's lookup copied for the gather */
  private readonly tied: { grad: Tensor; ids: Tensor | null; dx: Tensor | null; allIds: Tensor | null; allDx: Tensor | null; held: boolean } | null;

  constructor(
    private readonly p: FlatParams,
    private readonly comm: BucketComm,
    /** about this many elements a bucket (gradBuckets), or the buckets themselves */
    buckets: number | readonly GradBucket[],
    /** micro-steps a step: only the last one's backward completes the gradient */
    private readonly accum: number,
    /** queues bucket i's collective (on the current stream); default: all-reduce 'avg' of its gradient */
    private readonly reduceBucket?: (i: number) => void,
    /** tied embeddings' gradient in two parts (see the top); needs tied embeddings and the all-reduce */
    tiedSplit = false,
  ) {
    if (!p.stage.embed || !p.stage.head) throw new Error('BucketedAllReduce: data parallel holds the whole model on every rank');
    const embed = p.layout.find((e) => e.key === 'embed');
    if (tiedSplit && (reduceBucket || !embed || !p.cfg.tieEmbeddings))
      throw new Error('BucketedAllReduce: the tied gradient split needs tied embeddings and the all-reduce (not ZeRO-1)');
    this.buckets = typeof buckets === 'number' ? gradBuckets(p, buckets, { embedAtHead: tiedSplit }) : [...buckets];
    this.views = this.buckets.map((b) => p.grad.view(b.start, [b.end - b.start]));
    this.launched = this.buckets.map(() => false);
    const { start, end } = p.stage;
    this.events = new Map<string | number, number>([['head', 0], ['embed', 1 + end - start]]);
    for (let i = start; i < end; i++) this.events.set(i, 1 + (end - 1 - i));
    this.finalEvent = 1 + end - start;
    this.gpu = p.device.startsWith('cuda') ? { stream: new DeviceStream(p.device), event: new DeviceEvent(p.device), done: new DeviceEvent(p.device) } : null;
    this.tied = tiedSplit ? { grad: p.grad.view(embed!.offset, [...embed!.shape]), ids: null, dx: null, allIds: null, allDx: null, held: false } : null;
  }

  /**
   * TrainStage.embedGrad (tiedSplit): on the step's last micro-batch, keeps a copy of the lookup's ids and
   * gradient for the gather at the 'embed' event and returns true (the stage then adds nothing itself);
   * otherwise false (the stage adds its rows, which the bucket's reduction carries).
   */
  embedLookup = (ids: Tensor, dx: Tensor): boolean => {
    const t = this.tied;
    if (!t || this.micro !== this.accum - 1) return false;
    const n = ids.numel, C = t.grad.shape[1]!, W = this.comm.world;
    if (t.ids?.numel !== n) {
      [t.ids, t.dx, t.allIds, t.allDx].forEach((x) => x?.dispose());
      const dev = this.p.device;
      t.ids = Tensor.empty([n], { dtype: 'i32', device: dev });
      t.dx = Tensor.empty([n, C], { dtype: dx.dtype, device: dev });
      t.allIds = Tensor.empty([W * n], { dtype: 'i32', device: dev });
      t.allDx = Tensor.empty([W * n, C], { dtype: dx.dtype, device: dev });
    }
    // Copies on the compute stream (the stage frees its own tensors next); the gather waits for them.
    t.ids.copyFrom(ids);
    t.dx!.copyFrom(dx);
    t.held = true;
    return true;
  };

  /** After every bucket is queued: every rank's lookup gathered and added into the reduced embedding gradient. */
  private gatherLookup(): void {
    const t = this.tied!;
    t.held = false;
    const run = () => {
      this.comm.allGather(t.allIds!, t.ids!);
      this.comm.allGather(t.allDx!, t.dx!);
      ops.embeddingBackward(t.allIds!, t.allDx!, t.grad, { scale: 1 / this.comm.world });
    };
    if (!this.gpu) return run();
    this.gpu.event.record();
    this.gpu.stream.waitEvent(this.gpu.event);
    this.gpu.stream.use(run);
  }

  /** TrainStage.onGradsReady. */
  onGradsReady = (what: 'head' | 'embed' | number): void => {
    const ev = this.events.get(what);
    if (ev === undefined) throw new Error(`BucketedAllReduce: unknown backward event ${String(what)}`);
    if (ev === 0 && this.micro === 0) this.launchOrder.length = 0;
    if (this.micro === this.accum - 1) this.launchUpTo(ev);
    if (ev === this.finalEvent && this.tied?.held) this.gatherLookup();
    if (ev === this.finalEvent) this.micro++;
  };

  private launchUpTo(ev: number): void {
    for (const [i, b] of this.buckets.entries()) {
      if (this.launched[i] || b.ready > ev) continue;
      this.launched[i] = true;
      this.launchOrder.push(i);
      if (!this.gpu) this.reduce(i);
      else {
        // the bucket's gradients are queued on the compute stream: the comm stream waits for them
        this.gpu.event.record();
        this.gpu.stream.waitEvent(this.gpu.event);
        this.gpu.stream.use(() => this.reduce(i));
      }
    }
  }

  private reduce(i: number): void {
    if (this.reduceBucket) this.reduceBucket(i);
    else this.comm.allReduce(this.views[i]!, 'avg');
  }

  /**
   * After the step's backward: reduce what the hooks did not (none, normally) and wait for the reductions:
   * on the host (polling), or with `onDevice` (a step being captured into a graph) by making the compute
   * stream wait for the comm stream, which a graph can hold.
   */
  finish(onDevice = false): void {
    if (this.micro !== this.accum) throw new Error(`BucketedAllReduce: ${this.micro} backward passes this step, expected ${this.accum}`);
    this.launchUpTo(Infinity);
    if (this.gpu && onDevice) {
      this.gpu.stream.use(() => this.gpu!.done.record());
      this.gpu.done.wait();
    } else if (this.gpu) {
      // polls, so a failed peer or the stop flag ends the wait (a stream synchronize could hang)
      this.gpu.stream.use(() => this.comm.drain());
    }
    this.micro = 0;
    this.launched.fill(false);
  }

  /** Starts the next step's bookkeeping afresh (a step that failed half way). */
  reset(): void {
    this.micro = 0;
    this.launched.fill(false);
    this.launchOrder.length = 0;
    if (this.tied) this.tied.held = false;
  }

  dispose(): void {
    this.views.forEach((v) => v.dispose());
    const t = this.tied;
    if (t) [t.grad, t.ids, t.dx, t.allIds, t.allDx].forEach((x) => x?.dispose());
  }
}
