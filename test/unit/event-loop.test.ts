// Generation on one device yields to the event loop while it runs (at least every 10 ms), so timers and
// I/O keep going during a long generation consumed in a tight loop.
import { describe, expect, it } from 'vitest';
import { generate } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';

describe('generation and the event loop', () => {
  it('a 10 ms timer keeps firing during a long generation', async () => {
    const m = Model.load('tiny-llama-32', { device: 'cpu:0', dtype: 'f32' });
    try {
      let fired = 0;
      const timer = setInterval(() => fired++, 10);
      const t0 = performance.now();
      await generate(m, Array.from({ length: 8 }, () => [1, 2, 3]), { maxTokens: 240, stopTokens: [] });
      const ms = performance.now() - t0;
      clearInterval(timer);
      // Every step past 10 ms gives the loop a turn: the timer fires about ms / 10 - 1 times (allow slack
      // for a loaded machine), and never zero.
      expect(ms).toBeGreaterThan(100);
      expect(fired).toBeGreaterThanOrEqual(Math.floor(ms / 40));
    } finally {
      m.dispose();
    }
  });
});
