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
import { disposeWeights, loadStageWeights, randomWeights, wholeModel, type ModelWeights, type Stage } from './weights.js';

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
    const device = parseDevice(opts.device ?? defaultDevice());
    const dtype = checkDType(opts.dtype ?? (device.startsWith('cuda') ? 'bf16' : 'f32'));
    if (dtype === 'i32') throw new Error('a model runs in f32, bf16 or f16, not i32');
    const src = resolveSource(source);
    const cfg = src.config;
    if (src.kind === 'preset') {
      const tok = sourceTokenizer(src);
      const out: Model[] = [];
      try {
        for (const st of stages) out.push(new Model(source, cfg, randomWeights(cfg, device, dtype, opts.seed ?? 0, st), device, dtype, tok));
      } catch (e) {
        out.forEach((m) => m.dispose());
        throw e;
      }
      return out;
    }
    const tok = sourceTokenizer(src);
    const name = path.basename(path.resolve(source));
    const gen = loadGenerationConfig(source); // read before the weights: a bad file fails fast
    const weights = loadStageWeights(cfg, source, device, dtype, stages.map((s) => s ?? wholeModel(cfg)));
    return weights.map((w) => new Model(name, cfg, w, device, dtype, tok, gen));
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
    disposeWeights(this.weights);
  }
}
