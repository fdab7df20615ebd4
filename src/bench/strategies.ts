// `parallm bench` (the default scenario): the same model and batch under single-device, data, model and
// pipeline parallelism on the devices present; tokens/s for prefill and generation, time per step,
// memory per device, pipeline utilization; SVG charts of throughput and of the pipeline's timeline.
import { checkDType, type DType } from '../dtype.js';
import { cudaDeviceCount, deviceInfo, ensureCpuDevices, parseDevice } from '../device.js';
import { ParallelModel, type Strategy } from '../engine/parallel-model.js';
import { microBatchCount } from '../engine/plan.js';
import { modelConfig } from '../models/source.js';
import { reportingLoad, type LoadReporter } from '../models/load-steps.js';
import { rng } from '../random.js';
import { median } from './stats.js';
import { chartFolder } from './chart-folder.js';
import { barChart, timelineChart, utilization, type TimelineTask } from './svg.js';

export interface StrategyBenchOptions {
  model?: string;
  /** a reporter for each strategy's load (the CLI's progress bar) */
  loadProgress?: (label: string) => LoadReporter;
  devices?: string[];
  dtype?: DType;
  /** sequences per device for dp (so its scaling is at the same per-device batch), per model otherwise */
  batch?: number;
  /** single/dp: total prompts, run by each replica in batches of `batch` (default: one batch each) */
  prompts?: number;
  promptTokens?: number;
  newTokens?: number;
  /** pp micro-batches (default one per stage; more than the batch is an error) */
  microBatches?: number;
  /** pp: stages per device, interleaved (default 1) */
  chunks?: number;
  strategies?: Strategy[];
  /** timed runs per strategy; the run of median wall time is reported, with the min and max (default 3) */
  repeats?: number;
  /** folder for the SVG charts (none without it) */
  outDir?: string;
  onResult?: (r: StrategyBenchResult) => void;
}

/** min, median and max over the timed runs */
export interface Spread {
  min: number;
  median: number;
  max: number;
}

export interface StrategyBenchResult {
  strategy: Strategy;
  model: string;
  dtype: DType;
  devices: string[];
  batch: number;
  promptTokens: number;
  newTokens: number;
  microBatches: number;
  /** pp: stages per device (interleaved) */
  chunks?: number;
  wallMs: number;
  /** generated tokens (batch x new) per second of the whole run */
  tokensPerS: number;
  prefillTokensPerS: number;
  /** steady state: batch / median time per decode step (mp/pp); replicas: decoded tokens / decode span */
  decodeTokensPerS: number;
  msPerStep: number;
  utilization: number;
  memory: { device: string; peakBytes: number }[];
  /** timed runs made; the figures are those of the run of median wall time */
  repeats: number;
  /** over the timed runs: generated tokens per second of the whole run, and its wall time */
  tokensPerSRuns: Spread;
  wallMsRuns: Spread;
  /** why this strategy could not run (its figures are then 0); the other strategies still ran */
  error?: string;
  /** mp/pp: every task's device times (t0, t1) and host enqueue times (h0, h1), ms since the epoch */
  timeline?: TimelineTask[];
}

export function defaultBenchDevices(): string[] {
  const n = cudaDeviceCount();
  return n ? Array.from({ length: n }, (_, i) => `cuda:${i}`) : ['cpu:0', 'cpu:1'];
}

/** What the bench runs by default; tp is measured when asked for (--strategies ...,tp). */
const DEFAULT_STRATEGIES: readonly Strategy[] = ['single', 'dp', 'mp', 'pp'];
const STRATEGIES: readonly Strategy[] = [...DEFAULT_STRATEGIES, 'tp'];

/** What a strategy bench will run, its defaults filled in; `planStrategyBench` checks it all first. */
export interface StrategyBenchPlan {
  model: string;
  devices: string[];
  dtype: DType;
  batch: number;
  promptTokens: number;
  newTokens: number;
  strategies: Strategy[];
  repeats: number;
  microBatches?: number;
  chunks: number;
  prompts?: number;
}

function checkCount(what: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw new Error(`bench: ${what} must be a positive integer, got ${v}`);
}

/**
 * The run's settings with their defaults, checked before anything loads: the devices exist and are
 * listed once, the model resolves, the dtype and strategies are known and the counts are positive.
 * A bad input is one error, not one per strategy.
 */
export function planStrategyBench(o: StrategyBenchOptions = {}): StrategyBenchPlan {
  const given = o.devices ?? defaultBenchDevices();
  if (!given.length) throw new Error('bench: --devices is empty');
  ensureCpuDevices(given);
  const devices = given.map((d) => parseDevice(d));
  for (const d of devices) deviceInfo(d); // throws "unknown device" for a GPU that is not there
  const gpu = devices[0]!.startsWith('cuda');
  const strategies = o.strategies ?? (devices.length > 1 ? [...DEFAULT_STRATEGIES] : (['single'] as Strategy[]));
  if (!strategies.length) throw new Error('bench: --strategies is empty');
  for (const s of strategies) if (!STRATEGIES.includes(s)) throw new Error(`bench: unknown strategy "${s}": expected some of ${STRATEGIES.join(', ')}`);
  const dup = devices.find((d, i) => devices.indexOf(d) !== i);
  if (dup && strategies.some((s) => s !== 'single')) throw new Error(`bench: device ${dup} is listed twice in --devices (${given.join(',')}); each device runs one replica or stage`);
  const model = o.model ?? (gpu ? 'gpt2' : 'tiny-llama');
  const cfg = modelConfig(model); // throws, naming the model, for an unknown preset or a bad folder
  const dtype = o.dtype ? checkDType(o.dtype) : gpu ? 'bf16' : 'f32';
  for (const [k, v] of Object.entries({ batch: o.batch, 'prompt tokens': o.promptTokens, 'new tokens': o.newTokens, 'micro-batches': o.microBatches, chunks: o.chunks, prompts: o.prompts, repeats: o.repeats }))
    checkCount(k, v);
  const plan: StrategyBenchPlan = {
    model,
    devices,
    dtype,
    batch: o.batch ?? (gpu ? 64 : 8),
    promptTokens: o.promptTokens ?? (gpu ? 128 : 32),
    newTokens: o.newTokens ?? (gpu ? 128 : 16),
    strategies,
    repeats: o.repeats ?? 3,
    microBatches: o.microBatches,
    chunks: o.chunks ?? 1,
    prompts: o.prompts,
  };
  if (plan.promptTokens + plan.newTokens > cfg.maxPositions)
    throw new Error(`bench: ${plan.promptTokens} prompt + ${plan.newTokens} new tokens is longer than ${model}'s context of ${cfg.maxPositions}`);
  return plan;
}

/** The devices a plan runs on: `single` alone uses only the first. */
export function planDevices(p: Pick<StrategyBenchPlan, 'devices' | 'strategies'>): string[] {
  return p.strategies.some((s) => s !== 'single') ? p.devices : [p.devices[0]!];
}

/** What a plan runs (model, dtype, shapes, strategies, devices), for the header line. */
export function describePlan(p: StrategyBenchPlan): string {
  const pp = p.strategies.includes('pp') ? `; pp: ${p.microBatches ? `${p.microBatches} micro-batch${p.microBatches === 1 ? '' : 'es'}` : 'one micro-batch per stage'}${p.chunks > 1 ? `, ${p.chunks} chunks per device` : ''}` : '';
  return `${p.model} ${p.dtype}, batch ${p.batch}${p.strategies.includes('dp') ? ' (dp: per device)' : ''}${p.prompts ? `, ${p.prompts} prompts (single/dp)` : ''}, ${p.promptTokens} prompt + ${p.newTokens} new tokens, ${p.repeats} timed run${p.repeats > 1 ? 's' : ''} each${pp}; ${p.strategies.join(', ')} on ${planDevices(p).join(', ')}`;
}

/**
 * Steady-state decode: the median time between the ends of consecutive decode steps (each step's end =
 * its last task's end, on any stage). With a pipeline, the first decode step overlaps the last stage's
 * prefill, so the span of all decode tasks would count prefill time as decode time.
 */
function stepPeriodMs(tasks: TimelineTask[]): number | undefined {
  const ends = new Map<number, number>();
  for (const t of tasks) if (t.step > 0) ends.set(t.step, Math.max(ends.get(t.step) ?? -Infinity, t.t1));
  const steps = [...ends.keys()].sort((a, b) => a - b);
  const gaps = steps.slice(1).map((st, i) => ends.get(st)! - ends.get(steps[i]!)!);
  if (gaps.length < 2) return undefined;
  gaps.sort((a, b) => a - b);
  return gaps[gaps.length >> 1];
}

function phaseRate(tasks: TimelineTask[], tokens: number, phase: (t: TimelineTask) => boolean): number {
  const ts = tasks.filter(phase);
  if (!ts.length) return 0;
  const span = Math.max(...ts.map((t) => t.t1)) - Math.min(...ts.map((t) => t.t0));
  return tokens / (span / 1e3);
}

export async function runStrategyBench(o: StrategyBenchOptions = {}): Promise<StrategyBenchResult[]> {
  const plan = planStrategyBench(o);
  const { model, devices, dtype, batch: B, promptTokens: P, newTokens: N, repeats } = plan;
  const r = rng(42);
  const results: StrategyBenchResult[] = [];
  const measureStrategy = async (strategy: Strategy, devs: string[]): Promise<StrategyBenchResult> => {
    const chunks = strategy === 'pp' ? plan.chunks : 1;
    const pm = await reportingLoad(o.loadProgress?.(`loading ${model} (${strategy} on ${devs.join(', ')})`), (onProgress) =>
      ParallelModel.load(model, { strategy, devices: devs, dtype, chunks, onProgress }),
    );
    try {
      const vocab = pm.config.vocabSize;
      // Data parallelism is measured at the same per-device batch (each replica gets B sequences a batch).
      const replicas = strategy === 'dp' || strategy === 'single';
      const Bs = replicas && plan.prompts ? plan.prompts : strategy === 'dp' ? B * devs.length : B;
      const prompts = Array.from({ length: Bs }, () => Array.from({ length: P }, () => Math.floor(r() * vocab)));
      const m = strategy === 'pp' ? microBatchCount(Bs, pm.stages.length, plan.microBatches) : 1;
      const g = { maxTokens: N, microBatches: strategy === 'pp' ? m : undefined, timeline: true, batchPerDevice: replicas ? B : undefined };
      await pm.generate(prompts.slice(0, m), { ...g, maxTokens: 2 }); // warm up
      await pm.memory(true);
      const runs = [];
      for (let i = 0; i < repeats; i++) runs.push(await pm.generate(prompts, g));
      runs.sort((a, b) => a.wallMs - b.wallMs);
      const res = runs[(repeats - 1) >> 1]!;
      const mem = await pm.memory();
      const walls = runs.map((x) => x.wallMs);
      const rates = walls.map((w) => (Bs * N) / (w / 1e3));
      // Replicas report one decode task each (a span); stages report every step.
      const period = replicas ? undefined : stepPeriodMs(res.tasks);
      const decodeRate = period ? Bs / (period / 1e3) : phaseRate(res.tasks, Bs * (N - 1), (t) => t.step > 0);
      return {
        strategy,
        model,
        dtype,
        devices: devs,
        batch: Bs,
        promptTokens: P,
        newTokens: N,
        microBatches: res.microBatches,
        ...(chunks > 1 ? { chunks } : {}),
        wallMs: res.wallMs,
        tokensPerS: (Bs * N) / (res.wallMs / 1e3),
        prefillTokensPerS: phaseRate(res.tasks, Bs * P, (t) => t.step === 0),
        decodeTokensPerS: decodeRate,
        msPerStep: decodeRate ? (Bs / decodeRate) * 1e3 : 0,
        // tp: every rank runs every task together; the timeline holds rank 0's lane
        utilization: replicas ? 1 : utilization(res.tasks, strategy === 'tp' ? 1 : devs.length),
        memory: mem.map(({ device, peakBytes }) => ({ device, peakBytes })),
        repeats,
        tokensPerSRuns: { min: Math.min(...rates), median: median(rates), max: Math.max(...rates) },
        wallMsRuns: { min: Math.min(...walls), median: median(walls), max: Math.max(...walls) },
        timeline: replicas ? undefined : res.tasks,
      };
    } finally {
      await pm.close();
    }
  };
  for (const strategy of plan.strategies) {
    const devs = strategy === 'single' ? [devices[0]!] : devices;
    // A strategy that fails (one GPU out of memory at a batch that MP still holds) is reported as such,
    // and the others still run.
    let out: StrategyBenchResult;
    try {
      out = await measureStrategy(strategy, devs);
    } catch (e) {
      const none = { min: 0, median: 0, max: 0 };
      out = {
        strategy, model, dtype, devices: devs, batch: strategy === 'dp' ? B * devs.length : B, promptTokens: P, newTokens: N,
        microBatches: 0, wallMs: 0, tokensPerS: 0, prefillTokensPerS: 0, decodeTokensPerS: 0, msPerStep: 0, utilization: 0,
        memory: [], repeats, tokensPerSRuns: none, wallMsRuns: none,
        error: e instanceof Error ? e.message : String(e),
      };
    }
    results.push(out);
    o.onResult?.(out);
  }
  if (o.outDir) writeStrategyCharts(o.outDir, plan, results);
  return results;
}

/**
 * The charts of a run into `outDir`: throughput.svg (when a strategy ran) and timeline-<mp|pp>.svg for
 * each that ran. A chart this run could not draw is removed, so a failed strategy never leaves the
 * timeline of an earlier run behind. Returns the paths written.
 */
export function writeStrategyCharts(outDir: string, plan: Pick<StrategyBenchPlan, 'model' | 'dtype' | 'batch' | 'promptTokens' | 'newTokens' | 'repeats'>, results: StrategyBenchResult[]): string[] {
  const { write, written } = chartFolder(outDir);
  const ok = results.filter((x) => !x.error);
  const { model, dtype, batch: B, promptTokens: P, newTokens: N } = plan;
  write(
    'throughput.svg',
    ok.length
      ? barChart(
          `${model} (${dtype}): generation throughput by strategy, batch ${B}${ok.some((x) => x.strategy === 'dp') ? ` (dp: ${B} per device)` : ''}, ${P} prompt + ${N} new tokens`,
          'generated tokens/s (whole run)',
          ok.map((x) => ({ label: `${x.chunks ? `${x.strategy} (${x.chunks} chunks)` : x.strategy} x${x.devices.length}`, value: x.tokensPerS, min: x.tokensPerSRuns.min, max: x.tokensPerSRuns.max })),
          `run of median wall time (of ${plan.repeats})`,
        )
      : undefined,
  );
  for (const s of ['mp', 'pp'] as const) {
    const x = ok.find((y) => y.strategy === s && y.timeline?.length);
    write(
      `timeline-${s}.svg`,
      x && timelineChart(
        `${model} (${dtype}): ${s}${x.chunks ? ` (${x.chunks} chunks per device)` : ''} timeline on ${x.devices.join(', ')}, batch ${x.batch} in ${x.microBatches} micro-batch${x.microBatches > 1 ? 'es' : ''}, ${P} prompt + ${N} new tokens`,
        x.timeline!,
        x.devices,
        { microBatches: x.microBatches, chunks: x.chunks },
      ),
    );
  }
  return written;
}
