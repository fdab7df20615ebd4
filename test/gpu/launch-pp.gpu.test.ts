// Pipeline training over processes on GPUs: `parallm launch --nproc 2 --devices-per-proc 1 --device-kind
// cuda -- train --strategy pp` (process 0 makes the mesh groups' NCCL ids and hands them out over the
// processes' communicator, cluster/mesh-groups.ts) against one process driving a 2-stage pipeline on
// cuda:0 and cuda:1. f32: the same stages run the same kernels on the same micro-batches, so the losses
// agree within 1e-5 relative. Skipped without 2 GPUs and NCCL.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
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

type Line = { type: string; step?: number; loss?: number; gradNorm?: number; valLoss?: number; dir?: string };
const parse = (out: string) => out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

describe.skipIf(!enabled)('parallm launch: pipeline training on 2 GPUs across processes (NCCL)', () => {
  it('2 processes x 1 GPU run the 2-stage pipeline of 1 process x 2 GPUs: losses within 1e-5; process 0 saves', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-launch-pp-gpu-'));
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran'];
    let s = Math.floor(Math.random() * 1e6) + 1;
    const r = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    writeFileSync(path.join(dir, 'text.txt'), Array.from({ length: 4000 }, () => words[Math.floor(r() * words.length)]).join(' '));
    const args = ['train', '--model', 'tiny-gpt2', '--data', path.join(dir, 'text.txt'), '--data-cache', path.join(dir, 'cache'), '--seq', '16', '--batch', '4', '--steps', '5', '--dtype', 'f32', '--eval-batches', '1', '--json', '--strategy', 'pp'];
    const single = spawnSync(process.execPath, [cli, ...args, '--devices', 'cuda:0,cuda:1'], { encoding: 'utf8', timeout: 300_000 });
    expect(single.status, single.stderr).toBe(0);
    const want = parse(single.stdout).filter((l) => l.type === 'step' || l.type === 'eval');
    expect(want.map((l) => l.type)).toEqual(['step', 'step', 'step', 'step', 'step', 'eval']);
    const lines: { rank: number; stream: string; line: string }[] = [];
    const ck = path.join(dir, 'ck');
    const res = await launch({ nproc: 2, command: [...args, '--save', ck], devicesPerProc: 1, deviceKind: 'cuda', script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
    expect(res, lines.map((l) => `[${l.rank}] ${l.line}`).join('\n')).toEqual({ code: 0, failed: null });
    const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.abs(b);
    for (const rank of [0, 1]) {
      const all = parse(lines.filter((l) => l.rank === rank && l.stream === 'stdout').map((l) => l.line).join('\n'));
      const got = all.filter((l) => l.type === 'step' || l.type === 'eval');
      expect(got.map((l) => [l.type, l.step]), `process ${rank}`).toEqual(want.map((l) => [l.type, l.step]));
      got.forEach((l, i) => {
        const [a, b] = l.type === 'step' ? [l.loss!, want[i]!.loss!] : [l.valLoss!, want[i]!.valLoss!];
        expect(close(a, b), `process ${rank} ${l.type} ${l.step}: ${a} vs ${b}`).toBe(true);
      });
      expect(all.filter((l) => l.type === 'save').map((l) => l.dir)).toEqual(rank === 0 ? [ck] : []);
    }
    expect(existsSync(path.join(ck, 'model.safetensors.index.json'))).toBe(true);
  }, 600_000);
});
