// The starting weights of a run: a preset's seeded random init (from scratch), a Hugging Face folder
// (fine-tuning), or a config object (tests' small shapes), copied into a stage's flat buffers.
import { parseDevice } from '../device.js';
import type { DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { resolveSource } from '../models/source.js';
import { runLoadAsync, runLoadSync, type LoadControl, type LoadSteps } from '../models/load-steps.js';
import {
  disposeWeights, fileWeightSteps, fileWeightTotals, openWeights, randomWeightSteps, randomWeightTotals, wholeModel, type ModelWeights, type Stage,
} from '../models/weights.js';
import { isSharded } from '../models/tp.js';
import type { WeightStore } from '../io/safetensors.js';
import { Tensor } from '../tensor.js';
import { FlatParams, type ZeroSplit } from './params.js';

export interface InitOptions {
  device?: string;
  /** compute dtype; master weights and moments are f32 regardless. Default f32 */
  dtype?: DType;
  /** seed of a preset's (or config's) random init; default 0 */
  seed?: number;
  stage?: Stage;
  /** ZeRO-1: hold the optimizer state of this rank's segments only (FlatParams) */
  zero?: ZeroSplit;
}

export interface ModelSource {
  cfg: ModelConfig;
  /** the folder of a fine-tuned model (its tokenizer.json is copied into checkpoints), else null */
  folder: string | null;
  name: string;
}

/** What `model` names: a preset, a folder with config.json, or a config object. Reads only the config. */
export function resolveModel(model: string | ModelConfig): ModelSource {
  if (typeof model !== 'string') return { cfg: { ...model }, folder: null, name: `${model.family}-custom` };
  const src = resolveSource(model); // the one place a model source becomes a config (models/source.ts)
  return { cfg: src.config, folder: src.kind === 'folder' ? src.folder : null, name: model };
}

/** Flat parameters holding the source's weights (random for presets and configs). */
export function initParams(src: ModelSource, o: InitOptions = {}): FlatParams {
  const { params, steps, close } = prepareInit(src, o);
  try {
    return fill(params, () => runLoadSync(steps));
  } finally {
    close();
  }
}

/** initParams a tensor (or piece) at a time, with progress and an abort (see Model.loadAsync). */
export async function initParamsAsync(src: ModelSource, o: InitOptions & LoadControl = {}): Promise<FlatParams> {
  const { params, steps, total, close, device } = prepareInit(src, o);
  try {
    return await fillAsync(params, () => runLoadAsync(steps, total, o, `loading ${src.name} on ${device}`));
  } finally {
    close();
  }
}

/** The flat buffers and the steps that load the weights to copy into them (f32, on the device). */
function prepareInit(src: ModelSource, o: InitOptions) {
  const device = parseDevice(o.device ?? 'cpu:0');
  const stage = o.stage ?? wholeModel(src.cfg);
  const store = src.folder ? openWeights(src.cfg, src.folder) : null;
  try {
    const steps: LoadSteps<ModelWeights[]> = store
      ? fileWeightSteps(src.cfg, store, device, 'f32', [stage])
      : randomWeightSteps(src.cfg, device, 'f32', o.seed ?? 0, [stage]);
    const total = store ? fileWeightTotals(src.cfg, store, [stage]) : randomWeightTotals(src.cfg, 'f32', [stage]);
    const params = new FlatParams(src.cfg, stage, device, o.dtype ?? 'f32', o.zero);
    const loaded = (w: ModelWeights) => rowParallelBiases(src.cfg, store, w, device);
    return { params, steps: mapSteps(steps, loaded), total, device, close: () => store?.close() };
  } catch (e) {
    store?.close();
    throw e;
  }
}

/** The steps' result passed through `f` (one more step of work at the end, no progress of its own). */
function* mapSteps(steps: LoadSteps<ModelWeights[]>, f: (w: ModelWeights) => void): LoadSteps<ModelWeights[]> {
  const ws = yield* steps;
  try {
    ws.forEach(f);
  } catch (e) {
    ws.forEach(disposeWeights);
    throw e;
  }
  return ws;
}

/**
 * The weight loaders give a tp rank other than 0 no row-parallel biases (generation adds them once, on
 * rank 0, before the all-reduce); training keeps them whole on every rank (their gradients are then the
 * same everywhere): GPT-2's attention and MLP output biases from the folder, or zero (a random init's).
 */
function rowParallelBiases(cfg: ModelConfig, store: WeightStore | null, w: ModelWeights, device: string): void {
  const tp = w.stage.tp;
  if (!isSharded(tp) || tp.rank === 0 || cfg.family !== 'gpt2') return;
  const pre = store?.names().some((n) => n.startsWith('transformer.')) ? 'transformer.' : '';
  const bias = (name: string) => {
    const values = store ? store.read(name, 'f32') : new Float32Array(cfg.hidden);
    if (values.length !== cfg.hidden) throw new Error(`training: "${name}" has ${values.length} elements, the config implies ${cfg.hidden}`);
    return Tensor.from(values, [cfg.hidden], { dtype: 'f32', device });
  };
  w.layers.forEach((l, j) => {
    const i = w.stage.start + j;
    l.outBias ??= bias(`${pre}h.${i}.attn.c_proj.bias`);
    l.downBias ??= bias(`${pre}h.${i}.mlp.c_proj.bias`);
  });
}

function fill(p: FlatParams, load: () => ModelWeights[]): FlatParams {
  try {
    const w = load()[0]!;
    try {
      p.setFrom(w);
    } finally {
      disposeWeights(w);
    }
  } catch (e) {
    p.dispose();
    throw e;
  }
  return p;
}

async function fillAsync(p: FlatParams, load: () => Promise<ModelWeights[]>): Promise<FlatParams> {
  let ws: ModelWeights[];
  try {
    ws = await load();
  } catch (e) {
    p.dispose();
    throw e;
  }
  return fill(p, () => ws);
}
