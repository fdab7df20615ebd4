// `parallm bench [scenario]`: the benchmarks. With no scenario it runs the main job on the devices
// present (on the CPU when there is no GPU).
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { checkDType, type DType } from '../../dtype.js';
import { positiveInt } from '../args.js';
import { defaultDevice, ensureCpuDevices, parseDevice } from '../../device.js';
import { describeDevice, runKernelBench } from '../../bench/kernels.js';
import { runGenerateBench } from '../../bench/generate.js';
import { benchMeta } from '../../bench/meta.js';
import { runTrainBench, type DpRehearsal } from '../../bench/train.js';
import { runEpochBench, runTrainStrategyBench, TRAIN_STRATEGIES, writeTrainCharts, type TrainStrategy } from '../../bench/train-strategies.js';
import { defaultBenchDevices, describePlan, planDevices, planStrategyBench, runStrategyBench, writeStrategyCharts } from '../../bench/strategies.js';
import { modelConfig } from '../../models/source.js';
import type { Strategy } from '../../parallel/placement.js';
import type { AllReducePath } from '../../parallel/comm.js';
import { bytes, checkFormat, fixed, render, type Format } from '../format.js';
import { LoadProgressBar } from '../progress.js';

/** A progress bar per model load on stderr; nothing with --json (stdout is the document). */
const loadBars = (opts: BenchOpts) => (label: string) => new LoadProgressBar(label, { quiet: opts.json === true });

interface BenchOpts {
  device?: string;
  dtype?: string;
  quick?: boolean;
  runs?: string;
  json?: boolean | string;
  format?: string;
  filter?: string[];
  splitK?: string;
  busySms?: string;
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
  scaling?: string;
  schedule?: string;
  deferDw?: boolean | string;
  bucketMb?: string;
  rehearseDp?: string;
  zero?: string;
  epochs?: string;
  brownFiles?: string;
  profile?: boolean;
}

const SCENARIOS = ['strategies', 'kernels', 'generate', 'comm', 'train'] as const;

function deviceList(v: string | undefined): string[] {
  const list = v ? v.split(',').map((d) => d.trim()) : defaultBenchDevices();
  ensureCpuDevices(list); // cpu:N are made on demand, as ParallelModel.load does
  return list.map((d) => parseDevice(d));
}

/** How the results are printed: --format, where --json with no file means json. */
function outputFormat(opts: BenchOpts): Format {
  const f = checkFormat(opts.format ?? (opts.json === true ? 'json' : 'table'));
  if (opts.json === true && f !== 'json') throw new Error(`--json prints JSON; it cannot be combined with --format ${f} (give --json a file to write the JSON there)`);
  return f;
}

interface Output {
  format: Format;
  /** progress lines on stderr (not when JSON goes to stdout) */
  say: (line: string) => void;
  /** prints the results: JSON ({ meta, ...settings, results }) or the table in the format asked for */
  emit: (settings: object, devices: string[], results: object[], headers: string[], rows: (string | number)[][]) => void;
}

/**
 * Checks the output options and prints the header line (on stderr: stdout is for the results). Every
 * input has been checked before this runs, so nothing has been measured when an input is wrong.
 */
function output(opts: BenchOpts, header: string): Output {
  const format = outputFormat(opts);
  console.error(`parallm bench ${header}`);
  return {
    format,
    say: (line) => void (format === 'json' || console.error(line)),
    emit: (settings, devices, results, headers, rows) => {
      const doc = JSON.stringify({ meta: benchMeta(devices), ...settings, results }, null, 2);
      if (typeof opts.json === 'string') writeFileSync(opts.json, doc);
      console.log(format === 'json' ? doc : render(format, headers, rows));
    },
  };
}

function kernels(opts: BenchOpts, device: string, dtype: DType | undefined): void {
  const gpu = device.startsWith('cuda');
  const dt = dtype ?? (gpu ? 'bf16' : 'f32');
  const runs = positiveInt('--runs', opts.runs);
  const splitK = opts.splitK === undefined || opts.splitK === 'auto' ? undefined : positiveInt('--split-k', opts.splitK);
  const out = output(opts, `kernels on ${describeDevice(device)}, ${dt}, ${opts.quick ? 'quick shapes' : 'full shapes'}${runs ? `, ${runs} timed run${runs > 1 ? 's' : ''} each` : ''}${opts.filter?.length ? `, only ${opts.filter.join(' / ')}` : ''}`);
  const busySms = positiveInt('--busy-sms', opts.busySms);
  if (busySms !== undefined && !gpu) throw new Error(`--busy-sms: holds SMs of a GPU; ${device} is not one`);
  const results = runKernelBench({ device, dtype: dt, quick: opts.quick, runs, filter: opts.filter, splitK, busySms, onResult: (r) => out.say(`  ${r.name} ${r.shape}: ${r.ms.toFixed(3)} ms`) });
  out.emit(
    { scenario: 'kernels', device, dtype: dt, quick: !!opts.quick },
    [device],
    results,
    ['kernel', 'shape', 'dtype', 'ms (median)', 'TFLOP/s', 'GB/s', 'copy GB/s', 'of copy'],
    results.map((r) => [
      r.name, r.shape, r.dtype, r.ms.toFixed(3), fixed(r.tflops, r.tflops && r.tflops < 1 ? 3 : 1), fixed(r.gbps, 0),
      fixed(r.copyGbps, 0), r.ofCopy === undefined ? '' : `${(100 * r.ofCopy).toFixed(1)}%`,
    ]),
  );
}

async function generateBench(opts: BenchOpts, device: string, dtype: DType | undefined): Promise<void> {
  const gpu = device.startsWith('cuda');
  const model = opts.model ?? (gpu ? 'gpt2' : 'tiny-gpt2');
  const cfg = modelConfig(model);
  const dt = dtype ?? (gpu ? 'bf16' : 'f32');
  const batches = (opts.batch ?? (opts.quick ? '1' : '1,16')).split(',').map((b) => positiveInt('--batch', b.trim())!);
  const promptTokens = positiveInt('--prompt-tokens', opts.promptTokens) ?? (opts.quick ? 16 : 128);
  const newTokens = positiveInt('--new-tokens', opts.newTokens) ?? (opts.quick ? 16 : 128);
  if (promptTokens + newTokens > cfg.maxPositions) throw new Error(`bench generate: ${promptTokens} prompt + ${newTokens} new tokens is longer than ${model}'s context of ${cfg.maxPositions}`);
  const out = output(opts, `generate: ${model} ${dt} on ${describeDevice(device)}, batch ${batches.join(', ')}, ${promptTokens} prompt + ${newTokens} new tokens`);
  const results = await runGenerateBench({ model, device, dtype: dt, batches, promptTokens, newTokens, loadProgress: loadBars(opts), onResult: (r) => out.say(`  batch ${r.batch}: ${r.decodeTokensPerS.toFixed(0)} tokens/s decode`) });
  out.emit(
    { scenario: 'generate', model, dtype: dt, device, batches, promptTokens, newTokens },
    [device],
    results,
    ['model', 'dtype', 'batch', 'prefill tok/s', 'TTFT ms', 'decode tok/s', 'ms/step', 'decode tok/s (median step)', 'weights', 'peak memory'],
    results.map((r) => [r.model, r.dtype, r.batch, r.prefillTokensPerS.toFixed(0), r.ttftMs.toFixed(1), r.decodeTokensPerS.toFixed(1), r.msPerStep.toFixed(2), r.medianDecodeTokensPerS.toFixed(1), bytes(r.weightBytes), bytes(r.peakBytes)]),
  );
}

async function trainBench(opts: BenchOpts, device: string, dtype: DType | undefined): Promise<void> {
  if (opts.strategies !== undefined || opts.devices !== undefined || opts.epochs !== undefined) return trainStrategiesBench(opts, dtype);
  if (opts.deferDw) throw new Error('bench train: --defer-dw is for --strategies mp or pp (one device defers nothing)');
  const gpu = device.startsWith('cuda');
  const model = opts.model ?? (gpu ? 'gpt2' : 'tiny-gpt2');
  const cfg = modelConfig(model);
  const dt = dtype ?? (gpu ? 'bf16' : 'f32');
  // The defaults of runTrainBench, given explicitly so the header and the JSON say what ran.
  const shapes =
    opts.shapes?.split(',').map((s) => {
      const m = /^(\d+)x(\d+)$/.exec(s.trim());
      if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new Error(`--shapes must be BATCHxSEQ pairs, e.g. 128x128,16x1024, got "${s}"`);
      return [Number(m[1]), Number(m[2])] as [number, number];
    }) ?? (gpu ? [[128, 128], [16, 1024]] : [[4, 64]]);
  for (const [, T] of shapes) if (T > cfg.maxPositions) throw new Error(`bench train: sequence ${T} is longer than ${model}'s context of ${cfg.maxPositions}`);
  const steps = positiveInt('--steps', opts.steps) ?? (gpu ? 20 : 3);
  const rehearseDp = rehearsal(opts, device);
  // On a GPU the timed steps are one CUDA graph each (src/train/captured-step.ts), except under --profile,
  // which times each op group and so runs the steps op by op.
  const how = gpu ? (opts.profile ? ', op by op (--profile times each op group; without it a step is one CUDA graph)' : ', each step one CUDA graph where its memory fits') : '';
  const rh = rehearseDp ? `; a DP rank rehearsed: ${rehearseDp.bucketMiB} MiB buckets each holding ${rehearseDp.sms} SMs as long as ${rehearseDp.gbps} GB/s takes` : '';
  const out = output(opts, `train: ${model} ${dt} on ${describeDevice(device)}, batch x seq ${shapes.map(([b, t]) => `${b}x${t}`).join(', ')}, ${steps} timed steps${how}${rh}`);
  const results = await runTrainBench({
    model, device, dtype: dt, shapes, steps, profile: opts.profile, rehearseDp,
    onResult: (r) => {
      out.say(`  ${r.batch} x ${r.seq}: ${r.tokensPerS.toFixed(0)} tokens/s`);
      for (const g of r.profile ?? []) out.say(`    ${g.name.padEnd(28)} ${g.msPerStep.toFixed(3).padStart(9)} ms/step  ${(g.share * 100).toFixed(1).padStart(5)}%  x${g.count}`);
    },
  });
  out.emit(
    { scenario: 'train', model, dtype: dt, device, shapes: shapes.map(([batch, seq]) => ({ batch, seq })), steps, ...(rehearseDp ? { rehearseDp } : {}) },
    [device],
    results,
    ['model', 'dtype', 'batch', 'seq', 'tokens/s', 'ms/step', 'MFU', 'peak memory', 'loss first → last'],
    results.map((r) => [r.model, r.dtype, r.batch, r.seq, r.tokensPerS.toFixed(0), r.msPerStep.toFixed(1), r.mfu === undefined ? '-' : `${(r.mfu * 100).toFixed(1)}%`, bytes(r.peakBytes), `${r.lossFirst.toFixed(3)} → ${r.lossLast.toFixed(3)}`]),
  );
}

/** --rehearse-dp SMS:GBPS (one GPU): DpRehearsal, its buckets --bucket-mb (default 25). */
function rehearsal(opts: BenchOpts, device: string): DpRehearsal | undefined {
  if (opts.rehearseDp === undefined) return undefined;
  const m = /^(\d+):(\d+(?:\.\d+)?)$/.exec(opts.rehearseDp.trim());
  if (!m || Number(m[1]) < 1 || !(Number(m[2]) > 0)) throw new Error(`--rehearse-dp must be SMS:GBPS, e.g. 16:330, got "${opts.rehearseDp}"`);
  if (!device.startsWith('cuda')) throw new Error(`--rehearse-dp holds SMs of a GPU; ${device} is not one`);
  const bucketMiB = opts.bucketMb === undefined ? 25 : Number(opts.bucketMb);
  if (!(bucketMiB > 0 && Number.isFinite(bucketMiB))) throw new Error(`--bucket-mb with --rehearse-dp must be a number above 0, got "${opts.bucketMb}"`);
  return { sms: Number(m[1]), gbps: Number(m[2]), bucketMiB };
}

/** `bench train --strategies ... --devices ...`: training under each strategy, and epochs on the corpus. */
async function trainStrategiesBench(opts: BenchOpts, dtype: DType | undefined): Promise<void> {
  if (opts.rehearseDp !== undefined) throw new Error('--rehearse-dp rehearses data parallelism on one GPU: it takes no --strategies, --devices or --epochs');
  const devices = deviceList(opts.devices);
  const dup = devices.find((d, i) => devices.indexOf(d) !== i);
  if (dup) throw new Error(`bench train: device ${dup} is listed twice in --devices`);
  const gpu = devices[0]!.startsWith('cuda');
  const model = opts.model ?? (gpu ? 'gpt2' : 'tiny-gpt2');
  const cfg = modelConfig(model);
  const dt = dtype ?? (gpu ? 'bf16' : 'f32');
  const list = (opts.strategies ?? (opts.epochs !== undefined ? '' : TRAIN_STRATEGIES.join(','))).split(',').map((x) => x.trim()).filter(Boolean);
  for (const x of list) if (!(TRAIN_STRATEGIES as readonly string[]).includes(x)) throw new Error(`--strategies: unknown training strategy "${x}": expected ${TRAIN_STRATEGIES.join(', ')}`);
  const strategies = list as TrainStrategy[];
  if (opts.deferDw && !strategies.some((x) => x === 'mp' || x === 'pp')) throw new Error(`bench train: --defer-dw is for --strategies mp or pp, got ${list.join(',') || 'none'}`);
  const deferWeightGrads = opts.deferDw === undefined || opts.deferDw === false ? false : opts.deferDw === true ? true : positiveInt('--defer-dw', opts.deferDw)!;
  if (devices.length < 2 && strategies.some((x) => x !== 'single')) throw new Error(`bench train: dp, mp and pp need two or more --devices, got ${devices.join(',')}`);
  const shapes = (opts.shapes ?? (gpu ? '128x128' : '4x32')).split(',');
  if (shapes.length !== 1) throw new Error(`bench train with --strategies takes one --shapes pair (BATCHxSEQ), got "${opts.shapes}"`);
  const m = /^(\d+)x(\d+)$/.exec(shapes[0]!.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new Error(`--shapes must be a BATCHxSEQ pair, e.g. 128x128, got "${shapes[0]}"`);
  const batch = Number(m[1]), seq = Number(m[2]);
  if (seq > cfg.maxPositions) throw new Error(`bench train: sequence ${seq} is longer than ${model}'s context of ${cfg.maxPositions}`);
  const scaling = opts.scaling ?? 'weak';
  if (scaling !== 'weak' && scaling !== 'strong') throw new Error(`--scaling must be weak or strong, got "${scaling}"`);
  if (scaling === 'strong' && batch % devices.length) throw new Error(`--scaling strong splits the batch ${batch} over ${devices.length} devices: it must divide`);
  if (opts.schedule !== undefined && opts.schedule !== 'gpipe' && opts.schedule !== '1f1b') throw new Error(`--schedule must be gpipe or 1f1b, got "${opts.schedule}"`);
  const steps = positiveInt('--steps', opts.steps) ?? (gpu ? 20 : 3);
  const epochs = positiveInt('--epochs', opts.epochs);
  const microBatches = positiveInt('--micro-batches', opts.microBatches);
  const bucketMiB = opts.bucketMb === undefined ? 0 : Number(opts.bucketMb);
  if (!(bucketMiB >= 0 && Number.isFinite(bucketMiB))) throw new Error(`--bucket-mb must be a number >= 0, got "${opts.bucketMb}"`);
  if (opts.zero !== undefined && opts.zero !== '0' && opts.zero !== '1') throw new Error(`--zero must be 0 or 1, got "${opts.zero}"`);
  const zero = opts.zero === '1' ? 1 : 0;
  const out = output(
    opts,
    `train: ${model} ${dt} on ${devices.map(describeDevice).join(', ')}, ${batch} x ${seq}` +
      (strategies.length ? `, ${strategies.join(' / ')} (${scaling} scaling for dp), ${steps} timed steps` : '') +
      (epochs ? `, ${epochs} epochs on ${opts.brownFiles ? 'part of ' : ''}the Brown corpus on 1 and ${devices.length} devices` : ''),
  );
  const results = await runTrainStrategyBench({
    model, devices, dtype: dt, batch, seq, steps, strategies, scaling, microBatches, schedule: opts.schedule as 'gpipe' | '1f1b' | undefined, bucketMiB, zero,
    chunks: positiveInt('--chunks', opts.chunks), deferWeightGrads,
    onResult: (r) => out.say(`  ${r.strategy} on ${r.devices.join(',')}: ${r.error ? `failed: ${r.error}` : `${r.tokensPerS.toFixed(0)} tokens/s`}`),
  });
  const epochResults = epochs
    ? await runEpochBench({ model, devices, dtype: dt, batch, seq, epochs, bucketMiB, brownFiles: opts.brownFiles?.split(',').map((x) => x.trim()), onEpoch: (n, e, sec) => out.say(`  ${n} device(s), epoch ${e + 1}: ${sec.toFixed(2)} s`) })
    : [];
  const failed = results.filter((r) => r.error);
  if (failed.length) process.exitCode = 1;
  const charts = opts.out ? writeTrainCharts(opts.out, { model, dtype: dt, batch, seq, scaling }, results, epochResults) : [];
  const rows: (string | number)[][] = results.map((r) =>
    r.error
      ? [r.strategy, r.devices.join(','), r.globalBatch, '-', 'failed', '-', '-', '-', '-', '-']
      : [
          r.strategy, r.devices.join(','), r.globalBatch, r.microBatches ? `${r.microBatches} ${r.schedule}${r.chunks ? ` x${r.chunks}` : ''}` : '-', r.tokensPerS.toFixed(0), r.stepMs.median.toFixed(1),
          `${r.stepMs.min.toFixed(1)}–${r.stepMs.max.toFixed(1)}`, r.mfu === undefined ? '-' : `${(r.mfu * 100).toFixed(1)}%`, r.peakBytes.map((b) => bytes(b)).join(' / ') + (r.deferredBytes ? ` (deferred dW held ${r.deferredBytes.map((b) => bytes(b)).join(' / ')})` : '') + (r.optimizerBytes ? ` (optimizer state ${r.optimizerBytes.map((b) => bytes(b)).join(' / ')}${r.zero ? ', ZeRO-1' : ''})` : ''),
          `${r.lossFirst.toFixed(3)} → ${r.lossLast.toFixed(3)}`,
        ],
  );
  for (const e of epochResults)
    rows.push([`epochs (${e.devices.length > 1 ? 'dp' : 'single'})`, e.devices.join(','), e.devices.length * batch, '-', (e.tokensPerEpoch / e.spread.median).toFixed(0), `${e.spread.median.toFixed(2)} s/epoch`, `${e.spread.min.toFixed(2)}–${e.spread.max.toFixed(2)} s`, '-', '-', e.seconds.map((x) => x.toFixed(2)).join(' ')]);
  out.emit(
    { scenario: 'train', model, dtype: dt, devices, batch, seq, steps, strategies, scaling, microBatches, schedule: opts.schedule, deferWeightGrads, bucketMiB, zero, epochs },
    devices,
    [...results.map(({ timeline: _t, ...r }) => r), ...epochResults.map((e) => ({ strategy: 'epochs', ...e }))],
    ['strategy', 'devices', 'global batch', 'micro', 'tokens/s', 'ms/step (median)', 'min–max', 'MFU', 'peak memory per device', 'loss first → last / epoch s'],
    rows,
  );
  for (const r of failed) console.error(`parallm bench train: ${r.strategy} on ${r.devices.join(',')} failed: ${r.error}`);
  if (charts.length) console.error(`charts: ${charts.map((c) => path.relative(process.cwd(), c) || c).join(', ')}`);
}

async function strategies(opts: BenchOpts, dtype: DType | undefined): Promise<void> {
  const plan = planStrategyBench({
    model: opts.model,
    devices: opts.devices ? opts.devices.split(',').map((d) => d.trim()) : undefined,
    loadProgress: loadBars(opts),
    dtype,
    batch: positiveInt('--batch', opts.batch),
    promptTokens: positiveInt('--prompt-tokens', opts.promptTokens) ?? (opts.quick ? 16 : undefined),
    newTokens: positiveInt('--new-tokens', opts.newTokens) ?? (opts.quick ? 8 : undefined),
    microBatches: positiveInt('--micro-batches', opts.microBatches),
    chunks: positiveInt('--chunks', opts.chunks),
    prompts: positiveInt('--prompts', opts.prompts),
    repeats: positiveInt('--repeats', opts.repeats),
    strategies: opts.strategies?.split(',').map((x) => x.trim()) as Strategy[] | undefined,
  });
  const out = output(opts, `strategies: ${describePlan(plan)}`);
  const results = await runStrategyBench({ ...plan, onResult: (r) => out.say(`  ${r.strategy} on ${r.devices.join(',')}: ${r.error ? `failed: ${r.error}` : `${r.tokensPerS.toFixed(0)} tokens/s`}`) });
  // A strategy that could not run is in the results with its error; the command then exits non-zero.
  const failed = results.filter((r) => r.error);
  if (failed.length) process.exitCode = 1;
  // Charts only where --out says: a benchmark writes nothing into the user's folders unasked.
  const charts = opts.out ? writeStrategyCharts(opts.out, plan, results) : [];
  out.emit(
    { scenario: 'strategies', ...plan },
    planDevices(plan),
    results,
    ['strategy', 'devices', 'batch', 'micro', 'tokens/s (median)', 'min', 'max', 'prefill tok/s', 'decode tok/s', 'ms/step', 'utilization', 'peak memory per device'],
    results.map((r) =>
      r.error
        ? [r.strategy, r.devices.join(','), r.batch, '-', 'failed', '-', '-', '-', '-', '-', '-', '-']
        : [
            r.chunks ? `${r.strategy} (${r.chunks} chunks)` : r.strategy,
            r.devices.join(','),
            r.batch,
            r.microBatches,
            r.tokensPerS.toFixed(0),
            r.tokensPerSRuns.min.toFixed(0),
            r.tokensPerSRuns.max.toFixed(0),
            r.prefillTokensPerS.toFixed(0),
            r.decodeTokensPerS.toFixed(0),
            r.msPerStep.toFixed(2),
            `${(r.utilization * 100).toFixed(0)}%`,
            r.memory.map((m) => bytes(m.peakBytes)).join(' / '),
          ],
    ),
  );
  for (const r of failed) console.error(`parallm bench: ${r.strategy} on ${r.devices.join(',')} failed: ${r.error}`);
  if (charts.length) console.error(`charts: ${charts.map((c) => path.relative(process.cwd(), c) || c).join(', ')}`);
}

async function commBench(opts: BenchOpts): Promise<void> {
  const devices = deviceList(opts.devices);
  if (devices.length < 2) throw new Error(`bench comm needs two or more devices (--devices), got ${devices.join(',')}`);
  const dup = devices.find((d, i) => devices.indexOf(d) !== i);
  if (dup) throw new Error(`bench comm: device ${dup} is listed twice in --devices`);
  const gpu = devices[0]!.startsWith('cuda');
  // On GPUs the all-reduces of a run go back to back in one graph: 200 of them make the host's wait for
  // the replay (polled every 50 us) a fraction of a microsecond each.
  const runs = positiveInt('--runs', opts.runs) ?? (gpu ? 200 : 20);
  // Decode's tensor-parallel all-reduces are 4-64 KiB (batch 1-16 at 2,048-4,096 hidden); training's are MBs to GBs.
  const sizes = opts.quick ? [4 << 10, 64 << 10, 1 << 20, 16 << 20] : [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 16 << 20, 128 << 20, 1 << 30];
  const paths: AllReducePath[] = gpu ? ['nccl', 'auto', 'peer-ll', 'peer-one-shot', 'peer-two-shot'] : ['nccl'];
  const timing = gpu ? `${runs} back to back in a CUDA graph, median of 5 replays` : `median of ${runs} calls`;
  const out = output(opts, `comm: all-reduce (bf16, sum) of ${sizes.map((b) => bytes(b)).join(', ')} over ${devices.join(', ')}, ${timing}`);
  const { ParallelModel } = await import('../../engine/parallel-model.js');
  // The smallest model with one layer per device, just to stand up the workers and their communicator.
  const p = await ParallelModel.load('tiny-llama', { strategy: 'mp', devices, placement: Object.fromEntries(devices.map((d, i) => [d, i === devices.length - 1 ? Array.from({ length: 6 - i }, (_, k) => i + k) : [i]])) });
  try {
    const { results, peerUnavailable } = await p.allReduceBandwidth(sizes, runs, paths);
    if (gpu && peerUnavailable) out.say(`peer all-reduce not available: ${peerUnavailable}`);
    const label = (path: AllReducePath) => (path === 'nccl' ? (gpu ? 'NCCL' : 'CPU communicator') : path === 'auto' ? 'auto (the default)' : `peer, ${path.slice(5)}`);
    const base = new Map(results.filter((r) => r.path === 'nccl').map((r) => [r.bytes, r.ms]));
    const rows = results.map((r) => [bytes(r.bytes), label(r.path), (r.ms * 1e3).toFixed(1), r.busGBps.toFixed(1), ...(gpu ? [r.path === 'nccl' ? '' : `${(r.ms / base.get(r.bytes)!).toFixed(2)}x`] : [])]);
    out.emit({ scenario: 'comm', devices, runs, timing, peerUnavailable }, devices, results, ['all-reduce (bf16, sum)', 'path', 'us (median)', 'bus GB/s', ...(gpu ? ['latency vs NCCL'] : [])], rows);
  } finally {
    await p.close();
  }
}

export function register(program: Command): void {
  program
    .command('bench')
    .argument('[scenario]', `what to measure: ${SCENARIOS.join(', ')}`, 'strategies')
    .description('run benchmarks (default: single device, data, model and pipeline parallelism on the devices present). Every input is checked before anything runs; a header line on stderr says what runs; the JSON also holds the parallm version, date, host, devices, GPU names, NVIDIA driver, CUDA and NCCL versions')
    .option('--device <id>', 'kernels, generate, train: device to run on (default: cuda:0, else cpu:0)')
    .option('--dtype <dtype>', 'compute dtype: bf16 (GPU default), f32 (CPU default), f16')
    .option('--quick', 'smaller shapes and fewer runs')
    .option('--runs <n>', 'kernels, comm: timed runs per case (median reported)')
    .option('--filter <text...>', 'kernels: only cases whose name or shape contains the text')
    .option('--split-k <n>', 'kernels: K slices of the Hopper matmul (default auto; 1 turns split-K off)')
    .option('--busy-sms <n>', 'kernels (GPU): hold this many SMs with a spinning kernel on another stream while each case is timed, as NCCL holds them beside data-parallel training')
    .option('--model <name>', 'strategies, generate, train: a preset (gpt2, llama-2-7b, ...) or a model folder (default gpt2 on a GPU; on the CPU tiny-llama for strategies, tiny-gpt2 otherwise)')
    .option('--batch <list>', 'generate: batch sizes, comma-separated (default 1,16); strategies: the batch (default 64 on GPUs, 8 on the CPU)')
    .option('--prompt-tokens <n>', 'generate, strategies: prompt length (default 128 on GPUs; generate 128, strategies 32 on the CPU)')
    .option('--new-tokens <n>', 'generate, strategies: new tokens per sequence (default 128 on GPUs; generate 128, strategies 16 on the CPU)')
    .option('--devices <list>', 'strategies, comm, train: devices (default: every GPU, else cpu:0,cpu:1)')
    .option('--strategies <list>', 'strategies, train: which of single,dp,mp,pp (default all)')
    .option('--micro-batches <n>', 'strategies, train: pp micro-batches (default one per stage; at most the batch)')
    .option('--chunks <n>', 'strategies, train: pp stages per device, interleaved: a smaller fill and drain for one more transfer per chunk (default 1)')
    .option('--repeats <n>', 'strategies: timed runs per strategy; the run of median wall time is reported, with the min and max tokens/s (default 3)')
    .option('--prompts <n>', 'strategies: single/dp run this many prompts, each device in batches of --batch')
    .option('--out <dir>', 'strategies, train: write the SVG charts (throughput.svg, timeline-mp.svg, timeline-pp.svg; train-throughput.svg, train-timeline-mp.svg, train-timeline-pp.svg, train-epochs.svg) into this folder; without --out no charts are written')
    .option('--shapes <list>', 'train: BATCHxSEQ pairs (default 128x128,16x1024 on a GPU, 4x64 on the CPU); with --strategies one pair (default 128x128, 4x32 on the CPU)')
    .option('--steps <n>', 'train: timed optimizer steps (default 20 on a GPU, 3 on the CPU)')
    .option('--scaling <s>', 'train --strategies: what dp keeps: weak (the batch per device, default) or strong (the global batch)')
    .option('--schedule <s>', 'train --strategies: pp schedule, gpipe or 1f1b (default)')
    .option('--defer-dw [n]', 'train --strategies: mp and pp add the weight gradients once per micro-step, one matmul per layer over all its micro-batches (n: also after every n micro-batches); the bytes held show beside the peak memory')
    .option('--zero <n>', 'train --strategies: 1 shards the dp optimizer state over the devices (ZeRO-1; default 0)')
    .option('--bucket-mb <x>', 'train --strategies: dp gradient buckets of x MiB all-reduced during the backward (default 0: once after it); train --rehearse-dp: the rehearsed buckets (default 25)')
    .option('--rehearse-dp <sms:gbps>', 'train (one GPU): a data-parallel rank\'s step rehearsed: the gradient in --bucket-mb buckets (default 25), each launched when dp launches it beside the backward, a kernel holding SMS SMs for as long as all-reducing it at GBPS GB/s takes (NCCL\'s occupancy without a second GPU; no bytes move)')
    .option('--epochs <n>', 'train: also time n epochs on the Brown corpus on one device and data-parallel on --devices (the seed\'s Figure 4)')
    .option('--profile', 'train (one device): also the device time of each op group of a step (forward, backward, optimizer)')
    .option('--brown-files <ids>', 'train --epochs: only these Brown files, comma-separated')
    .option('--format <format>', 'how results are printed: table (default), md, csv or json')
    .option('--json [file]', 'print JSON to stdout (as --format json), or write it to file as well as printing the table')
    .action(async (scenario: string, opts: BenchOpts) => {
      if (!(SCENARIOS as readonly string[]).includes(scenario)) throw new Error(`unknown bench scenario "${scenario}": expected one of ${SCENARIOS.join(', ')}`);
      outputFormat(opts); // a bad --format is an error before anything runs
      const device = parseDevice(opts.device ?? defaultDevice());
      const dtype = opts.dtype ? checkDType(opts.dtype) : undefined;
      if (scenario === 'strategies') return strategies(opts, dtype);
      if (scenario === 'comm') return commBench(opts);
      if (scenario === 'kernels') return kernels(opts, device, dtype);
      if (scenario === 'generate') return generateBench(opts, device, dtype);
      return trainBench(opts, device, dtype);
    });
}
