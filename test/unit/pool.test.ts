// DevicePool on CPU devices: workers, handler modules, errors, crashes, timeouts and shutdown.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DevicePool } from '../../src/parallel/pool.js';
import { ensureDist } from '../helpers/dist.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const handlers = path.join(root, 'test/helpers/pool-handlers.mjs');
const DEVICES = ['cpu:0', 'cpu:1', 'cpu:2'];

beforeAll(() => ensureDist(), 300_000);

describe('DevicePool', () => {
  let pool: DevicePool;
  beforeAll(async () => {
    pool = await DevicePool.start(DEVICES, { cpuDevices: 3, modules: [handlers] });
  });
  afterAll(() => pool?.close());

  it('runs one worker thread per device', async () => {
    expect(pool.devices).toEqual(DEVICES);
    const pings = await pool.all<{ device: string; pid: number; threadId: number }>('ping');
    expect(pings.map((p) => p.device)).toEqual(DEVICES);
    expect(new Set(pings.map((p) => p.threadId)).size).toBe(3);
    expect(pings.every((p) => p.pid === process.pid && p.threadId > 0)).toBe(true);
    const ctx = await pool.all('whoami');
    expect(ctx).toEqual(DEVICES.map((device, rank) => ({ rank, world: 3, device })));
  });

  it('does tensor work on each device, results in rank order', async () => {
    // rank r: [[1, 2], [3, 4]] x (r + 1) * I
    const res = await pool.all<{ device: string; shape: number[]; values: number[] }>('matmul', (r) => ({
      a: [1, 2, 3, 4],
      b: [r + 1, 0, 0, r + 1],
      m: 2,
      k: 2,
      n: 2,
    }));
    res.forEach((x, r) => {
      expect(x.device).toBe(DEVICES[r]);
      expect(x.shape).toEqual([2, 2]);
      expect(x.values).toEqual([1, 2, 3, 4].map((v) => v * (r + 1)));
    });
    const stats = await pool.call<{ allocated: number }>(1, 'memoryStats');
    expect(stats.allocated).toBe(0); // the handler disposed its tensors
  });

  it('keeps per-worker state, takes per-rank argument arrays and transfer lists', async () => {
    await pool.all('remember', [0, 1, 2].map((r) => ({ key: 'k', value: `v${r}` })));
    expect(await pool.all('recall', ['k', 'k', 'k'])).toEqual(['v0', 'v1', 'v2']);
    const data = new Float32Array([1, 2, 3.5]);
    expect(await pool.call(2, 'sum', data.buffer, [data.buffer])).toBe(6.5);
    expect(data.byteLength).toBe(0); // moved, not copied
    await expect(pool.all('recall', ['k'])).rejects.toThrow(/1 argument sets for 3 workers/);
  });

  it('reports handler errors with the device prefix, original message, name and stack', async () => {
    const err = await pool.call(1, 'fail', 'bad input 42').catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe('[cpu:1] bad input 42');
    expect((err as Error).name).toBe('TypeError');
    expect((err as Error).stack).toMatch(/pool-handlers\.mjs/);
    // The worker lives on.
    expect(await pool.call(1, 'whoami')).toMatchObject({ rank: 1 });
  });

  it('rejects unknown methods listing the known ones, bad ranks and unsendable values', async () => {
    await expect(pool.call(0, 'nope')).rejects.toThrow(/\[cpu:0\] unknown method 'nope'; known: .*matmul.*ping/);
    await expect(pool.call(3, 'ping')).rejects.toThrow(/rank 3 out of range/);
    await expect(pool.call(0, 'unsendable')).rejects.toThrow(/unsendable returned a value that cannot be sent/);
    await expect(pool.call(0, 'sum', () => 1)).rejects.toThrow(/cannot send the arguments of 'sum'/);
  });

  it('completes synchronous calls in arrival order', async () => {
    const order: string[] = [];
    await Promise.all([
      pool.call(0, 'spin', 50).then(() => order.push('spin')),
      pool.call(0, 'whoami').then(() => order.push('whoami')),
    ]);
    expect(order).toEqual(['spin', 'whoami']);
  });

  it('forwards each call\'s ctx.progress to that call\'s onProgress, in order, before its result', async () => {
    const heard: { rank: number; i: number; device: string }[] = [];
    const res = await Promise.all(
      [0, 1].map((r) => pool.call<number>(r, 'count', 5 + r, { onProgress: (v: { i: number; device: string }) => heard.push({ rank: r, ...v }) })),
    );
    expect(res).toEqual([5, 6]);
    for (const r of [0, 1]) {
      const mine = heard.filter((h) => h.rank === r);
      expect(mine.map((h) => h.i)).toEqual(Array.from({ length: 5 + r }, (_, k) => k + 1));
      expect(mine.every((h) => h.device === DEVICES[r])).toBe(true);
    }
    // Without a listener the values are dropped; a listener that throws rejects its call only.
    await expect(pool.call(2, 'count', 3)).resolves.toBe(3);
    await expect(
      pool.call(2, 'count', 3, {
        onProgress: () => {
          throw new Error('listener broke');
        },
      }),
    ).rejects.toThrow('listener broke');
    await expect(pool.call(2, 'whoami')).resolves.toMatchObject({ rank: 2 });
  });

  it('forwards ctx.log lines', async () => {
    const lines: string[] = [];
    const p = await DevicePool.start(['cpu:1'], { modules: [handlers], onLog: (d, l, m) => lines.push(`${d} ${l} ${m}`) });
    await p.call(0, 'log', 'hello');
    await p.call(0, 'ping'); // the log message arrives before this result
    expect(lines).toEqual(['cpu:1 warn hello']);
    await p.close();
  });
});

describe('DevicePool failures', () => {
  const start = (devices = DEVICES, timeoutMs = 0) =>
    DevicePool.start(devices, { cpuDevices: 3, modules: [handlers], timeoutMs });

  it('a worker that exits rejects all its pending calls, and later calls at once', async () => {
    const pool = await start();
    // Expectations attach at once: both calls reject together.
    await Promise.all([
      expect(pool.call(1, 'sleep', 10_000)).rejects.toThrow(/worker for cpu:1 exited with code 3 while 'sleep' was pending/),
      expect(pool.call(1, 'exit', 3)).rejects.toThrow(/worker for cpu:1 exited with code 3/),
    ]);
    await expect(pool.call(1, 'ping')).rejects.toThrow(/worker for cpu:1 has exited/);
    expect(await pool.call(2, 'whoami')).toMatchObject({ device: 'cpu:2' }); // the others live on
    await expect(pool.all('ping')).rejects.toThrow(/cpu:1 has exited/);
    await pool.close();
  });

  it('an uncaught asynchronous exception rejects pending calls with the error', async () => {
    const pool = await start();
    await Promise.all([
      expect(pool.call(0, 'throwLater', 'kaboom')).rejects.toThrow(/worker for cpu:0 crashed: Error: kaboom/),
      expect(pool.call(0, 'sleep', 10_000)).rejects.toThrow(/worker for cpu:0 crashed: Error: kaboom while 'sleep' was pending/),
    ]);
    await expect(pool.call(0, 'ping')).rejects.toThrow(/worker for cpu:0 has exited \(it crashed/);
    await pool.close();
  });

  it('a call past timeoutMs rejects and terminates its worker', async () => {
    const pool = await start(['cpu:0', 'cpu:1'], 300);
    expect(await pool.call(0, 'sleep', 10)).toBe(10);
    const t0 = Date.now();
    await Promise.all([
      expect(pool.call(0, 'spin', 60_000)).rejects.toThrow(/\[cpu:0\] 'spin' timed out after 300 ms/),
      expect(pool.call(0, 'ping')).rejects.toThrow(/worker for cpu:0 was terminated: 'spin' timed out/),
    ]);
    expect(Date.now() - t0).toBeLessThan(5_000);
    await expect(pool.call(0, 'ping')).rejects.toThrow(/worker for cpu:0 has exited/);
    expect(await pool.call(1, 'whoami')).toMatchObject({ device: 'cpu:1' });
    await pool.close();
  });

  it('an unknown device rejects start with a clear error', async () => {
    await expect(start(['cpu:0', 'cpu:7'])).rejects.toThrow(/DevicePool.start failed: .*unknown device "cpu:7": there are 3 CPU devices/);
    await expect(start(['tpu:0'])).rejects.toThrow(/unknown device "tpu:0"/);
    await expect(start(['cpu:0', 'cpu'])).rejects.toThrow(/cpu:0 is listed twice/);
    await expect(DevicePool.start([])).rejects.toThrow(/at least one device/);
    await expect(DevicePool.start(['cpu:0'], { modules: ['relative.mjs'] })).rejects.toThrow(/must be absolute/);
    await expect(DevicePool.start(['cpu:0'], { modules: [path.join(root, 'test/helpers/none.mjs')] })).rejects.toThrow(
      /\[cpu:0\] .*none\.mjs/,
    );
  });

  it('close() rejects pending calls, is idempotent, and later calls reject', async () => {
    const pool = await start(['cpu:0', 'cpu:1']);
    const pending = [pool.call(0, 'sleep', 10_000), pool.call(1, 'spin', 60_000)].map((p) =>
      expect(p).rejects.toThrow(/pool closed while cpu:\d '(sleep|spin)' was pending/),
    );
    const c1 = pool.close();
    expect(pool.close()).toBe(c1);
    await c1;
    await Promise.all(pending);
    await expect(pool.call(0, 'ping')).rejects.toThrow(/pool closed/);
    await expect(pool.all('ping')).rejects.toThrow(/pool closed/);
    await pool.close();
  });

  it('loads a handler module given as src/x.ts from its compiled dist/x.js', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'parallm-pool-'));
    try {
      mkdirSync(path.join(dir, 'src'));
      writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
      writeFileSync(path.join(dir, 'src/h.ts'), 'export const handlers = { x: (): number => 1 };\n');
      const ts = path.join(dir, 'src/h.ts');
      await expect(DevicePool.start(['cpu:0'], { modules: [ts] })).rejects.toThrow(/dist\/h\.js does not exist: run 'npm run build:ts'/);
      mkdirSync(path.join(dir, 'dist'));
      writeFileSync(path.join(dir, 'dist/h.js'), 'export const handlers = { x: () => 2 };\n');
      const pool = await DevicePool.start(['cpu:0'], { modules: [ts] });
      expect(await pool.call(0, 'x')).toBe(2);
      await pool.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('DevicePool under node flags', () => {
  it('starts workers when Node runs with --input-type=module (the flag is not passed on)', async () => {
    ensureDist();
    const { execFileSync } = await import('node:child_process');
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
    const code = `import { DevicePool } from ${JSON.stringify(path.join(root, 'dist/parallel/pool.js'))};
const p = await DevicePool.start(['cpu:0']); console.log(JSON.stringify(await p.call(0, 'ping'))); await p.close();`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
    expect(JSON.parse(out.trim()).device).toBe('cpu:0');
    const { workerExecArgv } = await import('../../src/parallel/pool.js');
    expect(workerExecArgv(['--input-type', 'module', '--max-old-space-size=100', '--input-type=commonjs'])).toEqual(['--max-old-space-size=100']);
  });
});
