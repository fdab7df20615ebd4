// The fallback build: binding.gyp through node-gyp (what node-gyp-build falls back to where no prebuilt
// binary fits and cmake-js is absent) compiles the CPU backend, and the binary runs an op.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-gyp-'));

function nodeGyp(): string | null {
  const npmRoot = execFileSync('npm', ['root', '-g'], { encoding: 'utf8' }).trim();
  const p = path.join(npmRoot, 'npm/node_modules/node-gyp/bin/node-gyp.js');
  return existsSync(p) ? p : null;
}

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('binding.gyp fallback', () => {
  it('builds the CPU backend with node-gyp and runs a matmul', () => {
    const gyp = nodeGyp();
    expect(gyp, 'node-gyp ships with npm').not.toBeNull();
    for (const f of ['binding.gyp', 'package.json', 'native']) cpSync(path.join(root, f), path.join(dir, f), { recursive: true });
    symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
    // Headers come from the local Node install (npm is configured with nodedir here); nothing is downloaded.
    const nodedir = execFileSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' }).trim();
    const args = [gyp!, 'rebuild', '-j', '2', ...(nodedir && nodedir !== 'undefined' ? [`--nodedir=${nodedir}`] : [])];
    execFileSync(process.execPath, args, { cwd: dir, stdio: 'pipe' });
    const b = createRequire(import.meta.url)(path.join(dir, 'build/Release/parallm.node')) as {
      buildInfo(): { cuda: boolean };
      empty(d: string, t: string, s: number[]): { writeHost(a: Float32Array): void; toHost(): ArrayBuffer };
      matmul(...a: unknown[]): void;
    };
    expect(b.buildInfo().cuda).toBe(false);
    const a = b.empty('cpu:0', 'f32', [2, 2]);
    a.writeHost(new Float32Array([1, 2, 3, 4]));
    const c = b.empty('cpu:0', 'f32', [2, 2]);
    b.matmul(c, a, a, null, 2, 2, 2, false, false, 1, 0);
    expect(Array.from(new Float32Array(c.toHost()))).toEqual([7, 10, 15, 22]);
  }, 600_000);
});
