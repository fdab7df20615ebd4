// Language-model batches from a token stream.
//
// Windows: window w is tokens [w*seq, w*seq + seq + 1): its first seq tokens are the inputs, its last seq the
// targets (shifted by one). Consecutive windows share one token (the last target of one is the first input of
// the next), so every token but the first is a target exactly once per epoch; a stream of N tokens gives
// floor((N - 1) / seq) windows, and the tail shorter than a window is unused. Windows run across document
// boundaries (the end-of-text token between documents is an ordinary input and target, as in GPT-2's training).
//
// Training (TrainLoader): an epoch visits every window once. Each epoch the windows are shuffled and cut into
// `world` shards by the seed's DataPartitioner (src/parallel/partitioner.ts) with a seed derived from (seed,
// epoch); rank r takes shard r in its shuffled order, `batch` windows at a time. Shards differ in size by at
// most one, so every rank runs floor(floor(windows / world) / batch) batches an epoch (the same count, as
// data-parallel steps need) and drops its leftover windows, a different few each epoch. `batch` is per rank
// (the seed's partition_dataset divides a global batch by world_size; pass that quotient).
//
// Validation (valBatches): every window in order, unshuffled and unsharded (each rank sees the whole set, as
// the seed's val_loader does); the last partial batch is kept (smaller `batch`) unless dropLast.
import { DataPartitioner } from '../parallel/partitioner.js';

export interface Batch {
  /** batch x seq token ids, row-major. */
  readonly inputs: Int32Array;
  /** The same shape: inputs shifted left by one within each window. */
  readonly targets: Int32Array;
  /** Rows (windows) in this batch. */
  readonly batch: number;
  readonly seq: number;
}

/** Where a TrainLoader is: `index` batches of `epoch` have been taken. Plain data, to save with a checkpoint. */
export interface LoaderPosition {
  readonly epoch: number;
  readonly index: number;
}

export type Tokens = ArrayLike<number>;

function positiveInt(op: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${op}: ${what} must be a positive integer, got ${v}`);
}

/** The number of windows of seq + 1 tokens (stride seq) in a stream of `tokens` tokens. */
export function windowCount(tokens: number, seq: number): number {
  return tokens > seq ? Math.floor((tokens - 1) / seq) : 0;
}

/** A batch of `rows` windows: row b is window windowOf(b). */
function fill(tokens: Tokens, seq: number, rows: number, windowOf: (b: number) => number): Batch {
  const inputs = new Int32Array(rows * seq);
  const targets = new Int32Array(rows * seq);
  for (let b = 0; b < rows; b++) {
    const start = windowOf(b) * seq;
    const o = b * seq;
    for (let t = 0; t < seq; t++) {
      inputs[o + t] = tokens[start + t]!;
      targets[o + t] = tokens[start + t + 1]!;
    }
  }
  return { inputs, targets, batch: rows, seq };
}

// A 32-bit seed per (seed, epoch): murmur3's finalizer, so neighbouring epochs get unrelated shuffles.
function epochSeed(seed: number, epoch: number): number {
  let h = (seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export interface TrainLoaderOptions {
  /** Windows per batch, on each rank. */
  batch: number;
  /** Tokens per window's inputs (the model's context length for training). */
  seq: number;
  rank?: number; // default 0
  world?: number; // default 1
  seed?: number; // default 1234
  /** Start here instead of { epoch: 0, index: 0 } (resuming from a checkpoint). */
  position?: LoaderPosition;
}

/** Shuffled, sharded training batches, endless (epoch after epoch); see the top of this file. */
export class TrainLoader {
  readonly batch: number;
  readonly seq: number;
  readonly rank: number;
  readonly world: number;
  readonly seed: number;
  /** Windows in the whole stream (all ranks). */
  readonly windows: number;
  /** Batches each rank takes per epoch. */
  readonly batchesPerEpoch: number;
  private readonly tokens: Tokens;
  private epoch = 0;
  private index = 0;
  private order: { epoch: number; windows: number[] } | null = null;

  constructor(tokens: Tokens, opts: TrainLoaderOptions) {
    const op = 'TrainLoader';
    const { batch, seq, rank = 0, world = 1, seed = 1234 } = opts;
    positiveInt(op, 'batch', batch);
    positiveInt(op, 'seq', seq);
    positiveInt(op, 'world', world);
    if (!Number.isInteger(rank) || rank < 0 || rank >= world) throw new Error(`${op}: rank ${rank} is outside [0, ${world})`);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`${op}: seed must be an integer in [0, 2^32), got ${seed}`);
    this.windows = windowCount(tokens.length, seq);
    const perRank = Math.floor(this.windows / world);
    if (perRank < batch)
      throw new Error(
        `${op}: too little data: ${tokens.length} tokens make ${this.windows} windows of seq ${seq} + 1, ` +
          `${perRank} per rank across ${world} rank${world > 1 ? 's' : ''}, fewer than one batch of ${batch} ` +
          `(batch x seq = ${batch * seq}; one batch on every rank needs at least ${world * batch * seq + 1} tokens)`,
      );
    this.tokens = tokens;
    this.batch = batch;
    this.seq = seq;
    this.rank = rank;
    this.world = world;
    this.seed = seed;
    this.batchesPerEpoch = Math.floor(perRank / batch);
    if (opts.position) this.seek(opts.position);
  }

  /** The position of the next batch; save it, and pass it to seek() or the constructor to resume there. */
  get position(): LoaderPosition {
    return { epoch: this.epoch, index: this.index };
  }

  seek(pos: LoaderPosition): void {
    const { epoch, index } = pos ?? ({} as LoaderPosition);
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`TrainLoader.seek: epoch must be a non-negative integer, got ${epoch}`);
    if (!Number.isInteger(index) || index < 0 || index >= this.batchesPerEpoch)
      throw new Error(`TrainLoader.seek: index ${index} is outside [0, ${this.batchesPerEpoch}) (batches per epoch on each rank)`);
    this.epoch = epoch;
    this.index = index;
  }

  /** This rank's windows (indices into the stream) for an epoch, in the order they are served. */
  epochWindows(epoch: number): readonly number[] {
    if (this.order?.epoch !== epoch)
      this.order = { epoch, windows: new DataPartitioner(this.windows, this.world, epochSeed(this.seed, epoch)).partitions[this.rank]! };
    return this.order.windows;
  }

  /** The batch at the current position; then the position moves on (into the next epoch after the last). */
  next(): Batch {
    const windows = this.epochWindows(this.epoch);
    const from = this.index * this.batch;
    const out = fill(this.tokens, this.seq, this.batch, (b) => windows[from + b]!);
    if (++this.index === this.batchesPerEpoch) (this.epoch++, (this.index = 0));
    return out;
  }
}

export interface ValBatchOptions {
  batch: number;
  seq: number;
  /** Drop the last batch when it has fewer than `batch` windows; default false (every window is evaluated). */
  dropLast?: boolean;
}

/** The number of batches valBatches yields. */
export function valBatchCount(tokens: number, opts: ValBatchOptions): number {
  const w = windowCount(tokens, opts.seq);
  return opts.dropLast ? Math.floor(w / opts.batch) : Math.ceil(w / opts.batch);
}

/** Every window in stream order, `batch` at a time; see the top of this file. Checks its arguments eagerly. */
export function valBatches(tokens: Tokens, opts: ValBatchOptions): IterableIterator<Batch> {
  const op = 'valBatches';
  const { batch, seq, dropLast = false } = opts;
  positiveInt(op, 'batch', batch);
  positiveInt(op, 'seq', seq);
  const windows = windowCount(tokens.length, seq);
  if (windows === 0 || (dropLast && windows < batch))
    throw new Error(
      `${op}: too little data: ${tokens.length} tokens make ${windows} windows of seq ${seq} + 1` +
        (windows === 0 ? ` (at least ${seq + 1} tokens needed)` : `, fewer than one batch of ${batch} (batch x seq = ${batch * seq}) with dropLast`),
    );
  const count = valBatchCount(tokens.length, { batch, seq, dropLast });
  return (function* () {
    for (let from = 0, b = 0; b < count; b++, from += batch)
      yield fill(tokens, seq, Math.min(batch, windows - from), (row) => from + row);
  })();
}
