// Where a model's layers go. A pipeline stage is a device with a contiguous range of layers; the first
// stage also holds the embeddings, the last the final norm and the head (as the seed's `parallelize`).
// Three ways to place: the seed's even split (`get_device_map`: chunks of ceil(L / devices)), a split
// by free memory, or an explicit map. Memory is estimated before anything loads.
import type { DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { embedBytes, headBytes, layerKvBytes, layerWeightBytes, stageWeightBytes } from '../models/sizes.js';
import { shardConfig, tpLayout } from '../models/tp.js';
import type { Stage } from '../models/weights.js';
import type { Mesh } from './mesh.js';
import { splitSizes } from './schedule.js';

/** A stage (layers, embeddings, head) on a device. */
export type PlacedStage = Stage & { device: string };

/**
 * How the strategies use devices: a replica on each (single, dp), layers split across them (mp, pp), or
 * every layer split across them (tp: each device a tensor-parallel rank, models/tp.ts).
 */
export type Strategy = 'single' | 'dp' | 'mp' | 'pp' | 'tp';
export const STRATEGIES: readonly Strategy[] = ['single', 'dp', 'mp', 'pp', 'tp'];

export interface MemoryNeeds {
  /** run dtype of weights and KV cache */
  dtype: DType;
  /** sequences the KV cache holds */
  batch: number;
  /** tokens per sequence the KV cache holds */
  maxLen: number;
}

export interface StageMemory {
  weights: number;
  kvCache: number;
  total: number;
}

export function stageMemory(cfg: ModelConfig, s: Stage, need: MemoryNeeds): StageMemory {
  const weights = stageWeightBytes(cfg, need.dtype, s);
  // A tp rank caches only its KV heads.
  const kvCache = (s.end - s.start) * layerKvBytes(shardConfig(cfg, s.tp), need.dtype, need.batch, need.maxLen);
  return { weights, kvCache, total: weights + kvCache };
}

function stagesFromCounts(devices: string[], counts: number[]): PlacedStage[] {
  let at = 0;
  return devices.map((device, i) => {
    const s = { device, start: at, end: at + counts[i]!, embed: i === 0, head: i === devices.length - 1 };
    at = s.end;
    return s;
  });
}

function checkDevices(devices: string[], nLayers: number): void {
  if (!devices.length) throw new Error('placement: no devices given');
  const dup = devices.find((d, i) => devices.indexOf(d) !== i);
  if (dup) throw new Error(`placement: device ${dup} is listed twice`);
  if (devices.length > nLayers) throw new Error(`placement: ${devices.length} stages for ${nLayers} layers: more stages than layers`);
}

/** The seed's get_device_map: consecutive chunks of ceil(layers / devices). */
export function getDeviceMap(nLayers: number, devices: string[]): Record<string, number[]> {
  checkDevices(devices, nLayers);
  const per = Math.ceil(nLayers / devices.length);
  const map: Record<string, number[]> = {};
  devices.forEach((d, i) => {
    const layers = Array.from({ length: Math.max(0, Math.min(nLayers, (i + 1) * per) - i * per) }, (_, k) => i * per + k);
    if (!layers.length)
      throw new Error(`placement: ${nLayers} layers in chunks of ${per} leave ${d} without a layer; use ${Math.ceil(nLayers / per)} devices or an explicit map`);
    map[d] = layers;
  });
  return map;
}

export function evenPlacement(cfg: ModelConfig, devices: string[]): PlacedStage[] {
  const map = getDeviceMap(cfg.layers, devices);
  return stagesFromCounts(devices, devices.map((d) => map[d]!.length));
}

/**
 * `chunks` stages per device, interleaved (Megatron-LM's virtual stages): the layers split into
 * chunks x devices stages of sizes differing by at most one (the first stages get the extra layers;
 * get_device_map's ceil-sized chunks would leave the last of many stages empty), and stage i goes to
 * device i mod devices, so device d holds stages d, d + devices, ... With one chunk this is
 * get_device_map's split. The first stage holds the embeddings, the last the head.
 */
export function interleavedPlacement(cfg: ModelConfig, devices: string[], chunks: number): PlacedStage[] {
  if (!Number.isInteger(chunks) || chunks < 1) throw new Error(`placement: chunks (stages per device) must be a positive integer, got ${chunks}`);
  checkDevices(devices, cfg.layers);
  const S = chunks * devices.length;
  if (S > cfg.layers) throw new Error(`placement: ${chunks} stages on each of ${devices.length} devices is ${S} stages for ${cfg.layers} layers: more stages than layers`);
  if (chunks === 1) return evenPlacement(cfg, devices);
  const slots = Array.from({ length: S }, (_, i) => `stage ${i}`);
  return stagesFromCounts(slots, splitSizes(cfg.layers, S)).map((s, i) => ({ ...s, device: devices[i % devices.length]! }));
}

/**
 * Contiguous layers in proportion to each device's free memory: the smallest uniform fill fraction u
 * such that every device's fixed part (embeddings, head) plus its layers fit in u of its free bytes.
 */
export function memoryPlacement(cfg: ModelConfig, devices: string[], freeBytes: number[], need: MemoryNeeds): PlacedStage[] {
  checkDevices(devices, cfg.layers);
  if (freeBytes.length !== devices.length) throw new Error('placement: one free-memory figure per device');
  const per = layerWeightBytes(cfg, need.dtype) + layerKvBytes(cfg, need.dtype, need.batch, need.maxLen);
  const fixed = devices.map((_, i) => (i === 0 ? embedBytes(cfg, need.dtype) : 0) + (i === devices.length - 1 ? headBytes(cfg, need.dtype) : 0));
  const countsAt = (u: number) => devices.map((_, i) => Math.max(1, Math.floor((u * freeBytes[i]! - fixed[i]!) / per)));
  let lo = 0, hi = 1;
  while (countsAt(hi).reduce((a, b) => a + b, 0) < cfg.layers) {
    hi *= 2;
    if (hi > 1 << 20) break;
  }
  for (let it = 0; it < 60; it++) {
    const mid = (lo + hi) / 2;
    if (countsAt(mid).reduce((a, b) => a + b, 0) >= cfg.layers) hi = mid;
    else lo = mid;
  }
  const counts = countsAt(hi);
  // Trim the surplus from the fullest devices (by fill fraction), keeping at least one layer each.
  for (let extra = counts.reduce((a, b) => a + b, 0) - cfg.layers; extra > 0; extra--) {
    let worst = -1;
    counts.forEach((c, i) => {
      if (c > 1 && (worst < 0 || (fixed[i]! + c * per) / freeBytes[i]! > (fixed[worst]! + counts[worst]! * per) / freeBytes[worst]!)) worst = i;
    });
    counts[worst]!--;
  }
  const stages = stagesFromCounts(devices, counts);
  stages.forEach((s, i) => {
    const m = stageMemory(cfg, s, need);
    if (m.total > freeBytes[i]!)
      throw new Error(`placement: ${s.device} would need ${(m.total / 2 ** 30).toFixed(2)} GiB for layers ${s.start}-${s.end - 1} but has ${(freeBytes[i]! / 2 ** 30).toFixed(2)} GiB free: the model does not fit on these devices`);
  });
  return stages;
}

/** An explicit map {device: layers}; every layer placed once, each device's layers one contiguous run, in device order. */
export function explicitPlacement(cfg: ModelConfig, map: Record<string, number[]>, known?: string[]): PlacedStage[] {
  const devices = Object.keys(map);
  checkDevices(devices, cfg.layers);
  if (known) for (const d of devices) if (!known.includes(d)) throw new Error(`placement: the map names ${d}, which is not one of ${known.join(', ')}`);
  const owner = new Array<string | undefined>(cfg.layers);
  for (const d of devices) {
    const layers = map[d]!;
    if (!layers.length) throw new Error(`placement: ${d} has no layers`);
    layers.forEach((l, k) => {
      if (!Number.isInteger(l) || l < 0 || l >= cfg.layers) throw new Error(`placement: ${d} names layer ${l}, outside 0-${cfg.layers - 1}`);
      if (owner[l]) throw new Error(`placement: layer ${l} is placed on both ${owner[l]} and ${d}`);
      if (k && l !== layers[k - 1]! + 1) throw new Error(`placement: ${d}'s layers are not one contiguous run`);
      owner[l] = d;
    });
  }
  const missing = owner.findIndex((o) => !o);
  if (missing >= 0) throw new Error(`placement: layer ${missing} is not placed on any device`);
  const stages = stagesFromCounts(devices, devices.map((d) => map[d]!.length));
  stages.forEach((s) => {
    if (map[s.device]![0] !== s.start) throw new Error('placement: devices must hold consecutive layer runs in map order');
  });
  return stages;
}

export interface PlaceOptions {
  /** mp/pp: how layers are placed (default even) */
  placement?: 'even' | 'memory' | Record<string, number[]>;
  /** mp/pp, even placement: stages per device, interleaved (default 1) */
  chunks?: number;
  /** what the memory split sizes for */
  need: MemoryNeeds;
  /** free bytes per device (memory placement) */
  freeBytes?: (device: string) => number;
}

/**
 * The stages a strategy runs, in stage order: one whole-model replica per device (single, dp), or the
 * layers split across the devices (mp, pp) evenly (interleaved with chunks > 1), by free memory, or by an
 * explicit map. The one place a strategy becomes a placement (ParallelModel.load and `parallm plan`).
 */
export function placeStages(cfg: ModelConfig, strategy: Strategy, devices: string[], o: PlaceOptions): PlacedStage[] {
  if (!STRATEGIES.includes(strategy)) throw new Error(`unknown strategy "${String(strategy)}": expected ${STRATEGIES.join(', ')}`);
  if (!Array.isArray(devices) || !devices.length) throw new Error('placement: give at least one device');
  const chunks = o.chunks ?? 1;
  if (!Number.isInteger(chunks) || chunks < 1) throw new Error(`chunks (stages per device) must be a positive integer, got ${chunks}`);
  if (strategy === 'single' && devices.length !== 1) throw new Error(`strategy single takes one device, got ${devices.length}`);
  if (strategy === 'dp' || strategy === 'single') {
    if (chunks > 1) throw new Error(`chunks applies to mp and pp, not ${strategy}`);
    if (o.placement !== undefined) throw new Error(`placement applies to mp and pp, not ${strategy}: each device holds the whole model`);
    const dup = devices.find((d, i) => devices.indexOf(d) !== i);
    if (dup) throw new Error(`placement: device ${dup} is listed twice`);
    return devices.map((device) => ({ device, start: 0, end: cfg.layers, embed: true, head: true }));
  }
  if (strategy === 'tp') {
    if (chunks > 1) throw new Error('chunks applies to mp and pp, not tp');
    if (o.placement !== undefined) throw new Error('placement applies to mp and pp, not tp: each device holds a share of every layer');
    const dup = devices.find((d, i) => devices.indexOf(d) !== i);
    if (dup) throw new Error(`placement: device ${dup} is listed twice`);
    if (devices.length > 1) tpLayout(cfg, { rank: 0, size: devices.length });
    return devices.map((device, rank) => ({ device, start: 0, end: cfg.layers, embed: true, head: true, tp: { rank, size: devices.length } }));
  }
  if (chunks > 1 && o.placement !== undefined && o.placement !== 'even') throw new Error('chunks > 1 places layers evenly: give no placement (or "even")');
  if (o.placement && typeof o.placement === 'object') {
    const stages = explicitPlacement(cfg, o.placement, devices);
    const left = devices.filter((d) => !stages.some((s) => s.device === d));
    if (left.length) throw new Error(`placement: the map gives no layers to ${left.join(', ')}; list only the devices it uses`);
    return stages;
  }
  if (o.placement === 'memory') {
    if (!o.freeBytes) throw new Error('placement by memory needs the free bytes of each device');
    return memoryPlacement(cfg, devices, devices.map(o.freeBytes), o.need);
  }
  if (o.placement !== undefined && o.placement !== 'even') throw new Error(`placement must be even, memory or a map {device: layers}, got ${JSON.stringify(o.placement)}`);
  return interleavedPlacement(cfg, devices, chunks);
}

/**
 * Every rank of a (dp, pp, tp) mesh, in rank order (parallel/mesh.ts): rank (d, p, t) holds pipeline
 * stage p's layers (split evenly, as get_device_map), as tp rank t of tp; each replica d the same. A
 * pipeline of pp stages needs pp <= layers; tp's divisibility is checked by models/tp.ts `tpLayout`.
 */
export function placeMesh(cfg: ModelConfig, mesh: Mesh, devices: string[]): PlacedStage[] {
  if (!Array.isArray(devices) || devices.length !== mesh.size)
    throw new Error(`placement: mesh ${mesh} has ${mesh.size} ranks, but ${Array.isArray(devices) ? devices.length : 0} devices are given`);
  const dup = devices.find((d, i) => devices.indexOf(d) !== i);
  if (dup) throw new Error(`placement: device ${dup} is listed twice`);
  const { pp, tp } = mesh.shape;
  if (tp > 1) tpLayout(cfg, { rank: 0, size: tp }); // the model splits tp ways, or a clear error now
  const stages = evenPlacement(cfg, Array.from({ length: pp }, (_, p) => `stage ${p}`));
  return devices.map((device, r) => {
    const c = mesh.coords(r);
    const s = stages[c.pp]!;
    return { device, start: s.start, end: s.end, embed: s.embed, head: s.head, ...(tp > 1 ? { tp: { rank: c.tp, size: tp } } : {}) };
  });
}
