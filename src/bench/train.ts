// `parallm bench train`: training throughput on one device at fixed shapes (random token batches, so the
// figure is the engine's, not the data loader's): tokens/s, time per optimizer step, model FLOPs
// utilization (6 · parameters · tokens/s, over the device's peak) and peak memory.
import { defaultDevice, deviceInfo, memoryStats, parseDevice, resetPeakMemory, synchronize } from '../device.js';
import { dtypeSize, type DType } from '../dtype.js';
import { rng } from '../random.js';
import { native } from '../native.js';
import { DeviceEvent } from '../runtime.js';
import { CapturedStep, GraphMemoryProbe } from '../train/captured-step.js';
import { BucketedAllReduce, type BucketComm } from '../train/grad-buckets.js';
import type { FlatParams } from '../train/params.js';
import { initParams, resolveModel } from '../train/init.js';
import { adamwStep, DEFAULT_ADAMW, gradNorm } from '../train/optim.js';
import { OpProfiler } from '../train/profile.js';
import { sumLosses, TrainStage, type MicroBatch } from '../train/stage.js';

export interface TrainBenchOptions {
  model?: string;
  device?: string;
  dtype?: DType;
  /** [batch, seq] pairs (default: GPT-2's 128 x 128 and 16 x 1024 on a GPU, 4 x 64 on the CPU) */
  shapes?: [number, number][];
  steps?: number;
  /** the device's dense bf16 peak, TFLOP/s, for MFU (default: H100/H200 989) */
  peakTflops?: number;
  /** also time each op group over 3 more steps (device events; TrainStage.profiler) */
  profile?: boolean;
  /** GPU: the step of a data-parallel rank rehearsed on this device alone (see DpRehearsal) */
  rehearseDp?: DpRehearsal;
  onResult?: (r: TrainBenchResult) => void;
}

/**
 * A data-parallel rank's step on one GPU: the gradient cut into buckets as DP cuts it (src/train/grad-buckets.ts),
 * each launched when DP would launch it, on a second stream, where a kernel holds `sms` SMs for as long as NCCL would
 * take to all-reduce the bucket at `gbps` (bytes / time; two H200s: ~330 GB/s for 16 MiB to 1 GiB, bench/RESULTS.md
 * S6-2). It shows what the reductions' occupancy of the GPU costs the backward beside them where no second GPU is at
 * hand (S35-3); it moves no bytes, so the figures are not DP's.
 */
export interface DpRehearsal {
  sms: number;
  gbps: number;
  bucketMiB: number;
}

export interface TrainBenchResult {
  model: string;
  device: string;
  dtype: DType;
  batch: number;
  seq: number;
  parameters: number;
  tokensPerS: number;
  msPerStep: number;
  /** GPUs only: model FLOPs (6 per parameter per token) over the device's bf16 peak */
  mfu?: number;
  peakBytes: number;
  /** the loss at the first and the last timed step (it must fall: the steps really train) */
  lossFirst: number;
  lossLast: number;
  /** whether the timed steps ran as one CUDA graph each (src/train/captured-step.ts) */
  graph: boolean;
  /** with rehearseDp: what was rehearsed, and into how many buckets */
  rehearsal?: DpRehearsal & { buckets: number };
  /** with `profile`: device ms per step by op group, largest first */
  profile?: { name: string; msPerStep: number; share: number; count: number }[];
}

const TRACE_STEP = !!process.env.PARALLM_TRACE_STEP;
const TRAIN_GAPS = process.env.PARALLM_TRAIN_GAPS === '1';

export async function runTrainBench(o: TrainBenchOptions = {}): Promise<TrainBenchResult[]> {
  const device = parseDevice(o.device ?? defaultDevice());
  const gpu = device.startsWith('cuda');
  const model = o.model ?? (gpu ? 'gpt2' : 'tiny-gpt2');
  const dtype: DType = o.dtype ?? (gpu ? 'bf16' : 'f32');
  const shapes = o.shapes ?? (gpu ? [[128, 128], [16, 1024]] : [[4, 64]]);
  const steps = o.steps ?? (gpu ? 20 : 3);
  const src = resolveModel(model);
  const out: TrainBenchResult[] = [];
  for (const [B, T] of shapes) {
    if (T > src.cfg.maxPositions) throw new Error(`bench train: sequence ${T} is longer than ${model}'s context of ${src.cfg.maxPositions}`);
    const params = initParams(src, { device, dtype });
    const stage = new TrainStage(params);
    let graph: CapturedStep | null = null;
    let rehearsal: BucketedAllReduce | null = null;
    try {
      const reh = o.rehearseDp ? (rehearsal = rehearse(params, o.rehearseDp)) : null;
      if (reh) stage.onGradsReady = reh.onGradsReady;
      const r = rng(B * 31 + T);
      const toks = () => Int32Array.from({ length: B * T }, () => Math.floor(r() * src.cfg.vocabSize));
      // One fixed batch, trained on repeatedly: the loss must fall, which shows the steps do real work.
      const mb: MicroBatch = { inputs: toks(), targets: toks(), batch: B, seq: T };
      // Steps as Trainer runs them: the first op by op (measuring whether a graph of the step fits), then
      // one CUDA graph a step where it does (src/train/captured-step.ts; not under --profile, which times
      // each op).
      const count = mb.targets.length; // every target is a vocabulary id here
      const probe = CapturedStep.wanted(device) && !o.profile ? new GraphMemoryProbe(device) : null;
      const step = (i: number) => {
        const prof = stage.profiler;
        const t0 = performance.now();
        let norm: number, loss: number, issued: number;
        if (graph && !prof) {
          const r = graph.run([mb], 1 / count);
          issued = performance.now();
          norm = Math.sqrt(r.normSq.toArray()[0]!);
          loss = sumLosses(r.losses[0]!) / count;
        } else {
          if (i === 1) probe?.begin();
          prof?.start();
          params.zeroGrad();
          prof?.mark('zero grad');
          const f = stage.forward(0, mb, undefined, { deferLoss: true }); // read at the end, as Trainer does
          stage.backward(0);
          stage.clear();
          reh?.finish();
          issued = performance.now();
          norm = gradNorm(params);
          prof?.mark('grad norm');
          loss = sumLosses(f.losses!) / f.count!;
          f.losses!.dispose();
          if (i === 1 && probe?.fits()) graph = new CapturedStep(stage, params, reh ? () => reh.finish(true) : undefined);
        }
        const normRead = performance.now();
        adamwStep(params, i, 3e-4, DEFAULT_ADAMW, norm); // the train CLI's default rate
        prof?.mark('adamw');
        // PARALLM_TRACE_STEP=1: a step issued on the host as slowly as the device runs it is host-bound.
        if (TRACE_STEP)
          console.error(`[parallm trace] ${B}x${T} step ${i}${graph && !prof ? ' (graph)' : ''}: zero, forward and backward issued in ${(issued - t0).toFixed(2)} ms, ` +
            `${(normRead - issued).toFixed(2)} ms more until the norm was read, ${(performance.now() - normRead).toFixed(2)} ms for AdamW`);
        return loss;
      };
      for (let i = 1; i <= 2; i++) step(i); // warm up: kernels loaded, buffers cached
      synchronize(device);
      resetPeakMemory(device);
      const t0 = performance.now();
      let lossFirst = NaN, lossLast = NaN;
      for (let i = 0; i < steps; i++) {
        const l = step(3 + i);
        if (i === 0) lossFirst = l;
        lossLast = l;
      }
      synchronize(device);
      const ms = (performance.now() - t0) / steps;
      // PARALLM_TRAIN_GAPS=1 (a timing probe): the same graph replayed without the norm's read and AdamW (the
      // batch still written before each replay, which waits for the device), then back to back with nothing
      // between; the differences are what the host's part of a step and AdamW add to the graph's own time.
      const g = graph as CapturedStep | null;
      if (TRAIN_GAPS && g) {
        const time = (fn: () => void) => {
          synchronize(device);
          const s = performance.now();
          for (let i = 0; i < steps; i++) fn();
          synchronize(device);
          return (performance.now() - s) / steps;
        };
        const written = time(() => void g.run([mb], 1 / count));
        const raw = time(() => g.replayOnly());
        console.error(`[parallm gaps] ${B}x${T}: a step ${ms.toFixed(3)} ms; the graph with the batch written before each replay ${written.toFixed(3)} ms; replayed back to back ${raw.toFixed(3)} ms`);
      }
      let profile: TrainBenchResult['profile'];
      if (o.profile) {
        const p = (stage.profiler = new OpProfiler(device));
        for (let i = 0; i < 3; i++) {
          step(3 + steps + i);
          p.flush();
        }
        stage.profiler = null;
        profile = p.table(3);
      }
      const tokensPerS = (B * T) / (ms / 1e3);
      const res: TrainBenchResult = {
        model, device, dtype, batch: B, seq: T, parameters: params.n, tokensPerS, msPerStep: ms, graph: graph !== null,
        mfu: gpu ? (6 * params.n * tokensPerS) / ((o.peakTflops ?? 989) * 1e12) : undefined,
        peakBytes: memoryStats(device).peakAllocated, lossFirst, lossLast, ...(profile ? { profile } : {}),
        ...(reh ? { rehearsal: { ...o.rehearseDp!, buckets: reh.buckets.length } } : {}),
      };
      out.push(res);
      o.onResult?.(res);
    } finally {
      (rehearsal as BucketedAllReduce | null)?.reset(); // (set inside the try)
      (rehearsal as BucketedAllReduce | null)?.dispose();
      (graph as CapturedStep | null)?.dispose(); // (set inside step)
      stage.dispose();
      params.dispose();
    }
  }
  return out;
}

/** DpRehearsal's buckets: DP's, each "reduced" by native.testing.busySms on the buckets' stream. */
function rehearse(p: FlatParams, r: DpRehearsal): BucketedAllReduce {
  const { device } = p;
  if (!device.startsWith('cuda')) throw new Error(`bench train: the DP rehearsal holds SMs of a GPU; ${device} is not one`);
  const sms = deviceInfo(device).multiprocessors ?? 0;
  if (!Number.isInteger(r.sms) || r.sms < 1 || r.sms >= sms) throw new Error(`bench train: the DP rehearsal holds 1 to ${sms - 1} SMs of ${device}, got ${r.sms}`);
  if (!(r.gbps > 0) || !(r.bucketMiB > 0)) throw new Error(`bench train: the DP rehearsal needs a rate and a bucket size above 0, got ${r.gbps} GB/s, ${r.bucketMiB} MiB`);
  const el = dtypeSize(p.grad.dtype);
  const bucketUs = (r.bucketMiB * 2 ** 20) / (r.gbps * 1e3);
  if (bucketUs > 1e6) throw new Error(`bench train: the DP rehearsal holds SMs up to a second a bucket; ${r.bucketMiB} MiB at ${r.gbps} GB/s would take ${(bucketUs / 1e6).toFixed(1)} s`);
  const comm: BucketComm = {
    world: 2,
    allReduce: () => {
      throw new Error('the DP rehearsal reduces nothing');
    },
    allGather: () => {
      throw new Error('the DP rehearsal gathers nothing');
    },
    drain: () => new DeviceEvent(device).record().synchronize(), // (on the buckets' stream: BucketedAllReduce.finish)
  };
  const b: BucketedAllReduce = new BucketedAllReduce(p, comm, Math.max(1, Math.ceil((r.bucketMiB * 2 ** 20) / el)), 1, (i) => {
    const { start, end } = b.buckets[i]!;
    native.testing.busySms(device, r.sms, ((end - start) * el) / (r.gbps * 1e3)); // bytes / (GB/s) in µs
  });
  return b;
}
