// Data-parallel training over processes on GPUs: `parallm launch --nproc 2 --devices-per-proc 1
// --device-kind cuda` (process 0 makes the NCCL id and hands it out in the rendezvous) against one
// process driving cuda:0 and cuda:1. f32: NCCL reduces the same two gradients either way, so the
// losses agree within 1e-5 relative (bit for bit when NCCL picks the same algorithm). Skipped without
// 2 GPUs and NCCL.
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

type Line = { type: string; step?: number; loss?: number; gradNorm?: number };
const parse = (out: string) => out.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line);

describe.skipIf(!enabled)('parallm launch on 2 GPUs (NCCL across processes)', () => {
  it('2 processes x 1 GPU give the losses of 1 process x 2 GPUs', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-launch-gpu-'));
    const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'dog', 'ran'];
    let s = Math.floor(Math.random() * 1e6) + 1;
    const r = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    writeFileSync(path.join(dir, 'text.txt'), Array.from({ length: 4000 }, () => words[Math.floor(r() * words.length)]).join(' '));
    const args = ['train', '--model', 'tiny-gpt2', '--data', path.join(dir, 'text.txt'), '--data-cache', path.join(dir, 'cache'), '--seq', '16', '--batch', '4', '--steps', '5', '--dtype', 'f32', '--eval-batches', '1', '--json', '--strategy', 'dp'];
    const single = spawnSync(process.execPath, [cli, ...args, '--devices', 'cuda:0,cuda:1'], { encoding: 'utf8', timeout: 300_000 });
    expect(single.status, single.stderr).toBe(0);
    const want = parse(single.stdout).filter((l) => l.type === 'step');
    expect(want).toHaveLength(5);
    const lines: { rank: number; stream: string; line: string }[] = [];
    const res = await launch({ nproc: 2, command: args, devicesPerProc: 1, deviceKind: 'cuda', script: cli, onLine: (rank, stream, line) => lines.push({ rank, stream, line }) });
    expect(res, lines.map((l) => `[${l.rank}] ${l.line}`).join('\n')).toEqual({ code: 0, failed: null });
    for (const rank of [0, 1]) {
      const got = parse(lines.filter((l) => l.rank === rank && l.stream === 'stdout').map((l) => l.line).join('\n')).filter((l) => l.type === 'step');
      expect(got.map((l) => l.step)).toEqual([1, 2, 3, 4, 5]);
      got.forEach((l, i) => expect(Math.abs(l.loss! - want[i]!.loss!), `process ${rank} step ${i + 1}`).toBeLessThanOrEqual(1e-5 * Math.abs(want[i]!.loss!)));
    }
  }, 600_000);
});
