// `parallm bench` (the default scenario): the same model and batch under single-device, data, model and
// pipeline parallelism on the devices present; tokens/s for prefill and generation, time per step,
// memory per device, pipeline utilization; SVG charts of throughput and of the pipeline's timeline.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { DType } from '../dtype.js';
import { cudaDeviceCount } from '../device.js';
import { ParallelModel, type Strategy } from '../engine/parallel-model.js';
import { microBatchCount } from '../engine/plan.js';
import { reportingLoad, type LoadReporter } from '../models/load-steps.js';
import { rng } from '../random.js';
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
  /** timed runs per strategy; the run of median wall time is reported (default 1) */
  repeats?: number;
  /** folder for the SVG charts */
  outDir?: string;
  onResult?: (r: StrategyBenchResult) => void;
}

export interface StrategyBenchResult {
  strategy: Strategy;
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
  /** why this strategy could not run (its figures are then 0); the other strategies still ran */
  error?: string;
  /** mp/pp: every task's device times (t0, t1) and host enqueue times (h0, h1), ms since the epoch */
  timeline?: TimelineTask[];
}

export function defaultBenchDevices(): string[] {
  const n = cudaDeviceCount();
  return n ? Array.from({ length: n }, (_, i) => `cuda:${i}`) : ['cpu:0', 'cpu:1'];
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
  const devices = o.devices ?? defaultBenchDevices();
  const gpu = devices[0]!.startsWith('cuda');
  const model = o.model ?? (gpu ? 'gpt2' : 'tiny-llama');
  const B = o.batch ?? (gpu ? 64 : 8);
  const P = o.promptTokens ?? (gpu ? 128 : 32);
  const N = o.newTokens ?? (gpu ? 128 : 16);
  const strategies = o.strategies ?? (devices.length > 1 ? (['single', 'dp', 'mp', 'pp'] as Strategy[]) : (['single'] as Strategy[]));
  const repeats = o.repeats ?? 1;
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`bench: repeats must be a positive integer, got ${repeats}`);
  const r = rng(42);
  const results: StrategyBenchResult[] = [];
  const timelines: { s: Strategy; tasks: TimelineTask[]; devices: string[] }[] = [];
  const measureStrategy = async (strategy: Strategy, devs: string[]): Promise<{ out: StrategyBenchResult; tasks: TimelineTask[] }> => {
    const chunks = strategy === 'pp' ? (o.chunks ?? 1) : 1;
    const pm = await reportingLoad(o.loadProgress?.(`loading ${model} (${strategy} on ${devs.join(', ')})`), (onProgress) =>
      ParallelModel.load(model, { strategy, devices: devs, dtype: o.dtype, chunks, onProgress }),
    );
    try {
      const vocab = pm.config.vocabSize;
      // Data parallelism is measured at the same per-device batch (each replica gets B sequences a batch).
      const replicas = strategy === 'dp' || strategy === 'single';
      const Bs = replicas && o.prompts ? o.prompts : strategy === 'dp' ? B * devs.length : B;
      const prompts = Array.from({ length: Bs }, () => Array.from({ length: P }, () => Math.floor(r() * vocab)));
      const m = strategy === 'pp' ? microBatchCount(Bs, pm.stages.length, o.microBatches) : 1;
      const g = { maxTokens: N, microBatches: strategy === 'pp' ? m : undefined, timeline: true, batchPerDevice: replicas ? B : undefined };
      await pm.generate(prompts.slice(0, m), { ...g, maxTokens: 2 }); // warm up
      await pm.memory(true);
      const runs = [];
      for (let i = 0; i < repeats; i++) runs.push(await pm.generate(prompts, g));
      const res = runs.sort((a, b) => a.wallMs - b.wallMs)[(repeats - 1) >> 1]!;
      const mem = await pm.memory();
      // Replicas report one decode task each (a span); stages report every step.
      const period = replicas ? undefined : stepPeriodMs(res.tasks);
      const decodeRate = period ? Bs / (period / 1e3) : phaseRate(res.tasks, Bs * (N - 1), (t) => t.step > 0);
      const out: StrategyBenchResult = {
        strategy,
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
        utilization: strategy === 'dp' || strategy === 'single' ? 1 : utilization(res.tasks, devs.length),
        memory: mem.map(({ device, peakBytes }) => ({ device, peakBytes })),
        repeats,
        timeline: replicas ? undefined : res.tasks,
      };
      return { out, tasks: res.tasks };
    } finally {
      await pm.close();
    }
  };
  for (const strategy of strategies) {
    const devs = strategy === 'single' ? [devices[0]!] : devices;
    // A strategy that fails (one GPU out of memory at a batch that MP still holds) is reported as such,
    // and the others still run.
    try {
      const { out, tasks } = await measureStrategy(strategy, devs);
      results.push(out);
      timelines.push({ s: strategy, tasks, devices: devs });
      o.onResult?.(out);
    } catch (e) {
      const failed: StrategyBenchResult = {
        strategy,
        devices: devs,
        batch: strategy === 'dp' ? B * devs.length : B,
        promptTokens: P,
        newTokens: N,
        microBatches: 0,
        wallMs: 0,
        tokensPerS: 0,
        prefillTokensPerS: 0,
        decodeTokensPerS: 0,
        msPerStep: 0,
        utilization: 0,
        memory: [],
        repeats,
        error: e instanceof Error ? e.message : String(e),
      };
      results.push(failed);
      o.onResult?.(failed);
    }
  }
  if (o.outDir) {
    mkdirSync(o.outDir, { recursive: true });
    writeFileSync(
      path.join(o.outDir, 'throughput.svg'),
      barChart(`${model}: generation throughput by strategy (batch ${B}; dp: ${B} per device; ${P}+${N} tokens)`, 'tokens/s', results.filter((x) => !x.error).map((x) => ({ label: `${x.strategy} x${x.devices.length}`, value: x.tokensPerS }))),
    );
    for (const t of timelines.filter((x) => x.s === 'pp' || x.s === 'mp'))
      writeFileSync(path.join(o.outDir, `timeline-${t.s}.svg`), timelineChart(`${model}: ${t.s} timeline (${t.devices.join(', ')})`, t.tasks, t.devices));
  }
  return results;
}
