// Installs like a real package: npm pack (with the prebuilt binary), then install the tarball into an
// empty folder with a PATH that holds node and npm but no compiler, cmake or nvcc, and use it there.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
let work: string;
let env: NodeJS.ProcessEnv;

function which(cmd: string): string {
  return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
}

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'parallm-pack-'));
  // The prebuilt binary (prebuildify driving cmake-js; incremental after npm install built it).
  execFileSync('npm', ['run', 'build:prebuilt'], { cwd: root, stdio: 'inherit' });
  const tgz = execFileSync('npm', ['pack', '--pack-destination', work], { cwd: root, encoding: 'utf8' }).trim().split('\n').pop()!;
  // A PATH with node and npm only (and sh, through which npm runs install scripts).
  const bin = path.join(work, 'bin');
  mkdirSync(bin);
  symlinkSync(process.execPath, path.join(bin, 'node'));
  symlinkSync('/bin/sh', path.join(bin, 'sh'));
  const npmCli = path.join(path.dirname(path.dirname(process.execPath)), 'lib/node_modules/npm/bin');
  const npmDir = existsSync(npmCli) ? npmCli : path.dirname(which('npm'));
  writeFileSync(path.join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${path.join(npmDir, 'npm-cli.js')}" "$@"\n`, { mode: 0o755 });
  writeFileSync(path.join(bin, 'npx'), `#!/bin/sh\nexec "${process.execPath}" "${path.join(npmDir, 'npx-cli.js')}" "$@"\n`, { mode: 0o755 });
  env = { HOME: process.env.HOME, PATH: bin, npm_config_cache: process.env.npm_config_cache ?? path.join(os.homedir(), '.npm') };
  const app = path.join(work, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  execFileSync(path.join(bin, 'npm'), ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(work, tgz)], { cwd: app, env, stdio: 'inherit' });
}, 900_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed package', () => {
  it('ships a prebuilt binary, no build folder', () => {
    const pkgDir = path.join(work, 'app/node_modules/parallm');
    expect(readdirSync(path.join(pkgDir, 'prebuilds'))).toContain(`${process.platform}-${process.arch}`);
    expect(existsSync(path.join(pkgDir, 'build'))).toBe(false);
    for (const tool of ['cc', 'gcc', 'g++', 'make', 'cmake', 'nvcc', 'python3'])
      expect(() => execFileSync(path.join(work, 'bin/sh'), ['-c', `command -v ${tool}`], { env }), tool).toThrow();
  });

  it('npx parallm devices works from the prebuilt binary', () => {
    const out = execFileSync(path.join(work, 'bin/npx'), ['parallm', 'devices'], { cwd: path.join(work, 'app'), env, encoding: 'utf8' });
    expect(out).toMatch(/cpu:0/);
  });

  it('import { ... } from "parallm" runs an op', () => {
    const app = path.join(work, 'app');
    writeFileSync(
      path.join(app, 'use.mjs'),
      `import { Tensor, ops, devices } from 'parallm';
const a = Tensor.from([1, 2, 3, 4], [2, 2], { device: 'cpu:0' });
const b = Tensor.from([5, 6, 7, 8], [2, 2], { device: 'cpu:0' });
console.log(JSON.stringify({ c: Array.from(ops.matmul(a, b).toArray()), n: devices().length }));`,
    );
    const out = JSON.parse(execFileSync(path.join(work, 'bin/node'), ['use.mjs'], { cwd: app, env, encoding: 'utf8' })) as { c: number[]; n: number };
    expect(out.c).toEqual([19, 22, 43, 50]);
    expect(out.n).toBeGreaterThanOrEqual(1);
  });

  it("GPT-2's tokenizer runs from the shipped asset, without gpt-tokenizer (a devDependency) installed", () => {
    const app = path.join(work, 'app');
    writeFileSync(
      path.join(app, 'tok.mjs'),
      `import { gpt2Tokenizer } from 'parallm';
const t = gpt2Tokenizer();
console.log(JSON.stringify({ ids: t.encode('Hello world<|endoftext|>'), text: t.decode(t.encode('héllo 😀')) }));`,
    );
    const out = JSON.parse(execFileSync(path.join(work, 'bin/node'), ['tok.mjs'], { cwd: app, env, encoding: 'utf8' })) as { ids: number[]; text: string };
    expect(out).toEqual({ ids: [15496, 995, 50256], text: 'héllo 😀' }); // GPT-2's published ids for 'Hello world'
    expect(existsSync(path.join(app, 'node_modules/gpt-tokenizer'))).toBe(false);
  });

  it('require("parallm") says the package is an ES module; the bench runners are a subpath; no dangling source maps', () => {
    const app = path.join(work, 'app');
    writeFileSync(path.join(app, 'use.cjs'), `try { require('parallm'); } catch (e) { console.log(e.code + ': ' + e.message); }`);
    expect(execFileSync(path.join(work, 'bin/node'), ['use.cjs'], { cwd: app, env, encoding: 'utf8' })).toMatch(/ERR_REQUIRE_ESM: parallm is an ES module/);
    writeFileSync(path.join(app, 'bench.mjs'), `import { runKernelBench } from 'parallm/bench'; console.log(typeof runKernelBench);`);
    expect(execFileSync(path.join(work, 'bin/node'), ['bench.mjs'], { cwd: app, env, encoding: 'utf8' }).trim()).toBe('function');
    const pkgDir = path.join(app, 'node_modules/parallm');
    expect(existsSync(path.join(pkgDir, 'LICENSE'))).toBe(true);
    expect(readdirSync(path.join(pkgDir, 'dist')).some((f) => f.endsWith('.map'))).toBe(false);
  });
});
