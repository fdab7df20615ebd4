// Tensor-parallel generation over processes on GPUs: `parallm launch --nproc 2 --devices-per-proc 1
// --device-kind cuda -- generate --strategy tp` (the tp group's NCCL id made by process 0 and handed out
// over the processes' communicator, cluster/mesh-groups.ts) against one process driving tp over cuda:0
// and cuda:1. f32: each rank runs the same kernels on the same shard, and a sum of two partial sums is the
// same in either order, so the greedy tokens are equal. Skipped without 2 GPUs and NCCL.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { launch } from '../../src/cli/commands/launch.js';
import { cudaDeviceCount } from '../../src/device.js';
import { ncclStatus } from '../../src/parallel/comm.js';
import { ensureDist } from '../helpers/dist.js';

beforeAll(() => ensureDist());

const enabled = cudaDeviceCount() >= 2 && ncclStatus().ok;
const cli = path.resolve('dist/cli/index.js');

type Line = { prompt: string; tokens: number[]; finish: string };
const parse = (out: string) => out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

describe.skipIf(!enabled)('parallm launch: tensor-parallel generation on 2 GPUs across processes (NCCL)', () => {
  it('2 processes x 1 GPU with --strategy tp print, on process 0 only, the greedy tokens of 1 process x 2 GPUs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-launch-tp-gpu-'));
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran', 'far', 'river'];
    const pick = () => words[Math.floor(Math.random() * words.length)]!;
    const prompts = path.join(dir, 'prompts.txt');
    writeFileSync(prompts, Array.from({ length: 4 }, () => Array.from({ length: 1 + Math.floor(Math.random() * 6) }, pick).join(' ')).join('\n') + '\n');
    const args = ['generate', '--model', 'tiny-gpt2', '--prompts', prompts, '--json', '--max-tokens', '8', '--dtype', 'f32', '--strategy', 'tp'];
    const single = spawnSync(process.execPath, [cli, ...args, '--devices', 'cuda:0,cuda:1'], { encoding: 'utf8', timeout: 300_000 });
    expect(single.status, single.stderr).toBe(0);
    const want = parse(single.stdout);
    expect(want).toHaveLength(4);
    expect(want.every((l) => l.tokens.length === 8)).toBe(true);
    const lines: { rank: number; stream: string; line: string }[] = [];
    const res = await launch({ nproc: 2, command: args, devicesPerProc: 1, deviceKind: 'cuda', script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
    expect(res, lines.map((l) => `[${l.rank}] ${l.line}`).join('\n')).toEqual({ code: 0, failed: null });
    const out = (rank: number) => parse(lines.filter((l) => l.rank === rank && l.stream === 'stdout').map((l) => l.line).join('\n'));
    expect(out(0)).toEqual(want);
    expect(out(1)).toEqual([]);
  }, 600_000);
});
