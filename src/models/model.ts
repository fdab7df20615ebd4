// A causal language model on one device: config, weights, tokenizer. Load from a Hugging Face folder
// (config.json + safetensors [+ tokenizer.json]) or from a preset name (seeded random weights).
import path from 'node:path';
import { checkDType, type DType } from '../dtype.js';
import { defaultDevice, parseDevice } from '../device.js';
import type { ModelConfig } from '../io/config.js';
import { loadGenerationConfig, type GenerationDefaults } from '../io/generation-config.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { resolveSource, sourceTokenizer } from './source.js';
import { Transformer } from './transformer.js';
import { stageWeightBytes } from './sizes.js';
import { runLoadAsync, runLoadSync, type LoadControl, type LoadSteps } from './load-steps.js';
import { checkDeviceMemory } from './memory-check.js';
import {
  disposeWeights, fileWeightSteps, fileWeightTotals, openWeights, randomWeightSteps, randomWeightTotals, wholeModel, type ModelWeights, type Stage,
} from './weights.js';

export interface LoadOptions {
  /** default: cuda:0 when there is a GPU, else cpu:0 */
  device?: string;
  /** compute dtype; default bf16 on a GPU, f32 on the CPU */
  dtype?: DType;
  /** seed of a preset's random weights */
  seed?: number;
  /** load only this pipeline stage's share (layers, embeddings on the first, head on the last) */
  stage?: Stage;
}

/** Model.loadAsync's options: progress after every tensor (and piece of a large one), and an abort. */
export type AsyncLoadOptions = LoadOptions & LoadControl;

export class Model {
  readonly transformer: Transformer;
  private disposed = false;

  private constructor(
    readonly name: string,
    readonly config: ModelConfig,
    readonly weights: ModelWeights,
    readonly device: string,
    readonly dtype: DType,
    readonly tokenizer: Tokenizer | null,
    /** the folder's generation_config.json (stop ids, sampling defaults); null for presets and folders without one */
    readonly generation: GenerationDefaults | null = null,
  ) {
    this.transformer = new Transformer(config, weights);
  }

  /** `source`: a preset name (see PRESETS) or a folder with config.json and safetensors weights. */
  static load(source: string, opts: LoadOptions = {}): Model {
    return Model.loadStages(source, [opts.stage], opts)[0]!;
  }

  /**
   * Several pipeline stages of one model on one device (interleaved stages): the config, the tokenizer
   * and the weights' index and shard headers are read once for all of them. `undefined`: the whole model.
   */
  static loadStages(source: string, stages: (Stage | undefined)[], opts: Omit<LoadOptions, 'stage'> = {}): Model[] {
    const p = Model.prepare(source, stages, opts);
    try {
      return p.finish(runLoadSync(p.steps));
    } finally {
      p.close();
    }
  }

  /**
   * Model.load without blocking the event loop: the weights go on the device a tensor (or a 64 MiB piece)
   * at a time with a turn of the event loop between, `onProgress` hears after each, and an aborted
   * `signal` rejects with an AbortError after freeing everything the load had allocated.
   */
  static async loadAsync(source: string, opts: AsyncLoadOptions = {}): Promise<Model> {
    return (await Model.loadStagesAsync(source, [opts.stage], opts))[0]!;
  }

  /** Model.loadStages as Model.loadAsync loads: one progress for all the stages. */
  static async loadStagesAsync(source: string, stages: (Stage | undefined)[], opts: Omit<AsyncLoadOptions, 'stage'> = {}): Promise<Model[]> {
    const p = Model.prepare(source, stages, opts);
    try {
      return p.finish(await runLoadAsync(p.steps, p.total, opts, `Model.load ${source} on ${p.device}`));
    } finally {
      p.close();
    }
  }

  /**
   * Everything of a load but the weights' steps: options checked, the memory check passed, the config,
   * tokenizer and (for a folder) the open weight files. The caller runs `steps`, then `finish`, and
   * always `close`.
   */
  private static prepare(source: string, stages: (Stage | undefined)[], opts: Omit<LoadOptions, 'stage'>) {
    const device = parseDevice(opts.device ?? defaultDevice());
    const dtype = checkDType(opts.dtype ?? (device.startsWith('cuda') ? 'bf16' : 'f32'));
    if (dtype === 'i32') throw new Error('a model runs in f32, bf16 or f16, not i32');
    const src = resolveSource(source);
    const cfg = src.config;
    const full = stages.map((s) => s ?? wholeModel(cfg));
    checkDeviceMemory([{ device, bytes: full.reduce((n, s) => n + stageWeightBytes(cfg, dtype, s), 0) }], `Model.load ${source}`);
    if (src.kind === 'preset') {
      const tok = sourceTokenizer(src);
      return {
        device,
        steps: randomWeightSteps(cfg, device, dtype, opts.seed ?? 0, full) as LoadSteps<ModelWeights[]>,
        total: randomWeightTotals(cfg, dtype, full),
        finish: (ws: ModelWeights[]) => ws.map((w) => new Model(source, cfg, w, device, dtype, tok)),
        close: () => {},
      };
    }
    const tok = sourceTokenizer(src);
    const name = path.basename(path.resolve(source));
    const gen = loadGenerationConfig(source); // read before the weights: a bad file fails fast
    const store = openWeights(cfg, source);
    try {
      return {
        device,
        steps: fileWeightSteps(cfg, store, device, dtype, full),
        total: fileWeightTotals(cfg, store, full),
        finish: (ws: ModelWeights[]) => ws.map((w) => new Model(name, cfg, w, device, dtype, tok, gen)),
        close: () => store.close(),
      };
    } catch (e) {
      store.close();
      throw e;
    }
  }

  /** Bytes of weights on the device. */
  get weightBytes(): number {
    return stageWeightBytes(this.config, this.dtype, this.weights.stage);
  }

  encode(text: string): number[] {
    if (!this.tokenizer) throw new Error(`${this.name} has no tokenizer: give token ids, or a folder with tokenizer.json`);
    return this.tokenizer.encode(text);
  }

  decode(ids: number[]): string {
    if (!this.tokenizer) throw new Error(`${this.name} has no tokenizer`);
    return this.tokenizer.decode(ids);
  }

  assertAlive(): void {
    if (this.disposed) throw new Error(`model ${this.name} has been disposed`);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.transformer.dispose();
    disposeWeights(this.weights);
  }
}
