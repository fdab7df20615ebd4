// `parallm bench [scenario]`: the benchmarks. With no scenario it runs the main job on the devices
// present (on the CPU when there is no GPU).
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { checkDType, type DType } from '../../dtype.js';
import { defaultDevice, parseDevice } from '../../device.js';
import { describeDevice, runKernelBench } from '../../bench/kernels.js';
import { runGenerateBench } from '../../bench/generate.js';
import { runTrainBench } from '../../bench/train.js';
import { defaultBenchDevices, runStrategyBench } from '../../bench/strategies.js';
import type { Strategy } from '../../parallel/placement.js';
import { bytes, fixed, table } from '../format.js';
import { LoadProgressBar } from '../progress.js';

/** A progress bar per model load on stderr; nothing with --json (stdout is the document). */
const loadBars = (opts: BenchOpts) => (label: string) => new LoadProgressBar(label, { quiet: opts.json === true });

interface BenchOpts {
  device?: string;
  dtype?: string;
  quick?: boolean;
  runs?: string;
  json?: boolean | string;
  filter?: string[];
  splitK?: string;
  model?: string;
  batch?: string;
  promptTokens?: string;
  newTokens?: string;
  devices?: string;
  microBatches?: string;
  chunks?: string;
  repeats?: string;
  prompts?: string;
  strategies?: string;
  out?: string;
  shapes?: string;
  steps?: string;
}

const SCENARIOS = ['strategies', 'kernels', 'generate', 'comm', 'train'] as const;

function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got "${v}"`);
  return n;
}

function report(opts: BenchOpts, device: string, results: object[], text: string): void {
  const doc = JSON.stringify({ device: describeDevice(device), results }, null, 2);
  if (opts.json === true) return void console.log(doc);
  if (typeof opts.json === 'string') writeFileSync(opts.json, doc);
  console.log(text);
}

function kernels(opts: BenchOpts, device: string, dtype: DType | undefined): void {
  const quiet = opts.json === true;
  if (!quiet) console.error(`parallm bench kernels on ${describeDevice(device)}`);
  const results = runKernelBench({
    device,
    dtype,
    quick: opts.quick,
    runs: positiveInt('--runs', opts.runs),
    filter: opts.filter,
    splitK: opts.splitK === undefined || opts.splitK === 'auto' ? undefined : positiveInt('--split-k', opts.splitK),
    onResult: (r) => quiet || console.error(`  ${r.name} ${r.shape}: ${r.ms.toFixed(3)} ms`),
  });
  report(
    opts,
    device,
    results,
    table(
      ['kernel', 'shape', 'dtype', 'ms (median)', 'TFLOP/s', 'GB/s'],
      results.map((r) => [r.name, r.shape, r.dtype, r.ms.toFixed(3), fixed(r.tflops, r.tflops && r.tflops < 1 ? 3 : 1), fixed(r.gbps, 0)]),
    ),
  );
}

async function generateBench(opts: BenchOpts, device: string, dtype: DType | undefined): Promise<void> {
  const quiet = opts.json === true;
  const gpu = device.startsWith('cuda');
  const model = opts.model ?? (gpu ? 'gpt2' : 'tiny-gpt2');
  const batches = (opts.batch ?? (opts.quick ? '1' : '1,16')).split(',').map((b) => positiveInt('--batch', b.trim())!);
  const promptTokens = positiveInt('--prompt-tokens', opts.promptTokens) ?? (opts.quick ? 16 : 128);
  const newTokens = positiveInt('--new-tokens', opts.newTokens) ?? (opts.quick ? 16 : 128);
  if (!quiet) console.error(`parallm bench generate: ${model} on ${describeDevice(device)}, prompt ${promptTokens}, ${newTokens} new tokens`);
  const results = await runGenerateBench({
    model,
    device,
    dtype,
    batches,
    promptTokens,
    newTokens,
    loadProgress: loadBars(opts),
    onResult: (r) => quiet || console.error(`  batch ${r.batch}: ${r.decodeTokensPerS.toFixed(0)} tokens/s decode`),
  });
  report(
    opts,
    device,
    results,
    table(
      ['model', 'dtype', 'batch', 'prefill tok/s', 'TTFT ms', 'decode tok/s', 'ms/step', 'weights', 'peak memory'],
      results.map((r) => [r.model, r.dtype, r.batch, r.prefillTokensPerS.toFixed(0), r.ttftMs.toFixed(1), r.decodeTokensPerS.toFixed(1), r.msPerStep.toFixed(2), bytes(r.weightBytes), bytes(r.peakBytes)]),
    ),
  );
}

async function trainBench(opts: BenchOpts, device: string, dtype: DType | undefined): Promise<void> {
  const quiet = opts.json === true;
  const shapes = opts.shapes?.split(',').map((s) => {
    const m = /^(\d+)x(\d+)$/.exec(s.trim());
    if (!m) throw new Error(`--shapes must be BATCHxSEQ pairs, e.g. 128x128,16x1024, got "${s}"`);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
  if (!quiet) console.error(`parallm bench train on ${describeDevice(device)}${opts.model ? `, ${opts.model}` : ''}`);
  const results = await runTrainBench({
    model: opts.model,
    device,
    dtype,
    shapes,
    steps: positiveInt('--steps', opts.steps),
    onResult: (r) => quiet || console.error(`  ${r.batch} x ${r.seq}: ${r.tokensPerS.toFixed(0)} tokens/s`),
  });
  report(
    opts,
    device,
    results,
    table(
      ['model', 'dtype', 'batch', 'seq', 'tokens/s', 'ms/step', 'MFU', 'peak memory', 'loss first → last'],
      results.map((r) => [r.model, r.dtype, r.batch, r.seq, r.tokensPerS.toFixed(0), r.msPerStep.toFixed(1), r.mfu === undefined ? '-' : `${(r.mfu * 100).toFixed(1)}%`, bytes(r.peakBytes), `${r.lossFirst.toFixed(3)} → ${r.lossLast.toFixed(3)}`]),
    ),
  );
}

async function strategies(opts: BenchOpts, dtype: DType | undefined): Promise<void> {
  const quiet = opts.json === true;
  const devices = opts.devices ? opts.devices.split(',').map((d) => d.trim()) : defaultBenchDevices();
  const list = opts.strategies?.split(',').map((x) => x.trim()) as Strategy[] | undefined;
  const out = opts.out ?? 'bench/out';
  if (!quiet) console.error(`parallm bench: strategies on ${devices.join(', ')}${opts.model ? `, ${opts.model}` : ''}`);
  const results = await runStrategyBench({
    model: opts.model,
    loadProgress: loadBars(opts),
    devices,
    dtype,
    batch: positiveInt('--batch', opts.batch),
    promptTokens: positiveInt('--prompt-tokens', opts.promptTokens) ?? (opts.quick ? 16 : undefined),
    newTokens: positiveInt('--new-tokens', opts.newTokens) ?? (opts.quick ? 8 : undefined),
    microBatches: positiveInt('--micro-batches', opts.microBatches),
    chunks: positiveInt('--chunks', opts.chunks),
    prompts: positiveInt('--prompts', opts.prompts),
    repeats: positiveInt('--repeats', opts.repeats),
    strategies: list,
    outDir: out,
    onResult: (r) =>
      quiet || console.error(`  ${r.strategy} on ${r.devices.join(',')}: ${r.error ? `failed: ${r.error}` : `${r.tokensPerS.toFixed(0)} tokens/s`}`),
  });
  // A strategy that could not run is in the results with its error; the command then exits non-zero.
  const failed = results.filter((r) => r.error);
  if (failed.length) process.exitCode = 1;
  const doc = JSON.stringify({ devices, results }, null, 2);
  if (opts.json === true) return void console.log(doc);
  if (typeof opts.json === 'string') writeFileSync(opts.json, doc);
  for (const r of failed) console.error(`parallm bench: ${r.strategy} on ${r.devices.join(',')} failed: ${r.error}`);
  console.log(
    table(
      ['strategy', 'devices', 'batch', 'micro', 'tokens/s', 'prefill tok/s', 'decode tok/s', 'ms/step', 'utilization', 'peak memory per device'],
      results.map((r) =>
        r.error
          ? [r.strategy, r.devices.join(','), r.batch, '-', 'failed', '-', '-', '-', '-', '-']
          : [
              r.chunks ? `${r.strategy} (${r.chunks} chunks)` : r.strategy,
              r.devices.join(','),
              r.batch,
              r.microBatches,
              r.tokensPerS.toFixed(0),
              r.prefillTokensPerS.toFixed(0),
              r.decodeTokensPerS.toFixed(0),
              r.msPerStep.toFixed(2),
              `${(r.utilization * 100).toFixed(0)}%`,
              r.memory.map((m) => bytes(m.peakBytes)).join(' / '),
            ],
      ),
    ),
  );
  console.error(`charts: ${out}/throughput.svg${results.some((r) => r.strategy === 'pp') ? `, ${out}/timeline-pp.svg` : ''}`);
}

async function commBench(opts: BenchOpts): Promise<void> {
  const { ParallelModel } = await import('../../engine/parallel-model.js');
  const devices = opts.devices ? opts.devices.split(',').map((d) => d.trim()) : defaultBenchDevices();
  if (devices.length < 2) throw new Error('bench comm needs two or more devices (--devices)');
  // The smallest model with one layer per device, just to stand up the workers and their communicator.
  const p = await ParallelModel.load('tiny-llama', { strategy: 'mp', devices, placement: Object.fromEntries(devices.map((d, i) => [d, i === devices.length - 1 ? Array.from({ length: 6 - i }, (_, k) => i + k) : [i]])) });
  try {
    const sizes = opts.quick ? [1 << 20, 16 << 20] : [1 << 20, 16 << 20, 128 << 20, 1 << 30];
    const results = await p.allReduceBandwidth(sizes, positiveInt('--runs', opts.runs) ?? 20);
    report(opts, devices[0]!, results, table(['all-reduce (bf16, sum)', 'ms (median)', 'bus GB/s'], results.map((r) => [bytes(r.bytes), r.ms.toFixed(3), r.busGBps.toFixed(1)])));
  } finally {
    await p.close();
  }
}

export function register(program: Command): void {
  program
    .command('bench')
    .argument('[scenario]', `what to measure: ${SCENARIOS.join(', ')}`, 'strategies')
    .description('run benchmarks (default: single device, data, model and pipeline parallelism on the devices present)')
    .option('--device <id>', 'device to run on (default: cuda:0, else cpu:0)')
    .option('--dtype <dtype>', 'compute dtype: bf16 (GPU default), f32 (CPU default), f16')
    .option('--quick', 'smaller shapes and fewer runs')
    .option('--runs <n>', 'kernels: timed runs per case (median reported)')
    .option('--filter <text...>', 'kernels: only cases whose name or shape contains the text')
    .option('--split-k <n>', 'kernels: K slices of the Hopper matmul (default auto; 1 turns split-K off)')
    .option('--model <name>', 'generate: a preset (gpt2, llama-2-7b, ...) or a model folder (default gpt2 on a GPU, tiny-gpt2 on the CPU)')
    .option('--batch <list>', 'generate: batch sizes, comma-separated (default 1,16); strategies: the batch')
    .option('--prompt-tokens <n>', 'generate: prompt length (default 128)')
    .option('--new-tokens <n>', 'generate: new tokens per sequence (default 128)')
    .option('--devices <list>', 'strategies: devices (default: every GPU, else cpu:0,cpu:1)')
    .option('--strategies <list>', 'strategies: which of single,dp,mp,pp (default all)')
    .option('--micro-batches <n>', 'strategies: pp micro-batches (default one per stage; at most the batch)')
    .option('--chunks <n>', 'strategies: pp stages per device, interleaved: a smaller fill and drain for one more transfer per chunk (default 1)')
    .option('--repeats <n>', 'strategies: timed runs per strategy; the median run is reported (default 1)')
    .option('--prompts <n>', 'strategies: single/dp run this many prompts, each device in batches of --batch')
    .option('--out <dir>', 'strategies: where the SVG charts go (default bench/out)')
    .option('--shapes <list>', 'train: BATCHxSEQ pairs (default 128x128,16x1024 on a GPU)')
    .option('--steps <n>', 'train: timed optimizer steps (default 20 on a GPU)')
    .option('--json [file]', 'print JSON to stdout, or write it to file')
    .action(async (scenario: string, opts: BenchOpts) => {
      const device = parseDevice(opts.device ?? defaultDevice());
      const dtype = opts.dtype ? checkDType(opts.dtype) : undefined;
      if (scenario === 'strategies') return strategies(opts, dtype);
      if (scenario === 'comm') return commBench(opts);
      if (scenario === 'kernels') return kernels(opts, device, dtype);
      if (scenario === 'generate') return generateBench(opts, device, dtype);
      if (scenario === 'train') return trainBench(opts, device, dtype);
      throw new Error(`unknown bench scenario "${scenario}": expected one of ${SCENARIOS.join(', ')}`);
    });
}
