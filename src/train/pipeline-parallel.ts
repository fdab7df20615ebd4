// Model- and pipeline-parallel training (`parallm train --strategy mp|pp --devices ...`), and data x pipeline
// (`--dp 2` with 4 devices): the layers split into stages as for inference (parallel/placement.ts), one
// worker per device (train/pipeline-worker.ts), a training plan (engine/plan.ts `trainingPlan`: GPipe or
// 1F1B) whose columns the workers run each micro-step, activations sent forward and their gradients back.
// MP is PP with one micro-batch. With dp > 1 there are dp such pipelines, each on its own share of the
// data, every stage's gradient averaged with the same stage of the other pipelines.
//
// The main thread plans once, drives the steps (train/run-loop.ts, as the other trainers), and assembles
// checkpoints: each stage of replica 0 writes its own shard (train/checkpoint.ts), so no device's weights
// pass through another. The reported loss is the mean of the replicas' (each its last stage's exact sum).
//
// With tp > 1 (Megatron-LM's tensor parallelism) each stage is split over tp devices, neighbours in the
// mesh (parallel/mesh.ts): every tp rank of a stage runs the stage's column of the plan with its own
// pipeline group (the ranks with its dp and tp coordinates), so activations and their gradients, equal on
// the tp ranks after the stage's all-reduces (train/stage.ts), flow along tp pipelines side by side.
import { ensureCpuDevices, parseDevice } from '../device.js';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync } from 'node:fs';
import type { ModelConfig } from '../io/config.js';
import { evaluationPlan, microBatchCount, numberStages, planColumns, trainingPlan, type PlanStage, type TrainingScheduleName } from '../engine/plan.js';
import type { TaskTime } from '../engine/executor.js';
import { Communicator, type CommKind } from '../parallel/comm.js';
import { Mesh } from '../parallel/mesh.js';
import { meshGroups, type GroupArgs } from '../parallel/mesh-comms.js';
import { launchEnv, launchSecret } from '../cluster/env.js';
import { rendezvous, type DistWorld } from '../cluster/rendezvous.js';
import { allGatherJson, processCommunicator } from '../cluster/gather.js';
import { describeWorld, distMeshGroups, processOf } from '../cluster/mesh-groups.js';
import { placeStages } from '../parallel/placement.js';
import { paramLayout } from './params.js';
import type { Stage } from '../models/weights.js';
import { DevicePool } from '../parallel/pool.js';
import { abandonCheckpoint, beginCheckpoint, finishCheckpoint, readCheckpointState, type StageRecord } from './checkpoint.js';
import type { DataShard } from './dp-data.js';
import { resolveModel } from './init.js';
import type { PipelineInfo, PipelineInitArgs, PipelineStepResult } from './pipeline-worker.js';
import { runSteps, type StepOutcome } from './run-loop.js';
import { prepareTrainData } from './run-setup.js';
import type { EvalEvent, TrainOptions, TrainResult } from './trainer.js';
import type { ReplicaOptions, StepFault } from './worker.js';

export interface PipelineTrainOptions extends Omit<TrainOptions, 'device' | 'shard' | 'reduceGradients' | 'onCheckpointFile'> {
  /** every device of the run: dp pipelines of devices.length / dp stages' devices each, all CPU or all CUDA */
  devices: string[];
  /** data-parallel pipelines (default 1): pipeline d runs on devices [d * pp * tp, (d + 1) * pp * tp) */
  dp?: number;
  /**
   * tensor-parallel devices per stage (default 1): stage p of pipeline d on devices (d * pp + p) * tp + t,
   * t < tp, each holding a 1/tp share of the stage's heads and MLP features (models/tp.ts)
   */
  tp?: number;
  /**
   * pipeline stages per replica, with no tp: tp is then the devices left over by dp x pp (--strategy tp
   * is pp 1, its width every process's devices / dp when the run spans processes). Default: the devices
   * left over by dp x tp.
   */
  pp?: number;
  /** micro-batches each batch is cut into (default: one per stage, at most the batch; MP is 1) */
  microBatches?: number;
  /** GPipe (all forwards, then all backwards) or 1F1B (activations bounded by the stages; interleaved with chunks); default 1f1b (gpipe with chunks when the micro-batches are not a multiple of the devices) */
  schedule?: TrainingScheduleName;
  /** stages per device, interleaved (Megatron-LM's virtual stages); default 1 */
  chunks?: number;
  /** layers per device, e.g. { 'cpu:0': [0, 1], 'cpu:1': [2, 3] } (default: even) */
  placement?: 'even' | Record<string, number[]>;
  /** how the batches are dealt to the dp pipelines (train/dp-data.ts); default 'sharded' */
  dataOrder?: DataShard['order'];
  /** bound on every wait of a collective or a transfer, ms (default 60 s) */
  commTimeoutMs?: number;
  /** bound on every worker call, ms (default 0: none) */
  callTimeoutMs?: number;
  /**
   * Every stage holds back its linear layers' weight gradients to one matmul per layer over all of a
   * column's micro-batches, after its last backward (TrainStage deferWeightGrads): fewer, larger matmuls
   * where micro-batches are small, for memory (each micro-batch's linear inputs and output gradients live
   * until then; trainStep reports the bytes). A number n: a stage also adds them after every n of its
   * backward tasks, holding at most n micro-batches' (K = n micro-batches' tokens). Default off.
   */
  deferWeightGrads?: boolean | number;
  /** @internal test hook: a rank fails at a step */
  fault?: StepFault;
  /**
   * A multi-process run (cluster/mesh-groups.ts): the mesh spans every process's devices, global ranks
   * process-major; `devices` are this process's. Default: when the launcher's variables say several
   * processes (launchEnv), the rendezvous runs here with the secret of PARALLM_SECRET / PARALLM_SECRET_FILE;
   * otherwise a single process. false: a single process whatever the environment.
   */
  distributed?: DistWorld | false;
  /** bound on the rendezvous, ms (default 120 s) */
  rendezvousTimeoutMs?: number;
}

/** Bound on a wait of the main threads' gathers across processes (cluster/mesh-groups.ts), ms. */
const GATHER_TIMEOUT_MS = 30 * 60_000;

const WORKER_MODULE = fileURLToPath(new URL(`./pipeline-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

const MAIN_ONLY = ['loadProgress', 'onStep', 'onEval', 'onEpoch', 'onSave', 'devices', 'dp', 'tp', 'pp', 'microBatches', 'schedule', 'chunks', 'placement', 'dataOrder', 'commTimeoutMs', 'callTimeoutMs', 'deferWeightGrads', 'fault', 'distributed', 'rendezvousTimeoutMs'] as const;

/** A training step's tasks with their kind, for the timeline (Figure 6 of the seed, measured). */
export type TrainTaskTime = TaskTime & { kind: 'forward' | 'backward' };

export class PipelineTrainer {
  step: number;
  readonly losses: number[];
  readonly valLosses: EvalEvent[] = [];
  lastSaved: string | null = null;
  private closed: Promise<void> | null = null;
  /** deferWeightGrads: the most bytes each device of this process held for deferred weight gradients in a step so far */
  heldBytes: number[] | null = null;
  /** set once a gather failed or brought news of a failure: no process gathers again */
  private pcommBroken = false;

  private constructor(
    readonly opts: PipelineTrainOptions,
    readonly pool: DevicePool,
    readonly mesh: Mesh,
    readonly cfg: ModelConfig,
    /** the stages of one pipeline (replica 0's devices) */
    readonly stages: PlanStage[],
    readonly microBatches: number,
    readonly schedule: TrainingScheduleName,
    readonly infos: PipelineInfo[],
    private readonly tokenizerFrom: string | null,
    /** the multi-process world and the processes' communicator, or null for a single process */
    readonly dist: DistWorld | null = null,
    private readonly pcomm: Communicator | null = null,
  ) {
    this.step = infos[0]!.step;
    this.losses = [...infos[0]!.losses];
  }

  get devices(): string[] {
    return this.pool.devices;
  }
  get totalSteps(): number {
    return this.infos[0]!.totalSteps;
  }
  get stepsPerEpoch(): number {
    return this.infos[0]!.stepsPerEpoch;
  }
  get gradAccum(): number {
    return this.opts.gradAccum ?? 1;
  }
  get tokensPerStep(): number {
    return this.opts.batch * this.opts.seq * this.gradAccum * this.mesh.shape.dp;
  }
  /** parameters of the whole model (one pipeline's stages, tied embeddings once) */
  get parameterCount(): number {
    // the stages' whole layouts (a tp rank's n counts its shards and the replicated tensors)
    const n = this.stages.reduce((t, { start, end, embed, head }) => t + paramLayout(this.cfg, { start, end, embed, head }).reduce((u, e) => u + e.numel, 0), 0);
    return this.cfg.tieEmbeddings && this.stages.length > 1 ? n - this.cfg.vocabSize * this.cfg.hidden : n;
  }

  /** Plans, starts a worker per device and builds every stage (each checks the options as Trainer.create does). */
  static async create(o: PipelineTrainOptions): Promise<PipelineTrainer> {
    if (!o || typeof o !== 'object') throw new Error('train pp: give options { devices, model, data, batch, seq, steps | epochs }');
    if (!Array.isArray(o.devices) || o.devices.length === 0) throw new Error('train pp: devices must be a non-empty list, e.g. ["cpu:0", "cpu:1"]');
    ensureCpuDevices(o.devices);
    const devices = o.devices.map((d) => parseDevice(d));
    const dup = devices.find((d, i) => devices.indexOf(d) !== i);
    if (dup) throw new Error(`train pp: device ${dup} is listed twice`);
    const kinds = new Set(devices.map((d) => (d.startsWith('cuda') ? 'nccl' : 'cpu')));
    if (kinds.size > 1) throw new Error(`train pp: devices ${devices.join(',')} mix CPU and CUDA: use one kind`);
    const env = o.distributed === undefined ? launchEnv() : null;
    let dist: DistWorld | null = o.distributed && o.distributed.processes > 1 ? o.distributed : null;
    // Prepared once per process: process 0 prepares before the rendezvous and the others after it, so
    // no two prepare one cache folder at once (as data-parallel.ts does).
    const meet = () => rendezvous({ env: env!, secret: launchSecret(), devices, timeoutMs: o.rendezvousTimeoutMs });
    if (env && env.world > 1 && env.rank !== 0) dist = await meet();
    const early = dist || (env && env.world > 1) ? await prepareTrainData(o) : null;
    if (env && env.world > 1 && env.rank === 0) dist = await meet();
    if (dist && o.placement !== undefined && o.placement !== 'even') throw new Error('train pp: across processes the layers are placed evenly: give no placement map');
    if (dist && dist.layout[dist.process]?.devices.length !== devices.length)
      throw new Error(`train pp: the world gives process ${dist.process} ${dist.layout[dist.process]?.devices.length} devices but it has ${devices.length}`);
    // the mesh's ranks: every process's devices, process-major (one process: its own)
    const world = dist ? dist.world : devices.length;
    const off = dist?.rankOffset ?? 0;
    const dp = o.dp ?? 1;
    if (!Number.isInteger(dp) || dp < 1 || world % dp) throw new Error(`train pp: dp ${dp} must be a positive integer dividing the ${world} devices`);
    if (o.pp !== undefined && o.tp !== undefined) throw new Error('train pp: give tp or pp, not both (the other is the devices left over by dp)');
    if (o.pp !== undefined && (!Number.isInteger(o.pp) || o.pp < 1 || world % (dp * o.pp)))
      throw new Error(`train pp: pp ${o.pp} must be a positive integer with dp x pp (${dp} x ${o.pp}) dividing the ${world} devices`);
    const tp = o.pp !== undefined ? world / (dp * o.pp) : (o.tp ?? 1);
    if (!Number.isInteger(tp) || tp < 1 || world % (dp * tp))
      throw new Error(`train pp: tp ${tp} must be a positive integer with dp x tp (${dp} x ${tp}) dividing the ${world} devices`);
    const mesh = new Mesh({ dp, pp: world / (dp * tp), tp });
    const pp = mesh.shape.pp;
    if (!Number.isInteger(o.batch) || o.batch < 1) throw new Error(`train: batch must be an integer >= 1, got ${o.batch}`);
    const order = o.dataOrder ?? 'sharded';
    if (order !== 'sharded' && order !== 'global') throw new Error(`train pp: dataOrder must be 'sharded' or 'global', got ${String(order)}`);
    const dw = o.deferWeightGrads;
    if (dw !== undefined && typeof dw !== 'boolean' && !(Number.isInteger(dw) && dw >= 1))
      throw new Error(`train pp: deferWeightGrads must be true, false or a number of micro-batches >= 1, got ${JSON.stringify(dw)}`);
    const commTimeoutMs = o.commTimeoutMs ?? 60_000;
    if (!Number.isInteger(commTimeoutMs) || commTimeoutMs < 0) throw new Error(`train pp: commTimeoutMs must be an integer >= 0, got ${commTimeoutMs}`);
    if (o.placement !== undefined && o.placement !== 'even' && (typeof o.placement !== 'object' || o.placement === null))
      throw new Error(`train pp: placement must be "even" or a map {device: layers}, got ${JSON.stringify(o.placement)}`);
    // The model's shape, for the plan (the workers check everything else as one device would).
    const ck = o.resume ? readCheckpointState(o.resume) : null;
    if (!ck && o.model === undefined) throw new Error('train: give a model (a preset or a folder), or resume from a checkpoint');
    const src = o.model === undefined ? { cfg: ck!.config, folder: null } : resolveModel(o.model);
    const cfg = src.cfg;
    const chunks = o.chunks ?? 1;
    // the stages placed on the devices of replica 0's first tp pipeline (their tp peers hold the same layers)
    // (across processes, device names repeat: the stages are placed on global rank names instead)
    const nameOf = (r: number) => (dist ? `rank-${r}` : devices[r]!);
    const lead = Array.from({ length: pp }, (_, p) => nameOf(mesh.rankOf({ dp: 0, pp: p, tp: 0 })));
    if (tp > 1) paramLayout(cfg, { start: 0, end: 1, embed: false, head: false, tp: { rank: 0, size: tp } }); // heads and features that do not divide: an error before any worker starts
    const placed = placeStages(cfg, 'pp', lead, { chunks, placement: o.placement, need: { dtype: o.dtype ?? 'f32', batch: o.batch, maxLen: o.seq } });
    const stages = numberStages(placed, chunks);
    const micro = microBatchCount(o.batch, stages.length, o.microBatches);
    // 1F1B bounds the activations held; interleaved it needs the micro-batches in multiples of the devices
    const schedule = o.schedule ?? (chunks === 1 || micro % pp === 0 ? '1f1b' : 'gpipe');
    const plan = trainingPlan(cfg, stages, o.batch, micro, schedule);
    const evalPlan = evaluationPlan(cfg, stages, o.batch);
    const trainColumns = planColumns(plan), evalColumns = planColumns(evalPlan);
    const split = stages.map((s) => [s.start, s.end]);
    const data = early ?? (await prepareTrainData(o));
    const opts = Object.fromEntries(Object.entries(o).filter(([k]) => !(MAIN_ONLY as readonly string[]).includes(k))) as ReplicaOptions;
    opts.data = data;
    let kind = [...kinds][0] as CommKind;
    let groups: GroupArgs[][];
    let pcomm: Communicator | null = null;
    if (dist) {
      kind = dist.comm?.kind ?? (kind === 'nccl' ? 'nccl' : 'tcp');
      // Set up over the rendezvous's processes' communicator (bounded as a collective: a process that
      // failed before joining is an error in commTimeoutMs), then the run's gathers over one more,
      // bounded more loosely: the main threads wait in a gather while replica 0's processes evaluate or
      // write a checkpoint (minutes on a large model); a process gone is seen at once anyway (its
      // connections close).
      const setup = processCommunicator(dist, commTimeoutMs)!;
      try {
        const g = await distMeshGroups(dist, setup, mesh, kind as 'tcp' | 'nccl', { processComm: true });
        groups = g;
        pcomm = Communicator.create('tcp', g.processComm!, dist.process, dist.processes, 'cpu:0', { timeoutMs: commTimeoutMs && Math.max(commTimeoutMs, GATHER_TIMEOUT_MS) });
      } finally {
        setup.destroy();
      }
    } else groups = meshGroups(mesh, kind);
    const pool = await DevicePool.start(devices, { modules: [WORKER_MODULE], timeoutMs: o.callTimeoutMs ?? 0 });
    let infos: PipelineInfo[];
    try {
      infos = await pool.allOrRootCause<PipelineInfo>('ppInit', (r) => {
        const c = mesh.coords(off + r);
        return {
          opts, order, replica: { rank: c.dp, world: dp },
          stages: stages.filter((s) => s.rank === c.pp).map(({ start, end, embed, head, index }) => ({ start, end, embed, head, index, ...(tp > 1 ? { tp: { rank: c.tp, size: tp } } : {}) })),
          nStages: stages.length, split, ppRank: c.pp, firstRank: stages[0]!.rank, lastRank: stages[stages.length - 1]!.rank,
          micro, trainColumn: trainColumns[c.pp]!, evalColumn: evalColumns[c.pp]!, comm: { kind, groups: groups[r]!, timeoutMs: commTimeoutMs },
          deferWeightGrads: o.deferWeightGrads ?? false,
        } satisfies PipelineInitArgs;
      });
    } catch (e) {
      await pool.close();
      pcomm?.abort();
      pcomm?.destroy();
      throw dist ? new Error(`train pp: process ${dist.process} of ${dist.processes} (global ranks ${off}..${off + devices.length - 1}; ${describeWorld(dist)}): ${(e as Error).message}`) : e;
    }
    const tokenizerFrom = src.folder ?? (o.resume && existsSync(path.join(o.resume, 'tokenizer.json')) ? o.resume : null);
    return new PipelineTrainer(o, pool, mesh, cfg, stages, micro, schedule, infos, tokenizerFrom, dist, pcomm);
  }

  /** Rank of pipeline rank p in replica d. */
  private rankOf(d: number, p: number): number {
    return this.mesh.rankOf({ dp: d, pp: p, tp: 0 });
  }

  /** global rank of this process's first device (0 for a single process) */
  private get offset(): number {
    return this.dist?.rankOffset ?? 0;
  }

  /** This process's local ranks among `ranks` (global), as pool ranks. */
  private local(ranks: number[]): number[] {
    return ranks.filter((r) => r >= this.offset && r < this.offset + this.devices.length).map((r) => r - this.offset);
  }

  private describe(): string {
    const d = this.dist;
    const mine = this.devices.map((dev, r) => {
      const c = this.mesh.coords(this.offset + r);
      const st = this.stages.filter((s) => s.rank === c.pp).map((s) => s.index).join('+');
      return `rank ${this.offset + r} = ${dev} (${this.mesh.shape.dp > 1 ? `replica ${c.dp}, ` : ''}stage ${st}${this.mesh.shape.tp > 1 ? `, tp rank ${c.tp}` : ''})`;
    }).join(', ');
    return d ? `${mine}: process ${d.process} of ${d.processes}; ${describeWorld(d)}` : mine;
  }

  /** "process 1 (global ranks 2..3)" */
  private whoIs(p: number): string {
    const l = this.dist!.layout[p];
    return l ? `process ${p} (global rank${l.devices.length > 1 ? `s ${l.firstRank}..${l.firstRank + l.devices.length - 1}` : ` ${l.firstRank}`})` : `process ${p}`;
  }

  /**
   * Every process's `value`, by process (only across processes: the process communicator). A process
   * that failed sends { failedAt } instead (see failed): every gather then throws its message; a broken
   * communicator (a process gone: its rank there is its process rank) throws naming the process.
   */
  private gather(value: unknown): unknown[] {
    if (this.pcommBroken) throw new Error('the processes stopped talking after an earlier failure');
    let all: unknown[];
    try {
      all = allGatherJson(this.pcomm!, value);
    } catch (e) {
      this.pcommBroken = true;
      const m = /peer rank (\d+)|waiting for rank\(s\) (\d+)/.exec((e as Error).message);
      const p = m ? Number(m[1] ?? m[2]) : -1;
      throw new Error(p >= 0 ? `${this.whoIs(p)} is gone: ${(e as Error).message}` : (e as Error).message);
    }
    const bad = all.flatMap((v, p) => (p !== this.dist!.process && v && typeof v === 'object' && 'failedAt' in v ? [`${this.whoIs(p)} failed: ${String((v as { failedAt: unknown }).failedAt)}`] : []));
    if (bad.length) {
      this.pcommBroken = true;
      throw new Error(bad.join('; '));
    }
    return all;
  }

  private async failed(step: number, e: unknown): Promise<never> {
    let news = '';
    if (this.dist && !this.pcommBroken && !this.closed) {
      // This process's workers end first (their peers on other processes see their connections close
      // and fail too), then the processes tell each other what failed: the others' main threads are in
      // a gather (a step's loss) or come to this one. A process gone breaks it, which names it.
      await this.closePool();
      try {
        this.gather({ failedAt: (e as Error).message });
      } catch (g) {
        news = `; ${(g as Error).message}`;
      }
    }
    await this.close();
    throw new Error(`pipeline training stopped at step ${step} (${this.describe()}): ${(e as Error).message}${news}` + (this.lastSaved ? ` (last checkpoint: ${this.lastSaved})` : ''));
  }

  /** One optimizer step on every rank; `timeline`: the tasks' device times too. */
  async trainStep(o: { timeline?: boolean } = {}): Promise<StepOutcome & { tasks?: TrainTaskTime[]; heldBytes?: number[] }> {
    if (this.closed) throw new Error('train pp: this trainer has been closed');
    const step = this.step + 1;
    let rs: PipelineStepResult[];
    try {
      rs = await this.pool.allOrRootCause<PipelineStepResult>('ppStep', () => ({ timeline: o.timeline, fault: this.opts.fault }));
    } catch (e) {
      return this.failed(step, e);
    }
    const lastRank = this.stages[this.stages.length - 1]!.rank;
    type Exact = NonNullable<PipelineStepResult['exact']>;
    let perReplica: Exact[];
    let head = { gradNorm: rs[0]!.gradNorm, lr: rs[0]!.lr };
    if (this.dist) {
      // each replica's last stage may be on another process: every process sends what it holds, and
      // takes global rank 0's norm and rate, so all of them report the same curve
      const mine: Record<number, Exact> = {};
      for (let d = 0; d < this.mesh.shape.dp; d++) {
        const [r] = this.local([this.rankOf(d, lastRank)]);
        if (r !== undefined) mine[d] = rs[r]!.exact!;
      }
      let all: { exact: Record<number, Exact>; gradNorm: number; lr: number }[];
      try {
        all = this.gather({ exact: mine, ...head }) as typeof all;
      } catch (e) {
        return this.failed(step, e);
      }
      const merged: Record<number, Exact> = Object.assign({}, ...all.map((a) => a.exact));
      perReplica = Array.from({ length: this.mesh.shape.dp }, (_, d) => merged[d]!);
      head = { gradNorm: all[0]!.gradNorm, lr: all[0]!.lr };
    } else perReplica = Array.from({ length: this.mesh.shape.dp }, (_, d) => rs[this.rankOf(d, lastRank)]!.exact!);
    const loss = perReplica.reduce((t, x) => t + x.lossSum / Math.max(x.count, 1), 0) / perReplica.length;
    this.step = step;
    this.losses.push(loss);
    if (this.opts.deferWeightGrads) this.heldBytes = rs.map((r, i) => Math.max(r.heldBytes, this.heldBytes?.[i] ?? 0));
    return {
      loss, ...head, ...(o.timeline ? { tasks: rs.flatMap((r) => r.tasks ?? []) } : {}),
      // per device of this process: the most bytes held at once for deferred weight gradients
      ...(this.opts.deferWeightGrads ? { heldBytes: rs.map((r) => r.heldBytes) } : {}),
    };
  }

  /** Validation loss through replica 0's pipeline (every replica holds the same weights; all its tp ranks run it). */
  async evaluate(): Promise<number> {
    const { pp, tp } = this.mesh.shape;
    const ranks = Array.from({ length: pp * tp }, (_, r) => r); // replica 0 is ranks [0, pp * tp)
    const lastRank = this.rankOf(0, this.stages[this.stages.length - 1]!.rank);
    const mine = this.local(ranks);
    let last: { lossSum: number; count: number } | undefined;
    try {
      // across processes, those holding replica 0's ranks run it; every process then takes the value
      // of the one holding its last stage
      const rs = mine.length ? await this.pool.allOrRootCause<{ lossSum: number; count: number }>('ppEvaluate', () => ({}), mine) : [];
      last = rs[mine.indexOf(lastRank - this.offset)];
      if (this.dist) last = this.gather(last ?? null)[processOf(this.dist, lastRank)] as typeof last;
    } catch (e) {
      return this.failed(this.step, e);
    }
    if (!last) throw new Error(`train pp: no validation loss from global rank ${lastRank}`);
    return last.lossSum / Math.max(last.count, 1);
  }

  /**
   * A checkpoint of the current state in `dir`: each stage of replica 0 writes its shard (with tp, the
   * stage's tp rank 0, gathering the whole tensors from its peers), then the rest here.
   */
  async save(dir: string): Promise<void> {
    if (this.dist) return this.saveAcross(dir);
    const pending = beginCheckpoint(dir);
    const ranks = Array.from({ length: this.mesh.shape.pp * this.mesh.shape.tp }, (_, r) => r); // replica 0
    const S = this.stages.length;
    const names: string[][] = Array.from({ length: S }, () => []);
    const records: StageRecord[] = new Array(S);
    let loader: unknown;
    try {
      const parts = (await this.pool.allOrRootCause<{ index: number; names: string[]; record: StageRecord; loader: unknown }[]>('ppSave', () => ({ tmp: pending.tmp }), ranks)).flat();
      for (const p of parts) {
        names[p.index] = p.names;
        records[p.index] = p.record;
        loader = p.loader;
      }
    } catch (e) {
      abandonCheckpoint(pending);
      throw new Error(`saving checkpoint to ${pending.dir}: ${(e as Error).message}`);
    }
    const o = this.opts;
    const info = this.infos[0]!;
    finishCheckpoint(pending, this.cfg, records, names, {
      step: this.step, loader: loader as never, losses: this.losses,
      run: {
        batch: o.batch, seq: o.seq, gradAccum: this.gradAccum, dataHash: info.dataHash, dtype: info.dtype, dataSeed: o.dataSeed ?? 1234,
        world: this.mesh.shape.dp, dataOrder: o.dataOrder ?? 'sharded', stages: this.stages.map((s) => [s.start, s.end]),
      },
    }, { tokenizerFrom: this.tokenizerFrom });
    this.lastSaved = pending.dir;
    o.onSave?.(this.lastSaved, this.step);
  }

  /**
   * A save across processes (a filesystem every process sees, as for data-parallel.ts's process-0 save):
   * process 0 makes the pending folder, the processes holding replica 0's ranks write their stages into
   * it, then process 0 writes the shared files (config, index, trainer.json) and puts it in place. Every
   * step is a gather, so a failure on any process fails the save on all of them.
   */
  private async saveAcross(dir: string): Promise<void> {
    const d = this.dist!;
    const msg = (e: unknown) => (e instanceof Error ? e.message : String(e));
    type Part = { index: number; names: string[]; record: StageRecord; loader: unknown };
    let pending: ReturnType<typeof beginCheckpoint> | null = null;
    let ok = true;
    try {
      let first: { tmp?: string; dir?: string; error?: string } | null = null;
      if (d.process === 0) {
        try {
          pending = beginCheckpoint(dir);
          first = { tmp: pending.tmp, dir: pending.dir };
        } catch (e) {
          first = { error: msg(e) };
        }
      }
      const at = this.gather(first)[0] as { tmp?: string; dir?: string; error?: string };
      if (at.error || !at.tmp) throw new Error(at.error ?? 'process 0 made no pending folder');
      const mine = this.local(Array.from({ length: this.mesh.shape.pp * this.mesh.shape.tp }, (_, r) => r));
      let parts: { parts?: Part[]; error?: string };
      try {
        parts = { parts: mine.length ? (await this.pool.allOrRootCause<Part[]>('ppSave', () => ({ tmp: at.tmp }), mine)).flat() : [] };
      } catch (e) {
        parts = { error: `process ${d.process} (global ranks ${mine.map((r) => r + this.offset).join(',')}): ${msg(e)}` };
      }
      const all = this.gather(parts) as { parts?: Part[]; error?: string }[];
      const bad = all.find((x) => x.error);
      if (bad) throw new Error(bad.error);
      let done: { error?: string } | null = null;
      if (d.process === 0) {
        try {
          const S = this.stages.length;
          const names: string[][] = Array.from({ length: S }, () => []);
          const records: StageRecord[] = new Array(S);
          let loader: unknown;
          for (const p of all.flatMap((x) => x.parts ?? [])) {
            names[p.index] = p.names;
            records[p.index] = p.record;
            loader = p.loader;
          }
          const o = this.opts;
          const info = this.infos[0]!;
          finishCheckpoint(pending!, this.cfg, records, names, {
            step: this.step, loader: loader as never, losses: this.losses,
            run: {
              batch: o.batch, seq: o.seq, gradAccum: this.gradAccum, dataHash: info.dataHash, dtype: info.dtype, dataSeed: o.dataSeed ?? 1234,
              world: this.mesh.shape.dp, dataOrder: o.dataOrder ?? 'sharded', stages: this.stages.map((s) => [s.start, s.end]),
            },
          }, { tokenizerFrom: this.tokenizerFrom });
          done = {};
        } catch (e) {
          done = { error: msg(e) };
        }
      }
      const fin = this.gather(done)[0] as { error?: string };
      if (fin.error) throw new Error(fin.error);
      this.lastSaved = at.dir!;
    } catch (e) {
      ok = false;
      if (pending) abandonCheckpoint(pending);
      throw new Error(`saving checkpoint to ${path.resolve(dir)} (process ${d.process} of ${d.processes}): ${msg(e)}`);
    } finally {
      if (ok && d.process === 0) this.opts.onSave?.(this.lastSaved!, this.step);
    }
  }

  /** Each device's stages: master weights, moments and the last step's gradients, with the stage (and its tp shard) and layout (tests). */
  async stageStates(): Promise<{ index: number; stage: Stage; master: Float32Array; m: Float32Array; v: Float32Array; grad: Float32Array; layout: { key: string; offset: number; numel: number }[] }[][]> {
    return this.pool.all('ppState');
  }

  /** Each device's memory now and at its peak since the last reset (bytes). */
  async memory(reset = false): Promise<{ device: string; allocated: number; peak: number }[]> {
    const ms = await this.pool.all<{ allocated: number; peakAllocated: number }>('ppMemory', () => ({ reset }));
    return ms.map((m, r) => ({ device: this.devices[r]!, allocated: m.allocated, peak: m.peakAllocated }));
  }

  run(): Promise<TrainResult> {
    return runSteps(this);
  }

  /** Frees the stages and ends the workers. Idempotent. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.closePool();
      this.pcomm?.destroy();
    })();
    return this.closed;
  }

  private poolClosed: Promise<void> | null = null;
  private closePool(): Promise<void> {
    this.poolClosed ??= (async () => {
      await Promise.allSettled([this.pool.all('ppDispose')]);
      await this.pool.close();
    })();
    return this.poolClosed;
  }
}

/** Create a PipelineTrainer, run it to the end, close it. */
export async function trainPipeline(o: PipelineTrainOptions): Promise<TrainResult> {
  const t = await PipelineTrainer.create(o);
  try {
    return await t.run();
  } finally {
    await t.close();
  }
}
