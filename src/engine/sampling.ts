// Sampling options: declared once (ops.SamplingOptions), resolved and checked here on the thread that
// takes the call, so a bad value is an error before any worker or kernel starts.
import type { SamplingOptions } from '../ops.js';

export type { SamplingOptions };

/** Sampling options with every default filled in. */
export type Sampling = Required<SamplingOptions>;

export function resolveSampling(o: SamplingOptions = {}, where = 'generate'): Sampling {
  const s: Sampling = { temperature: o.temperature ?? 0, topK: o.topK ?? 0, topP: o.topP ?? 1, seed: o.seed ?? 0 };
  if (typeof s.temperature !== 'number' || !Number.isFinite(s.temperature) || s.temperature < 0)
    throw new Error(`${where}: temperature must be a finite number >= 0 (0: greedy), got ${String(o.temperature)}`);
  if (!Number.isInteger(s.topK) || s.topK < 0) throw new Error(`${where}: topK must be an integer >= 0 (0: no cut), got ${String(o.topK)}`);
  if (typeof s.topP !== 'number' || !(s.topP > 0 && s.topP <= 1)) throw new Error(`${where}: topP must be in (0, 1] (1: no cut), got ${String(o.topP)}`);
  if (!Number.isSafeInteger(s.seed) || s.seed < 0) throw new Error(`${where}: seed must be an integer in [0, 2^53), got ${String(o.seed)}`);
  return s;
}
