// Generation meshes with tensor parallelism across processes end to end: `parallm launch` starting real
// processes (the compiled CLI in dist/), the mesh laid out over both processes' CPU devices in global
// rank order (tp groups inside a process for pp=2,tp=2 and dp=2,tp=2; across the two for tp=4 and on 4
// processes of 1 device), every group a 'tcp' communicator, against one process holding all four devices
// ('cpu' communicators). The tcp communicator sums in the in-process one's order (native/comm/tcp.cc), so
// the logits, and so the tokens, agree bit for bit.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { launch } from '../../src/cli/commands/launch.js';
import { ensureDist } from '../helpers/dist.js';

const cli = path.resolve('dist/cli/index.js');
let prompts = '';

beforeAll(() => {
  ensureDist();
  // fresh prompts every run: 5 lines of 1 to 6 words (GPT-2's tokenizer; tiny-gpt2 is a preset)
  const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran', 'far', 'hello', 'there', 'one', 'two', 'blue', 'river'];
  const pick = () => words[Math.floor(Math.random() * words.length)]!;
  prompts = path.join(mkdtempSync(path.join(os.tmpdir(), 'parallm-launch-tp-')), 'prompts.txt');
  writeFileSync(prompts, Array.from({ length: 5 }, () => Array.from({ length: 1 + Math.floor(Math.random() * 6) }, pick).join(' ')).join('\n') + '\n');
});

type Line = { prompt: string | number[]; text?: string; tokens: number[]; finish: string };
const parse = (out: string) => out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

/** One process with 4 CPU devices. */
function single(a: string[]): Line[] {
  const r = spawnSync(process.execPath, [cli, ...a, '--devices', 'cpu:0,cpu:1,cpu:2,cpu:3'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return parse(r.stdout);
}

/** `nproc` launched processes of `perProc` CPU devices each: every process's stdout lines and all stderr. */
async function launched(a: string[], nproc: number, perProc: number): Promise<{ out: Line[][]; err: string; code: number }> {
  const lines: { rank: number; stream: string; line: string }[] = [];
  const r = await launch({ nproc, command: a, devicesPerProc: perProc, script: cli, killTimeoutMs: 2_000, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
  return {
    out: Array.from({ length: nproc }, (_, p) => parse(lines.filter((l) => l.rank === p && l.stream === 'stdout').map((l) => l.line).join('\n'))),
    err: lines.filter((l) => l.stream === 'stderr').map((l) => `[${l.rank}] ${l.line}`).join('\n'),
    code: r.code,
  };
}

const gen = (layout: string[], extra: string[] = []) => ['generate', '--model', 'tiny-gpt2', '--prompts', prompts, '--json', '--max-tokens', '4', ...layout, ...extra];

/** The launched run prints, on process 0 only, the lines of one process with 4 devices. */
async function sameAsOneProcess(a: string[], nproc: number, perProc: number, what = 'ranks'): Promise<void> {
  const want = single(a);
  expect(want).toHaveLength(5);
  expect(want.every((l) => l.tokens.length === 4)).toBe(true);
  const got = await launched(a, nproc, perProc);
  expect(got.code, got.err).toBe(0);
  expect(got.out[0], a.join(' ')).toEqual(want);
  for (const p of got.out.slice(1)) expect(p).toEqual([]);
  expect(got.err).toMatch(new RegExp(`\\[0\\] \\[.* and the other processes' \\(4 ${what} in ${nproc} processes\\)`));
}

describe('parallm launch: generation meshes with tp over processes', () => {
  it('--mesh pp=2,tp=2 on 2 processes x 2 CPU devices (a stage a process): the greedy and sampled tokens of 1 process x 4', async () => {
    await sameAsOneProcess(gen(['--mesh', 'pp=2,tp=2']), 2, 2);
    await sameAsOneProcess(gen(['--mesh', 'pp=2,tp=2'], ['--temperature', '0.8', '--seed', String(1 + Math.floor(Math.random() * 1e6))]), 2, 2);
  }, 60_000);

  it('--mesh dp=2,tp=2 on 2 processes x 2 CPU devices (a replica a process): the greedy and sampled tokens of 1 process x 4', async () => {
    await sameAsOneProcess(gen(['--mesh', 'dp=2,tp=2']), 2, 2);
    await sameAsOneProcess(gen(['--mesh', 'dp=2,tp=2'], ['--temperature', '0.8', '--seed', String(1 + Math.floor(Math.random() * 1e6))]), 2, 2);
    // one prompt: process 1's replica sits the run out, and still gets the tokens
    const one = ['generate', '--model', 'tiny-gpt2', '--prompt-ids', Array.from({ length: 3 }, () => Math.floor(Math.random() * 50257)).join(','), '--json', '--max-tokens', '4', '--mesh', 'dp=2,tp=2'];
    const want = single(one);
    expect(want).toHaveLength(1);
    const got = await launched(one, 2, 2);
    expect(got.code, got.err).toBe(0);
    expect(got.out).toEqual([want, []]);
  }, 60_000);

  it('--mesh dp=4 on 2 processes x 2 CPU devices is strategy dp over all four: the tokens of 1 process x 4', async () => {
    await sameAsOneProcess(gen(['--mesh', 'dp=4']), 2, 2, 'replicas');
  }, 60_000);

  it('--strategy tp over 4 devices on 2 processes x 2 (the tp group spans them): the greedy tokens of 1 process x 4 (GPT-2, and LLaMA with its 2 KV heads replicated)', async () => {
    await sameAsOneProcess(gen(['--strategy', 'tp']), 2, 2);
    const ids = Array.from({ length: 4 }, () => Math.floor(Math.random() * 512)).join(',');
    const llama = ['generate', '--model', 'tiny-llama', '--prompt-ids', ids, '--json', '--max-tokens', '4', '--strategy', 'tp'];
    const want = single(llama);
    expect(want).toHaveLength(1);
    const got = await launched(llama, 2, 2);
    expect(got.code, got.err).toBe(0);
    expect(got.out).toEqual([want, []]);
  }, 60_000);

  it('--mesh pp=2,tp=2 on 4 processes x 1 CPU device (every tp group across processes): the greedy tokens of 1 process x 4', async () => {
    await sameAsOneProcess(gen(['--mesh', 'pp=2,tp=2']), 4, 1);
  }, 60_000);

  it('a mesh that does not fit the processes\' devices, or a tp that does not divide the heads, is an error naming the process and the global ranks', async () => {
    const big = await launched(gen(['--mesh', 'pp=2,tp=4']), 2, 2);
    expect(big.code).toBe(1);
    expect(big.out).toEqual([[], []]);
    expect(big.err).toMatch(/mesh dp=1,pp=2,tp=4 has 8 ranks, but the 2 processes have 4 devices \(process [01] of 2, global ranks (0\.\.1|2\.\.3); ranks 0\.\.1 on process 0, ranks 2\.\.3 on process 1\)/);
    // tiny-gpt2 has 4 heads: tp 3 does not split them
    const odd = await launched(gen(['--strategy', 'tp']), 3, 1);
    expect(odd.code).toBe(1);
    expect(odd.err).toMatch(/\(process [012] of 3, global rank [012]; rank 0 on process 0, rank 1 on process 1, rank 2 on process 2\): tensor parallel: tp=3 does not divide the model's 4 attention heads/);
  }, 60_000);
});
