// Repeated generation stays flat: every tensor a generation makes is disposed before it returns (none
// is left to a finalizer, which Node runs only on a later turn of the event loop), and a tight loop of
// short generations gives the loop a turn at least every 10 ms, so those finalizers do run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { memoryStats } from '../../src/device.js';

describe('memory of repeated generation', () => {
  let m: Model;
  beforeAll(() => {
    m = Model.load('tiny-llama', { device: 'cpu:0', dtype: 'f32' });
  });
  afterAll(() => m.dispose());

  it.each([true, false])('device memory is back to the weights as each generation returns (graph: %s)', async (graph) => {
    const base = memoryStats('cpu:0').allocated;
    for (let i = 0; i < 20; i++) {
      // Fresh prompts and batch sizes: each run's tables and cache have other sizes.
      const B = 1 + (i % 3);
      const prompts = Array.from({ length: B }, () => Array.from({ length: 1 + Math.floor(Math.random() * 6) }, () => Math.floor(Math.random() * 256)));
      const out = await generate(m, prompts, { maxTokens: 2 + (i % 4), stopTokens: [], graph });
      expect(out.map((g) => g.tokens.length)).toEqual(prompts.map(() => 2 + (i % 4)));
      // Read at once, before any GC or turn of the loop could run a finalizer: a view left undisposed
      // still holds its block here.
      expect(memoryStats('cpu:0').allocated).toBe(base);
    }
  });

  it('a tight loop of short generations lets a 10 ms timer fire', async () => {
    let fired = 0;
    const timer = setInterval(() => fired++, 10);
    const t0 = performance.now();
    let calls = 0;
    try {
      // Each call is far shorter than 10 ms: only the shared yield clock gives the loop its turns.
      while (performance.now() - t0 < 400) {
        await generate(m, [[1, 2, 3]], { maxTokens: 2, stopTokens: [] });
        calls++;
      }
    } finally {
      clearInterval(timer);
    }
    const ms = performance.now() - t0;
    expect(calls).toBeGreaterThan(20);
    // A turn at least every ~10 ms: the timer fires about ms / 10 - 1 times; allow slack for a loaded machine.
    expect(fired).toBeGreaterThanOrEqual(Math.floor(ms / 40));
  });
});
