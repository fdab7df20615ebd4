// A model folder's generation_config.json: the stop ids and sampling defaults its authors chose, which
// `generate` / `streamText` / the CLI apply when the caller gives none (as transformers' generate does).
// Values that would not sample as transformers does are errors naming the field, never ignored.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseJsonText, readTextInFolder, showValue } from './folder.js';

export interface GenerationDefaults {
  /** eos_token_id (one or a list): every id ends a sequence; absent when the file does not say */
  eosTokenIds?: number[];
  /** from do_sample / temperature / top_k / top_p: do_sample false (transformers' default) is greedy */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** max_new_tokens */
  maxTokens?: number;
}

const MAX_GENERATION_CONFIG_BYTES = 1024 * 1024;

/** Normalizes a parsed generation_config.json; `source` names it in errors. */
export function parseGenerationConfig(json: unknown, source = 'generation_config.json'): GenerationDefaults {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${source}: not a JSON object`);
  const o = json as Record<string, unknown>;
  const fail = (key: string, want: string): never => {
    throw new Error(`${source}: "${key}" is ${showValue(o[key])}, expected ${want}`);
  };
  const get = (key: string): unknown => (o[key] === null ? undefined : o[key]);
  const out: GenerationDefaults = {};
  const eos = get('eos_token_id');
  if (eos !== undefined) {
    const ids = Array.isArray(eos) ? eos : [eos];
    if (!ids.every((t) => Number.isSafeInteger(t) && t >= 0)) fail('eos_token_id', 'a token id or a list of them');
    out.eosTokenIds = ids as number[];
  }
  const doSample = get('do_sample') ?? false;
  if (typeof doSample !== 'boolean') fail('do_sample', 'true or false');
  // transformers' GenerationConfig defaults: temperature 1, top_k 50, top_p 1 (used only when sampling).
  const num = (key: string, absent: number, ok: (v: number) => boolean, want: string): number => {
    const v = get(key) ?? absent;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(key, want);
    return v as number;
  };
  const temperature = num('temperature', 1, (v) => v >= 0, 'a number >= 0');
  const topK = num('top_k', 50, (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
  const topP = num('top_p', 1, (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  if (doSample && temperature > 0) Object.assign(out, { temperature, topK, topP });
  else out.temperature = 0; // greedy: do_sample false (temperature 0 with do_sample is greedy as well)
  const maxNew = get('max_new_tokens');
  if (maxNew !== undefined) {
    if (!Number.isSafeInteger(maxNew) || (maxNew as number) < 1) fail('max_new_tokens', 'an integer >= 1');
    out.maxTokens = maxNew as number;
  }
  return out;
}

/** folder/generation_config.json normalized, or null when the folder has none. */
export function loadGenerationConfig(folder: string): GenerationDefaults | null {
  const file = path.join(folder, 'generation_config.json');
  if (!fs.existsSync(file)) return null;
  const text = readTextInFolder(folder, file, 'generation config', MAX_GENERATION_CONFIG_BYTES);
  return parseGenerationConfig(parseJsonText(text, `${file}: `), file);
}
