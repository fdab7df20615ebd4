// `parallm bench generate` (src/bench/generate.ts) on a CPU device: a result a batch with every figure
// consistent with the others, the mean-based and median-step decode rates both reported.
import { describe, expect, it } from 'vitest';
import { runGenerateBench, type GenerateBenchResult } from '../../src/bench/generate.js';

describe('bench generate (CPU)', () => {
  it('one result a batch; decode rates by the mean and by the median step, each step counted', async () => {
    const seen: GenerateBenchResult[] = [];
    const rs = await runGenerateBench({ model: 'tiny-gpt2', device: 'cpu:0', batches: [1, 3], promptTokens: 8, newTokens: 6, onResult: (r) => seen.push(r) });
    expect(rs.map((r) => r.batch)).toEqual([1, 3]);
    expect(seen).toEqual(rs);
    for (const r of rs) {
      expect(r).toMatchObject({ model: 'tiny-gpt2', device: 'cpu:0', promptTokens: 8, newTokens: 6 });
      expect(r.ttftMs).toBeGreaterThan(0);
      expect(r.prefillTokensPerS).toBeCloseTo((r.batch * 8) / (r.ttftMs / 1e3), 6);
      // Steps 2 … 5 are timed (step 1, which captures a graph where there is one, is not).
      expect(r.msPerStep).toBeGreaterThan(0);
      expect(r.decodeTokensPerS).toBeCloseTo(r.batch / (r.msPerStep / 1e3), 6);
      expect(r.medianMsPerStep).toBeGreaterThan(0);
      expect(r.medianDecodeTokensPerS).toBeCloseTo(r.batch / (r.medianMsPerStep / 1e3), 6);
      // A step's own time never exceeds the span of all steps it sits in (4 of them).
      expect(r.medianMsPerStep).toBeLessThanOrEqual(r.msPerStep * 4);
      expect(r.weightBytes).toBeGreaterThan(0);
      expect(r.peakBytes).toBeGreaterThan(0);
    }
  }, 120_000);
});
