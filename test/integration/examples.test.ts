// The examples in examples/ run as a user runs them (`node examples/x.mjs`, importing 'parallm' by name)
// and print what they promise.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDist } from '../helpers/dist.js';

const root = path.resolve(__dirname, '../..');
const run = (name: string, args: string[] = []) =>
  JSON.parse(execFileSync(process.execPath, [path.join(root, 'examples', name), ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 }).trim().split('\n').pop()!);

beforeAll(() => ensureDist(), 300_000);

describe('examples', () => {
  it('generate.mjs: a preset on the CPU', () => {
    const r = run('generate.mjs', ['tiny-gpt2', 'cpu:0']);
    expect(r).toMatchObject({ model: 'tiny-gpt2', device: 'cpu:0', tokens: 16, finish: 'length' });
    expect(r.text.length).toBeGreaterThan(0);
  });

  it('parallel.mjs: dp, mp and pp agree', () => {
    const r = run('parallel.mjs');
    expect(r.same).toBe(true);
    expect(r.tokens).toHaveLength(4);
  });

  it('train.mjs: ten steps on Brown files lower the loss, and the checkpoint generates', () => {
    const r = run('train.mjs');
    expect(r.steps).toBe(10);
    expect(r.lastLoss).toBeLessThan(r.firstLoss);
    expect(typeof r.text).toBe('string');
  });
});

describe('API documentation', () => {
  it('TypeDoc builds it from the types with no warning (npm run docs writes docs/api)', () => {
    const out = execFileSync(process.execPath, [path.join(root, 'node_modules/typedoc/bin/typedoc'), '--emit', 'none'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(out).not.toMatch(/error|warning/i);
  });
});
