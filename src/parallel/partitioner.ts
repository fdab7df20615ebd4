// The seed's DataPartitioner: shuffle the indices with a seeded generator, then cut them into parts of
// the given sizes (fractions of the whole, equal by default). Unlike the seed's int() cut, no item is
// dropped: the remainder goes one each to the first parts. Results are put back in input order by index.
import { rng } from '../random.js';

export class DataPartitioner {
  readonly partitions: number[][];

  constructor(n: number, sizes: number[] | number = 2, seed = 1234) {
    if (!Number.isInteger(n) || n < 0) throw new Error(`DataPartitioner: ${n} items`);
    const fr = typeof sizes === 'number' ? Array.from({ length: sizes }, () => 1 / sizes) : sizes;
    if (!fr.length || fr.some((f) => !(f >= 0))) throw new Error('DataPartitioner: sizes must be non-negative fractions');
    const total = fr.reduce((a, b) => a + b, 0);
    if (Math.abs(total - 1) > 1e-6) throw new Error(`DataPartitioner: sizes sum to ${total}, not 1`);
    // Fisher-Yates with the seeded generator.
    const r = rng(seed);
    const idx = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    const counts = fr.map((f) => Math.floor(f * n));
    for (let k = 0, left = n - counts.reduce((a, b) => a + b, 0); left > 0; k = (k + 1) % counts.length) if (fr[k]! > 0) counts[k]!++, left--;
    let at = 0;
    this.partitions = counts.map((c) => idx.slice(at, (at += c)));
  }

  /** The items of partition `p`. */
  use<T>(data: readonly T[], p: number): T[] {
    const part = this.partitions[p];
    if (!part) throw new Error(`DataPartitioner: no partition ${p} (there are ${this.partitions.length})`);
    return part.map((i) => data[i]!);
  }

  /** Put per-partition results back in the order of the original items. */
  gather<R>(results: R[][]): R[] {
    const out = new Array<R>(this.partitions.reduce((a, p) => a + p.length, 0));
    this.partitions.forEach((part, p) => part.forEach((i, k) => (out[i] = results[p]![k]!)));
    return out;
  }
}
