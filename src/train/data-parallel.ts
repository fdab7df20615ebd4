// Data-parallel training (`parallm train --strategy dp --devices cpu:0,cpu:1`): one worker per device
// (src/train/worker.ts over a DevicePool), each a full replica on its share of the batches, the gradient
// averaged across ranks every step (the seed's average_gradients). `batch` is per device: n devices with
// batch b train on n x b sequences a step (weak scaling; for a fixed global batch G, pass G / n).
//
// The main thread drives the steps, as Trainer.run does for one device: the loss it reports is the mean
// of the ranks' losses (every rank counts the same targets: training windows have no ignored ones), rank 0
// evaluates and writes the checkpoints (the single-device format, plus the world size and data order,
// which a resume must match). A rank that fails, a worker that dies and a collective that times out end
// the run with an error naming the device: the pool rejects the dead rank's call at once, the others'
// waits end at their stop flags (set on the first failure) or at the communicator's timeout.
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
import { prepareTrainData, type EvalEvent, type TrainOptions, type TrainResult } from './trainer.js';
import type { ReplicaInfo, ReplicaInitArgs, ReplicaOptions, StepFault } from './worker.js';

export interface DataParallelOptions extends Omit<TrainOptions, 'device' | 'shard' | 'reduceGradients' | 'onCheckpointFile'> {
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

const CALLBACKS = ['loadProgress', 'onStep', 'onEval', 'onEpoch', 'onSave', 'devices', 'dataOrder', 'commTimeoutMs', 'callTimeoutMs', 'bucketMiB', 'fault', 'distributed', 'rendezvousTimeoutMs'] as const;

export class DataParallelTrainer {
  step: number;
  readonly losses: number[];
  readonly valLosses: EvalEvent[] = [];
  private lastSaved: string | null = null;
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
    // Prepared once here: replicas preparing the same cache folder at once would race. Launched, process
    // 0 prepares before the rendezvous and the others after it, for the same reason across processes.
    let dist: DistWorld | null = o.distributed || null;
    const env = o.distributed === undefined ? launchEnv() : null;
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
      infos = await pool.all<ReplicaInfo>('trainInit', () => ({ opts, order, comm, bucketBytes: Math.round(bucketMiB * 2 ** 20) }) satisfies ReplicaInitArgs);
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
    // The first failure stops the other ranks at once (their stop flags end a wait in the all-reduce for
    // the failed rank); then every rank has answered, and the error is the root cause: a rank's own
    // failure, not the "peer aborted" or "stopped" errors it caused on the others.
    const settled = await Promise.allSettled(
      this.devices.map((_, r) =>
        this.pool.call<R>(r, 'trainStep', { fault: this.opts.fault }).catch((e: unknown) => {
          this.pool.requestStop();
          throw e;
        }),
      ),
    );
    const errors = settled.flatMap((x) => (x.status === 'rejected' ? [x.reason as Error] : []));
    if (errors.length) {
      await this.close();
      const cause = errors.find((e) => !/aborted|stopped|was closed|pool closed/.test(e.message)) ?? errors[0]!;
      // communicator errors name ranks ("waiting for rank 1"): the message says which device each is
      const off = this.dist?.rankOffset ?? 0;
      const ranks = this.devices.map((d, r) => `rank ${off + r} = ${d}`).join(', ') + (this.dist ? ` of ${this.dist.world}, process ${this.dist.process} of ${this.dist.processes}` : '');
      throw new Error(`data-parallel training stopped at step ${step} (${ranks}): ${cause.message}` + (this.lastSaved ? ` (last checkpoint: ${this.lastSaved})` : ''));
    }
    const rs = settled.map((x) => (x as PromiseFulfilledResult<R>).value);
    // across processes every worker returns the mean over all ranks (worker.ts gathers the losses)
    const loss = this.dist ? rs[0]!.loss : rs.reduce((s, r) => s + r.loss, 0) / rs.length;
    this.step = step;
    this.losses.push(loss);
    return { loss, gradNorm: rs[0]!.gradNorm, lr: rs[0]!.lr };
  }

  /** Rank 0's validation loss (every replica holds the same weights and the whole validation set). */
  async evaluate(): Promise<number> {
    return this.pool.call<number>(0, 'trainEvaluate');
  }

  /** Rank 0 writes a checkpoint of the current state into `dir` (launched: only process 0's). */
  async save(dir: string): Promise<void> {
    if (this.dist && this.dist.process !== 0) return;
    await this.pool.call(0, 'trainSave', { dir, losses: this.losses });
    this.lastSaved = path.resolve(dir);
    this.opts.onSave?.(this.lastSaved, this.step);
  }

  /** Each rank's master weights and AdamW moments (to check that the replicas agree). */
  async replicaStates(): Promise<
    { master: Float32Array; m: Float32Array; v: Float32Array; step: number; buckets: { ranges: GradBucket[]; launchOrder: number[] } | null }[]
  > {
    return this.pool.all('trainState');
  }

  /** Runs to totalSteps with the callbacks, validation and checkpoints of the options (as Trainer.run). */
  async run(): Promise<TrainResult> {
    const o = this.opts;
    const tokensPerStep = o.batch * o.seq * this.gradAccum * this.world;
    const t0 = performance.now();
    let epochStart = t0;
    let epochRates: number[] = [];
    const first = this.step;
    const evalNow = async (epoch: number) => {
      const e = { step: this.step, epoch, valLoss: await this.evaluate() };
      this.valLosses.push(e);
      o.onEval?.(e);
      return e.valLoss;
    };
    while (this.step < this.totalSteps) {
      const ts = performance.now();
      const r = await this.trainStep();
      const now = performance.now();
      const stepMs = now - ts;
      const epoch = Math.floor((this.step - 1) / this.stepsPerEpoch);
      const avg = (now - t0) / (this.step - first);
      const tokensPerSec = tokensPerStep / (stepMs / 1e3);
      epochRates.push(tokensPerSec);
      o.onStep?.({
        step: this.step, totalSteps: this.totalSteps, epoch, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokens: tokensPerStep,
        tokensPerSec, stepMs, elapsedMs: now - t0, etaMs: avg * (this.totalSteps - this.step),
      });
      const endOfEpoch = this.step % this.stepsPerEpoch === 0;
      const last = this.step === this.totalSteps;
      let val: number | undefined;
      if (endOfEpoch || (o.evalEvery && this.step % o.evalEvery === 0) || last) val = await evalNow(epoch);
      if (endOfEpoch) {
        const tps = epochRates.reduce((a, b) => a + b, 0) / epochRates.length;
        o.onEpoch?.({ epoch, step: this.step, seconds: (performance.now() - epochStart) / 1e3, tokensPerSec: tps, valLoss: val! });
        epochStart = performance.now();
        epochRates = [];
      }
      if (o.save && ((o.saveEvery && this.step % o.saveEvery === 0) || last)) await this.save(o.save);
    }
    const secs = (performance.now() - t0) / 1e3;
    return { steps: this.step, losses: [...this.losses], valLosses: [...this.valLosses], checkpoint: this.lastSaved, tokensPerSec: ((this.step - first) * tokensPerStep) / Math.max(secs, 1e-9) };
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
