// How data-parallel replicas share the training batches (TrainOptions.shard):
//   'sharded' (default) — the seed's partition_dataset: each epoch the windows are shuffled and cut into
//                world shards (TrainLoader with rank/world); rank r takes `batch` windows of its shard a step.
//   'global'  — one shuffled stream of global batches of world x batch windows (the world = 1 order),
//                rank r taking rows [r * batch, (r + 1) * batch) of each: a run on n devices with batch b
//                sees exactly the batches of one device with batch n x b, step for step (reproducing a
//                single-device run, and the tests' equivalence).
import { TrainLoader, type Batch, type Tokens, type TrainLoaderOptions } from '../data/loader.js';

export interface DataShard {
  rank: number;
  world: number;
  order?: 'sharded' | 'global';
}

/** A TrainLoader over global batches of world x batch windows that serves rank's slice of each. */
export class GlobalBatchSlice extends TrainLoader {
  readonly sliceRank: number;
  readonly sliceBatch: number;

  constructor(tokens: Tokens, opts: TrainLoaderOptions) {
    const { rank = 0, world = 1, batch } = opts;
    if (!Number.isInteger(world) || world < 1) throw new Error(`GlobalBatchSlice: world must be a positive integer, got ${world}`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= world) throw new Error(`GlobalBatchSlice: rank ${rank} is outside [0, ${world})`);
    super(tokens, { ...opts, batch: batch * world, rank: 0, world: 1 });
    this.sliceRank = rank;
    this.sliceBatch = batch;
  }

  override next(): Batch {
    const g = super.next();
    const n = this.sliceBatch * g.seq;
    const from = this.sliceRank * n;
    return { inputs: g.inputs.slice(from, from + n), targets: g.targets.slice(from, from + n), batch: this.sliceBatch, seq: g.seq };
  }
}
