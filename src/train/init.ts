// The starting weights of a run: a preset's seeded random init (from scratch), a Hugging Face folder
// (fine-tuning), or a config object (tests' small shapes), copied into a stage's flat buffers.
import { parseDevice } from '../device.js';
import type { DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import { resolveSource } from '../models/source.js';
import { disposeWeights, loadWeights, randomWeights, wholeModel, type Stage } from '../models/weights.js';
import { FlatParams } from './params.js';

export interface InitOptions {
  device?: string;
  /** compute dtype; master weights and moments are f32 regardless. Default f32 */
  dtype?: DType;
  /** seed of a preset's (or config's) random init; default 0 */
  seed?: number;
  stage?: Stage;
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
  const device = parseDevice(o.device ?? 'cpu:0');
  const stage = o.stage ?? wholeModel(src.cfg);
  const p = new FlatParams(src.cfg, stage, device, o.dtype ?? 'f32');
  try {
    const w = src.folder ? loadWeights(src.cfg, src.folder, device, 'f32', stage) : randomWeights(src.cfg, device, 'f32', o.seed ?? 0, stage);
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
