// A training step's device work as one CUDA graph. On a GPU the host spends ~25-30 µs issuing each op,
// so a step of small batches is bound by the host, not the device: GPT-2 at 64 x 128 issues its zero,
// forward and backward (~600 ops) in ~17 ms, and the device has finished them 1-2 ms later
// (PARALLM_TRACE_STEP, bench/RESULTS.md S6-5). Captured once, a step is one graph launch.
//
// What the graph holds: zeroing the gradient, every micro-batch's forward and backward (the logits'
// gradient scaled by the step's dscale), an optional reduction (data parallel's one all-reduce of the
// gradient after the backward, or ZeRO-1's reduce-scatter), and the gradient's squared norm (ZeRO-1: its
// shard's, all-reduced). The host then reads the norm, checks the step, and runs AdamW eagerly (one op;
// ZeRO-1: on its shard, then the all-gather): the same device ops in the same order as Trainer's eager
// step, so the same bits. A batch's ids are written into the graph's own input tensors before each replay.
//
// The graph keeps every tensor its ops touched allocated while it lives (the step's activations stay
// reserved between steps), and is captured again when the batch shapes or dscale change.
import { deviceInfo, memoryStats, resetPeakMemory } from '../device.js';
import * as ops from '../ops.js';
import { capture, type Graph } from '../runtime.js';
import { Tensor } from '../tensor.js';
import type { FlatParams } from './params.js';
import type { MicroBatch, TrainStage } from './stage.js';

export interface CapturedStepResult {
  /** each micro-batch's per-token losses (owned by the graph: read them before the next run) */
  losses: Tensor[];
  /** the gradient's squared global norm, f32 [1] (owned by the graph) */
  normSq: Tensor;
}

/**
 * Whether a graph of the step fits: measured on one eager step. `begin()` before it, `fits()` after:
 * the step's activations and temporaries (its peak over what was allocated before it) must fit three
 * times into what the device has left, since a graph keeps every temporary of the step at once where an
 * eager step reuses their memory. (GPT-2 at 128 x 128 needs ~7 GB of 130 free and is captured; LLaMA-2-7B
 * on one GPU, ~14 GB of 20 left, is not.)
 */
export class GraphMemoryProbe {
  private before = 0;
  constructor(private readonly device: string) {}
  begin(): void {
    this.before = memoryStats(this.device).allocated;
    resetPeakMemory(this.device);
  }
  fits(): boolean {
    const m = memoryStats(this.device);
    const step = Math.max(0, m.peakAllocated - this.before);
    return deviceInfo(this.device).memoryFree + m.cached >= 3 * step;
  }
}

export class CapturedStep {
  private graph: Graph | null = null;
  private key = '';
  private ids: Tensor[] = [];
  private targets: Tensor[] = [];
  private out: CapturedStepResult | null = null;
  /** graphs captured so far (a new batch shape or dscale captures again) */
  captures = 0;

  /**
   * Whether a step on `device` is captured: CUDA devices, unless PARALLM_TRAIN_GRAPH=0 (the eager step,
   * e.g. to compare). PARALLM_TRAIN_GRAPH=1 captures on a CPU device too (its graphs record ops the same
   * way; the tests hold the captured step to the eager one there), though not a CPU communicator's
   * collectives, which run when called: the caller keeps data parallelism eager on CPU devices.
   */
  static wanted(device: string): boolean {
    const env = process.env.PARALLM_TRAIN_GRAPH;
    return env === '1' || (device.startsWith('cuda') && env !== '0');
  }

  constructor(
    private readonly stage: TrainStage,
    private readonly params: FlatParams,
    /** queued after the backward, inside the graph (data parallel's all-reduce of the gradient, or ZeRO-1's reduce-scatter) */
    private readonly reduce?: () => void,
    /** the squared global norm, queued inside the graph (ZeRO-1: its segments', all-reduced); by default the whole gradient's */
    private readonly normSqOf: () => Tensor = () => ops.sumSquares(params.grad),
    /**
     * called first inside the capture (ZeRO-1 marks the weights stale, so the forward's hooks record the
     * all-gathers of the last step's updates into the graph, and every replay gathers them)
     */
    private readonly prologue?: () => void,
  ) {}

  /** One step's device work for these micro-batches; captured on the first call (or a new shape / dscale). */
  run(mbs: MicroBatch[], dscale: number): CapturedStepResult {
    if (mbs.length === 0) throw new Error('CapturedStep.run: no micro-batches');
    for (const mb of mbs) this.stage.checkBatch(mb);
    const key = `${mbs.map((m) => `${m.batch}x${m.seq}`).join(',')}:${dscale}`;
    if (key !== this.key) this.capture(mbs, key, dscale);
    mbs.forEach((mb, i) => {
      this.ids[i]!.write(mb.inputs);
      this.targets[i]!.write(mb.targets);
    });
    this.graph!.replay();
    return this.out!;
  }

  /**
   * The last captured step again, on the inputs as they stand (no host write, no read, so successive calls
   * queue back to back): for benchmarks that time the graph apart from the host's part of a step
   * (PARALLM_TRAIN_GAPS, src/bench/train.ts).
   */
  replayOnly(): void {
    if (!this.graph) throw new Error('CapturedStep.replayOnly: nothing captured yet');
    this.graph.replay();
  }

  private capture(mbs: MicroBatch[], key: string, dscale: number): void {
    this.dispose();
    const device = this.params.device;
    const i32 = (n: number) => Tensor.empty([n], { dtype: 'i32', device });
    this.ids = mbs.map((mb) => i32(mb.inputs.length));
    this.targets = mbs.map((mb) => i32(mb.targets.length));
    for (const mb of mbs) this.stage.prepare(mb.batch, mb.seq);
    const losses: Tensor[] = [];
    let normSq: Tensor | null = null;
    try {
      this.graph = capture(device, () => {
        this.prologue?.();
        this.params.zeroGrad();
        try {
          for (const [i, mb] of mbs.entries()) {
            const r = this.stage.forward(i, { ...mb, onDevice: { inputs: this.ids[i], targets: this.targets[i] } }, undefined, { dscale, deferLoss: true });
            losses.push(r.losses!);
            this.stage.backward(i);
          }
        } finally {
          this.stage.clear();
        }
        this.reduce?.();
        normSq = this.normSqOf();
      });
    } catch (e) {
      losses.forEach((l) => l.dispose());
      (normSq as Tensor | null)?.dispose();
      this.dispose();
      throw new Error(`capturing the training step on ${device} failed: ${(e as Error).message}`);
    }
    this.out = { losses, normSq: normSq! };
    this.key = key;
    this.captures++;
  }

  dispose(): void {
    this.graph?.dispose();
    this.graph = null;
    this.out?.losses.forEach((l) => l.dispose());
    this.out?.normSq.dispose();
    this.out = null;
    for (const t of [...this.ids, ...this.targets]) t.dispose();
    this.ids = [];
    this.targets = [];
    this.key = '';
  }
}
