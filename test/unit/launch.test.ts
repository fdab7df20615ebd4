// Multi-process data-parallel training end to end: `parallm launch` starting real processes (the
// compiled CLI in dist/), which meet in the rendezvous and train over the 'tcp' communicator.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/cluster/rendezvous.js';
import { launch, processDevices } from '../../src/cli/commands/launch.js';

const cli = path.resolve('dist/cli/index.js');
let dir = '';
let trainArgs: string[] = [];

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-launch-'));
  let s = 7;
  const r = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran', 'far', 'away'];
  writeFileSync(path.join(dir, 'text.txt'), Array.from({ length: 3000 }, () => words[Math.floor(r() * words.length)]).join(' '));
  trainArgs = ['train', '--model', 'tiny-gpt2', '--data', path.join(dir, 'text.txt'), '--data-cache', path.join(dir, 'cache'), '--seq', '8', '--batch', '2', '--eval-batches', '1', '--json', '--strategy', 'dp'];
});

type Line = { type: string; step?: number; loss?: number; gradNorm?: number; valLoss?: number; tokens?: number; dir?: string };
const parse = (out: string) => out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

function byRank(lines: { rank: number; stream: string; line: string }[], rank: number): Line[] {
  return parse(lines.filter((l) => l.rank === rank && l.stream === 'stdout').map((l) => l.line).join('\n'));
}

describe('parallm launch: data-parallel training over processes', () => {
  it('two processes of 2 CPU devices give the losses of one process of 4, bit for bit; only process 0 saves', async () => {
    const single = spawnSync(process.execPath, [cli, ...trainArgs, '--devices', 'cpu:0,cpu:1,cpu:2,cpu:3', '--steps', '3'], { encoding: 'utf8', timeout: 120_000 });
    expect(single.status, single.stderr).toBe(0);
    const want = parse(single.stdout).filter((l) => l.type === 'step' || l.type === 'eval');
    expect(want.map((l) => l.type)).toEqual(['step', 'step', 'step', 'eval']);

    const lines: { rank: number; stream: string; line: string }[] = [];
    const r = await launch({ nproc: 2, command: [...trainArgs, '--steps', '3', '--save', path.join(dir, 'ck')], devicesPerProc: 2, script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
    expect(r, lines.map((l) => `[${l.rank}] ${l.line}`).join('\n')).toEqual({ code: 0, failed: null });
    for (const rank of [0, 1]) {
      const got = byRank(lines, rank);
      const steps = got.filter((l) => l.type === 'step' || l.type === 'eval');
      expect(steps.map((l) => [l.type, l.step, l.loss, l.gradNorm, l.valLoss]), `process ${rank}`).toEqual(want.map((l) => [l.type, l.step, l.loss, l.gradNorm, l.valLoss]));
      expect(steps[0]!.tokens).toBe(4 * 2 * 8); // the global batch
      expect(got.filter((l) => l.type === 'save').map((l) => l.dir)).toEqual(rank === 0 ? [path.join(dir, 'ck')] : []);
    }
    expect(existsSync(path.join(dir, 'ck', 'config.json'))).toBe(true);
  }, 180_000);

  it('generate --strategy dp over 3 processes prints, on process 0 only, the tokens of one process with 3 devices', async () => {
    const prompts = path.join(dir, 'prompts.txt');
    writeFileSync(prompts, 'the cat sat\na dog ran far\nhello there\none two three four\nfive\nsix seven\nmat\n');
    const args = ['generate', '--model', 'tiny-gpt2', '--prompts', prompts, '--json', '--max-tokens', '6', '--temperature', '0.8', '--seed', String(1 + Math.floor(Math.random() * 1e6))];
    const single = spawnSync(process.execPath, [cli, ...args, '--devices', 'cpu:0,cpu:1,cpu:2'], { encoding: 'utf8', timeout: 120_000 });
    expect(single.status, single.stderr).toBe(0);
    const want = parse(single.stdout);
    expect(want).toHaveLength(7);
    const lines: { rank: number; stream: string; line: string }[] = [];
    const r = await launch({ nproc: 3, command: args, devicesPerProc: 1, script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
    expect(r, lines.map((l) => `[${l.rank}] ${l.line}`).join('\n')).toEqual({ code: 0, failed: null });
    expect(byRank(lines, 0)).toEqual(want);
    expect(byRank(lines, 1)).toEqual([]);
    expect(byRank(lines, 2)).toEqual([]);
  }, 120_000);

  it('a killed process ends the others; the launcher exits non-zero naming its rank', async () => {
    const port = await freePort('127.0.0.1');
    const child = spawn(process.execPath, [cli, 'launch', '--nproc', '3', '--master-port', String(port), '--kill-timeout', '3000', '--', ...trainArgs, '--devices', 'cpu:0', '--steps', '2000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // wait for training to run on every process, then kill process rank 1 (found by its RANK variable)
    const t0 = Date.now();
    while (!(out.includes('[rank 0] {"type":"step"') && out.includes('[rank 1] {"type":"step"') && out.includes('[rank 2] {"type":"step"'))) {
      if (Date.now() - t0 > 60_000 || child.exitCode !== null) throw new Error(`no steps: ${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const kids = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[1] === String(child.pid);
      } catch {
        return false;
      }
    });
    const victim = kids.find((p) => readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes('RANK=1'));
    expect(victim, `children ${kids.join(',')}`).toBeDefined();
    const killedAt = Date.now();
    process.kill(Number(victim), 'SIGKILL');
    const code = await exited;
    expect(code).toBe(1);
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(err).toMatch(/parallm launch: process rank 1 was killed by SIGKILL; the other processes were stopped/);
    // the launcher waited for them all: none is left
    expect(kids.filter((p) => existsSync(`/proc/${p}`))).toEqual([]);
  }, 120_000);

  it('a process with the wrong secret is refused; process 0 logs it, goes on, and trains with the right one', async () => {
    const port = await freePort('127.0.0.1');
    const base = { ...process.env, WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
    const run = (rank: number, secret: string) => {
      const c = spawn(process.execPath, [cli, ...trainArgs, '--devices', 'cpu:0', '--steps', '2'], { env: { ...base, RANK: String(rank), LOCAL_RANK: String(rank), PARALLM_SECRET: secret }, stdio: ['ignore', 'pipe', 'pipe'] });
      const o = { out: '', err: '', code: new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code))) };
      c.stdout.on('data', (d) => (o.out += d));
      c.stderr.on('data', (d) => (o.err += d));
      return o;
    };
    const p0 = run(0, 'the-right-secret-0123456789');
    const intruder = run(1, 'a-wrong-secret-9876543210');
    expect(await intruder.code).not.toBe(0);
    expect(intruder.err).toMatch(/rendezvous of process rank 1 with process 0 at 127\.0\.0\.1:\d+: refused: process rank 1: wrong secret/);
    const p1 = run(1, 'the-right-secret-0123456789');
    expect(await p1.code, p1.err).toBe(0);
    expect(await p0.code, p0.err).toBe(0);
    expect(p0.err).toMatch(/refused a connection from 127\.0\.0\.1:\d+: process rank 1: wrong secret/);
    expect(parse(p0.out).filter((l) => l.type === 'step').map((l) => l.loss)).toEqual(parse(p1.out).filter((l) => l.type === 'step').map((l) => l.loss));
  }, 120_000);

  it('a launched single-device train is refused, and the launcher names the process that failed first', async () => {
    const lines: { rank: number; stream: string; line: string }[] = [];
    const single = trainArgs.filter((a) => a !== '--strategy' && a !== 'dp');
    const r = await launch({ nproc: 2, command: [...single, '--device', 'cpu:0', '--steps', '2'], script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
    expect(r.code).toBe(1);
    expect(r.failed!.how).toBe('exited with code 1');
    expect(lines.map((l) => l.line).join('\n')).toMatch(/launched as process [01] of 2 \(torchrun's variables\): only --strategy dp, pp, mp or tp train across processes/);
  }, 60_000);

  it('launch checks its options', async () => {
    await expect(launch({ nproc: 0, command: ['train'] })).rejects.toThrow(/--nproc must be an integer 1..1024, got 0/);
    await expect(launch({ nproc: 2, command: [] })).rejects.toThrow(/give the parallm command after --/);
    await expect(launch({ nproc: 2, command: ['train', '--devices', 'cpu:0'], devicesPerProc: 1 })).rejects.toThrow(/leave --devices out of the command/);
    expect(processDevices(1, 2, 'cuda')).toEqual(['cuda:2', 'cuda:3']);
    expect(processDevices(1, 2, 'cpu')).toEqual(['cpu:0', 'cpu:1']);
  });
});
