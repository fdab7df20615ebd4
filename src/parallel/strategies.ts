// The strategies, driven from the main thread over a DevicePool (one worker per device):
//   single — one device (a one-stage pipeline);
//   dp     — a full replica per device; the DataPartitioner deals the prompts out; results come back in
//            input order;
//   mp     — layers split across devices, one micro-batch: one device busy at a time;
//   pp     — the same split, the batch cut into micro-batches that flow through the stages on the
//            clock-cycle schedule (pipelineSchedule), optionally with several interleaved stages per
//            device (`chunks`).
// mp is pp with one micro-batch: the same code, not a second path.
import { fileURLToPath } from 'node:url';
import type { DType } from '../dtype.js';
import { deviceInfo, ensureCpuDevices, parseDevice } from '../device.js';
import { presetConfig } from '../models/presets.js';
import { loadConfig, type ModelConfig } from '../io/config.js';
import { newCommId } from './comm.js';
import { DataPartitioner } from './partitioner.js';
import { explicitPlacement, interleavedPlacement, memoryPlacement, type Stage } from './placement.js';
import { DevicePool } from './pool.js';
import { splitSizes } from './schedule.js';
import type { PipelineResult, TaskTime } from './stage-worker.js';

export type Strategy = 'single' | 'dp' | 'mp' | 'pp';

export interface ParallelOptions {
  strategy: Strategy;
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
}

export interface ParallelGenerateOptions {
  maxTokens: number;
  /** pp: micro-batches (default: one per stage); mp always 1 */
  microBatches?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
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

// Workers import compiled JS; from the TS sources the pool maps src/*.ts to dist/*.js.
const STAGE_MODULE = fileURLToPath(new URL(`./stage-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

function configOf(source: string): ModelConfig {
  return presetConfig(source) ?? loadConfig(source);
}

export class ParallelModel {
  private constructor(
    readonly strategy: Strategy,
    readonly pool: DevicePool,
    /** every pipeline stage (for dp and single, one whole-model replica per device) */
    readonly stages: Stage[],
    readonly config: ModelConfig,
    /** one worker per device, in rank order */
    readonly devices: string[],
  ) {}

  /** Start one worker per device and load the model: replicas (dp) or stages (single, mp, pp). */
  static async load(source: string, o: ParallelOptions): Promise<ParallelModel> {
    if (!['single', 'dp', 'mp', 'pp'].includes(o.strategy)) throw new Error(`unknown strategy "${o.strategy}": expected single, dp, mp or pp`);
    ensureCpuDevices(o.devices);
    const devices = o.devices.map((d) => parseDevice(d));
    if (o.strategy === 'single' && devices.length !== 1) throw new Error(`strategy single takes one device, got ${devices.length}`);
    const cfg = configOf(source);
    const dtype: DType = o.dtype ?? (devices[0]!.startsWith('cuda') ? 'bf16' : 'f32');
    const chunks = o.chunks ?? 1;
    if (!Number.isInteger(chunks) || chunks < 1) throw new Error(`chunks (stages per device) must be a positive integer, got ${chunks}`);
    if (chunks > 1 && (o.strategy === 'dp' || o.strategy === 'single')) throw new Error(`chunks applies to mp and pp, not ${o.strategy}`);
    if (chunks > 1 && o.placement && o.placement !== 'even') throw new Error('chunks > 1 places layers evenly: give no placement (or "even")');
    let stages: Stage[];
    if (o.strategy === 'dp' || o.strategy === 'single') stages = devices.map((device) => ({ device, start: 0, end: cfg.layers, embed: true, head: true }));
    else if (o.placement && typeof o.placement === 'object') stages = explicitPlacement(cfg, o.placement, devices);
    else if (o.placement === 'memory')
      stages = memoryPlacement(cfg, devices, devices.map((d) => deviceInfo(d).memoryFree), { dtype, batch: 1, maxLen: cfg.maxPositions });
    else stages = interleavedPlacement(cfg, devices, chunks);
    // Workers in the order of the stages they hold first (an explicit map may reorder the devices).
    const ranks = stages.slice(0, stages.length / chunks).map((s) => s.device);
    const kinds = new Set(stages.map((s) => (s.device.startsWith('cuda') ? 'nccl' : 'cpu')));
    if (kinds.size > 1) throw new Error('a pipeline over both CPU and CUDA devices is not supported: use one kind');
    // CPU devices are process-wide (ensureCpuDevices above made them), so the workers see them too.
    const pool = await DevicePool.start(ranks, { modules: [STAGE_MODULE], timeoutMs: o.timeoutMs });
    try {
      const replicas = o.strategy === 'dp' || o.strategy === 'single';
      await pool.all('load', (r) => ({ source, dtype, seed: o.seed, stages: replicas ? undefined : stages.filter((_, i) => i % ranks.length === r) }));
      if (!replicas && ranks.length > 1) {
        const kind = [...kinds][0] as 'cpu' | 'nccl';
        const id = newCommId(kind);
        await pool.all('commInit', () => ({ kind, id, timeoutMs: o.commTimeoutMs }));
      }
    } catch (e) {
      await pool.close();
      throw e;
    }
    return new ParallelModel(o.strategy, pool, stages, cfg, ranks);
  }

  async generate(prompts: number[][], g: ParallelGenerateOptions): Promise<ParallelResult> {
    if (!prompts.length) throw new Error('generate: give at least one prompt');
    for (const [b, p] of prompts.entries()) {
      if (!p.length) throw new Error(`generate: prompt ${b} is empty`);
      for (const id of p)
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize)
          throw new Error(`generate: prompt ${b} has token id ${id}, outside the vocabulary [0, ${this.config.vocabSize})`);
      if (p.length + g.maxTokens > this.config.maxPositions)
        throw new Error(`generate: prompt ${b} has ${p.length} tokens; with ${g.maxTokens} new ones that is over the model's context of ${this.config.maxPositions}`);
    }
    const sampling = { temperature: g.temperature, topK: g.topK, topP: g.topP, seed: g.seed };
    if (g.batchPerDevice !== undefined && (!Number.isInteger(g.batchPerDevice) || g.batchPerDevice < 1))
      throw new Error(`generate: batchPerDevice must be a positive integer, got ${g.batchPerDevice}`);
    const t0 = performance.now();
    if (this.strategy === 'dp' || this.strategy === 'single') {
      // single is data parallelism over one device: the same engine (captured decode) as each replica.
      const part = new DataPartitioner(prompts.length, this.devices.length);
      const res = await this.pool.all<{ tokens: number[][]; t0: number; t1: number; times: { prefillMs: number } }>('generate', (r) => ({
        prompts: part.use(prompts, r),
        opts: { ...sampling, maxTokens: g.maxTokens, stopTokens: [] },
        batch: g.batchPerDevice,
      }));
      // Two tasks a replica: its prefill (step 0) and its decoding (step 1), for the timeline.
      const tasks = res.flatMap((x, r) => [
        { stage: r, mb: 0, step: 0, t0: x.t0, t1: x.t0 + x.times.prefillMs },
        { stage: r, mb: 0, step: 1, t0: x.t0 + x.times.prefillMs, t1: x.t1 },
      ]);
      return { tokens: part.gather(res.map((x) => x.tokens)), wallMs: performance.now() - t0, tasks, microBatches: 1 };
    }
    const m = this.strategy === 'pp' ? (g.microBatches ?? this.stages.length) : 1;
    if (this.strategy !== 'pp' && g.microBatches !== undefined && g.microBatches !== 1)
      throw new Error(`strategy ${this.strategy} runs one micro-batch; use pp for ${g.microBatches}`);
    const micro = splitSizes(prompts.length, m);
    const res = await this.pool.all<PipelineResult>('pipeline', () => ({ prompts, micro, maxTokens: g.maxTokens, timeline: g.timeline, ...sampling }));
    return { tokens: res[res.length - 1]!.tokens, wallMs: performance.now() - t0, tasks: res.flatMap((r) => r.tasks), microBatches: m };
  }

  /** Peak allocator bytes per device since the last reset. */
  async memory(reset = false): Promise<{ device: string; peakBytes: number; allocated: number }[]> {
    const stats = await this.pool.all<{ peakAllocated: number; allocated: number }>('memory', () => ({ reset }));
    return stats.map((s, r) => ({ device: this.devices[r]!, peakBytes: s.peakAllocated, allocated: s.allocated }));
  }

  /** All-reduce bus bandwidth over the stages' communicator (mp/pp on 2+ devices), GB/s per size. */
  async allReduceBandwidth(sizes: number[], iters = 20): Promise<{ bytes: number; ms: number; busGBps: number }[]> {
    if (this.strategy === 'dp' || this.strategy === 'single' || this.devices.length < 2) throw new Error('allReduceBandwidth needs an mp/pp model on 2+ devices');
    const n = this.devices.length;
    const out = [];
    for (const bytes of sizes) {
      const ms = Math.max(...(await this.pool.all<number>('allReduceBench', () => ({ bytes, iters }))));
      // Bus bandwidth as nccl-tests counts it: 2 (n - 1) / n of the buffer crosses each link.
      out.push({ bytes, ms, busGBps: ((2 * (n - 1)) / n) * (bytes / (ms / 1e3)) / 1e9 });
    }
    return out;
  }

  /** Free every worker's model and communicator, then stop the workers (also after a worker died). */
  async close(): Promise<void> {
    try {
      await Promise.allSettled(this.devices.map((_, r) => this.pool.call(r, 'unload')));
    } finally {
      await this.pool.close();
    }
  }
}
