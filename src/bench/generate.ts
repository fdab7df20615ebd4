// `parallm bench generate`: prefill and decode throughput, time to first token and memory, for a preset
// or a model folder, at the batch sizes given. Prompts are random token ids of a fixed length; decoding
// runs the full number of new tokens (no stop token), greedy.
import type { DType } from '../dtype.js';
import { defaultDevice, emptyCache, memoryStats, parseDevice, resetPeakMemory, synchronize } from '../device.js';
import { generateSteps, type GenerationTimes } from '../engine/generate.js';
import { reportingLoad, type LoadReporter } from '../models/load-steps.js';
import { Model } from '../models/model.js';
import { rng } from '../random.js';
import { median } from './stats.js';

export interface GenerateBenchOptions {
  model: string;
  device?: string;
  dtype?: DType;
  batches?: number[];
  promptTokens?: number;
  newTokens?: number;
  onResult?: (r: GenerateBenchResult) => void;
  /** a reporter for the model's load (the CLI's progress bar) */
  loadProgress?: (label: string) => LoadReporter;
}

export interface GenerateBenchResult {
  model: string;
  device: string;
  dtype: DType;
  batch: number;
  promptTokens: number;
  newTokens: number;
  /** time to first token (prefill of the whole batch + first sample) */
  ttftMs: number;
  prefillTokensPerS: number;
  /** steady-state decode: batch x steps / time */
  decodeTokensPerS: number;
  msPerStep: number;
  /**
   * The same by the median step (each step's decode and the read of its tokens, as the compiled-PyTorch peer
   * bench/peers/torch_compile_decode.py times its steps): batch / median step time. Host hiccups between steps
   * (a yield to the event loop, a collection) count in decodeTokensPerS, not here.
   */
  medianDecodeTokensPerS: number;
  medianMsPerStep: number;
  weightBytes: number;
  peakBytes: number;
}

async function run(m: Model, prompts: number[][], newTokens: number): Promise<GenerationTimes> {
  const times: GenerationTimes = { prefillMs: 0, decodeMs: 0, decodeSteps: 0, stepMs: [] };
  for await (const _ of generateSteps(m, prompts, { maxTokens: newTokens, stopTokens: [] }, times));
  return times;
}

export async function runGenerateBench(opts: GenerateBenchOptions): Promise<GenerateBenchResult[]> {
  const device = parseDevice(opts.device ?? defaultDevice());
  const m = await reportingLoad(opts.loadProgress?.(`loading ${opts.model}`), (onProgress) => Model.loadAsync(opts.model, { device, dtype: opts.dtype, onProgress }));
  const P = opts.promptTokens ?? 128;
  const N = opts.newTokens ?? 128;
  const results: GenerateBenchResult[] = [];
  try {
    for (const B of opts.batches ?? [1]) {
      const r = rng(B * 7919 + 1);
      const prompts = Array.from({ length: B }, () => Array.from({ length: P }, () => Math.floor(r() * m.config.vocabSize)));
      await run(m, prompts, Math.min(N, 4)); // warm up: kernels loaded, caches allocated
      synchronize(device);
      resetPeakMemory(device);
      const t = await run(m, prompts, N);
      const med = t.stepMs?.length ? median(t.stepMs) : 0;
      const res: GenerateBenchResult = {
        model: m.name,
        device,
        dtype: m.dtype,
        batch: B,
        promptTokens: P,
        newTokens: N,
        ttftMs: t.prefillMs,
        prefillTokensPerS: (B * P) / (t.prefillMs / 1e3),
        decodeTokensPerS: t.decodeSteps ? (B * t.decodeSteps) / (t.decodeMs / 1e3) : 0,
        msPerStep: t.decodeSteps ? t.decodeMs / t.decodeSteps : 0,
        medianDecodeTokensPerS: med > 0 ? B / (med / 1e3) : 0,
        medianMsPerStep: med,
        weightBytes: m.weightBytes,
        peakBytes: memoryStats(device).peakAllocated,
      };
      results.push(res);
      opts.onResult?.(res);
    }
  } finally {
    m.dispose();
    if (device.startsWith('cuda')) emptyCache(device);
  }
  return results;
}
