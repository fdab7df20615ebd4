// What every way of training does before the first step, on each device that trains: check the options,
// resolve the model (or the checkpoint to resume), read the data, make this replica's loader and count the
// run's steps. Trainer (one device), the data-parallel replicas (train/worker.ts) and the pipeline stages
// (train/pipeline-worker.ts) all start here, so they refuse the same inputs with the same messages.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { TrainLoader, windowCount, type Tokens } from '../data/loader.js';
import { prepareDataset, readDataset } from '../data/prepare.js';
import { checkSaveFolder, readCheckpointState, type CheckpointState } from './checkpoint.js';
import { GlobalBatchSlice, type DataShard } from './dp-data.js';
import { resolveModel, type ModelSource } from './init.js';
import { DEFAULT_ADAMW } from './optim.js';
import type { TokenData, TrainOptions } from './trainer.js';

export interface Data {
  train: Tokens;
  val: Tokens;
  id: string;
  vocabSize: number;
}

/** A run ready to start on one replica (its loader already at the checkpoint's position when resuming). */
export interface RunSetup {
  src: ModelSource;
  cfg: ModelConfig;
  /** the checkpoint resumed from, if any */
  ck: CheckpointState | null;
  data: Data;
  loader: TrainLoader;
  totalSteps: number;
  stepsPerEpoch: number;
  batch: number;
  seq: number;
  gradAccum: number;
  dtype: DType;
}

function maxId(t: Tokens): number {
  let m = -1;
  for (let i = 0; i < t.length; i++) if (t[i]! > m) m = t[i]!;
  return m;
}

/** The data as tokens, or a prepared dataset folder (a text source tokenized and cached first): what
 *  several replicas can each read without preparing the same cache at once. */
export async function prepareTrainData(o: Pick<TrainOptions, 'data' | 'dataCache' | 'brownFiles'>): Promise<TokenData | string> {
  const d = o.data;
  if (typeof d !== 'string' || (d !== 'brown' && existsSync(path.join(d, 'manifest.json')))) return d;
  const key = createHash('sha256').update(JSON.stringify([d === 'brown' ? 'brown' : path.resolve(d), o.brownFiles ?? null])).digest('hex').slice(0, 16);
  const folder = o.dataCache ?? path.join(os.tmpdir(), 'parallm-data', key);
  await prepareDataset({ source: d, outDir: folder, brownFiles: o.brownFiles });
  return folder;
}

async function loadData(o: TrainOptions): Promise<Data> {
  const d = await prepareTrainData(o);
  if (typeof d !== 'string') return { train: d.train, val: d.val, id: d.id, vocabSize: d.vocabSize ?? Math.max(maxId(d.train), maxId(d.val)) + 1 };
  const ds = readDataset(d);
  return { train: ds.train.tokens, val: ds.val.tokens, id: ds.manifest.contentHash, vocabSize: ds.manifest.vocabSize };
}

function positiveInt(flag: string, v: number | undefined, min = 1): number {
  if (!Number.isInteger(v) || v! < min) throw new Error(`train: ${flag} must be an integer >= ${min}, got ${v}`);
  return v!;
}

function finite(flag: string, v: number, min = 0): number {
  if (!Number.isFinite(v) || v < min) throw new Error(`train: ${flag} must be a number >= ${min}, got ${v}`);
  return v;
}

/** Settings a resumed run must share with its checkpoint (beyond the model). */
export type RunIdentity = CheckpointState['run'];

/**
 * Checks every option and the data against the model and prepares this replica's run (`shard`: its rank
 * among the data-parallel replicas). `identity` adds what the caller's strategy must match on resume.
 */
export async function prepareRun(o: TrainOptions, shard: DataShard, identity: Partial<RunIdentity> = {}): Promise<RunSetup> {
  if (!o || typeof o !== 'object') throw new Error('train: give options { model, data, batch, seq, steps | epochs }');
  const batch = positiveInt('batch', o.batch);
  const seq = positiveInt('seq', o.seq);
  const accum = positiveInt('gradAccum', o.gradAccum ?? 1);
  if ((o.steps === undefined) === (o.epochs === undefined)) throw new Error('train: give exactly one of steps and epochs');
  if (o.steps !== undefined) positiveInt('steps', o.steps);
  if (o.epochs !== undefined) positiveInt('epochs', o.epochs);
  finite('lr', o.lr ?? 3e-4);
  positiveInt('warmup', o.warmup ?? 0, 0);
  positiveInt('evalEvery', o.evalEvery ?? 0, 0);
  positiveInt('saveEvery', o.saveEvery ?? 0, 0);
  if (o.evalBatches !== undefined) positiveInt('evalBatches', o.evalBatches);
  finite('clip', o.clip ?? DEFAULT_ADAMW.clip);
  if (o.dtype !== undefined && !['f32', 'bf16', 'f16'].includes(o.dtype)) throw new Error(`train: dtype must be f32, bf16 or f16, got ${o.dtype}`);
  let src: ModelSource;
  const ck = o.resume ? readCheckpointState(o.resume) : null;
  if (ck) {
    src = o.model === undefined ? { cfg: ck.config, folder: null, name: o.resume! } : resolveModel(o.model);
    if (JSON.stringify(src.cfg) !== JSON.stringify(ck.config))
      throw new Error(`resume: ${o.resume} holds a different model (${JSON.stringify(ck.config)}) than ${typeof o.model === 'string' ? o.model : 'the given config'} (${JSON.stringify(src.cfg)})`);
  } else {
    if (o.model === undefined) throw new Error('train: give a model (a preset or a folder), or resume from a checkpoint');
    src = resolveModel(o.model);
  }
  const cfg = src.cfg;
  if (seq > cfg.maxPositions) throw new Error(`train: seq ${seq} is longer than the model's context (${cfg.maxPositions} positions)`);
  if (o.save) checkSaveFolder(o.save);
  const data = await loadData(o);
  if (data.vocabSize > cfg.vocabSize)
    throw new Error(`train: the data's token ids go up to ${data.vocabSize - 1} but the model's vocabulary has ${cfg.vocabSize} tokens`);
  const loader = shard.order === 'global'
    ? new GlobalBatchSlice(data.train, { batch, seq, seed: o.dataSeed ?? 1234, rank: shard.rank, world: shard.world })
    : new TrainLoader(data.train, { batch, seq, seed: o.dataSeed ?? 1234, rank: shard.rank, world: shard.world });
  const stepsPerEpoch = Math.floor(loader.batchesPerEpoch / accum);
  if (stepsPerEpoch < 1)
    throw new Error(`train: too little data: ${loader.batchesPerEpoch} batches of ${batch} x ${seq} tokens an epoch, fewer than gradAccum ${accum}`);
  if (windowCount(data.val.length, seq) < 1) throw new Error(`train: the validation data (${data.val.length} tokens) is shorter than one window of seq ${seq} + 1`);
  const totalSteps = o.steps ?? o.epochs! * stepsPerEpoch;
  const dtype = o.dtype ?? 'f32';
  if (ck) {
    const run: Record<string, unknown> = {
      batch, seq, gradAccum: accum, dataHash: data.id, dtype, dataSeed: o.dataSeed ?? 1234, world: shard.world, dataOrder: shard.order ?? 'sharded', ...identity,
    };
    const had: Record<string, unknown> = { world: 1, dataOrder: 'sharded', ...ck.run }; // checkpoints of one device have neither
    for (const k of Object.keys(run))
      if (JSON.stringify(had[k]) !== JSON.stringify(run[k])) throw new Error(`resume: ${o.resume} was run with ${k} ${JSON.stringify(had[k])}, this run has ${JSON.stringify(run[k])}`);
    if (ck.step > totalSteps) throw new Error(`resume: ${o.resume} is at step ${ck.step}, past this run's ${totalSteps} steps`);
    loader.seek(ck.loader);
  }
  return { src, cfg, ck, data, loader, totalSteps, stepsPerEpoch, batch, seq, gradAccum: accum, dtype };
}
