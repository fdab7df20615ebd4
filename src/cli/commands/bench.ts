// `parallm bench [scenario]`: the benchmarks. With no scenario it runs the main job on the devices
// present (on the CPU when there is no GPU).
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { checkDType, type DType } from '../../dtype.js';
import { defaultDevice, parseDevice } from '../../device.js';
import { describeDevice, runKernelBench } from '../../bench/kernels.js';
import { runGenerateBench } from '../../bench/generate.js';
import { bytes, fixed, table } from '../format.js';

interface BenchOpts {
  device?: string;
  dtype?: string;
  quick?: boolean;
  runs?: string;
  json?: boolean | string;
  filter?: string[];
  model?: string;
  batch?: string;
  promptTokens?: string;
  newTokens?: string;
}

const SCENARIOS = ['kernels', 'generate'] as const;

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

export function register(program: Command): void {
  program
    .command('bench')
    .argument('[scenario]', `what to measure: ${SCENARIOS.join(', ')}`, 'kernels')
    .description('run benchmarks (default: the kernel suite on the first GPU, or on the CPU without one)')
    .option('--device <id>', 'device to run on (default: cuda:0, else cpu:0)')
    .option('--dtype <dtype>', 'compute dtype: bf16 (GPU default), f32 (CPU default), f16')
    .option('--quick', 'smaller shapes and fewer runs')
    .option('--runs <n>', 'kernels: timed runs per case (median reported)')
    .option('--filter <text...>', 'kernels: only cases whose name or shape contains the text')
    .option('--model <name>', 'generate: a preset (gpt2, llama-2-7b, ...) or a model folder (default gpt2 on a GPU, tiny-gpt2 on the CPU)')
    .option('--batch <list>', 'generate: batch sizes, comma-separated (default 1,16)')
    .option('--prompt-tokens <n>', 'generate: prompt length (default 128)')
    .option('--new-tokens <n>', 'generate: new tokens per sequence (default 128)')
    .option('--json [file]', 'print JSON to stdout, or write it to file')
    .action(async (scenario: string, opts: BenchOpts) => {
      const device = parseDevice(opts.device ?? defaultDevice());
      const dtype = opts.dtype ? checkDType(opts.dtype) : undefined;
      if (scenario === 'kernels') return kernels(opts, device, dtype);
      if (scenario === 'generate') return generateBench(opts, device, dtype);
      throw new Error(`unknown bench scenario "${scenario}": expected one of ${SCENARIOS.join(', ')}`);
    });
}
