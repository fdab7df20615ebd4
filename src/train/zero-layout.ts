// ZeRO-1's split of the flat buffers over the ranks, as pure functions of the gradient buckets
// (src/train/grad-buckets.ts) and the world size: what zero.ts and params.ts execute.
//
// Rank r owns slice r of every bucket: a bucket [start, end) of len elements gives each rank
// per = floor(len / world) of them, rank r's at start + r * per, and the last rank also the bucket's
// tail (len mod world, fewer than world elements). So each bucket's gradient is reduce-scattered in
// place as soon as the backward completes it, as the non-sharded run all-reduces it, with half the
// bytes on two ranks; the tail is all-reduced. The rank's optimizer state (m, v and the f32 master of
// 16-bit runs) is the concatenation of its slices in bucket order: `segments` map it to the flat offsets.
// Local order follows flat order, so the decayed elements (a prefix of the flat buffers: params.ts) are
// a prefix of each segment's run too, and a segment's decayed count is nDecay - lo clamped.
//
// With one bucket [0, n) this is the contiguous split: floor(n / world) a rank, the last rank also the
// remainder.

/** A bucket of the flat buffers, [start, end). */
export interface ZeroBucket {
  readonly start: number;
  readonly end: number;
}

/** One run of a rank's optimizer state: flat elements [lo, hi) at `local` in its buffers. */
export interface ZeroSegment {
  readonly lo: number;
  readonly hi: number;
  readonly local: number;
}

/** A bucket's split: `per` elements a rank, the last rank also the `tail` after world x per. */
export function bucketSplit(b: ZeroBucket, world: number): { per: number; tail: number } {
  const len = b.end - b.start;
  const per = Math.floor(len / world);
  return { per, tail: len - per * world };
}

function checkBuckets(buckets: readonly ZeroBucket[], rank: number, world: number): void {
  if (!(Number.isInteger(world) && world >= 1 && Number.isInteger(rank) && rank >= 0 && rank < world))
    throw new Error(`ZeRO-1: rank ${rank} of world ${world} is not a rank (0 <= rank < world)`);
  let at = buckets[0]?.start ?? 0;
  for (const b of buckets) {
    if (!(Number.isInteger(b.start) && Number.isInteger(b.end) && b.start === at && b.end > b.start))
      throw new Error(`ZeRO-1: buckets must be consecutive non-empty ranges, got [${b.start}, ${b.end}) after ${at}`);
    at = b.end;
  }
}

/** Rank `rank`'s segments, in flat order (adjacent runs merged); their lengths sum to its state's size. */
export function zeroSegments(buckets: readonly ZeroBucket[], rank: number, world: number): ZeroSegment[] {
  checkBuckets(buckets, rank, world);
  const out: { lo: number; hi: number; local: number }[] = [];
  let local = 0;
  for (const b of buckets) {
    const { per, tail } = bucketSplit(b, world);
    const lo = b.start + rank * per;
    const hi = lo + per + (rank === world - 1 ? tail : 0);
    if (hi === lo) continue;
    const last = out[out.length - 1];
    if (last && last.hi === lo) last.hi = hi;
    else out.push({ lo, hi, local });
    local += hi - lo;
  }
  return out;
}

/** Elements of a rank's optimizer state: the sum of its segments. */
export function segmentsSize(segments: readonly ZeroSegment[]): number {
  return segments.reduce((s, g) => s + g.hi - g.lo, 0);
}

/**
 * The order in which the ranks all-gather the buckets' updated weights: by the forward step that first
 * reads them (`neededAt` a bucket, e.g. 0 for the embeddings, 1 + i for layer i), ties in bucket order,
 * so the forward can start on the first bucket while the rest are still on their way.
 */
export function gatherOrder(neededAt: readonly number[]): number[] {
  return neededAt.map((n, i) => [n, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);
}
