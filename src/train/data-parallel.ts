// Data-parallel training (`parallm train --strategy dp --devices cpu:0,cpu:1`): one worker per device
// (src/train/worker.ts over a DevicePool), each a full replica on its share of the batches, the gradient
// averaged across ranks every step (the seed's average_gradients). `batch` is per device: n devices with
// batch b train on n x b sequences a step (weak scaling; for a fixed global batch G, pass G / n).
//
// The main thread drives the steps, as Trainer.run does for one device: the loss it reports is the mean
// of the ranks' losses (every rank counts the same targets: training windows have no ignored ones), rank 0
// evaluates and writes the checkpoints (the single-device format, plus the world size and data order,
// which a resume must match). With `zero: 1` (ZeRO-1, src/train/zero.ts) each rank keeps the optimizer
// state (f32 master, AdamW moments) of its 1/world of the parameters only (a slice of every gradient
// bucket); rank 0 gathers the slices to write the same single-device checkpoint, and a resume reads each
// rank's slices of it. A rank that fails, a worker that dies and a collective that times out end the run
// with an error naming the device: the pool rejects the dead rank's call at once, the others' waits end
// at their stop flags (set on the first failure) or at the communicator's timeout.
//
// Launched as several processes (`parallm launch`, torchrun, Slurm, mpirun: src/cluster/env.ts), each
// process's pool holds its own devices and the ranks are global: the processes meet in the rendezvous
// (src/cluster/rendezvous.ts), which numbers the devices process-major and hands out one communicator
// ('tcp' between CPU devices, NCCL between GPUs) over all of them. Each process drives its own ranks;
// the step's loss is the mean over all ranks (gathered by the workers); global rank 0's process saves.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureCpuDevices, parseDevice } from '../device.js';
import { launchEnv, launchSecret } from '../cluster/env.js';
import { rendezvous, type DistWorld } from '../cluster/rendezvous.js';
import { newCommId, type CommKind } from '../parallel/comm.js';
import { DevicePool } from '../parallel/pool.js';
import type { DataShard } from './dp-data.js';
import type { GradBucket } from './grad-buckets.js';
import { runSteps } from './run-loop.js';
import { prepareTrainData } from './run-setup.js';
import type { EvalEvent, TrainOptions, TrainResult } from './trainer.js';
import type { ReplicaInfo, ReplicaInitArgs, ReplicaOptions, StepFault } from './worker.js';

export interface DataParallelOptions extends Omit<TrainOptions, 'device' | 'shard' | 'reduceGradients' | 'zero' | 'onCheckpointFile'> {
  /** one replica per device, all CPU (cpu:N) or all CUDA (cuda:N) */
  devices: string[];
  /** how the batches are dealt to the ranks (src/train/dp-data.ts); default 'sharded' */
  dataOrder?: DataShard['order'];
  /** bound on every wait of a collective, ms (default 60 s) */
  commTimeoutMs?: number;
  /** bound on every worker call (a step, a save), ms; a worker past it is terminated (default 0: none) */
  callTimeoutMs?: number;
  /**
   * > 0: all-reduce the gradient in buckets of about this many MiB, each launched as soon as the backward
   * has completed it (src/train/grad-buckets.ts; on GPUs on a second stream, overlapping the backward).
   * 0 (default): one all-reduce of the whole gradient after the backward.
   */
  bucketMiB?: number;
  /**
   * 1: ZeRO-1, the optimizer state sharded over the ranks (the gradient reduce-scattered, the updated
   * weights all-gathered every step, src/train/zero.ts); needs 2 or more devices. With bucketMiB each
   * rank owns its slice of every bucket, each bucket reduce-scattered as the backward completes it and
   * all-gathered as the next forward reaches it. 0 (default): every rank holds the whole optimizer state.
   */
  zero?: 0 | 1;
  /**
   * With bucketMiB and tied embeddings (GPT-2): their gradient reduced in two parts, the head's product's
   * bucket at once and the lookup's rows gathered at the end (src/train/grad-buckets.ts), so the largest
   * bucket does not wait for the end of the backward. Default: PARALLM_DP_TIED_SPLIT=1 (off otherwise:
   * not yet timed on GPUs); ignored without tied embeddings.
   */
  tiedGradSplit?: boolean;
  /** @internal test hook: a rank fails at a step */
  fault?: StepFault;
  /**
   * A multi-process run: this process's devices are global ranks `rankOffset`.. of `world` (the
   * rendezvous's result). Default: when the launcher's variables are set (launchEnv), the rendezvous
   * runs here with the secret of PARALLM_SECRET / PARALLM_SECRET_FILE; otherwise a single process.
   * false: a single process whatever the environment.
   */
  distributed?: DistWorld | false;
  /** bound on the rendezvous, ms (default 120 s) */
  rendezvousTimeoutMs?: number;
}

// Workers import compiled JS; from the TS sources the pool maps src/*.ts to dist/*.js.
const WORKER_MODULE = fileURLToPath(new URL(`./worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

const CALLBACKS = ['loadProgress', 'onStep', 'onEval', 'onEpoch', 'onSave', 'devices', 'dataOrder', 'commTimeoutMs', 'callTimeoutMs', 'bucketMiB', 'zero', 'tiedGradSplit', 'fault', 'distributed', 'rendezvousTimeoutMs'] as const;

export class DataParallelTrainer {
  step: number;
  readonly losses: number[];
  readonly valLosses: EvalEvent[] = [];
  lastSaved: string | null = null;
  private closed: Promise<void> | null = null;

  private constructor(
    readonly opts: DataParallelOptions,
    readonly pool: DevicePool,
    /** rank 0's replica (all replicas agree) */
    readonly info: ReplicaInfo,
    /** the multi-process world, or null for a single process */
    readonly dist: DistWorld | null = null,
  ) {
    this.step = info.step;
    this.losses = [...info.losses];
  }

  get devices(): string[] {
    return this.pool.devices;
  }
  /** ranks over all processes */
  get world(): number {
    return this.dist?.world ?? this.pool.devices.length;
  }
  get totalSteps(): number {
    return this.info.totalSteps;
  }
  get stepsPerEpoch(): number {
    return this.info.stepsPerEpoch;
  }
  /** 1 with ZeRO-1 (the optimizer state sharded over the ranks), else 0 */
  get zero(): 0 | 1 {
    return this.opts.zero ?? 0;
  }
  get gradAccum(): number {
    return this.opts.gradAccum ?? 1;
  }

  /** Starts a worker per device and builds the replicas (each checks the options as Trainer.create does). */
  static async create(o: DataParallelOptions): Promise<DataParallelTrainer> {
    if (!o || typeof o !== 'object') throw new Error('train dp: give options { devices, model, data, batch, seq, steps | epochs }');
    if (!Array.isArray(o.devices) || o.devices.length === 0) throw new Error('train dp: devices must be a non-empty list, e.g. ["cpu:0", "cpu:1"]');
    // CPU devices are process-wide: made here, the workers see them too.
    ensureCpuDevices(o.devices);
    const devices = o.devices.map((d) => parseDevice(d));
    const kinds = new Set(devices.map((d) => (d.startsWith('cuda') ? 'nccl' : 'cpu')));
    if (kinds.size > 1) throw new Error(`train dp: devices ${devices.join(',')} mix CPU and CUDA: use one kind`);
    const order = o.dataOrder ?? 'sharded';
    if (order !== 'sharded' && order !== 'global') throw new Error(`train dp: dataOrder must be 'sharded' or 'global', got ${String(order)}`);
    const commTimeoutMs = o.commTimeoutMs ?? 60_000;
    if (!Number.isInteger(commTimeoutMs) || commTimeoutMs < 0) throw new Error(`train dp: commTimeoutMs must be an integer >= 0, got ${commTimeoutMs}`);
    const bucketMiB = o.bucketMiB ?? 0;
    if (!(bucketMiB >= 0 && Number.isFinite(bucketMiB))) throw new Error(`train dp: bucketMiB must be a number >= 0, got ${bucketMiB}`);
    const zero = o.zero ?? 0;
    if (zero !== 0 && zero !== 1) throw new Error(`train dp: zero must be 0 or 1 (ZeRO-1: the optimizer state sharded), got ${String(zero)}`);
    if (zero && devices.length < 2) throw new Error(`train dp: zero 1 shards the optimizer state over the devices; it needs 2 or more, got ${devices.join(',')}`);
    const tiedSplit = o.tiedGradSplit ?? process.env.PARALLM_DP_TIED_SPLIT === '1';
    if (typeof tiedSplit !== 'boolean') throw new Error(`train dp: tiedGradSplit must be a boolean, got ${String(tiedSplit)}`);
    if (o.tiedGradSplit && (!bucketMiB || zero)) throw new Error('train dp: tiedGradSplit needs bucketMiB > 0 and no ZeRO-1 (the embeddings\' bucket goes during the backward)');
    // Prepared once here: replicas preparing the same cache folder at once would race. Launched, process
    // 0 prepares before the rendezvous and the others after it, for the same reason across processes.
    let dist: DistWorld | null = o.distributed || null;
    const env = o.distributed === undefined ? launchEnv() : null;
    if (zero && (env || dist)) throw new Error('train dp: zero 1 runs within one process; across processes use plain data parallelism');
    if (env && env.rank !== 0) dist = await rendezvous({ env, secret: launchSecret(), devices, timeoutMs: o.rendezvousTimeoutMs });
    const data = await prepareTrainData(o);
    if (env && env.rank === 0) dist = await rendezvous({ env, secret: launchSecret(), devices, timeoutMs: o.rendezvousTimeoutMs });
    if (dist && dist.layout[dist.process]?.devices.length !== devices.length)
      throw new Error(`train dp: the world gives process ${dist.process} ${dist.layout[dist.process]?.devices.length} devices but it has ${devices.length}`);
    const opts = Object.fromEntries(Object.entries(o).filter(([k]) => !(CALLBACKS as readonly string[]).includes(k))) as ReplicaOptions;
    opts.data = data;
    const pool = await DevicePool.start(devices, { modules: [WORKER_MODULE], timeoutMs: o.callTimeoutMs ?? 0 });
    const kind = [...kinds][0] as CommKind;
    const comm: ReplicaInitArgs['comm'] = dist
      ? dist.comm && { kind: dist.comm.kind, id: dist.comm.id, timeoutMs: commTimeoutMs, rankOffset: dist.rankOffset, world: dist.world }
      : devices.length > 1 ? { kind, id: newCommId(kind), timeoutMs: commTimeoutMs } : null;
    let infos: ReplicaInfo[];
    try {
      infos = await pool.all<ReplicaInfo>('trainInit', () => ({ opts, order, comm, bucketBytes: Math.round(bucketMiB * 2 ** 20), zero, tiedSplit: tiedSplit && !zero }) satisfies ReplicaInitArgs);
    } catch (e) {
      await pool.close();
      throw e;
    }
    return new DataParallelTrainer(o, pool, infos[0]!, dist);
  }

  /** One step on every rank; the mean of their losses. */
  async trainStep(): Promise<{ loss: number; gradNorm: number; lr: number }> {
    if (this.closed) throw new Error('train dp: this trainer has been closed');
    const step = this.step + 1;
    type R = { loss: number; gradNorm: number; lr: number };
    let rs: R[];
    try {
      // the first failure stops the other ranks (their all-reduce waits end at their stop flags); the
      // error is the root cause, not the "peer aborted" errors it caused
      rs = await this.pool.allOrRootCause<R>('trainStep', () => ({ fault: this.opts.fault }));
    } catch (e) {
      await this.close();
      // communicator errors name ranks ("waiting for rank 1"): the message says which device each is
      const off = this.dist?.rankOffset ?? 0;
      const ranks = this.devices.map((d, r) => `rank ${off + r} = ${d}`).join(', ') + (this.dist ? ` of ${this.dist.world}, process ${this.dist.process} of ${this.dist.processes}` : '');
      throw new Error(`data-parallel training stopped at step ${step} (${ranks}): ${(e as Error).message}` + (this.lastSaved ? ` (last checkpoint: ${this.lastSaved})` : ''));
    }
    // across processes every worker returns the mean over all ranks (worker.ts gathers the losses)
    const loss = this.dist ? rs[0]!.loss : rs.reduce((s, r) => s + r.loss, 0) / rs.length;
    this.step = step;
    this.losses.push(loss);
    return { loss, gradNorm: rs[0]!.gradNorm, lr: rs[0]!.lr };
  }

  /** Rank 0's validation loss (every replica holds the same weights and the whole validation set). */
  async evaluate(): Promise<number> {
    // ZeRO-1: the weights are gathered by the next training forward; rank 0 alone cannot gather them
    if (this.zero) await this.pool.allOrRootCause('trainGather', () => null);
    return this.pool.call<number>(0, 'trainEvaluate');
  }

  /**
   * Rank 0 writes a checkpoint of the current state into `dir` (with ZeRO-1, every rank sends it its
   * shard; launched on several processes, only process 0's rank 0 writes).
   */
  async save(dir: string): Promise<void> {
    if (this.dist && this.dist.process !== 0) return;
    const args = { dir, losses: this.losses };
    if (this.zero) await this.pool.allOrRootCause('trainSave', () => args);
    else await this.pool.call(0, 'trainSave', args);
    this.lastSaved = path.resolve(dir);
    this.opts.onSave?.(this.lastSaved, this.step);
  }

  /**
   * Each rank's master weights and AdamW moments (to check that the replicas agree). With ZeRO-1, rank
   * 0's are the whole state gathered, the others' their shards; `weights` is each rank's compute copy.
   */
  async replicaStates(): Promise<
    {
      master: Float32Array; m: Float32Array; v: Float32Array; step: number; buckets: { ranges: GradBucket[]; launchOrder: number[] } | null;
      segments?: readonly { lo: number; hi: number; local: number }[]; weights?: Float32Array | Uint16Array;
      /** steps this replica ran as one CUDA graph (src/train/captured-step.ts) */
      graphSteps: number;
    }[]
  > {
    return this.pool.all('trainState');
  }

  /** tokens one optimizer step trains on, over every replica */
  get tokensPerStep(): number {
    return this.opts.batch * this.opts.seq * this.gradAccum * this.world;
  }

  /**
   * Each device's memory now and at its peak since the last reset (bytes), and the bytes of f32 optimizer
   * state it holds beside the compute weights (FlatParams.optimizerBytes: 1/world of the whole with ZeRO-1).
   */
  async memory(reset = false): Promise<{ device: string; allocated: number; peak: number; optimizerBytes: number }[]> {
    const ms = await this.pool.all<{ allocated: number; peakAllocated: number; optimizerBytes: number }>('trainMemory', () => ({ reset }));
    return ms.map((m, r) => ({ device: this.devices[r]!, allocated: m.allocated, peak: m.peakAllocated, optimizerBytes: m.optimizerBytes }));
  }

  /** Runs to totalSteps with the callbacks, validation and checkpoints of the options (train/run-loop.ts). */
  run(): Promise<TrainResult> {
    return runSteps(this);
  }


  /** Frees the replicas and ends the workers. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await Promise.allSettled([this.pool.all('trainDispose')]);
      await this.pool.close();
    })();
    return this.closed;
  }
}

/** Create a DataParallelTrainer, run it to the end, close it. */
export async function trainDataParallel(o: DataParallelOptions): Promise<TrainResult> {
  const t = await DataParallelTrainer.create(o);
  try {
    return await t.run();
  } finally {
    await t.close();
  }
}
