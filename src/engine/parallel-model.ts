// A model across devices, driven from the main thread over a DevicePool (one worker per device). Each
// strategy is a mesh shape (engine/plan.ts `strategyMesh`):
//   single — one device: a replica, generated as one batch (the single-device engine);
//   dp     — a full replica per device; the DataPartitioner deals the prompts out; results come back in
//            input order;
//   mp     — layers split across devices, one micro-batch: one device busy at a time;
//   pp     — the same split, the batch cut into micro-batches that flow through the stages on the plan's
//            schedule, optionally with several interleaved stages per device (`chunks`).
//   tp     — every layer split across the devices (models/tp.ts: heads and MLP features, Megatron-style),
//            two all-reduces a layer over the tp group; each device runs the whole batch;
//   mesh   — dp x pp x tp (ParallelOptions.mesh): dp replicas, each a pipeline of pp stages, each stage
//            tp devices; a replica's share of the prompts runs its pipeline.
// mp is pp with one micro-batch, tp a one-stage pipeline of tp ranks, a mesh dp such pipelines: one plan
// and executor, not a path each. A tp rank is a lane of its stage: it runs the stage's column and hands
// its (all-reduced, so identical) activations to the same tp rank of the next stage over the pp group.
import { fileURLToPath } from 'node:url';
import type { DType } from '../dtype.js';
import { deviceInfo, ensureCpuDevices, parseDevice } from '../device.js';
import type { ModelConfig } from '../io/config.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { resolveSource, sourceTokenizer } from '../models/source.js';
import type { Generation } from './generate.js';
import { abortError, type LoadProgress } from '../models/load-steps.js';
import { checkDeviceMemory } from '../models/memory-check.js';
import { stageWeightBytes } from '../models/sizes.js';
import { launchEnv, launchSecret } from '../cluster/env.js';
import { allGatherJson, processCommunicator } from '../cluster/gather.js';
import { rendezvous, type DistWorld } from '../cluster/rendezvous.js';
import { describeWorld, distMeshGroups, processOf } from '../cluster/mesh-groups.js';
import type { AllReducePath, Communicator, CommKind } from '../parallel/comm.js';
import { meshGroups } from '../parallel/mesh-comms.js';
import { Mesh } from '../parallel/mesh.js';
import { DataPartitioner } from '../parallel/partitioner.js';
import { placeMesh, placeStages, type PlacedStage, type Strategy } from '../parallel/placement.js';
import { DevicePool } from '../parallel/pool.js';
import type { Column, TaskTime } from './executor.js';
import { generationPlan, microBatchCount, numberStages, planColumns, strategyMesh, type PipelinePlan, type PlanStage } from './plan.js';
import { resolveSampling, type SamplingOptions } from './sampling.js';
import { trace } from './trace.js';
import type { CommArgs, LoadArgs, PipelineArgs, PipelineResult } from './stage-worker.js';

export type { Strategy };

export interface ParallelOptions {
  /** a strategy, or give `mesh` instead */
  strategy?: Strategy;
  /**
   * A (dp, pp, tp) mesh instead of a strategy: "dp=2,pp=2" or a Mesh (axes left out are 1); as many
   * devices as ranks, in rank order (tp peers adjacent, then stages, then replicas: parallel/mesh.ts).
   * Its layers are split evenly over pp; placement and chunks apply to a plain pp mesh only.
   */
  mesh?: string | Mesh;
  devices: string[];
  dtype?: DType;
  /** seed of a preset's random weights (every device draws the same model) */
  seed?: number;
  /** mp/pp: how layers are placed */
  placement?: 'even' | 'memory' | Record<string, number[]>;
  /**
   * mp/pp: stages per device, interleaved (Megatron-LM's virtual stages; even placement only): device d
   * of D holds stages d, d + D, ... A device then waits 1/chunks of a stage for its first input instead of
   * a whole stage, so the pipeline's fill and drain shrink by that factor, for one more transfer per
   * chunk. Default 1.
   */
  chunks?: number;
  /** per worker call, ms (0: none) */
  timeoutMs?: number;
  /** communicator waits, ms */
  commTimeoutMs?: number;
  /** the load's progress, summed over the devices (from when every device has reported its totals) */
  onProgress?: (p: ParallelLoadProgress) => void;
  /** aborting stops every worker's load at its next step (AbortError); the workers are then ended */
  signal?: AbortSignal;
  /**
   * dp across processes: this process's devices are global replicas `rankOffset`.. of `world` (the
   * rendezvous's result); each process generates its replicas' share of the prompts and every process
   * gets all the results. mp, pp, tp and meshes: the mesh's ranks are the global ranks (process-major),
   * one stage a device, and every process gets each replica's tokens from its last stage's process.
   * Default: from the launcher's variables (launchEnv) when they are set.
   * false: one process whatever the environment.
   */
  distributed?: DistWorld | false;
}

/** What a load's strategy or mesh comes to: the mesh, the strategy it is reported as, each rank's stages. */
function resolveLayout(cfg: ModelConfig, o: ParallelOptions, devices: string[], dtype: DType, chunks: number) {
  if (o.mesh !== undefined && o.strategy !== undefined) throw new Error('ParallelModel.load: give strategy or mesh, not both');
  if (o.mesh === undefined && o.strategy === undefined) throw new Error('ParallelModel.load: give a strategy (single, dp, mp, pp, tp) or a mesh ("dp=2,pp=2")');
  let mesh: Mesh;
  if (o.mesh !== undefined) {
    if (typeof o.mesh !== 'string' && !(o.mesh instanceof Mesh)) throw new Error('ParallelModel.load: mesh must be a string like "dp=2,tp=2" or a Mesh');
    mesh = typeof o.mesh === 'string' ? Mesh.parse(o.mesh) : o.mesh;
    if (devices.length !== mesh.size) throw new Error(`ParallelModel.load: mesh ${mesh} has ${mesh.size} ranks, but ${devices.length} devices are given`);
  } else mesh = strategyMesh(o.strategy!, devices.length);
  const { dp, pp, tp } = mesh.shape;
  // A mesh of one axis is that axis's strategy (placement and chunks apply as they do there).
  const strategy: Strategy | 'mesh' = o.strategy ?? (tp === 1 && pp === 1 ? 'dp' : tp === 1 && dp === 1 ? 'pp' : pp === 1 && dp === 1 ? 'tp' : 'mesh');
  const grid = strategy === 'tp' || strategy === 'mesh';
  if (grid && (chunks !== 1 || o.placement !== undefined))
    throw new Error(`ParallelModel.load: placement and chunks apply to mp and pp; a ${strategy === 'tp' ? 'tp model' : `mesh (${mesh})`} splits its layers evenly over pp`);
  const need = { dtype, batch: 1, maxLen: cfg.maxPositions };
  const placed: PlacedStage[] = grid
    ? placeMesh(cfg, mesh, devices)
    : placeStages(cfg, strategy as Strategy, devices, { placement: o.placement, chunks, need, freeBytes: (d) => deviceInfo(d).memoryFree });
  return { mesh, strategy, placed, grid };
}

/** ParallelModel.load's progress: the sum over the devices, and each device's own (in rank order). */
export interface ParallelLoadProgress extends LoadProgress {
  devices: (LoadProgress & { device: string })[];
}

export interface ParallelGenerateOptions extends SamplingOptions {
  maxTokens: number;
  /** mp/pp: micro-batches (default one per stage, at most one per sequence); mp always 1 */
  microBatches?: number;
  /** record per-task times for a timeline */
  timeline?: boolean;
  /** single/dp: each replica runs its share in batches of this many sequences (default: all at once) */
  batchPerDevice?: number;
}

export interface ParallelResult {
  tokens: number[][];
  wallMs: number;
  tasks: TaskTime[];
  microBatches: number;
}

export interface ParallelTextOptions extends ParallelGenerateOptions {
  /** token ids that end a sequence (default: the model's end-of-sequence ids) */
  stopTokens?: number[];
}

export interface ParallelTextResult extends ParallelResult {
  /** per prompt: its tokens up to and with the first stop token, the text (with a tokenizer), why it ended */
  generations: Generation[];
}

// Workers import compiled JS; from the TS sources the pool maps src/*.ts to dist/*.js.
const STAGE_MODULE = fileURLToPath(new URL(`./stage-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

export class ParallelModel {
  /** Plans of earlier calls and their columns, by shape: a repeated call (a benchmark's runs) plans nothing again. */
  private readonly plans = new Map<string, { plan: PipelinePlan; columns: Column[] }>();
  /** a failed run broke the communicators (its ranks aborted them): make new ones before the next */
  private commsBroken = false;
  private closed: Promise<void> | null = null;
  /** launched as several processes: the world, and the processes' communicator for the results */
  dist: DistWorld | null = null;
  private procComm: Communicator | null = null;
  /** a mesh (mp, pp, tp, dp x pp x tp) across processes: the global rank of this process's first device (else 0) */
  private offset = 0;

  private constructor(
    /** the strategy loaded, or 'mesh' for a mesh of more than one axis */
    readonly strategy: Strategy | 'mesh',
    readonly pool: DevicePool,
    readonly mesh: Mesh,
    /**
     * every pipeline stage (for dp and single, one whole-model replica per device); for tp and meshes, the
     * pipeline of one replica's tp rank 0 (each rank's own is `placed`)
     */
    readonly stages: PlanStage[],
    readonly config: ModelConfig,
    /** one worker per device, in rank order */
    readonly devices: string[],
    private readonly comm: { kind: CommKind; timeoutMs?: number } | null,
    /** on the main thread: prompts are encoded and outputs decoded here (null: token ids only) */
    readonly tokenizer: Tokenizer | null,
    /** what each rank holds (layers, embeddings, head, tp shard), in rank order */
    readonly placed: PlacedStage[],
  ) {}

  /** Every rank joins its mesh groups, with fresh communicator ids. */
  private async initComms(): Promise<void> {
    if (!this.comm) return;
    if (this.dist && this.strategy !== 'dp') {
      // every process joins at once (only at load: a failed run leaves a pipeline across processes unusable)
      const kind = this.dist.comm?.kind ?? 'tcp';
      const local = await distMeshGroups(this.dist, this.procComm!, this.mesh, kind);
      await this.pool.all('commInit', (r) => ({ kind, groups: local[r]!, timeoutMs: this.comm!.timeoutMs }) satisfies CommArgs);
      this.commsBroken = false;
      return;
    }
    const groups = meshGroups(this.mesh, this.comm.kind);
    await this.pool.all('commInit', (r) => ({ kind: this.comm!.kind, groups: groups[r]!, timeoutMs: this.comm!.timeoutMs }) satisfies CommArgs);
    this.commsBroken = false;
  }

  /** Start one worker per device and load the model: replicas (dp, single) or stages (mp, pp). */
  static async load(source: string, o: ParallelOptions): Promise<ParallelModel> {
    if (!o || typeof o !== 'object') throw new Error('ParallelModel.load: give options { strategy, devices }');
    if (!Array.isArray(o.devices) || !o.devices.length) throw new Error('ParallelModel.load: devices must be a non-empty list, e.g. ["cuda:0", "cuda:1"]');
    ensureCpuDevices(o.devices);
    const devices = o.devices.map((d) => parseDevice(d));
    const src = resolveSource(source);
    const cfg = src.config;
    const dtype: DType = o.dtype ?? (devices[0]!.startsWith('cuda') ? 'bf16' : 'f32');
    const chunks = o.chunks ?? 1;
    // Several processes: dp (replicas never talk while generating, so only the results cross), and every
    // strategy whose ranks talk (mp, pp, tp, a mesh): the mesh spans the processes' devices, global ranks
    // process-major, one stage a rank (evenly placed); cluster/mesh-groups.ts's groups, tp groups inside
    // a process or across two; each replica's last stage's process hands out its tokens.
    const given = o.mesh === undefined ? null : typeof o.mesh === 'string' ? Mesh.parse(o.mesh) : o.mesh instanceof Mesh ? o.mesh : null;
    // (a mesh of dp only is the dp strategy)
    const dpMesh = given !== null && given.shape.pp === 1 && given.shape.tp === 1;
    const isMesh = (o.mesh !== undefined && !dpMesh) || o.strategy === 'pp' || o.strategy === 'mp' || o.strategy === 'tp';
    // (a mesh launched as one process is a single-process one)
    let dist: DistWorld | null = o.distributed && !(isMesh && o.distributed.processes === 1) ? o.distributed : null;
    const launched = o.distributed === undefined ? launchEnv() : null;
    const env = launched && !(isMesh && launched.world === 1) ? launched : null;
    const across = (env !== null && env.world > 1) || (dist !== null && dist.processes > 1);
    const meshAcross = across && isMesh;
    const label = `ParallelModel.load ${source} (${o.strategy ?? `mesh ${String(o.mesh)}`} on ${devices.join(', ')})`;
    if (meshAcross && (chunks !== 1 || (o.placement !== undefined && o.placement !== 'even')))
      throw new Error(`${label}: across processes ${o.strategy === 'pp' || o.strategy === 'mp' ? 'a pipeline has' : 'a mesh has'} one stage a device, evenly placed: give no chunks or placement map`);
    // across processes a dp mesh is strategy dp over every process's devices (its size checked after the rendezvous)
    if (across && dpMesh && o.strategy === undefined) o = { ...o, mesh: undefined, strategy: 'dp' };
    // (dp meets after the checks below, as it always has; a mesh needs the world for its layout)
    if (env && meshAcross) dist = await rendezvous({ env, secret: launchSecret(), devices });
    const where = () => `process ${dist!.process} of ${dist!.processes}, global rank${devices.length > 1 ? `s ${dist!.rankOffset}..${dist!.rankOffset + devices.length - 1}` : ` ${dist!.rankOffset}`}; ${describeWorld(dist!)}`;
    if (meshAcross && given && given.size !== dist!.world)
      throw new Error(`${label}: mesh ${given} has ${given.size} ranks, but the ${dist!.processes} processes have ${dist!.world} devices (${where()})`);
    const offset = meshAcross ? dist!.rankOffset : 0;
    // a mesh across processes is laid out over every process's devices, named by global rank
    const layoutDevices = meshAcross ? Array.from({ length: dist!.world }, (_, r) => `rank-${r}`) : devices;
    let resolved: ReturnType<typeof resolveLayout>;
    try {
      resolved = resolveLayout(cfg, meshAcross ? { ...o, placement: undefined } : o, layoutDevices, dtype, chunks);
    } catch (e) {
      throw meshAcross ? new Error(`${label} (${where()}): ${(e as Error).message}`) : e;
    }
    const { mesh, strategy, grid } = resolved;
    // this process's ranks' stages, on its own devices
    const placed = meshAcross ? resolved.placed.map((s, r) => (r >= offset && r < offset + devices.length ? { ...s, device: devices[r - offset]! } : s)) : resolved.placed;
    const mine = meshAcross ? placed.slice(offset, offset + devices.length) : placed;
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new Error('ParallelModel.load: onProgress must be a function');
    const what = `ParallelModel.load ${source} (${strategy === 'mesh' ? `mesh ${mesh}` : strategy} on ${devices.join(', ')})`;
    // Refused here, before a worker starts, rather than by one device half-way through its load.
    checkDeviceMemory(mine.map((s) => ({ device: s.device, bytes: stageWeightBytes(cfg, dtype, s) })), what);
    if (o.signal?.aborted) throw abortError(what, o.signal.reason);
    const replicas = strategy === 'dp' || strategy === 'single';
    if ((env || dist) && strategy !== 'dp' && !meshAcross) throw new Error(`${what}: one device's strategy (single) does not run across processes (launched as ${env ? `process ${env.rank} of ${env.world}` : 'several processes'}): give --devices and a strategy, or launch one process`);
    if (env && !meshAcross) dist = await rendezvous({ env, secret: launchSecret(), devices });
    if (dist && dist.layout[dist.process]?.devices.length !== devices.length)
      throw new Error(`${what}: the world gives process ${dist.process} ${dist.layout[dist.process]?.devices.length} devices but it has ${devices.length}`);
    if (dist && dpMesh && given!.size !== dist.world)
      throw new Error(`${what}: mesh ${given} has ${given!.size} ranks, but the ${dist.processes} processes have ${dist.world} devices (${where()})`);
    const procComm = dist ? processCommunicator(dist, o.commTimeoutMs) : null;
    // A grid's ranks each hold one stage (of their pp coordinate); its pipeline is numbered from the
    // ranks of replica 0's tp rank 0 (across processes, named by global rank).
    const lane0 = grid ? (meshAcross ? resolved.placed : placed).filter((_, r) => mesh.coords(r).dp === 0 && mesh.coords(r).tp === 0) : [];
    const stages = replicas ? placed.map((s, i) => ({ ...s, index: 0, rank: i, chunk: 0 })) : grid ? numberStages(lane0, 1) : numberStages(meshAcross ? resolved.placed : placed, chunks);
    const ranks = replicas || grid || meshAcross ? devices : stages.slice(0, stages.length / chunks).map((s) => s.device);
    const rankPlaced = replicas ? placed : meshAcross ? mine : grid ? placed : ranks.map((d) => placed.find((s) => s.device === d)!);
    const kinds = new Set(ranks.map((d) => (d.startsWith('cuda') ? 'nccl' : 'cpu')));
    if (kinds.size > 1) throw new Error('a pipeline over both CPU and CUDA devices is not supported: use one kind');
    // CPU devices are process-wide (ensureCpuDevices above made them), so the workers see them too.
    let pool: DevicePool;
    try {
      pool = await DevicePool.start(ranks, { modules: [STAGE_MODULE], timeoutMs: o.timeoutMs });
    } catch (e) {
      procComm?.destroy();
      throw e;
    }
    // Replicas never talk while generating; pipeline stages do, over their pp group, and tp ranks over theirs.
    const comm = !replicas && (meshAcross ? dist!.world : ranks.length) > 1 ? { kind: [...kinds][0] as CommKind, timeoutMs: o.commTimeoutMs } : null;
    const pm = new ParallelModel(strategy, pool, mesh, stages, cfg, ranks, comm, sourceTokenizer(src), rankPlaced);
    pm.dist = dist;
    pm.procComm = procComm;
    pm.offset = offset;
    // The stages each rank loads: a grid rank its one stage (with its tp shard), a pp rank its chunks
    // (across processes, its global rank's, on its own device).
    const loadStages = (r: number) =>
      replicas ? undefined : grid ? [{ ...placed[offset + r]!, index: mesh.coords(offset + r).pp }] : stages.filter((s) => s.rank === offset + r).map((s) => ({ ...s, device: devices[r]! }));
    const onAbort = () => pool.requestStop();
    o.signal?.addEventListener('abort', onAbort);
    try {
      if (o.signal?.aborted) throw abortError(what, o.signal.reason); // while the workers started
      const per: (LoadProgress | null)[] = ranks.map(() => null);
      const report = (r: number, p: LoadProgress) => {
        per[r] = p;
        if (!o.onProgress || per.some((x) => x === null)) return;
        const all = per as LoadProgress[];
        const sum = (k: keyof LoadProgress) => all.reduce((n, x) => n + x[k], 0);
        o.onProgress({
          bytes: sum('bytes'), totalBytes: sum('totalBytes'), tensors: sum('tensors'), totalTensors: sum('totalTensors'),
          devices: all.map((x, i) => ({ ...x, device: ranks[i]! })),
        });
      };
      const loads = ranks.map((_, r) =>
        pool.call(r, 'load', { source, dtype, seed: o.seed, stages: loadStages(r) } satisfies LoadArgs, {
          onProgress: (p: LoadProgress) => report(r, p),
        }),
      );
      // One device failing (or the abort) stops the others' loads at their next step.
      const settled = await Promise.allSettled(loads.map((c) => c.catch((e: unknown) => (pool.requestStop(), Promise.reject(e)))));
      if (o.signal?.aborted) throw abortError(what, o.signal.reason);
      const failed = settled.flatMap((x) => (x.status === 'rejected' ? [x.reason as Error] : []));
      if (failed.length) throw failed.find((e) => e.name !== 'AbortError') ?? failed[0]!;
      await pm.initComms();
    } catch (e) {
      await pool.close();
      procComm?.destroy();
      throw e;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
    return pm;
  }

  private checkPrompts(prompts: number[][], maxTokens: number): void {
    if (!Array.isArray(prompts) || !prompts.length) throw new Error('generate: give at least one prompt (an array of token-id arrays)');
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`generate: maxTokens must be a positive integer, got ${String(maxTokens)}`);
    for (const [b, p] of prompts.entries()) {
      if (!Array.isArray(p) || !p.length) throw new Error(`generate: prompt ${b} is empty (each prompt is a non-empty array of token ids)`);
      for (const id of p)
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize)
          throw new Error(`generate: prompt ${b} has token id ${id}, outside the vocabulary [0, ${this.config.vocabSize})`);
      if (p.length + maxTokens > this.config.maxPositions)
        throw new Error(`generate: prompt ${b} has ${p.length} tokens; with ${maxTokens} new ones that is over the model's context of ${this.config.maxPositions}`);
    }
  }

  /** Every option is checked here, on the main thread, before any worker starts the run. */
  async generate(prompts: number[][], g: ParallelGenerateOptions): Promise<ParallelResult> {
    if (this.closed) throw new Error('generate: this model has been closed');
    if (!g || typeof g !== 'object') throw new Error('generate: give options { maxTokens }');
    this.checkPrompts(prompts, g.maxTokens);
    const sampling = resolveSampling(g);
    if (g.batchPerDevice !== undefined && (!Number.isInteger(g.batchPerDevice) || g.batchPerDevice < 1))
      throw new Error(`generate: batchPerDevice must be a positive integer, got ${g.batchPerDevice}`);
    const t0 = performance.now();
    if (this.strategy === 'dp' || this.strategy === 'single') {
      if (g.microBatches !== undefined && g.microBatches !== 1)
        throw new Error(`generate: strategy ${this.strategy} runs each replica's share as one batch; micro-batches are for pp`);
      // across processes the prompts are dealt to all replicas (global ranks); this process runs its own
      const off = this.dist?.rankOffset ?? 0;
      const part = new DataPartitioner(prompts.length, this.dist?.world ?? this.devices.length);
      const res = await this.pool.all<{ tokens: number[][]; t0: number; t1: number; times: { prefillMs: number } }>('generate', (r) => ({
        prompts: part.use(prompts, off + r),
        seqIds: part.partitions[off + r]!,
        opts: { ...sampling, maxTokens: g.maxTokens, stopTokens: [] },
        batch: g.batchPerDevice,
      }));
      // Two tasks a replica: its prefill (step 0) and its decoding (step 1), for the timeline.
      const tasks = res.flatMap((x, r) => [
        { stage: r, mb: 0, step: 0, t0: x.t0, t1: x.t0 + x.times.prefillMs },
        { stage: r, mb: 0, step: 1, t0: x.t0 + x.times.prefillMs, t1: x.t1 },
      ]);
      let shares = res.map((x) => x.tokens);
      if (this.procComm) shares = (allGatherJson(this.procComm, shares) as number[][][][]).flat();
      return { tokens: part.gather(shares), wallMs: performance.now() - t0, tasks, microBatches: 1 };
    }
    if (this.strategy === 'mp' && g.microBatches !== undefined && g.microBatches !== 1)
      throw new Error(`generate: strategy mp runs one micro-batch; use pp for ${g.microBatches}`);
    // Each replica (dp) runs its share of the prompts through its pipeline; one replica has them all.
    const { dp } = this.mesh.shape;
    const part = new DataPartitioner(prompts.length, dp);
    const runs = part.partitions.map((ids) => {
      if (!ids.length) return null; // fewer prompts than replicas: this one sits out
      const m = this.strategy === 'mp' ? 1 : microBatchCount(ids.length, this.stages.length, g.microBatches);
      return { ids, m, ...this.planFor(ids.length, m, g.maxTokens) };
    });
    if (this.commsBroken && this.dist) throw new Error(`generate: an earlier run across processes failed and broke the pipeline's communicators: close this model and load it again`);
    if (this.commsBroken) await this.initComms();
    const off = this.offset;
    const active = this.devices.map((_, r) => r).filter((r) => runs[this.mesh.coords(off + r).dp] !== null);
    let res: PipelineResult[];
    try {
      res = await this.allOrRootCause<PipelineResult>('pipeline', active, (r) => {
        const c = this.mesh.coords(off + r);
        const run = runs[c.dp]!;
        return {
          ...sampling,
          prompts: run.ids.map((i) => prompts[i]!),
          seqIds: run.ids,
          micro: run.plan.micro,
          maxTokens: g.maxTokens,
          column: run.columns[c.pp]!,
          stages: run.plan.stages.length,
          timeline: g.timeline,
          fault: (g as { fault?: PipelineArgs['fault'] }).fault, // tests only
        } satisfies PipelineArgs;
      });
    } catch (e) {
      // A rank that failed aborted its communicators (its peers then failed too, at once): nothing of this
      // run is left in flight, and the next call starts on new communicators.
      // A rank that died cannot abort: stop the others' waits too, and wait until every live worker is
      // out of the run (its queue reaches the ping).
      this.commsBroken = true;
      // close() during the run: its stop ends each rank in whatever wait it was in ("stopped", or "peer
      // aborted" from a rank stopped first), so say the one thing that happened.
      if (this.closed) throw new Error('generate: stopped: the model was closed during the run', { cause: e });
      this.pool.requestStop();
      await Promise.allSettled(this.devices.map((_, r) => this.pool.call(r, 'ping')));
      this.pool.clearStop();
      throw e;
    }
    const byRank = new Map(active.map((r, i) => [off + r, res[i]!]));
    const lastStage = this.stages[this.stages.length - 1]!.rank;
    // Every tp rank of the last stage samples the same ids (its logits are all-reduced): take rank 0's.
    let tokens = runs.map((run, d) => (run ? byRank.get(this.mesh.rankOf({ dp: d, pp: lastStage, tp: 0 }))?.tokens ?? [] : []));
    // across processes each replica's last stage's process has its tokens: every process takes them from there
    if (this.dist && this.procComm) {
      const all = allGatherJson(this.procComm, tokens) as number[][][][];
      tokens = runs.map((_, d) => all[processOf(this.dist!, this.mesh.rankOf({ dp: d, pp: lastStage, tp: 0 }))]![d]!);
    }
    // The timeline is replica 0's tp rank 0 lane (the others repeat its shape; across processes, this process's part).
    const tasks = active.map((r) => off + r).filter((r) => this.mesh.coords(r).dp === 0 && this.mesh.coords(r).tp === 0).flatMap((r) => byRank.get(r)!.tasks);
    const microBatches = runs.find((x) => x !== null)!.m;
    return { tokens: part.gather(tokens), wallMs: performance.now() - t0, tasks, microBatches };
  }

  /** The plan of one pipeline run of `batch` sequences (cached: a repeated call plans nothing again). */
  private planFor(batch: number, m: number, maxTokens: number): { plan: PipelinePlan; columns: Column[] } {
    const key = `${batch}/${m}/${maxTokens}`;
    let cached = this.plans.get(key);
    if (!cached) {
      const p = generationPlan(this.config, this.stages, batch, m, maxTokens);
      cached = { plan: p, columns: planColumns(p) };
      if (this.plans.size > 16) this.plans.clear();
      this.plans.set(key, cached);
    }
    return cached;
  }

  /**
   * `method` on every worker, waiting for all of them. When some fail, the error is the root cause: a
   * rank's own failure rather than the "peer aborted" or "stopped" errors it caused on the others.
   */
  private allOrRootCause<R>(method: string, ranks: number[], args: (rank: number) => unknown): Promise<R[]> {
    return this.pool.allOrRootCause<R>(method, args, ranks);
  }

  /**
   * Prompts as text (or token ids), each generation cut at its first stop token (the model's
   * end-of-sequence ids by default) and decoded. Every sequence runs to maxTokens on the devices (a
   * pipeline's schedule is fixed before it starts); what follows a stop token is dropped.
   */
  async generateText(prompts: (string | number[])[], g: ParallelTextOptions): Promise<ParallelTextResult> {
    if (!Array.isArray(prompts) || !prompts.length) throw new Error('generate: give at least one prompt (a string, or an array of token ids)');
    const ids = prompts.map((p, b) => {
      if (Array.isArray(p)) return p;
      if (typeof p !== 'string') throw new Error(`generate: prompt ${b} is ${p === null ? 'null' : typeof p}, not a string or an array of token ids`);
      if (!this.tokenizer) throw new Error('generate: this model has no tokenizer: give prompts as token ids');
      return this.tokenizer.encode(p);
    });
    const stop = new Set(g.stopTokens ?? this.config.eosTokenIds);
    const res = await this.generate(ids, g);
    const generations = res.tokens.map((t): Generation => {
      const at = t.findIndex((x) => stop.has(x));
      const tokens = at < 0 ? t : t.slice(0, at + 1);
      const body = at < 0 ? t : t.slice(0, at);
      return { tokens, finish: at < 0 ? 'length' : 'stop-token', ...(this.tokenizer ? { text: this.tokenizer.decode(body) } : {}) };
    });
    return { ...res, generations };
  }

  /** Peak allocator bytes per device since the last reset. */
  async memory(reset = false): Promise<{ device: string; peakBytes: number; allocated: number }[]> {
    const stats = await this.pool.all<{ peakAllocated: number; allocated: number }>('memory', () => ({ reset }));
    return stats.map((s, r) => ({ device: this.devices[r]!, peakBytes: s.peakAllocated, allocated: s.allocated }));
  }

  /**
   * All-reduce latency and bus bandwidth over the stages' communicator (mp/pp on 2+ devices), per size
   * and path (StageWorker.allReduceBench says how it is timed). A peer path where the communicator has
   * none is left out, with the reason in `peerUnavailable`.
   */
  async allReduceBandwidth(sizes: number[], iters = 20, paths: AllReducePath[] = ['auto']): Promise<{ results: { bytes: number; path: AllReducePath; ms: number; busGBps: number }[]; peerUnavailable: string }> {
    if (this.strategy === 'dp' || this.strategy === 'single' || this.devices.length < 2) throw new Error('allReduceBandwidth needs an mp/pp model on 2+ devices');
    const n = this.devices.length;
    const why = (await this.pool.all<string>('peerAllReduce', () => ({}))).find((w) => w) ?? '';
    const results = [];
    for (const bytes of sizes)
      for (const path of paths) {
        if (path.startsWith('peer') && (why || bytes > (path === 'peer-ll' ? 1 << 19 : 1 << 20))) continue;
        if (path === 'auto' && why) continue; // the same as 'nccl' there
        const ms = Math.max(...(await this.pool.all<number>('allReduceBench', () => ({ bytes, iters, path }))));
        // Bus bandwidth as nccl-tests counts it: 2 (n - 1) / n of the buffer crosses each link.
        results.push({ bytes, path, ms, busGBps: ((2 * (n - 1)) / n) * (bytes / (ms / 1e3)) / 1e9 });
      }
    return { results, peerUnavailable: why };
  }

  /**
   * Stop what the workers are doing (a running generate rejects: each worker ends within one task, or
   * within 20 ms when it waits on a communicator), free every worker's model and communicator, then end
   * the workers (also after a worker died). Idempotent.
   */
  close(): Promise<void> {
    this.closed ??= (async () => {
      trace('close: stop requested');
      this.pool.requestStop();
      try {
        await Promise.allSettled(this.devices.map((_, r) => this.pool.call(r, 'unload')));
        trace('close: every worker unloaded');
      } finally {
        await this.pool.close();
        this.procComm?.destroy();
        trace('close: workers ended');
      }
    })();
    return this.closed;
  }
}
