// Tokenizers: GPT-2's byte-level BPE (vocabulary shipped inside gpt-tokenizer) and Hugging Face tokenizer.json
// files (through @huggingface/tokenizers, pure JS). Both run offline; nothing is fetched.
//
// Conventions, the same for both kinds:
// - encode() adds no BOS/EOS (add_special_tokens=false), so a prompt's ids are exactly its text's; text that
//   spells a special token ("<|endoftext|>", "</s>") becomes that token, as in Hugging Face tokenizers.
// - decode() skips special tokens (the default of Python `tokenizers`) and replaces invalid UTF-8 with U+FFFD.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

export interface Tokenizer {
  readonly kind: 'gpt2-bpe' | 'tokenizer.json';
  /** Size of the id space the tokenizer can emit (largest id + 1, special tokens included). */
  readonly vocabSize: number;
  readonly eosTokenId: number | null;
  readonly bosTokenId: number | null;
  /** Text to ids; no BOS/EOS added. */
  encode(text: string): number[];
  /** Ids to text; special tokens skipped. Throws on an id outside [0, vocabSize). */
  decode(ids: number[]): string;
  /** Incremental decoding for streaming: push() returns the new text for the appended ids, holding back an
   *  incomplete UTF-8 / multi-byte sequence until it completes; flush() returns what is held back. */
  streamDecoder(): { push(ids: number[]): string; flush(): string };
}

function checkIds(ids: number[], vocabSize: number, kind: string): void {
  for (const id of ids)
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw new RangeError(`${kind} tokenizer: token id ${id} is outside [0, ${vocabSize})`);
}

// Streaming by re-decoding a short window and emitting the difference (the method of Hugging Face's
// text-generation-inference): the window starts one emitted chunk back, so decoders that treat a sequence's
// first token specially (SentencePiece's leading space) see the same context as a whole decode. Text ending in
// U+FFFD is an incomplete multi-byte character: the part before it is emitted, the rest waits for more ids.
function makeStreamDecoder(decode: (ids: number[]) => string): { push(ids: number[]): string; flush(): string } {
  let ids: number[] = [];
  let prefixOffset = 0; // window start
  let readOffset = 0; // ids before this are settled
  let prefixLen = 0; // decode(ids[prefixOffset:readOffset]).length
  let extra = 0; // characters emitted beyond prefixLen while the window is unsettled
  return {
    push(more: number[]): string {
      if (more.length === 0) return '';
      ids = ids.concat(more);
      const text = decode(ids.slice(prefixOffset));
      let stable = text.length;
      while (stable > 0 && text.charCodeAt(stable - 1) === 0xfffd) stable--;
      const start = prefixLen + extra;
      const out = stable > start ? text.slice(start, stable) : '';
      if (stable === text.length) {
        // Settled: slide the window so each push decodes only a few tokens. Drop ids before it.
        ids = ids.slice(readOffset);
        prefixOffset = 0;
        readOffset = ids.length;
        prefixLen = decode(ids).length;
        extra = 0;
      } else extra += out.length;
      return out;
    },
    flush(): string {
      const out = decode(ids.slice(prefixOffset)).slice(prefixLen + extra);
      ids = [];
      prefixOffset = readOffset = prefixLen = extra = 0;
      return out;
    },
  };
}

// ---- GPT-2 (r50k_base) ----

type R50k = typeof import('gpt-tokenizer/encoding/r50k_base');
const GPT2_EOS = 50256; // <|endoftext|>, also GPT-2's BOS
const EOT = '<|endoftext|>';
let gpt2: Tokenizer | undefined;

/** GPT-2's BPE (50257 ids; <|endoftext|> = 50256 is both EOS and BOS). */
export function gpt2Tokenizer(): Tokenizer {
  if (gpt2) return gpt2;
  // Loaded on first use (about 90 ms, 50k ranks), not when parallm is imported; require keeps this synchronous.
  const require = createRequire(import.meta.url);
  const enc = require('gpt-tokenizer/encoding/r50k_base') as R50k;
  const ranks = (require('gpt-tokenizer/bpeRanks/r50k_base') as { default: (string | number[])[] }).default;
  // gpt-tokenizer's own decode() keeps a module-wide streaming TextDecoder, so a token cut inside a character
  // leaks its bytes into the next, unrelated decode() call. Decode from the rank table instead: each entry is
  // the token's text, or its raw bytes when those are not valid UTF-8 on their own.
  const utf8 = new TextEncoder();
  const bytes: Uint8Array[] = ranks.map((r) => (typeof r === 'string' ? utf8.encode(r) : Uint8Array.from(r)));
  const vocabSize = enc.vocabularySize; // 50257
  const decode = (ids: number[]): string => {
    checkIds(ids, vocabSize, 'gpt2-bpe');
    const parts = ids.filter((id) => id !== GPT2_EOS).map((id) => bytes[id]);
    const buf = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) buf.set(p, (o += p.length) - p.length);
    return new TextDecoder('utf-8').decode(buf); // fresh decoder, non-streaming: partial bytes become U+FFFD
  };
  gpt2 = {
    kind: 'gpt2-bpe',
    vocabSize,
    eosTokenId: GPT2_EOS,
    bosTokenId: GPT2_EOS,
    // Split on <|endoftext|> here: gpt-tokenizer 4.0.0's allowedSpecial only finds it at the start of the text
    // (a sticky regex), and its default throws on it. Each piece is then ordinary text, as in Hugging Face.
    encode: (text) => text.split(EOT).flatMap((part, i) => (i > 0 ? [GPT2_EOS] : []).concat(enc.encode(part))),
    decode,
    streamDecoder: () => makeStreamDecoder(decode),
  };
  return gpt2;
}

// ---- tokenizer.json ----

function parseJson(text: string, path: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`tokenizer: ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`tokenizer: ${path} is not a JSON object`);
  return v as Record<string, unknown>;
}

type Files = { tokenizer: string; config: string | null; generation: string | null; model: string | null };

// Special-token ids: tokenizer_config.json's bos_token/eos_token (a string or {content}), else the ids in
// generation_config.json, else config.json. A list of EOS ids (Llama 3) gives its first.
function specialId(
  hf: HfTokenizer,
  which: 'bos' | 'eos',
  cfg: Record<string, unknown>,
  others: Record<string, unknown>[],
): number | null {
  const t = cfg[`${which}_token`];
  const content = typeof t === 'string' ? t : typeof t === 'object' && t !== null ? (t as { content?: unknown }).content : undefined;
  if (typeof content === 'string') {
    const id = hf.token_to_id(content);
    if (id !== undefined) return id;
  }
  for (const o of others) {
    const v = o[`${which}_token_id`];
    const id = Array.isArray(v) ? v[0] : v;
    if (typeof id === 'number' && Number.isInteger(id)) return id;
  }
  return null;
}

function build(folder: string, files: Files): Tokenizer {
  const path = join(folder, 'tokenizer.json');
  const json = parseJson(files.tokenizer, path);
  const cfg = files.config === null ? {} : parseJson(files.config, join(folder, 'tokenizer_config.json'));
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, cfg);
  } catch (e) {
    throw new Error(`tokenizer: cannot load ${path}: ${(e as Error).message}`);
  }
  // Extra sources for bos/eos ids; unreadable ones are ignored (they are only a fallback).
  const others = [files.generation, files.model].flatMap((t) => {
    try {
      return t === null ? [] : [parseJson(t, '')];
    } catch {
      return [];
    }
  });
  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const decode = (ids: number[]): string => {
    checkIds(ids, vocabSize, 'tokenizer.json');
    if (ids.length === 0) return ''; // the library throws on an empty list
    // clean_up_tokenization_spaces off: Python `tokenizers` never applies it (transformers does, per model).
    return hf.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  };
  return {
    kind: 'tokenizer.json',
    vocabSize,
    eosTokenId: specialId(hf, 'eos', cfg, others),
    bosTokenId: specialId(hf, 'bos', cfg, others),
    encode: (text) => hf.encode(text, { add_special_tokens: false }).ids,
    decode,
    streamDecoder: () => makeStreamDecoder(decode),
  };
}

function missing(folder: string, e: unknown): Error {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new Error(`tokenizer: no tokenizer.json in ${folder} (looked for ${join(folder, 'tokenizer.json')})`);
  return new Error(`tokenizer: cannot read ${join(folder, 'tokenizer.json')}: ${(e as Error).message}`);
}

const optional = ['tokenizer_config.json', 'generation_config.json', 'config.json'] as const;

/** Loads folder/tokenizer.json (+ tokenizer_config.json, generation_config.json, config.json for bos/eos). */
export async function loadTokenizer(folder: string): Promise<Tokenizer> {
  let tokenizer: string;
  try {
    tokenizer = await readFile(join(folder, 'tokenizer.json'), 'utf8');
  } catch (e) {
    throw missing(folder, e);
  }
  const [config, generation, model] = await Promise.all(
    optional.map((f) => readFile(join(folder, f), 'utf8').catch(() => null)),
  );
  return build(folder, { tokenizer, config, generation, model });
}

/** The same as loadTokenizer, synchronously (the library builds the tokenizer synchronously). */
export function loadTokenizerSync(folder: string): Tokenizer {
  let tokenizer: string;
  try {
    tokenizer = readFileSync(join(folder, 'tokenizer.json'), 'utf8');
  } catch (e) {
    throw missing(folder, e);
  }
  const [config, generation, model] = optional.map((f) => {
    try {
      return readFileSync(join(folder, f), 'utf8');
    } catch {
      return null;
    }
  });
  return build(folder, { tokenizer, config, generation, model });
}
