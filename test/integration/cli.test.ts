// The CLI as a user runs it: `parallm devices` and a quick `parallm bench` on the CPU.
import { Resvg } from '@resvg/resvg-js';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'dist/cli/index.js');

function parallm(args: string[], env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env } });
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'parallm-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** `parallm args` in folder `cwd` (made empty first): its exit status, stdout and stderr. */
function inFolder(cwd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  rmSync(cwd, { recursive: true, force: true });
  mkdirSync(cwd, { recursive: true });
  return spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8' });
}

beforeAll(() => {
  // npm install runs `prepare`, which compiles dist/; build it here if a test run comes first.
  if (!existsSync(cli)) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});

describe('parallm CLI', () => {
  it('devices lists cpu:0, as a table and as JSON', () => {
    expect(parallm(['devices'])).toMatch(/cpu:0/);
    const j = JSON.parse(parallm(['devices', '--json'])) as { devices: { id: string }[] };
    expect(j.devices.map((d) => d.id)).toContain('cpu:0');
    // Without an NVIDIA driver it says so, not "driver version is insufficient".
    if (!existsSync('/usr/lib/x86_64-linux-gnu/libcuda.so.1') && !existsSync('/usr/lib64/libcuda.so.1'))
      expect(parallm(['devices'])).toMatch(/no NVIDIA driver is installed/);
  });

  it('bench kernels runs on the CPU and reports figures', () => {
    const out = JSON.parse(parallm(['bench', 'kernels', '--device', 'cpu:0', '--quick', '--runs', '2', '--json'])) as {
      results: { name: string; ms: number; tflops?: number; gbps?: number }[];
    };
    const names = new Set(out.results.map((r) => r.name));
    for (const n of ['gemm', 'gemv', 'attention-prefill', 'attention-decode', 'sum-squares', 'adamw', 'copy']) expect(names).toContain(n);
    for (const r of out.results) {
      expect(r.ms).toBeGreaterThan(0);
      expect((r.tflops ?? 0) + (r.gbps ?? 0)).toBeGreaterThan(0);
    }
  });

  it('bench with no scenario compares the strategies on two CPU devices, says what ran, and draws the charts', () => {
    const out = JSON.parse(parallm(['bench', '--new-tokens', '4', '--json', '--out', 'bench/out/test'])) as {
      meta: { parallm: string; date: string; host: { name: string }; devices: { id: string; name: string }[]; nccl: { version?: string; error?: string } };
      model: string;
      dtype: string;
      batch: number;
      promptTokens: number;
      newTokens: number;
      repeats: number;
      results: { strategy: string; model: string; dtype: string; repeats: number; tokensPerS: number; tokensPerSRuns: { min: number; median: number; max: number }; memory: { peakBytes: number }[]; utilization: number }[];
    };
    expect(out).toMatchObject({ model: 'tiny-llama', dtype: 'f32', batch: 8, promptTokens: 32, newTokens: 4, repeats: 3 });
    expect(out.meta.devices.map((d) => d.id)).toEqual(['cpu:0', 'cpu:1']);
    expect(out.meta.parallm).toMatch(/^\d+\.\d+\.\d+/);
    expect(Number.isNaN(Date.parse(out.meta.date))).toBe(false);
    expect(out.meta.nccl.version ?? out.meta.nccl.error).toBeTruthy();
    expect(out.results.map((r) => r.strategy)).toEqual(['single', 'dp', 'mp', 'pp']);
    for (const r of out.results) {
      expect(r).toMatchObject({ model: 'tiny-llama', dtype: 'f32', repeats: 3 });
      expect(r.tokensPerS).toBeGreaterThan(0);
      // The reported run is the one of median wall time: its rate is the median of the three.
      expect(r.tokensPerSRuns.median).toBeCloseTo(r.tokensPerS, 6);
      expect(r.tokensPerSRuns.min).toBeLessThanOrEqual(r.tokensPerSRuns.median);
      expect(r.tokensPerSRuns.max).toBeGreaterThanOrEqual(r.tokensPerSRuns.median);
      for (const m of r.memory) expect(m.peakBytes).toBeGreaterThan(0);
    }
    // Model parallelism keeps one of two devices busy at a time.
    expect(out.results[2]!.utilization).toBeLessThan(0.75);
    // pp runs one micro-batch per stage by default (2 here); every task of the last is on the chart.
    expect(out.results[3]!).toMatchObject({ microBatches: 2 });
    expect(readFileSync(path.join(root, 'bench/out/test/timeline-pp.svg'), 'utf8')).toMatch(/^<svg[\s\S]*stage 1, micro-batch 1/);
    for (const f of ['throughput.svg', 'timeline-mp.svg', 'timeline-pp.svg']) {
      const png = new Resvg(readFileSync(path.join(root, 'bench/out/test', f), 'utf8'), { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render();
      expect(png.width * png.height).toBeGreaterThan(0);
    }
  });

  it('bench --repeats reports the median run, with every task of the pipeline and a steady-state decode rate', () => {
    const out = JSON.parse(parallm(['bench', '--strategies', 'mp,pp', '--repeats', '3', '--new-tokens', '6', '--json', '--out', 'bench/out/test'])) as {
      results: { strategy: string; repeats: number; batch: number; newTokens: number; microBatches: number; decodeTokensPerS: number; msPerStep: number; timeline: { stage: number; step: number; t0: number; t1: number; h0: number; h1: number }[] }[];
    };
    for (const r of out.results) {
      expect(r.repeats).toBe(3);
      // Every (stage, micro-batch, step) task is there, timed on the device and on the host.
      expect(r.timeline).toHaveLength(2 * r.microBatches * r.newTokens);
      for (const t of r.timeline) expect(t.t1 >= t.t0 && t.h1 >= t.h0).toBe(true);
      expect(r.decodeTokensPerS).toBeGreaterThan(0);
      expect(r.msPerStep).toBeCloseTo((r.batch / r.decodeTokensPerS) * 1e3, 6);
    }
    expect(() => parallm(['bench', '--repeats', '0'])).toThrow(/--repeats must be a positive integer/);
  });

  it('bench --chunks runs pp with interleaved stages: every (stage, micro-batch, step) task on its device', () => {
    const out = JSON.parse(parallm(['bench', '--strategies', 'pp', '--chunks', '2', '--micro-batches', '4', '--new-tokens', '3', '--json', '--out', 'bench/out/test'])) as {
      results: { chunks: number; microBatches: number; newTokens: number; timeline: { stage: number; vstage: number }[] }[];
    };
    const r = out.results[0]!;
    expect(r.chunks).toBe(2);
    expect(r.timeline).toHaveLength(4 * r.microBatches * r.newTokens);
    expect(new Set(r.timeline.map((t) => t.vstage))).toEqual(new Set([0, 1, 2, 3]));
    for (const t of r.timeline) expect(t.vstage % 2).toBe(t.stage);
  });

  it('bench reports a strategy that cannot run, still runs the others, exits non-zero and leaves no stale timeline', () => {
    const dir = path.join(tmp, 'failing');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'charts'), { recursive: true });
    writeFileSync(path.join(dir, 'charts/timeline-pp.svg'), '<svg>an earlier run</svg>');
    const r = spawnSync(process.execPath, [cli, 'bench', '--strategies', 'single,pp', '--batch', '2', '--micro-batches', '3', '--new-tokens', '3', '--repeats', '1', '--json', '--out', 'charts'], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(1);
    const out = JSON.parse(r.stdout) as { results: { strategy: string; tokensPerS: number; error?: string }[] };
    expect(out.results[0]!.strategy).toBe('single');
    expect(out.results[0]!.error).toBeUndefined();
    expect(out.results[0]!.tokensPerS).toBeGreaterThan(0);
    expect(out.results[1]!.strategy).toBe('pp');
    expect(out.results[1]!.error).toMatch(/3 micro-batches for a batch of 2/);
    expect(r.stderr.match(/3 micro-batches for a batch of 2/g)).toHaveLength(1);
    expect(readdirSync(path.join(dir, 'charts'))).toEqual(['throughput.svg']);
    expect(r.stderr).toMatch(/charts: charts\/throughput\.svg\n/);
  });

  it('bench checks every input before running anything: one error, no output, no folder', () => {
    const dir = path.join(tmp, 'bad');
    const cases: [string[], RegExp][] = [
      [['bench', '--devices', 'cuda:7'], /unknown device "cuda:7"/],
      [['bench', '--devices', 'cpu:0,gpu:1'], /unknown device "gpu:1"/],
      [['bench', '--model', 'no-such-model'], /unknown model "no-such-model"/],
      [['bench', '--devices', 'cpu:0,cpu:0'], /device cpu:0 is listed twice/],
      [['bench', '--strategies', 'single,zp'], /unknown strategy "zp"/],
      [['bench', '--repeats', '0'], /--repeats must be a positive integer/],
      [['bench', '--batch', '2.5'], /--batch must be a positive integer/],
      [['bench', '--prompt-tokens', '100000'], /longer than tiny-llama's context/],
      [['bench', '--dtype', 'f8'], /unknown dtype "f8"/],
      [['bench', '--format', 'xml'], /--format must be one of table, md, csv, json/],
      [['bench', 'everything'], /unknown bench scenario "everything"/],
      [['bench', 'generate', '--model', 'no-such-model'], /unknown model "no-such-model"/],
      [['bench', 'train', '--model', 'tiny-gpt2', '--shapes', '2x100000'], /longer than tiny-gpt2's context/],
      [['bench', 'comm', '--devices', 'cpu:0'], /two or more devices/],
    ];
    for (const [args, msg] of cases) {
      const r = inFolder(dir, [...args, '--out', 'charts']);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      // Said once, before any strategy ran (no header, no per-strategy lines), and nothing written.
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(readdirSync(dir)).toEqual([]);
    }
  });

  it('bench writes no charts without --out, says what runs, and prints CSV or Markdown', () => {
    const dir = path.join(tmp, 'plain');
    const r = inFolder(dir, ['bench', '--strategies', 'single', '--batch', '2', '--new-tokens', '2', '--repeats', '2', '--format', 'csv']);
    expect(r.status).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
    expect(r.stderr.split('\n')[0]).toBe('parallm bench strategies: tiny-llama f32, batch 2, 32 prompt + 2 new tokens, 2 timed runs each; single on cpu:0');
    expect(r.stderr).not.toMatch(/charts:/);
    const [head, row, ...rest] = r.stdout.trim().split('\n');
    expect(head).toBe('strategy,devices,batch,micro,tokens/s (median),min,max,prefill tok/s,decode tok/s,ms/step,utilization,peak memory per device');
    expect(rest).toEqual([]);
    const cells = row!.split(',');
    expect(cells.slice(0, 4)).toEqual(['single', 'cpu:0', '2', '1']);
    const [med, min, max] = cells.slice(4, 7).map(Number);
    expect(min! <= med! && med! <= max! && min! > 0).toBe(true);
    const md = inFolder(dir, ['bench', 'kernels', '--device', 'cpu:0', '--quick', '--runs', '1', '--filter', 'copy', '--format', 'md']);
    expect(md.stdout.trim().split('\n')).toEqual([
      '| kernel | shape | dtype | ms (median) | TFLOP/s | GB/s | copy GB/s | of copy |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      expect.stringMatching(/^\| copy \| 16 MiB \| f32 \| \d+\.\d{3} \|  \| \d+ \|  \|  \|$/),
    ]);
    expect(md.stderr.split('\n')[0]).toMatch(/^parallm bench kernels on cpu:0: CPU [^,]*, f32, quick shapes, 1 timed run each, only copy$/);
  });

  it('plan prints the device map and memory per device without loading', () => {
    const out = JSON.parse(parallm(['plan', '--model', 'gpt2', '--devices', 'cpu:0,cpu:1', '--strategy', 'pp', '--json'])) as {
      stages: { device: string; start: number; end: number; embed: boolean; head: boolean; total: number }[];
    };
    expect(out.stages.map((s) => [s.device, s.start, s.end, s.embed, s.head])).toEqual([
      ['cpu:0', 0, 6, true, false],
      ['cpu:1', 6, 12, false, true],
    ]);
    expect(() => parallm(['plan', '--model', 'gpt2', '--devices', 'cpu:0,cpu:1', '--map', '{"cpu:0":[0,1],"cpu:1":[3]}'])).toThrow(/layer 2 is not placed/);
    // Interleaved: two stages on each device.
    const inter = JSON.parse(parallm(['plan', '--model', 'gpt2', '--devices', 'cpu:0,cpu:1', '--chunks', '2', '--json'])) as typeof out;
    expect(inter.stages.map((s) => [s.device, s.start, s.end])).toEqual([['cpu:0', 0, 3], ['cpu:1', 3, 6], ['cpu:0', 6, 9], ['cpu:1', 9, 12]]);
    expect(() => parallm(['plan', '--model', 'gpt2', '--devices', 'cpu:0,cpu:1', '--chunks', '2', '--split', 'memory'])).toThrow(/--chunks > 1 places layers evenly/);
  });

  it('bench train measures training steps that really train', () => {
    const out = JSON.parse(parallm(['bench', 'train', '--device', 'cpu:0', '--model', 'tiny-gpt2', '--shapes', '2x32', '--steps', '3', '--json'])) as {
      results: { batch: number; seq: number; tokensPerS: number; msPerStep: number; peakBytes: number; lossFirst: number; lossLast: number }[];
    };
    const [r] = out.results;
    expect(r).toMatchObject({ batch: 2, seq: 32 });
    expect(r!.tokensPerS).toBeGreaterThan(0);
    expect(r!.peakBytes).toBeGreaterThan(0);
    expect(r!.lossLast).toBeLessThan(r!.lossFirst);
    expect(() => parallm(['bench', 'train', '--device', 'cpu:0', '--shapes', '2by32'])).toThrow(/BATCHxSEQ/);
  });

  it('plan works for GPUs the machine does not have, and counts CPU devices against one host', () => {
    const j = JSON.parse(parallm(['plan', '--model', 'llama-2-13b', '--gpus', '4x80GiB', '--json'])) as { dtype: string; stages: { device: string; start: number; end: number; free: number; fits: boolean }[] };
    expect(j.dtype).toBe('bf16');
    expect(j.stages.map((s) => [s.device, s.start, s.end])).toEqual([['cuda:0', 0, 10], ['cuda:1', 10, 20], ['cuda:2', 20, 30], ['cuda:3', 30, 40]]);
    expect(j.stages.every((s) => s.fits && s.free === 80 * 2 ** 30)).toBe(true);
    expect(parallm(['plan', '--model', 'llama-2-7b', '--gpus', '2xH100', '--strategy', 'dp'])).toMatch(/2 x H100 \(planned/);
    expect(() => parallm(['plan', '--model', 'gpt2', '--gpus', '2xfoo'])).toThrow(/unknown GPU "foo"/);
    expect(() => parallm(['plan', '--model', 'gpt2'])).toThrow(/exactly one of --devices/);
    // Two CPU devices hold 2 x 13 GiB of one host's memory: their sum is what must fit.
    const c = JSON.parse(parallm(['plan', '--model', 'llama-2-7b', '--devices', 'cpu:0,cpu:1', '--json'])) as { stages: { total: number; free: number; fits: boolean }[] };
    const sum = c.stages.reduce((n, s) => n + s.total, 0);
    for (const s of c.stages) expect(s.fits).toBe(sum <= s.free);
  });

  it('plan --mesh prints each device\'s coordinates, layers and tp share; generate --mesh and --strategy tp give one device\'s tokens', () => {
    const j = JSON.parse(parallm(['plan', '--model', 'tiny-llama', '--devices', 'cpu:0,cpu:1,cpu:2,cpu:3', '--mesh', 'pp=2,tp=2', '--json'])) as {
      strategy: string; mesh: object; stages: { device: string; start: number; end: number; coords: object; shard: string; weights: number }[];
    };
    expect(j).toMatchObject({ strategy: 'mesh', mesh: { dp: 1, pp: 2, tp: 2 } });
    expect(j.stages.map((s) => [s.device, s.start, s.end, s.coords])).toEqual([
      ['cpu:0', 0, 3, { dp: 0, pp: 0, tp: 0 }], ['cpu:1', 0, 3, { dp: 0, pp: 0, tp: 1 }], ['cpu:2', 3, 6, { dp: 0, pp: 1, tp: 0 }], ['cpu:3', 3, 6, { dp: 0, pp: 1, tp: 1 }],
    ]);
    expect(j.stages[1]!.shard).toBe('heads 2-3 of 4, KV heads 1 of 2, MLP 64-127 of 128');
    const text = parallm(['plan', '--model', 'llama-2-7b', '--gpus', '8xH100', '--mesh', 'dp=2,pp=2,tp=2']);
    expect(text).toMatch(/mesh dp=2,pp=2,tp=2 on 8 x H100/);
    expect(text).toMatch(/cuda:7\s+1\s+1\s+1\s+16-31\s+head\s+heads 16-31 of 32/);
    expect(() => parallm(['plan', '--model', 'tiny-llama', '--devices', 'cpu:0,cpu:1,cpu:2', '--strategy', 'tp'])).toThrow(/tp=3 does not divide the model's 4 attention heads/);
    expect(() => parallm(['plan', '--model', 'tiny-llama', '--devices', 'cpu:0,cpu:1', '--mesh', 'tp=2', '--strategy', 'pp'])).toThrow(/--strategy or --mesh, not both/);
    const gen = (args: string[]) => (JSON.parse(parallm(['generate', '--model', 'tiny-llama', '--prompt-ids', '5,6,7', '--max-tokens', '5', '--json', ...args])) as { tokens: number[] }).tokens;
    const one = gen(['--devices', 'cpu:0']);
    expect(gen(['--devices', 'cpu:0,cpu:1', '--mesh', 'dp=1,tp=2'])).toEqual(one);
    expect(gen(['--devices', 'cpu:0,cpu:1', '--strategy', 'tp'])).toEqual(one);
    expect(() => gen(['--devices', 'cpu:0,cpu:1,cpu:2', '--mesh', 'tp=2'])).toThrow(/mesh dp=1,pp=1,tp=2 has 2 ranks, but 3 devices/);
  });

  it('generate streams text from a preset', () => {
    const out = parallm(['generate', '--model', 'tiny-gpt2', '--prompt', 'Hello world', '--max-tokens', '5', '--device', 'cpu:0']);
    expect(out.startsWith('Hello world')).toBe(true);
    expect(out.length).toBeGreaterThan('Hello world'.length);
  });

  it('generate checks its input before loading, says when a preset is random, and ends quietly when the reader goes', () => {
    const run = (args: string[]) => execFileSync(process.execPath, [cli, 'generate', ...args], { encoding: 'utf8', stdio: 'pipe' });
    expect(() => run(['--model', 'tiny-llama', '--prompt', 'Hello'])).toThrow(/tiny-llama has no tokenizer[\s\S]*--prompt-ids/);
    for (const bad of ['', '1,,2', '1,x', '-1'])
      expect(() => run(['--model', 'tiny-llama', '--prompt-ids', bad])).toThrow(/--prompt-ids must be comma-separated token ids/);
    expect(() => run(['--model', 'tiny-llama', '--prompt-ids', '1,2', '--top-p', '0'])).toThrow(/topP must be in \(0, 1\]/);
    // The reader closes after 10 bytes: no EPIPE stack trace, exit code 0.
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cli}" generate --model tiny-gpt2 --prompt Hello --max-tokens 250 --device cpu:0 | head -c 10`], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('Hello'.concat(r.stdout.slice(5)));
    expect(r.stdout).toHaveLength(10);
    expect(r.stderr).not.toMatch(/EPIPE|Error/);
    expect(r.stderr).toMatch(/preset: seeded random weights/);
  });

  it('generate --prompts --devices runs a batch across devices and gives what one device gives', () => {
    const file = path.join(root, 'bench/out/test-prompts.txt');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, 'The meaning of life is\nOnce upon a time\n\nHello\n');
    const lines = (args: string[]) => parallm(['generate', '--model', 'tiny-gpt2', '--prompts', file, '--max-tokens', '6', '--json', ...args]).trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; tokens: number[] });
    const one = lines(['--device', 'cpu:0']);
    expect(one.map((l) => l.prompt)).toEqual(['The meaning of life is', 'Once upon a time', 'Hello']);
    for (const strategy of ['dp', 'pp']) expect(lines(['--devices', 'cpu:0,cpu:1', '--strategy', strategy]).map((l) => l.tokens)).toEqual(one.map((l) => l.tokens));
    expect(() => parallm(['generate', '--model', 'tiny-gpt2', '--prompt', 'a', '--prompts', file])).toThrow(/exactly one of --prompt, --prompt-ids and --prompts/);
    expect(() => parallm(['generate', '--model', 'tiny-gpt2', '--prompts', file, '--devices', 'cpu:0,cpu:1', '--strategy', 'xx'])).toThrow(/--strategy must be dp, mp, pp or tp/);
  });

  it('says what is wrong with a bad device', () => {
    expect(() => execFileSync(process.execPath, [cli, 'bench', 'kernels', '--device', 'cuda:9'], { encoding: 'utf8', stdio: 'pipe' })).toThrow(
      /unknown device "cuda:9"/,
    );
  });

  it('refuses --busy-sms off a GPU and when it is not a positive integer', () => {
    const run = (args: string[]) => () => execFileSync(process.execPath, [cli, 'bench', 'kernels', '--device', 'cpu:0', '--quick', ...args], { encoding: 'utf8', stdio: 'pipe' });
    expect(run(['--busy-sms', '16'])).toThrow(/--busy-sms: holds SMs of a GPU; cpu:0 is not one/);
    expect(run(['--busy-sms', '0'])).toThrow(/--busy-sms must be a positive integer, got "0"/);
  });

  it('refuses --rehearse-dp off a GPU, in a bad form, and with strategies', () => {
    const run = (args: string[]) => () =>
      execFileSync(process.execPath, [cli, 'bench', 'train', '--model', 'tiny-gpt2', '--shapes', '2x8', '--steps', '1', ...args], { encoding: 'utf8', stdio: 'pipe' });
    expect(run(['--device', 'cpu:0', '--rehearse-dp', '16:330'])).toThrow(/--rehearse-dp holds SMs of a GPU; cpu:0 is not one/);
    for (const bad of ['16', '16:', '0:330', '16:0', 'a:b', '16:330:1'])
      expect(run(['--device', 'cpu:0', '--rehearse-dp', bad]), bad).toThrow(/--rehearse-dp must be SMS:GBPS, e\.g\. 16:330/);
    expect(run(['--devices', 'cpu:0,cpu:1', '--strategies', 'dp', '--rehearse-dp', '16:330'])).toThrow(/--rehearse-dp rehearses data parallelism on one GPU/);
  });
});
