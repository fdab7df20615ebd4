// The rendezvous (src/cluster/rendezvous.ts): real sockets on 127.0.0.1, each "process" an in-process
// client (the protocol is all in JS; the launch test runs real processes).
import net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { configureCpuDevices } from '../../src/device.js';
import type { LaunchEnv } from '../../src/cluster/env.js';
import { freePort, rendezvous, type DistWorld } from '../../src/cluster/rendezvous.js';

const SECRET = 'a-test-secret-of-some-length';
const env = (rank: number, world: number, port: number): LaunchEnv => ({ launcher: 'torchrun', rank, world, localRank: rank, localWorld: world, masterAddr: '127.0.0.1', masterPort: port });

beforeAll(() => configureCpuDevices(6));

describe('rendezvous', () => {
  it('assigns global ranks process-major and gives every process the same world and tcp communicator id', async () => {
    const port = await freePort('127.0.0.1');
    const devs = [['cpu:0', 'cpu:1'], ['cpu:2'], ['cpu:3', 'cpu:4', 'cpu:5']];
    const logs: string[] = [];
    const worlds = await Promise.all(devs.map((devices, p) => rendezvous({ env: env(p, 3, port), secret: SECRET, devices, timeoutMs: 10_000, onLog: (l) => logs.push(l) })));
    expect(worlds.map((w) => [w.process, w.rankOffset, w.world, w.processes])).toEqual([[0, 0, 6, 3], [1, 2, 6, 3], [2, 3, 6, 3]]);
    for (const w of worlds) {
      expect(w.layout.map((l) => [l.process, l.firstRank, l.devices])).toEqual([[0, 0, devs[0]], [1, 2, devs[1]], [2, 3, devs[2]]]);
      expect(w.comm).toEqual(worlds[0]!.comm);
    }
    const id = worlds[0]!.comm!.id as string;
    expect(worlds[0]!.comm!.kind).toBe('tcp');
    const m = /^tcp:([0-9a-f]{32})@(.*)$/.exec(id)!;
    const addrs = m[2]!.split(',');
    expect(addrs).toHaveLength(6);
    for (const a of addrs) expect(a).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(new Set(addrs).size).toBe(6);
    // the processes' own communicator: one address per process
    for (const w of worlds) expect(w.processComm).toBe(worlds[0]!.processComm);
    expect(worlds[0]!.processComm).toMatch(/^tcp:[0-9a-f]{32}@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
    expect(logs).toEqual([]);
  });

  it('a wrong secret is refused and logged on process 0, which goes on and completes', async () => {
    const port = await freePort('127.0.0.1');
    const logs: string[] = [];
    const p0 = rendezvous({ env: env(0, 2, port), secret: SECRET, devices: ['cpu:0'], timeoutMs: 10_000, onLog: (l) => logs.push(l) });
    const bad = rendezvous({ env: env(1, 2, port), secret: 'not-the-secret-at-all', devices: ['cpu:1'], timeoutMs: 10_000 });
    await expect(bad).rejects.toThrow(/rendezvous of process rank 1 with process 0 at 127\.0\.0\.1:\d+: refused: process rank 1: wrong secret/);
    expect(logs.join('\n')).toMatch(/refused a connection from 127\.0\.0\.1:\d+: process rank 1: wrong secret/);
    // a stranger that speaks no protocol is dropped too
    const s = net.connect({ host: '127.0.0.1', port });
    await new Promise((r) => s.once('connect', r));
    s.resume();
    s.write('GET / HTTP/1.0\n\n');
    await new Promise((r) => s.once('close', r));
    const good = await rendezvous({ env: env(1, 2, port), secret: SECRET, devices: ['cpu:1'], timeoutMs: 10_000 });
    const w0 = await p0;
    expect(good.comm).toEqual(w0.comm);
    expect(good.rankOffset).toBe(1);
  });

  it('a client refuses a master that does not know the secret', async () => {
    const port = await freePort('127.0.0.1');
    const p0 = rendezvous({ env: env(0, 2, port), secret: 'another-secret-entirely!', devices: ['cpu:0'], timeoutMs: 3000, onLog: () => {} });
    const p1 = rendezvous({ env: env(1, 2, port), secret: SECRET, devices: ['cpu:1'], timeoutMs: 3000 });
    await expect(p1).rejects.toThrow(/refused: process rank 1: wrong secret/);
    await expect(p0).rejects.toThrow(/timed out after 3000 ms waiting for process rank\(s\) 1/);
  });

  it('a timeout names the missing process ranks, on process 0 and on the processes that came', async () => {
    const port = await freePort('127.0.0.1');
    const t0 = Date.now();
    // Rank 2 starts first and retries every 100 ms until process 0 listens, so it joins at once. Its own timeout
    // is the longer: with equal ones it could give up first, and process 0 then counts a rank that left as missing
    // again (with both at 2.5 s or 5 s it named rank 2 in CI; which side gave up first was the event loop's turn).
    const r2 = rendezvous({ env: env(2, 4, port), secret: SECRET, devices: ['cpu:0'], timeoutMs: 10_000 });
    const r0 = rendezvous({ env: env(0, 4, port), secret: SECRET, devices: ['cpu:0'], timeoutMs: 3000 });
    const res = await Promise.allSettled([r0, r2]);
    expect(Date.now() - t0).toBeLessThan(9000);
    const msgs = res.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'resolved'));
    expect(msgs[0]).toMatch(/rendezvous on 127\.0\.0\.1:\d+: timed out after 3000 ms waiting for process rank\(s\) 1, 3 \(of 4 processes\)/);
    expect(msgs[1]).toMatch(/process 0 failed: .*waiting for process rank\(s\) 1, 3|timed out/);
  });

  it('a client with no master times out naming the address', async () => {
    const port = await freePort('127.0.0.1');
    await expect(rendezvous({ env: env(1, 2, port), secret: SECRET, devices: ['cpu:0'], timeoutMs: 500 })).rejects.toThrow(
      new RegExp(`rendezvous of process rank 1 with process 0 at 127\\.0\\.0\\.1:${port}: timed out after 500 ms connecting \\(last error: .*ECONNREFUSED`),
    );
  });

  it('a duplicate process rank and mixed device kinds are refused', async () => {
    const port = await freePort('127.0.0.1');
    const logs: string[] = [];
    const p0 = rendezvous({ env: env(0, 3, port), secret: SECRET, devices: ['cpu:0'], timeoutMs: 3000, onLog: (l) => logs.push(l) });
    const a = rendezvous({ env: env(1, 3, port), secret: SECRET, devices: ['cpu:1'], timeoutMs: 3000 });
    await new Promise((r) => setTimeout(r, 300));
    const dup = rendezvous({ env: env(1, 3, port), secret: SECRET, devices: ['cpu:1'], timeoutMs: 3000 });
    await expect(dup).rejects.toThrow(/refused: process rank 1 has already joined/);
    const last = await rendezvous({ env: env(2, 3, port), secret: SECRET, devices: ['cpu:2'], timeoutMs: 3000 });
    const all: DistWorld[] = [await p0, await a, last];
    expect(all.map((w) => w.rankOffset)).toEqual([0, 1, 2]);
    expect(logs.join('\n')).toMatch(/process rank 1 has already joined/);
  });

  it('bad options', async () => {
    await expect(rendezvous({ env: env(0, 1, 1), secret: '', devices: ['cpu:0'] })).rejects.toThrow(/secret must be a non-empty string/);
    await expect(rendezvous({ env: env(0, 1, 1), secret: SECRET, devices: [] })).rejects.toThrow(/process 0 has no devices/);
    const port = await freePort('127.0.0.1');
    const one = await rendezvous({ env: env(0, 1, port), secret: SECRET, devices: ['cpu:0'] });
    expect([one.world, one.comm, one.processComm]).toEqual([1, null, null]);
  });
});
