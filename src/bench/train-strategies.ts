// `parallm bench train --strategies single,dp,mp,pp`: training throughput of one model under each
// strategy on the devices given (the seed's Figure 3), a measured timeline of one pipeline training step
// with forward and backward tasks drawn apart (Figure 6), and with `epochs`, the time of each epoch on the
// Brown corpus on one device and with data parallelism (Figure 4, with the spread over the epochs).
//
// Throughput runs on generated token data (the figure is the engine's, not the loader's) through the real
// trainers: Trainer, DataParallelTrainer, PipelineTrainer. `scaling` says what dp keeps fixed: 'weak'
// (the batch per device; n devices train n x batch a step) or 'strong' (the global batch, batch / n each).
import { ensureCpuDevices, memoryStats, parseDevice, resetPeakMemory, synchronize } from '../device.js';
import type { DType } from '../dtype.js';
import type { TrainingScheduleName } from '../engine/plan.js';
import type { ModelConfig } from '../io/config.js';
import { modelConfig } from '../models/source.js';
import { rng } from '../random.js';
import { DataParallelTrainer } from '../train/data-parallel.js';
import { PipelineTrainer, type TrainTaskTime } from '../train/pipeline-parallel.js';
import { Trainer, type TokenData } from '../train/trainer.js';
import { median } from './stats.js';
import { chartFolder } from './chart-folder.js';
import { barChart, timelineChart } from './svg.js';

export type TrainStrategy = 'single' | 'dp' | 'mp' | 'pp';
export const TRAIN_STRATEGIES: readonly TrainStrategy[] = ['single', 'dp', 'mp', 'pp'];

export interface TrainStrategyBenchOptions {
  model: string;
  devices: string[];
  dtype: DType;
  /** sequences a step: per device for dp with weak scaling, the global batch otherwise */
  batch: number;
  seq: number;
  /** timed optimizer steps per strategy (after 2 warm-up steps) */
  steps: number;
  strategies: TrainStrategy[];
  scaling: 'weak' | 'strong';
  /** pp: micro-batches (default one per stage) and schedule (default 1f1b) */
  microBatches?: number;
  schedule?: TrainingScheduleName;
  /** pp: stages per device, interleaved (default 1) */
  chunks?: number;
  /** mp, pp: weight gradients deferred to one matmul per layer over a micro-step's micro-batches (PipelineTrainOptions.deferWeightGrads) */
  deferWeightGrads?: boolean | number;
  /** dp: gradient buckets of this many MiB all-reduced during the backward (0: one all-reduce after it) */
  bucketMiB?: number;
  /** dp: 1 shards the optimizer state over the devices (ZeRO-1, src/train/zero.ts) */
  zero?: 0 | 1;
  /** the device's dense bf16 peak, TFLOP/s, for MFU (default: H100/H200 989) */
  peakTflops?: number;
  onResult?: (r: TrainStrategyResult) => void;
}

export interface TrainStrategyResult {
  strategy: TrainStrategy;
  devices: string[];
  /** sequences per optimizer step over every device */
  globalBatch: number;
  seq: number;
  microBatches?: number;
  schedule?: TrainingScheduleName;
  /** pp: stages per device (interleaved) */
  chunks?: number;
  tokensPerS: number;
  /** per-step time: min, median, max over the timed steps */
  stepMs: { min: number; median: number; max: number };
  /** model FLOPs (6 per parameter per token) over the devices' bf16 peak (GPUs only) */
  mfu?: number;
  /** peak bytes per device */
  peakBytes: number[];
  /** mp, pp with deferWeightGrads: the most bytes per device held for deferred weight gradients in a step (part of peakBytes) */
  deferredBytes?: number[];
  /** dp: bytes of f32 optimizer state per device (master and moments; 1/world of the whole with ZeRO-1) */
  optimizerBytes?: number[];
  /** dp: 1 with ZeRO-1 */
  zero?: 0 | 1;
  lossFirst: number;
  lossLast: number;
  /** pp and mp: the tasks of one step, for the timeline */
  timeline?: TrainTaskTime[];
  error?: string;
}

/**
 * Tokens enough for the warm-up and timed steps on every replica: a random cycle of 7 ids repeated, so
 * the model can learn it within a few steps (the falling loss shows that the timed steps do real work)
 * while the loader still hands out a fresh window every time.
 */
function randomTokens(cfg: ModelConfig, n: number, seed: number): TokenData {
  const r = rng(seed);
  const block = Array.from({ length: 7 }, () => Math.floor(r() * cfg.vocabSize));
  const make = (len: number) => Uint32Array.from({ length: len }, (_, i) => block[i % block.length]!);
  return { train: make(n), val: make(4096), id: `bench-repeated-${n}-${seed}`, vocabSize: cfg.vocabSize };
}

const spread = (xs: number[]) => ({ min: Math.min(...xs), median: median(xs), max: Math.max(...xs) });

export async function runTrainStrategyBench(o: TrainStrategyBenchOptions): Promise<TrainStrategyResult[]> {
  const cfg = modelConfig(o.model);
  ensureCpuDevices(o.devices);
  const devices = o.devices.map((d) => parseDevice(d));
  const gpu = devices[0]!.startsWith('cuda');
  const n = devices.length;
  const results: TrainStrategyResult[] = [];
  const warm = 2;
  for (const strategy of o.strategies) {
    const devs = strategy === 'single' ? [devices[0]!] : devices;
    const perDevice = strategy === 'dp' ? (o.scaling === 'weak' ? o.batch : o.batch / n) : o.batch;
    const globalBatch = strategy === 'dp' ? perDevice * n : o.batch;
    let res: TrainStrategyResult;
    try {
      if (!Number.isInteger(perDevice) || perDevice < 1) throw new Error(`strong scaling: the batch ${o.batch} does not split over ${n} devices`);
      const data = randomTokens(cfg, (warm + o.steps + 2) * globalBatch * (o.seq + 1) + 1024, 17);
      const common = { model: o.model, data, dtype: o.dtype, batch: perDevice, seq: o.seq, steps: warm + o.steps + 1, lr: 1e-3, minLrFrac: 1, warmup: 0, evalBatches: 1, seed: 0 };
      const times: number[] = [];
      const losses: number[] = [];
      let peakBytes: number[] = [];
      let deferredBytes: number[] | undefined;
      let timeline: TrainTaskTime[] | undefined;
      let micro: number | undefined;
      let schedule: TrainingScheduleName | undefined;
      let params = 0;
      let optimizerBytes: number[] | undefined;
      const timeSteps = async (step: () => Promise<{ loss: number }>, resetMemory: () => Promise<void>, peaks: () => Promise<number[]>) => {
        for (let i = 0; i < warm; i++) losses.push((await step()).loss);
        await resetMemory();
        for (let i = 0; i < o.steps; i++) {
          const t0 = performance.now();
          const r = await step();
          times.push(performance.now() - t0);
          losses.push(r.loss);
        }
        peakBytes = await peaks();
      };
      if (strategy === 'single') {
        const t = await Trainer.create({ ...common, device: devs[0] });
        try {
          params = t.params.n;
          await timeSteps(
            async () => {
              const r = t.trainStep();
              synchronize(devs[0]!);
              return r;
            },
            async () => resetPeakMemory(devs[0]!),
            async () => [memoryStats(devs[0]!).peakAllocated],
          );
        } finally {
          t.dispose();
        }
      } else if (strategy === 'dp') {
        const t = await DataParallelTrainer.create({ ...common, devices: devs, bucketMiB: o.bucketMiB ?? 0, zero: o.zero ?? 0 });
        try {
          params = t.info.n;
          await timeSteps(() => t.trainStep(), async () => void (await t.memory(true)), async () => {
            const ms = await t.memory();
            optimizerBytes = ms.map((m) => m.optimizerBytes);
            return ms.map((m) => m.peak);
          });
        } finally {
          await t.close();
        }
      } else {
        const chunks = strategy === 'pp' ? (o.chunks ?? 1) : 1;
        const t = await PipelineTrainer.create({ ...common, devices: devs, microBatches: strategy === 'mp' ? 1 : o.microBatches, schedule: o.schedule, chunks, ...(o.deferWeightGrads ? { deferWeightGrads: o.deferWeightGrads } : {}) });
        try {
          params = t.parameterCount;
          micro = t.microBatches;
          schedule = t.schedule;
          await timeSteps(() => t.trainStep(), async () => void (await t.memory(true)), async () => (await t.memory()).map((m) => m.peak));
          timeline = (await t.trainStep({ timeline: true })).tasks;
          deferredBytes = t.heldBytes ?? undefined;
        } finally {
          await t.close();
        }
      }
      const s = spread(times);
      const tokensPerS = (globalBatch * o.seq) / (s.median / 1e3);
      res = {
        strategy, devices: devs, globalBatch, seq: o.seq, ...(micro !== undefined ? { microBatches: micro, schedule } : {}),
        ...(strategy === 'pp' && (o.chunks ?? 1) > 1 ? { chunks: o.chunks } : {}),
        tokensPerS, stepMs: s, mfu: gpu ? (6 * params * tokensPerS) / ((o.peakTflops ?? 989) * 1e12 * devs.length) : undefined,
        peakBytes, ...(deferredBytes ? { deferredBytes } : {}), ...(optimizerBytes ? { optimizerBytes, zero: o.zero ?? 0 } : {}), lossFirst: losses[0]!, lossLast: losses[losses.length - 1]!, ...(timeline ? { timeline } : {}),
      };
    } catch (e) {
      res = {
        strategy, devices: devs, globalBatch, seq: o.seq, tokensPerS: 0, stepMs: { min: 0, median: 0, max: 0 }, peakBytes: [], lossFirst: NaN, lossLast: NaN,
        error: e instanceof Error ? e.message : String(e),
      };
    }
    results.push(res);
    o.onResult?.(res);
  }
  return results;
}

export interface EpochBenchOptions {
  model: string;
  devices: string[];
  dtype: DType;
  /** sequences a step per device (dp: weak scaling, as the seed's per-GPU batch) */
  batch: number;
  seq: number;
  epochs: number;
  /** the corpus: 'brown' (default) or a text file or folder */
  data?: string;
  /** only these Brown files (tests) */
  brownFiles?: string[];
  bucketMiB?: number;
  onEpoch?: (devices: number, epoch: number, seconds: number) => void;
}

export interface EpochBenchResult {
  devices: string[];
  /** seconds of each epoch (its steps and its validation) */
  seconds: number[];
  tokensPerEpoch: number;
  spread: { min: number; median: number; max: number };
}

/**
 * The seed's Figure 4: the time of each epoch over the corpus on one device, then data-parallel on all
 * devices with the same per-device batch (so an epoch is 1/n of the steps).
 */
export async function runEpochBench(o: EpochBenchOptions): Promise<EpochBenchResult[]> {
  const out: EpochBenchResult[] = [];
  for (const devs of o.devices.length > 1 ? [[o.devices[0]!], o.devices] : [o.devices]) {
    const seconds: number[] = [];
    const common = {
      model: o.model, data: o.data ?? 'brown', brownFiles: o.brownFiles, dtype: o.dtype, batch: o.batch, seq: o.seq, epochs: o.epochs, lr: 3e-4, warmup: 0, seed: 0,
      onEpoch: (e: { epoch: number; seconds: number }) => {
        seconds.push(e.seconds);
        o.onEpoch?.(devs.length, e.epoch, e.seconds);
      },
    };
    let tokensPerEpoch = 0;
    if (devs.length === 1) {
      const t = await Trainer.create({ ...common, device: devs[0] });
      try {
        tokensPerEpoch = t.stepsPerEpoch * o.batch * o.seq;
        await t.run();
      } finally {
        t.dispose();
      }
    } else {
      const t = await DataParallelTrainer.create({ ...common, devices: devs, bucketMiB: o.bucketMiB ?? 0 });
      try {
        tokensPerEpoch = t.stepsPerEpoch * o.batch * o.seq * devs.length;
        await t.run();
      } finally {
        await t.close();
      }
    }
    out.push({ devices: devs, seconds, tokensPerEpoch, spread: spread(seconds) });
  }
  return out;
}

/** The charts of a training benchmark into `outDir`; a chart this run could not draw is removed. Returns the paths written. */
export function writeTrainCharts(
  outDir: string, o: Pick<TrainStrategyBenchOptions, 'model' | 'dtype' | 'batch' | 'seq' | 'scaling'>, results: TrainStrategyResult[], epochs: EpochBenchResult[] = [],
): string[] {
  const { write, written } = chartFolder(outDir);
  const ok = results.filter((r) => !r.error);
  write(
    'train-throughput.svg',
    ok.length
      ? barChart(
          `${o.model} (${o.dtype}) training throughput by strategy, sequence ${o.seq}, batch ${o.batch}${ok.some((r) => r.strategy === 'dp') ? ` (dp: ${o.scaling === 'weak' ? `${o.batch} per device` : 'global'})` : ''}`,
          'trained tokens/s (median step)',
          ok.map((r) => ({
            label: `${r.strategy}${r.microBatches && r.strategy === 'pp' ? ` (${r.microBatches} mb, ${r.schedule}${r.chunks ? `, ${r.chunks} chunks` : ''})` : ''} x${r.devices.length}`,
            value: r.tokensPerS,
            min: (r.globalBatch * r.seq) / (r.stepMs.max / 1e3),
            max: (r.globalBatch * r.seq) / (r.stepMs.min / 1e3),
          })),
          'median step',
          'slowest to fastest step',
        )
      : undefined,
  );
  for (const s of ['mp', 'pp'] as const) {
    const r = ok.find((x) => x.strategy === s && x.timeline?.length);
    write(
      `train-timeline-${s}.svg`,
      r && timelineChart(
        `${o.model} (${o.dtype}): one ${s} training step (${r.schedule}) on ${r.devices.join(', ')}, batch ${r.globalBatch} x ${r.seq} in ${r.microBatches} micro-batch${r.microBatches! > 1 ? 'es' : ''}`,
        r.timeline!,
        r.devices,
        { microBatches: r.microBatches!, chunks: r.chunks },
      ),
    );
  }
  write(
    'train-epochs.svg',
    epochs.length
      ? barChart(
          `${o.model} (${o.dtype}) time per epoch on the corpus, ${o.batch} x ${o.seq} per device a step: ${epochs.map((e) => `${e.devices.length} device${e.devices.length > 1 ? 's' : ''} median ${e.spread.median.toFixed(2)} s (${e.spread.min.toFixed(2)}–${e.spread.max.toFixed(2)})`).join('; ')}`,
          'seconds per epoch',
          epochs.flatMap((e) => e.seconds.map((sec, i) => ({ label: `${e.devices.length} device${e.devices.length > 1 ? 's' : ''}, epoch ${i + 1}`, value: sec }))),
          'one epoch',
        )
      : undefined,
  );
  return written;
}
