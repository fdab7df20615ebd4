// Tensor parallelism (Megatron-LM's layout): what rank `rank` of a tp group of `size` holds of each
// layer, and the byte arithmetic of reading that share straight from a row-major tensor.
//
//   q, k, v        column-parallel: heads / size query heads and their KV heads (rows of [out, in])
//   attention out  row-parallel: the same heads' input features (columns of [C, Hq D])
//   MLP up / gate  column-parallel: intermediate / size features
//   MLP down       row-parallel: the same features' columns of [C, F]
//   norms, embeddings, LM head: replicated (every rank holds all of them)
//
// A row-parallel projection gives each rank a partial sum of the output: the transformer all-reduces it
// over the tp group (models/transformer.ts); its bias is held by rank 0 only, so the sum adds it once.
// Grouped-query KV heads split when kvHeads % size == 0; when kvHeads < size and size % kvHeads == 0,
// each rank holds the one KV head its query heads read (replicated on size / kvHeads ranks).
import type { ModelConfig } from '../io/config.js';

/** A rank's place in its tensor-parallel group. */
export interface TpShard {
  rank: number;
  size: number;
}

/** What a tp rank holds of every layer: ranges of heads and features of the whole model's. */
export interface TpLayout {
  shard: TpShard;
  /** query heads [q0, q0 + heads) */
  q0: number;
  heads: number;
  /** KV heads [kv0, kv0 + kvHeads) */
  kv0: number;
  kvHeads: number;
  /** MLP features [f0, f0 + features) */
  f0: number;
  features: number;
}

/** Whether `shard` splits anything (size 1, or none: the whole model). */
export const isSharded = (shard: TpShard | undefined): shard is TpShard => shard !== undefined && shard.size > 1;

/** The rank's heads and MLP features; an error naming the sizes when the model does not split `size` ways. */
export function tpLayout(cfg: ModelConfig, shard: TpShard): TpLayout {
  const { rank, size } = shard;
  if (!Number.isInteger(size) || size < 1) throw new Error(`tensor parallel: tp size must be a positive integer, got ${size}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) throw new Error(`tensor parallel: rank ${rank} is not in [0, ${size})`);
  const { heads, kvHeads, intermediate: F } = cfg;
  if (heads % size) throw new Error(`tensor parallel: tp=${size} does not divide the model's ${heads} attention heads`);
  if (F % size) throw new Error(`tensor parallel: tp=${size} does not divide the model's ${F} MLP features`);
  const hq = heads / size;
  let kv0: number, kvl: number;
  if (kvHeads % size === 0) (kvl = kvHeads / size), (kv0 = rank * kvl);
  else if (size % kvHeads === 0) (kvl = 1), (kv0 = Math.floor((rank * kvHeads) / size));
  else throw new Error(`tensor parallel: tp=${size} neither divides the model's ${kvHeads} KV heads nor is a multiple of them`);
  return { shard, q0: rank * hq, heads: hq, kv0, kvHeads: kvl, f0: (rank * F) / size, features: F / size };
}

/**
 * The config a tp rank's layers run with: its heads, KV heads and MLP features (hidden, vocabulary and
 * the rest are the model's). The whole config without a shard.
 */
export function shardConfig(cfg: ModelConfig, shard: TpShard | undefined): ModelConfig {
  if (!isSharded(shard)) return cfg;
  const l = tpLayout(cfg, shard);
  return { ...cfg, heads: l.heads, kvHeads: l.kvHeads, intermediate: l.features };
}

/** A half-open range [start, end). */
export type Span = [number, number];

/**
 * The byte ranges of the block rows x cols of a row-major [R, C] tensor of `elem`-byte elements, in
 * element order, adjacent ones merged: one range when the block spans whole rows (a column-parallel
 * share of an [out, in] weight), one a row otherwise (a row-parallel share). Offsets are from the
 * tensor's first byte.
 */
export function blockRanges(shape: [number, number], elem: number, rows: Span, cols: Span): Span[] {
  const [R, C] = shape;
  const [r0, r1] = rows, [c0, c1] = cols;
  if (!(0 <= r0 && r0 <= r1 && r1 <= R && 0 <= c0 && c0 <= c1 && c1 <= C))
    throw new Error(`block rows [${r0}, ${r1}) x cols [${c0}, ${c1}) is outside a [${R}, ${C}] tensor`);
  const out: Span[] = [];
  if (r0 === r1 || c0 === c1) return out;
  for (let r = r0; r < r1; r++) {
    const a = (r * C + c0) * elem, b = (r * C + c1) * elem;
    const last = out[out.length - 1];
    if (last && last[1] === a) last[1] = b;
    else out.push([a, b]);
  }
  return out;
}

/** Bytes the ranges cover. */
export const spanBytes = (spans: Span[]): number => spans.reduce((n, [a, b]) => n + b - a, 0);
