// Training on one device: the whole model as one TrainStage, AdamW with clipping and a warmup + cosine
// schedule, gradient accumulation over micro-steps, validation, checkpoints and resume.
//
// A step: zero the gradient; per micro-step take a batch from the loader, forward (the logits' gradient
// scaled by 1 / the step's counted targets, so the micro-steps' gradients add up to the step's mean loss),
// backward; then the global norm, a non-finite loss or norm stops the run before the update (the last
// checkpoint stays the good one), else one fused AdamW call. On a GPU everything before the norm's read
// is one CUDA graph from the second step on (src/train/captured-step.ts). Everything the next step depends
// on (weights, moments, step, loader position) is in the checkpoint, and the CPU kernels are deterministic,
// so a resumed run continues with the same losses bit for bit.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { dtypeSize, type DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { valBatches, type TrainLoader, type Tokens } from '../data/loader.js';
import type { DataShard } from './dp-data.js';
import { loadOptimizerState, saveCheckpoint, type HostOptimizerState, type SaveOptions } from './checkpoint.js';
import { initParamsAsync, type ModelSource } from './init.js';
import { runSteps } from './run-loop.js';
import { prepareRun, type Data } from './run-setup.js';
import { reportingLoad, type LoadReporter } from '../models/load-steps.js';
import { adamwStep, checkStepFinite, gradNorm, stepSettings } from './optim.js';
import type { FlatParams } from './params.js';
import { CapturedStep, GraphMemoryProbe, type CapturedStepResult } from './captured-step.js';
import { countTargets, sumLosses, TrainStage, type MicroBatch } from './stage.js';
import type { Tensor } from '../tensor.js';
import type { Communicator } from '../parallel/comm.js';
import { ZeroOptimizer } from './zero.js';

/** Token streams to train on, already tokenized; `id` identifies the data for resume checks. */
export interface TokenData {
  train: Tokens;
  val: Tokens;
  id: string;
  /** the tokenizer's vocabulary (ids must fit the model's); default: the largest id + 1 */
  vocabSize?: number;
}

export interface TrainOptions {
  /** a preset (from scratch), a Hugging Face folder (fine-tune), or a config (random init); with resume,
   *  optional (the checkpoint's), and when given it must be the checkpoint's model */
  model?: string | ModelConfig;
  /** 'brown', a text file or folder of .txt/.md (tokenized with GPT-2 BPE, cached), a prepared dataset folder, or tokens */
  data: string | TokenData;
  /** where a text source's tokens are cached; default under the OS temp folder */
  dataCache?: string;
  /** only these Brown files (with data 'brown') */
  brownFiles?: readonly string[];
  device?: string;
  dtype?: DType;
  /** seed of a random init; default 0 */
  seed?: number;
  /** seed of the loader's shuffle; default 1234 */
  dataSeed?: number;
  batch: number;
  seq: number;
  /** optimizer steps; or epochs (passes over the training windows) */
  steps?: number;
  epochs?: number;
  lr?: number;
  warmup?: number;
  minLrFrac?: number;
  gradAccum?: number;
  /** validate every this many steps (0: only at the end of each epoch and of the run) */
  evalEvery?: number;
  /** at most this many validation batches (default: all) */
  evalBatches?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** global gradient-norm clip; 0 for none. Default 1 */
  clip?: number;
  /** checkpoint folder: saved every saveEvery steps (0: only at the end) and at the end */
  save?: string;
  saveEvery?: number;
  /** a checkpoint folder to continue from */
  resume?: string;
  onStep?: (e: StepEvent) => void;
  /** hears the weights' load (the CLI's progress bar); a resumed run loads its optimizer state without it */
  loadProgress?: LoadReporter;
  onEval?: (e: EvalEvent) => void;
  onEpoch?: (e: EpochEvent) => void;
  onSave?: (dir: string, step: number) => void;
  /** @internal test hook: see SaveOptions.onFileWritten */
  onCheckpointFile?: SaveOptions['onFileWritten'];
  /** @internal data parallel (src/train/worker.ts): this replica's rank and share of the batches */
  shard?: DataShard;
  /**
   * @internal data parallel: called after the backward of every step, before the gradient norm (the
   * all-reduce). `inGraph`: it is being captured (src/train/captured-step.ts), so it must queue its work
   * and join it back to the current stream on the device, not wait on the host.
   */
  reduceGradients?: (p: FlatParams, o?: { inGraph?: boolean }) => void;
  /**
   * @internal data parallel: after a captured step's replay, before its results are read: waits for the
   * device's queued work the way the communicator does (polling, so a failed peer, the timeout or the
   * stop flag end the wait with an error instead of a hang).
   */
  drain?: () => void;
  /**
   * @internal data parallel with ZeRO-1 (src/train/zero.ts): this rank holds the optimizer state of its
   * segments only; the step reduce-scatters the gradient and all-gathers the weights over `comm` (which
   * replaces reduceGradients), bucket by bucket during the backward with bucketBytes > 0
   */
  zero?: { comm: Communicator; bucketBytes?: number };
}

export interface StepEvent {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** tokens processed this step (batch x seq x gradAccum) */
  tokens: number;
  tokensPerSec: number;
  stepMs: number;
  elapsedMs: number;
  /** estimated time to the last step */
  etaMs: number;
}

export interface EvalEvent {
  step: number;
  epoch: number;
  valLoss: number;
}

export interface EpochEvent {
  epoch: number;
  step: number;
  /** wall time of the epoch's steps (and its validation) */
  seconds: number;
  /** the mean of the epoch's per-step tokens/s (as the seed's train() reports it) */
  tokensPerSec: number;
  valLoss: number;
}

export interface TrainResult {
  steps: number;
  /** the loss of every step of the run (resumed runs: from step 1, read from the checkpoint) */
  losses: number[];
  valLosses: EvalEvent[];
  /** the checkpoint folder written last, if any */
  checkpoint: string | null;
  tokensPerSec: number;
}

const TRACE_STEP = !!process.env.PARALLM_TRACE_STEP;

export class Trainer {
  /** optimizer steps done */
  step = 0;
  readonly losses: number[] = [];
  readonly valLosses: EvalEvent[] = [];
  lastSaved: string | null = null;

  private constructor(
    readonly opts: TrainOptions,
    readonly source: ModelSource,
    readonly params: FlatParams,
    readonly stage: TrainStage,
    readonly loader: TrainLoader,
    readonly data: Data,
    readonly totalSteps: number,
    readonly stepsPerEpoch: number,
    /** ZeRO-1's sharded step, or null (the whole optimizer state here) */
    readonly zero: ZeroOptimizer | null = null,
  ) {}

  get cfg(): ModelConfig {
    return this.source.cfg;
  }
  get gradAccum(): number {
    return this.opts.gradAccum ?? 1;
  }

  /** Checks every option and the data against the model, then loads the weights (or the checkpoint). */
  static async create(o: TrainOptions): Promise<Trainer> {
    const run = await prepareRun(o, o.shard ?? { rank: 0, world: 1 });
    const { src, ck } = run;
    // From a checkpoint the weights come from its optimizer state; a random init just fills the buffers first.
    const params = await reportingLoad(o.loadProgress, (onProgress) =>
      initParamsAsync(ck ? { ...src, folder: null } : src, {
        device: o.device, dtype: run.dtype, seed: o.seed ?? 0, onProgress,
        zero: o.zero ? { rank: o.zero.comm.rank, world: o.zero.comm.world, bucketElems: Math.ceil((o.zero.bucketBytes ?? 0) / dtypeSize(run.dtype)) } : undefined,
      }),
    );
    let zero: ZeroOptimizer | null = null;
    try {
      if (o.zero) zero = new ZeroOptimizer(params, o.zero.comm, o.gradAccum ?? 1, (o.zero.bucketBytes ?? 0) > 0);
      if (ck) loadOptimizerState(o.resume!, params, ck);
      // a resumed master shard has refreshed its part of the compute copy only
      if (ck && zero && params.param) zero.markStale();
    } catch (e) {
      params.dispose();
      throw e;
    }
    const stage = new TrainStage(params);
    if (zero) {
      // the reduce-scatters go out during the backward, the all-gathers are waited for during the forward
      if (zero.bucketed) stage.onGradsReady = zero.bucketed.onGradsReady;
      stage.beforeForward = zero.beforeForward;
    }
    const t = new Trainer(o, src, params, stage, run.loader, run.data, run.totalSteps, run.stepsPerEpoch, zero);
    if (ck) {
      t.step = ck.step;
      t.losses.push(...ck.losses);
    }
    return t;
  }

  /** One optimizer step (gradAccum micro-steps); returns its mean loss. Throws on a non-finite loss or norm. */
  trainStep(): { loss: number; gradNorm: number; lr: number } {
    const step = this.step + 1;
    // PARALLM_TRACE_STEP=1: where a step's wall time goes on the host (stderr), to tell a host-bound step
    // (issuing the forward and backward takes as long as the step) from a device-bound one.
    const trace = TRACE_STEP ? [performance.now()] : null;
    const batches = Array.from({ length: this.gradAccum }, () => this.loader.next());
    const count = batches.reduce((s, b) => s + countTargets(b.targets, this.cfg.vocabSize), 0);
    const dscale = 1 / Math.max(count, 1);
    let lossSum = 0;
    let norm: number;
    // zero, forward, backward, the data-parallel all-reduce and the squared norm: one graph launch
    const r = this.graphRun(batches, dscale);
    if (r) {
      this.graphSteps++;
      this.opts.drain?.();
      trace?.push(performance.now());
      for (const l of r.losses) lossSum += sumLosses(l);
      trace?.push(performance.now());
      norm = Math.sqrt(r.normSq.toArray()[0]!);
    } else {
      this.params.zeroGrad();
      const losses: Tensor[] = [];
      try {
        for (const [i, b] of batches.entries()) {
          // the losses are read after the backward is queued, so the host never waits for the forward
          const f = this.stage.forward(i, b, undefined, { dscale, deferLoss: true });
          losses.push(f.losses!);
          this.stage.backward(i);
        }
        trace?.push(performance.now());
        for (const l of losses) lossSum += sumLosses(l);
        trace?.push(performance.now());
      } finally {
        this.stage.clear();
        losses.forEach((l) => l.dispose());
      }
      if (this.zero) this.zero.reduceGradients();
      else this.opts.reduceGradients?.(this.params);
      // every ZeRO rank gets the same (all-reduced) norm, so all of them stop here together
      norm = this.zero ? this.zero.gradNorm() : gradNorm(this.params);
    }
    const loss = lossSum / Math.max(count, 1);
    checkStepFinite(step, loss, norm, this.lastSaved);
    const { lr, hyper } = stepSettings(this.opts, step, this.totalSteps);
    if (this.zero) this.zero.step(step, lr, hyper, norm);
    else adamwStep(this.params, step, lr, hyper, norm);
    if (trace) {
      trace.push(performance.now());
      const [t0, queued, lossRead, end] = trace as [number, number, number, number];
      console.error(`[parallm trace] step ${step}: forward+backward issued in ${(queued - t0).toFixed(2)} ms, then ${(lossRead - queued).toFixed(2)} ms waiting for the loss, then ${(end - lossRead).toFixed(2)} ms to reduce, norm (a device read) and AdamW`);
    }
    this.step = step;
    this.losses.push(loss);
    return { loss, gradNorm: norm, lr };
  }

  /**
   * The step's device work as one CUDA graph (src/train/captured-step.ts), where it can be: a CUDA device
   * (data parallel's all-reduce, or its buckets on their own stream, are captured with it), the whole
   * optimizer state here or ZeRO-1's (PARALLM_TRAIN_GRAPH_ZERO=0 keeps ZeRO-1 op by op), and room for the graph's memory, measured on the first step (which
   * runs op by op). A capture that fails says so once, and the run goes on op by op. null: this step
   * runs op by op.
   */
  private graphRun(mbs: MicroBatch[], dscale: number): CapturedStepResult | null {
    if (this.captured === undefined) {
      const reduce = this.opts.reduceGradients;
      const cuda = this.params.device.startsWith('cuda');
      // ZeRO-1 in the graph on GPUs (test/gpu/train-graph.gpu.test.ts, S10-2 and S10-4; CPU communicators'
      // collectives cannot be recorded); PARALLM_TRAIN_GRAPH_ZERO=0 keeps it op by op
      const zeroOk = !this.zero || (cuda && process.env.PARALLM_TRAIN_GRAPH_ZERO !== '0');
      const eligible = CapturedStep.wanted(this.params.device) && zeroOk && (!reduce || cuda);
      if (!eligible) this.captured = null;
      else if (!this.probe) {
        this.probe = new GraphMemoryProbe(this.params.device);
        this.probe.begin();
        return null;
      } else {
        const zero = this.zero;
        this.captured = !this.probe.fits()
          ? null
          : zero
            ? new CapturedStep(this.stage, this.params, () => zero.reduceGradients(true), () => zero.normSqOnDevice(), () => zero.markStale())
            : new CapturedStep(this.stage, this.params, reduce ? () => reduce(this.params, { inGraph: true }) : undefined);
      }
    }
    if (!this.captured) return null;
    // Batches whose counted targets vary (padding) change dscale, so each would be captured anew: past a
    // few shapes, op by op is cheaper.
    if (this.captured.captures >= 4) {
      this.captured.dispose();
      this.captured = null;
      return null;
    }
    try {
      return this.captured.run(mbs, dscale);
    } catch (e) {
      if (!/^capturing the training step/.test((e as Error).message)) throw e;
      console.warn(`parallm train: ${(e as Error).message}; the steps run op by op instead`);
      this.captured.dispose();
      this.captured = null;
      return null;
    }
  }
  private captured: CapturedStep | null | undefined = undefined;
  private probe: GraphMemoryProbe | null = null;
  /** steps run as one graph so far */
  graphSteps = 0;

  /** The mean loss over the validation windows (the first evalBatches batches of them). */
  evaluate(): number {
    // (rank 0 evaluates alone: a gather here would wait for ranks that are not gathering)
    if (this.zero?.isStale) throw new Error(`evaluate on ${this.params.device}: ZeRO-1's weights are a step behind; gather them on every rank first (DataParallelTrainer.evaluate does)`);
    let sum = 0, count = 0, n = 0;
    for (const b of valBatches(this.data.val, { batch: this.opts.batch, seq: this.opts.seq })) {
      if (this.opts.evalBatches !== undefined && n++ >= this.opts.evalBatches) break;
      const r = this.stage.forward(-1, b, undefined, { dscale: false });
      sum += r.lossSum!;
      count += r.count!;
    }
    return sum / Math.max(count, 1);
  }

  /** Writes a checkpoint of the current state into `dir`; `optimizer`: the whole state, when this rank holds a ZeRO shard. */
  save(dir: string, optimizer?: HostOptimizerState): void {
    saveCheckpoint(
      dir, this.params,
      {
        step: this.step, loader: this.loader.position, losses: this.losses,
        run: {
          batch: this.opts.batch, seq: this.opts.seq, gradAccum: this.gradAccum, dataHash: this.data.id, dtype: this.params.dtype, dataSeed: this.opts.dataSeed ?? 1234,
          ...(this.opts.shard && this.opts.shard.world > 1 ? { world: this.opts.shard.world, dataOrder: this.opts.shard.order ?? 'sharded' } : {}),
        },
      },
      {
        tokenizerFrom: this.source.folder ?? (this.opts.resume && existsSync(path.join(this.opts.resume, 'tokenizer.json')) ? this.opts.resume : null),
        onFileWritten: this.opts.onCheckpointFile, optimizer,
      },
    );
    this.lastSaved = path.resolve(dir);
    this.opts.onSave?.(this.lastSaved, this.step);
  }

  /** tokens one optimizer step trains on */
  get tokensPerStep(): number {
    return this.opts.batch * this.opts.seq * this.gradAccum;
  }

  /** Runs to totalSteps with the callbacks, validation and checkpoints of the options (train/run-loop.ts). */
  run(): Promise<TrainResult> {
    return runSteps(this);
  }


  dispose(): void {
    this.captured?.dispose();
    this.captured = null;
    this.zero?.dispose();
    this.stage.dispose();
    this.params.dispose();
  }
}

/** Create a Trainer, run it to the end, free it. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const t = await Trainer.create(o);
  try {
    return await t.run();
  } finally {
    t.dispose();
  }
}
