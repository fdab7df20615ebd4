// `parallm train` as a user runs it: JSON lines per step, a checkpoint that `parallm generate` loads and
// `--resume` continues, and bad input refused before any work.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDist } from '../helpers/dist.js';

const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'dist/cli/index.js');
const parallm = (args: string[]) => execFileSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8' });

beforeAll(() => ensureDist());

describe('parallm train', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-train-cli-'));
  const common = ['--model', 'tiny-gpt2', '--data', 'brown', '--brown-files', 'ca01,ca02', '--data-cache', path.join(dir, 'data'),
    '--batch', '2', '--seq', '16', '--eval-batches', '2', '--save', path.join(dir, 'ck'), '--json'];

  it('trains, saves, resumes, and the checkpoint generates', () => {
    const lines = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const a = lines(parallm(['train', ...common, '--steps', '3', '--lr', '1e-3']));
    const steps = a.filter((l) => l.type === 'step');
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3]);
    for (const s of steps) {
      expect(Number.isFinite(s.loss)).toBe(true);
      expect(s.tokensPerSec).toBeGreaterThan(0);
    }
    expect(a.some((l) => l.type === 'eval')).toBe(true);
    expect(a.find((l) => l.type === 'done')!.checkpoint).toBe(path.join(dir, 'ck'));
    const b = lines(parallm(['train', ...common, '--steps', '5', '--lr', '1e-3', '--resume', path.join(dir, 'ck')]));
    expect(b.filter((l) => l.type === 'step').map((s) => s.step)).toEqual([4, 5]);
    const text = execFileSync(process.execPath, [cli, 'generate', '--model', path.join(dir, 'ck'), '--prompt', 'The', '--max-tokens', '3'], { cwd: root, encoding: 'utf8' });
    expect(text.startsWith('The')).toBe(true);
  });

  it('refuses a sequence longer than the context, and data too small for batch x seq, before any work', () => {
    const r = spawnSync(process.execPath, [cli, 'train', ...common, '--steps', '1', '--seq', '300'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/seq 300 is longer than the model's context \(256 positions\)/);
    const s = spawnSync(process.execPath, [cli, 'train', ...common, '--steps', '1', '--batch', '100000'], { cwd: root, encoding: 'utf8' });
    expect(s.status).toBe(1);
    expect(s.stderr).toMatch(/too little data/);
  });
});
