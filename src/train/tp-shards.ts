// Between a tensor-parallel stage's flat buffers (train/params.ts with Stage.tp: each rank its share of the
// layers) and the whole stage's (the layout one device trains, and checkpoints hold): the blocks of each
// whole tensor a rank holds are models/weights.ts `shareBlocks` (the same ones the weight loaders read),
// laid one after another in the shard. Checkpoints gather the ranks' shards into whole buffers (so a tp
// run saves the normal Hugging Face tensors); a resume cuts each rank's shard from them.
import type { ModelConfig } from '../io/config.js';
import { isSharded, tpLayout, type TpShard } from '../models/tp.js';
import { shareBlocks, type Block, type Stage } from '../models/weights.js';
import { paramLayout, type ParamEntry } from './params.js';

/** The blocks of the whole tensor `key` (as [rows, cols]; a vector as one row) that tp rank `shard` holds; null when it holds it whole. */
function blocksOf(cfg: ModelConfig, key: string, whole: ParamEntry, shard: TpShard): { cols: number; blocks: Block[] } | null {
  if (!whole.key.startsWith('layers.')) return null;
  const b = shareBlocks(cfg, tpLayout(cfg, shard));
  const cols = whole.shape.length === 1 ? whole.shape[0]! : whole.shape[1]!;
  switch (key.slice(key.lastIndexOf('.') + 1)) {
    case 'qkv': return { cols, blocks: b.qkv };
    case 'qkvBias': return { cols, blocks: b.qkvBias };
    case 'out': return { cols, blocks: b.out };
    case 'up': return { cols, blocks: cfg.family === 'gpt2' ? b.fc : b.gateUp };
    case 'upBias': return { cols, blocks: [{ rows: [0, 1], cols: b.fc[0]!.rows }] };
    case 'down': return { cols, blocks: b.down };
    default: return null;
  }
}

/** Copies between a shard's flat entry and the whole one, block by block, row by row. */
function copyBlocks(whole: Float32Array, w: ParamEntry, part: Float32Array, s: ParamEntry, cols: number, blocks: Block[], toWhole: boolean): void {
  let at = s.offset;
  for (const { rows: [r0, r1], cols: [c0, c1] } of blocks)
    for (let r = r0; r < r1; r++) {
      const wAt = w.offset + r * cols + c0, n = c1 - c0;
      if (toWhole) whole.set(part.subarray(at, at + n), wAt);
      else part.set(whole.subarray(wAt, wAt + n), at);
      at += n;
    }
  if (at !== s.offset + s.numel) throw new Error(`tp shards: "${s.key}" holds ${s.numel} elements, its blocks ${at - s.offset}`);
}

/** The stage without its tp shard (the whole layers). */
export const wholeStage = ({ start, end, embed, head }: Stage): Stage => ({ start, end, embed, head });

/**
 * The whole stage's flat buffer from its tp ranks' (`parts[t]`: rank t's, in its layout): the sharded
 * tensors assembled from every rank's blocks, the rest from rank 0's copy (all ranks hold the same).
 */
export function gatherShards(cfg: ModelConfig, stage: Stage, parts: Float32Array[]): Float32Array {
  if (!isSharded(stage.tp)) throw new Error('tp shards: the stage is not tensor parallel');
  const size = stage.tp.size;
  if (parts.length !== size) throw new Error(`tp shards: ${parts.length} parts for tp=${size}`);
  const whole = paramLayout(cfg, wholeStage(stage));
  const last = whole[whole.length - 1]!;
  const out = new Float32Array(last.offset + last.numel);
  const layouts = parts.map((_, rank) => paramLayout(cfg, { ...stage, tp: { rank, size } }));
  for (const [rank, part] of parts.entries()) {
    const n = layouts[rank]!.reduce((t, e) => t + e.numel, 0);
    if (part.length !== n) throw new Error(`tp shards: tp rank ${rank}'s buffer holds ${part.length} elements, its layout ${n}`);
  }
  for (const w of whole)
    for (const [rank, part] of parts.entries()) {
      const s = layouts[rank]!.find((e) => e.key === w.key)!;
      const bl = blocksOf(cfg, w.key, w, { rank, size });
      if (bl) copyBlocks(out, w, part, s, bl.cols, bl.blocks, true);
      else if (rank === 0) out.set(part.subarray(s.offset, s.offset + s.numel), w.offset);
    }
  return out;
}

/** Tp rank stage.tp's flat buffer cut from the whole stage's (a resume from a checkpoint). */
export function cutShard(cfg: ModelConfig, stage: Stage, whole: Float32Array): Float32Array {
  if (!isSharded(stage.tp)) throw new Error('tp shards: the stage is not tensor parallel');
  const wl = paramLayout(cfg, wholeStage(stage));
  const sl = paramLayout(cfg, stage);
  const last = sl[sl.length - 1]!;
  const out = new Float32Array(last.offset + last.numel);
  for (const s of sl) {
    const w = wl.find((e) => e.key === s.key)!;
    const bl = blocksOf(cfg, s.key, w, stage.tp);
    if (bl) copyBlocks(whole, w, out, s, bl.cols, bl.blocks, false);
    else out.set(whole.subarray(w.offset, w.offset + w.numel), s.offset);
  }
  return out;
}
