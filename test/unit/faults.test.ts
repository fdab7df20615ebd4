// Faults on CPU devices: a stage that throws mid-run, a worker killed mid-run, close() during a run, and
// terminate() of a worker blocked in a communicator wait. Each ends in an error naming what happened,
// within a bounded time (not the communicator timeout), and a model that survives works again.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ParallelModel, type ParallelGenerateOptions } from '../../src/engine/parallel-model.js';
import { newCommId } from '../../src/parallel/comm.js';
import { DevicePool } from '../../src/parallel/pool.js';
import { ensureDist } from '../helpers/dist.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
beforeAll(() => ensureDist(), 300_000);

const prompts = Array.from({ length: 6 }, (_, b) => [1 + b, 2, 3, 4].slice(0, 1 + (b % 4)));
const timed = async <T>(p: Promise<T>): Promise<{ ms: number; error?: Error; value?: T }> => {
  const t0 = performance.now();
  try {
    return { ms: performance.now() - t0, value: await p };
  } catch (e) {
    return { ms: performance.now() - t0, error: e as Error };
  }
};

describe('pipeline faults', () => {
  let pp: ParallelModel;
  let reference: number[][];
  beforeAll(async () => {
    // A long communicator timeout: every fault below must end far sooner than it.
    pp = await ParallelModel.load('tiny-llama', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32', commTimeoutMs: 60_000 });
    reference = (await pp.generate(prompts, { maxTokens: 8, microBatches: 3 })).tokens;
  }, 120_000);
  afterAll(async () => {
    await pp?.close();
  });

  it('a stage that throws mid-run fails the call at once, and the next call works', async () => {
    for (const fault of [{ rank: 1, tick: 4 }, { rank: 0, tick: 2 }, { rank: 1, tick: 0 }]) {
      const r = await timed(pp.generate(prompts, { maxTokens: 8, microBatches: 3, fault } as ParallelGenerateOptions));
      expect(r.error?.message).toMatch(new RegExp(`fault injected at tick ${fault.tick}`));
      expect(r.ms).toBeLessThan(5_000);
      expect((await pp.generate(prompts, { maxTokens: 8, microBatches: 3 })).tokens).toEqual(reference);
    }
  });

  it('close() during a run stops it: the call rejects and close resolves within a bound', async () => {
    const long = await ParallelModel.load('tiny-llama-32', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32', commTimeoutMs: 0 });
    const run = timed(long.generate(Array.from({ length: 64 }, () => [1, 2, 3]), { maxTokens: 240 }));
    await new Promise((r) => setTimeout(r, 150));
    const closing = timed(long.close());
    const [r, c] = await Promise.all([run, closing]);
    expect(r.error?.message).toMatch(/stopped|closed/);
    expect(c.error).toBeUndefined();
    expect(c.ms).toBeLessThan(3_000);
    await expect(long.generate([[1]], { maxTokens: 1 })).rejects.toThrow(/closed/);
  });

  it('a worker killed mid-run fails the call naming its device; the others stop within the bound', async () => {
    const m = await ParallelModel.load('tiny-llama-32', { strategy: 'pp', devices: ['cpu:0', 'cpu:1'], dtype: 'f32', commTimeoutMs: 0 });
    try {
      const run = timed(m.generate(Array.from({ length: 64 }, () => [1, 2, 3]), { maxTokens: 240 }));
      await new Promise((r) => setTimeout(r, 150));
      // Ended from outside, as a crash would end it: its stop flag is not set, so it leaves its peer
      // waiting on a communicator with no timeout.
      await (m.pool as unknown as { slots: { worker: { terminate(): Promise<number> } }[] }).slots[1]!.worker.terminate();
      const r = await run;
      expect(r.error?.message).toMatch(/cpu:1/);
      expect(r.ms).toBeLessThan(5_000);
    } finally {
      const c = await timed(m.close());
      expect(c.ms).toBeLessThan(3_000);
    }
  });
});

describe('DevicePool.terminate of a worker blocked in a communicator wait', () => {
  it('resolves within the stop bound, not never', async () => {
    const pool = await DevicePool.start(['cpu:0', 'cpu:1'], { modules: [path.join(root, 'test/helpers/pool-handlers.mjs')] });
    try {
      const id = newCommId('cpu');
      // Both ranks wait for a message the other never sends, with no timeout.
      const waits = [0, 1].map((rank) => timed(pool.call(rank, 'waitForever', { id, rank, world: 2 })));
      await new Promise((r) => setTimeout(r, 200));
      const t = await timed(pool.terminate(0));
      expect(t.ms).toBeLessThan(2_000);
      const [w0, w1] = await Promise.all(waits);
      expect(w0.error?.message).toMatch(/terminated/);
      // Rank 1 was woken by rank 0's stop (its group broke), not by a timeout.
      expect(w1.error?.message).toMatch(/stopped|aborted/);
    } finally {
      await pool.close();
    }
  });
});
