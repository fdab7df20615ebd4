// Pipeline (and dp x pp, pp x tp, tp) training across processes end to end: `parallm launch` starting real
// processes (the compiled CLI in dist/), the mesh spanning both processes' CPU devices over 'tcp'
// communicators, against one process holding all four devices ('cpu' communicators). The CPU backend's
// tcp communicator sums as the in-process one does (native/comm/tcp.cc), so the losses agree bit for bit.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/cluster/rendezvous.js';
import { launch } from '../../src/cli/commands/launch.js';
import { writeTokenFile } from '../../src/data/tokenfile.js';
import { ensureDist } from '../helpers/dist.js';

const cli = path.resolve('dist/cli/index.js');
let dir = '';
let data = '';

// A prepared dataset of ids below 512 (the tiny LLaMA presets' vocabulary), fresh every run.
function writeDataset(folder: string, seed: number): void {
  mkdirSync(folder, { recursive: true });
  let s = seed;
  const r = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const make = (n: number) => {
    const t = new Array<number>(n).fill(0);
    for (let i = 1; i < n; i++) t[i] = r() < 0.8 ? (t[i - 1]! + 1) % 512 : Math.floor(r() * 512);
    return t;
  };
  const train = make(4000), val = make(800);
  writeTokenFile(path.join(folder, 'train.tok'), train, { vocabSize: 512, eotId: 0 });
  writeTokenFile(path.join(folder, 'val.tok'), val, { vocabSize: 512, eotId: 0 });
  writeFileSync(path.join(folder, 'manifest.json'), JSON.stringify({
    format: 'parallm-dataset', version: 1, source: 'synthetic', brownFiles: null, tokenizer: 'gpt2-bpe', vocabSize: 512, eotId: 0, valFraction: 0.1, seed,
    contentHash: `synthetic-512-${seed}`, train: { file: 'train.tok', documents: 1, tokens: train.length }, val: { file: 'val.tok', documents: 1, tokens: val.length },
  }));
}

beforeAll(() => {
  ensureDist();
  dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-launch-pp-'));
  data = path.join(dir, 'data');
  writeDataset(data, 1 + Math.floor(Math.random() * 1e6));
});

type Line = { type: string; step?: number; loss?: number; gradNorm?: number; valLoss?: number; tokens?: number; dir?: string };
const parse = (out: string) => out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);
const curve = (ls: Line[]) => ls.filter((l) => l.type === 'step' || l.type === 'eval').map((l) => [l.type, l.step, l.loss, l.gradNorm, l.valLoss]);
const args = (model: string, extra: string[]) => ['train', '--model', model, '--data', data, '--seq', '8', '--batch', '4', '--eval-batches', '1', '--eval-every', '2', '--json', '--seed', '3', ...extra];

function single(a: string[]): Line[] {
  const r = spawnSync(process.execPath, [cli, ...a, '--devices', 'cpu:0,cpu:1,cpu:2,cpu:3'], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return parse(r.stdout);
}

async function launched(a: string[], nproc = 2, perProc = 2): Promise<Line[][]> {
  const lines: { rank: number; stream: string; line: string }[] = [];
  const r = await launch({ nproc, command: a, devicesPerProc: perProc, script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
  expect(r, lines.map((l) => `[${l.rank}] ${l.line}`).join('\n')).toEqual({ code: 0, failed: null });
  return Array.from({ length: nproc }, (_, p) => parse(lines.filter((l) => l.rank === p && l.stream === 'stdout').map((l) => l.line).join('\n')));
}

describe('parallm launch: pipeline training over processes', () => {
  it('pp over 4 stages on 2 processes x 2 CPU devices: the losses of 1 process x 4, bit for bit; process 0 writes the same checkpoint, which resumes in one process', async () => {
    const a = args('tiny-llama-32', ['--strategy', 'pp', '--steps', '4']);
    const ck1 = path.join(dir, 'ck-one'), ck2 = path.join(dir, 'ck-two');
    const want = single([...a, '--save', ck1]);
    expect(curve(want).map((l) => l[0])).toEqual(['step', 'step', 'eval', 'step', 'step', 'eval']);
    const got = await launched([...a, '--save', ck2]);
    for (const [p, ls] of got.entries()) {
      expect(curve(ls), `process ${p}`).toEqual(curve(want));
      expect(ls.filter((l) => l.type === 'save').map((l) => l.dir), `process ${p}`).toEqual(p === 0 ? [ck2] : []);
    }
    // the stage files (written by each process's ranks) and the shared files (process 0's) are the single run's
    const files = readdirSync(ck1).sort();
    expect(files).toContain('model-00004-of-00004.safetensors');
    expect(readdirSync(ck2).sort()).toEqual(files);
    for (const f of files) expect(readFileSync(path.join(ck2, f)).equals(readFileSync(path.join(ck1, f))), f).toBe(true);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // resumed in one process, it goes on as the single run's checkpoint does
    const resume = (ck: string) => {
      const r = spawnSync(process.execPath, [cli, 'train', '--resume', ck, '--data', data, '--seq', '8', '--batch', '4', '--eval-batches', '1', '--json', '--steps', '6', '--strategy', 'pp', '--devices', 'cpu:0,cpu:1,cpu:2,cpu:3'], { encoding: 'utf8', timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      return curve(parse(r.stdout));
    };
    const cont = resume(ck2);
    expect(cont.filter((l) => l[0] === 'step').map((l) => l[1])).toEqual([5, 6]);
    expect(cont.every((l) => Number.isFinite(l[0] === 'step' ? l[2] : l[4]))).toBe(true);
    expect(cont).toEqual(resume(ck1));
  }, 180_000);

  it('dp 2 x pp 2 on 2 processes x 2 CPU devices: the losses of 1 process x 4, bit for bit (each process one replica)', async () => {
    const a = args('tiny-llama', ['--strategy', 'pp', '--dp', '2', '--steps', '4']);
    const want = single(a);
    expect(want.find((l) => l.type === 'step')!.tokens).toBe(2 * 4 * 8);
    for (const [p, ls] of (await launched(a)).entries()) expect(curve(ls), `process ${p}`).toEqual(curve(want));
  }, 120_000);

  it('pp 2 x tp 2 on 4 processes x 1 CPU device (tp groups across processes): the losses of 1 process x 4, bit for bit', async () => {
    const a = args('tiny-llama', ['--strategy', 'pp', '--tp', '2', '--steps', '2']);
    const want = single(a);
    for (const [p, ls] of (await launched(a, 4, 1)).entries()) expect(curve(ls), `process ${p}`).toEqual(curve(want));
  }, 120_000);

  it('interleaved stages (--chunks 2) over 2 processes x 2 CPU devices: the losses of 1 process x 4, bit for bit', async () => {
    const a = args('tiny-llama-32', ['--strategy', 'pp', '--chunks', '2', '--micro-batches', '4', '--steps', '2']);
    const want = single(a);
    for (const [p, ls] of (await launched(a)).entries()) expect(curve(ls), `process ${p}`).toEqual(curve(want));
  }, 120_000);

  it('--strategy tp on 2 processes x 2 CPU devices (one stage; its tp group over both processes, or with --dp 2 a replica a process): the losses of 1 process x 4, bit for bit', async () => {
    for (const [model, extra] of [['tiny-gpt2', []], ['tiny-llama', ['--dp', '2']]] as const) {
      const a = args(model, ['--strategy', 'tp', '--steps', '2', ...extra]);
      const want = single(a);
      expect(want.filter((l) => l.type === 'step'), model).toHaveLength(2);
      for (const [p, ls] of (await launched(a)).entries()) expect(curve(ls), `${model} process ${p}`).toEqual(curve(want));
    }
  }, 120_000);

  it('generate --strategy pp (and mp) over 3 processes x 1 CPU device prints, on process 0 only, the tokens of one process with 3 devices', async () => {
    const prompts = path.join(dir, 'prompts.txt');
    writeFileSync(prompts, 'the cat sat\na dog ran far\nhello there\none two three four\nfive\n');
    for (const strategy of ['pp', 'mp']) {
      const a = ['generate', '--model', 'tiny-gpt2', '--prompts', prompts, '--json', '--max-tokens', '5', '--temperature', '0.8', '--seed', String(1 + Math.floor(Math.random() * 1e6)), '--strategy', strategy];
      const one = spawnSync(process.execPath, [cli, ...a, '--devices', 'cpu:0,cpu:1,cpu:2'], { encoding: 'utf8', timeout: 120_000 });
      expect(one.status, one.stderr).toBe(0);
      const want = parse(one.stdout);
      expect(want, strategy).toHaveLength(5);
      const got = await launched(a, 3, 1);
      expect(got[0], strategy).toEqual(want);
      expect(got[1]).toEqual([]);
      expect(got[2]).toEqual([]);
    }
  }, 120_000);

  it('a killed process ends the other, which names the process and its global ranks', async () => {
    const port = await freePort('127.0.0.1');
    const base = { ...process.env, WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), PARALLM_SECRET: 'a-secret-for-the-pp-kill-test' };
    const run = (rank: number) => {
      const c = spawn(process.execPath, [cli, ...args('tiny-llama-32', ['--strategy', 'pp', '--steps', '5000', '--devices', 'cpu:0,cpu:1'])], { env: { ...base, RANK: String(rank), LOCAL_RANK: String(rank) }, stdio: ['ignore', 'pipe', 'pipe'] });
      const o = { child: c, out: '', err: '', code: new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code))) };
      c.stdout.on('data', (d) => (o.out += d));
      c.stderr.on('data', (d) => (o.err += d));
      return o;
    };
    const p0 = run(0), p1 = run(1);
    const t0 = Date.now();
    while (!(p0.out.includes('"step":3,') && p1.out.includes('"step":3,'))) {
      if (Date.now() - t0 > 60_000 || p0.child.exitCode !== null || p1.child.exitCode !== null) throw new Error(`no steps: ${p0.err}\n${p1.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const killedAt = Date.now();
    p1.child.kill('SIGKILL');
    expect(await p0.code).toBe(1);
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(p0.err).toMatch(/pipeline training stopped at step \d+ \(rank 0 = cpu:0 \(stage 0\), rank 1 = cpu:1 \(stage 1\): process 0 of 2; ranks 0\.\.1 on process 0, ranks 2\.\.3 on process 1\)/);
    expect(p0.err).toMatch(/process 1 \(global ranks 2\.\.3\) is gone: /);
  }, 120_000);

  it('a rank failing on one process ends the other, which names the failed process, its global ranks and the cause', async () => {
    const port = await freePort('127.0.0.1');
    const base = { ...process.env, WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), PARALLM_SECRET: 'a-secret-for-the-pp-fault-test' };
    const child = path.resolve('test/helpers/pp-dist-child.mjs');
    const run = (rank: number) => {
      // process 1's first local rank (global rank 2, stage 2 of 4) throws at step 3
      const o = { model: 'tiny-llama-32', data, devices: ['cpu:0', 'cpu:1'], batch: 4, seq: 8, steps: 10, seed: 3, ...(rank === 1 ? { fault: { rank: 0, step: 3, kind: 'throw' } } : {}) };
      const c = spawn(process.execPath, [child, JSON.stringify(o)], { env: { ...base, RANK: String(rank), LOCAL_RANK: String(rank) }, stdio: ['ignore', 'pipe', 'pipe'] });
      const r = { out: '', err: '', code: new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code))) };
      c.stdout.on('data', (d) => (r.out += d));
      c.stderr.on('data', (d) => (r.err += d));
      return r;
    };
    const p0 = run(0), p1 = run(1);
    const [c0, c1] = await Promise.all([p0.code, p1.code]);
    expect([c0, c1], `${p0.err}\n${p1.err}`).toEqual([1, 1]);
    // both report the two steps done, with the same losses
    expect(parse(p0.out).map((l) => l.step)).toEqual([1, 2]);
    expect(parse(p0.out)).toEqual(parse(p1.out));
    expect(p1.err).toMatch(/ERROR: pipeline training stopped at step 3 \(rank 2 = cpu:0 \(stage 2\), rank 3 = cpu:1 \(stage 3\): process 1 of 2; [^)]*\): \[cpu:0\] cpu:0: injected fault at step 3/);
    expect(p0.err).toMatch(/ERROR: pipeline training stopped at step 3 \(rank 0 = cpu:0 \(stage 0\), rank 1 = cpu:1 \(stage 1\): process 0 of 2; [^)]*\): .*; process 1 \(global ranks 2\.\.3\) failed: \[cpu:0\] cpu:0: injected fault at step 3/);
  }, 120_000);
});
