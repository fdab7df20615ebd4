// `parallm bench [scenario]`: the benchmarks. With no scenario it runs the main job on the devices
// present (on the CPU when there is no GPU).
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import type { DType } from '../../dtype.js';
import { checkDType } from '../../dtype.js';
import { defaultDevice, parseDevice } from '../../device.js';
import { describeDevice, runKernelBench, type KernelBenchResult } from '../../bench/kernels.js';
import { fixed, table } from '../format.js';

interface BenchOpts {
  device?: string;
  dtype?: string;
  quick?: boolean;
  runs?: string;
  json?: boolean | string;
  filter?: string[];
}

function kernels(opts: BenchOpts): void {
  const device = parseDevice(opts.device ?? defaultDevice());
  const dtype: DType | undefined = opts.dtype ? checkDType(opts.dtype) : undefined;
  const runs = opts.runs ? Number(opts.runs) : undefined;
  if (runs !== undefined && (!Number.isInteger(runs) || runs < 1)) throw new Error(`--runs must be a positive integer`);
  const quiet = opts.json === true;
  if (!quiet) console.error(`parallm bench kernels on ${describeDevice(device)}`);
  const results = runKernelBench({
    device,
    dtype,
    quick: opts.quick,
    runs,
    filter: opts.filter,
    onResult: (r) => {
      if (!quiet) console.error(`  ${r.name} ${r.shape}: ${r.ms.toFixed(3)} ms`);
    },
  });
  if (opts.json === true) {
    console.log(JSON.stringify({ device: describeDevice(device), results }, null, 2));
    return;
  }
  if (typeof opts.json === 'string') writeFileSync(opts.json, JSON.stringify({ device: describeDevice(device), results }, null, 2));
  console.log(
    table(
      ['kernel', 'shape', 'dtype', 'ms (median)', 'TFLOP/s', 'GB/s'],
      results.map((r: KernelBenchResult) => [r.name, r.shape, r.dtype, r.ms.toFixed(3), fixed(r.tflops, r.tflops && r.tflops < 1 ? 3 : 1), fixed(r.gbps, 0)]),
    ),
  );
}

const SCENARIOS = ['kernels'] as const;

export function register(program: Command): void {
  program
    .command('bench')
    .argument('[scenario]', `what to measure: ${SCENARIOS.join(', ')}`, 'kernels')
    .description('run benchmarks (default: the kernel suite on the first GPU, or on the CPU without one)')
    .option('--device <id>', 'device to run on (default: cuda:0, else cpu:0)')
    .option('--dtype <dtype>', 'compute dtype: bf16 (GPU default), f32 (CPU default), f16')
    .option('--quick', 'smaller shapes and fewer runs')
    .option('--runs <n>', 'timed runs per case (median reported)')
    .option('--filter <text...>', 'only cases whose name or shape contains the text')
    .option('--json [file]', 'print JSON to stdout, or write it to file')
    .action((scenario: string, opts: BenchOpts) => {
      if (scenario !== 'kernels') throw new Error(`unknown bench scenario "${scenario}": expected one of ${SCENARIOS.join(', ')}`);
      kernels(opts);
    });
}
