// What a model source names: a preset (seeded random weights of a real shape) or a Hugging Face folder.
// The one place a source becomes a config (Model.load, ParallelModel.load, `parallm plan`).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type ModelConfig } from '../io/config.js';
import { gpt2Tokenizer, loadTokenizerSync, type Tokenizer } from '../io/tokenizer.js';
import { presetConfig, PRESETS } from './presets.js';

export type ModelSource = { kind: 'preset'; name: string; config: ModelConfig } | { kind: 'folder'; folder: string; config: ModelConfig };

export function resolveSource(source: string): ModelSource {
  if (typeof source !== 'string' || !source) throw new Error(`a model is a preset name or a folder, got ${JSON.stringify(source)}`);
  const preset = presetConfig(source);
  if (preset) return { kind: 'preset', name: source, config: preset };
  if (!existsSync(source) || !statSync(source).isDirectory())
    throw new Error(`unknown model "${source}": not a folder, nor a preset (${Object.keys(PRESETS).join(', ')})`);
  return { kind: 'folder', folder: source, config: loadConfig(source) };
}

/** The config of a preset or of a model folder (only config.json is read). */
export function modelConfig(source: string): ModelConfig {
  return resolveSource(source).config;
}

/** Whether a source has a tokenizer, without loading it: a folder's tokenizer.json, or GPT-2's BPE. */
export function hasTokenizer(src: ModelSource): boolean {
  if (src.kind === 'folder' && existsSync(path.join(src.folder, 'tokenizer.json'))) return true;
  return src.config.family === 'gpt2' && src.config.vocabSize === 50257;
}

/** The source's tokenizer (see hasTokenizer), or null. */
export function sourceTokenizer(src: ModelSource): Tokenizer | null {
  if (src.kind === 'folder' && existsSync(path.join(src.folder, 'tokenizer.json'))) return loadTokenizerSync(src.folder);
  return hasTokenizer(src) ? gpt2Tokenizer() : null;
}
