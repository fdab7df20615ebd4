// Tokenizers, all through @huggingface/tokenizers (pure JS): GPT-2's byte-level BPE (its tokenizer.json shipped
// in assets/) and the tokenizer.json files of model folders. Both run offline; nothing is fetched.
//
// Conventions, the same for both kinds:
// - encode() adds no BOS/EOS (add_special_tokens=false), so a prompt's ids are exactly its text's; text that
//   spells a special token ("<|endoftext|>", "</s>") becomes that token, as in Hugging Face tokenizers.
// - decode() skips special tokens (the default of Python `tokenizers`) and replaces invalid UTF-8 with U+FFFD.
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { parseJsonText, readTextInFolder, scanJsonKeys, showName, showValue } from './folder.js';
import { unsafeRegex } from './regex-check.js';

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

const GPT2_EOS = 50256; // <|endoftext|>, also GPT-2's BOS
/** GPT-2's tokenizer.json, made from r50k_base by scripts/gpt2-tokenizer.mjs; ../../assets from src/io and dist/io. */
const GPT2_ASSET = fileURLToPath(new URL('../../assets/gpt2-tokenizer.json.gz', import.meta.url));
let gpt2: Tokenizer | undefined;

/** GPT-2's BPE (50257 ids; <|endoftext|> = 50256 is both EOS and BOS). */
export function gpt2Tokenizer(): Tokenizer {
  if (gpt2) return gpt2;
  // Loaded on first use, not when parallm is imported. The asset is shipped with the package and trusted:
  // none of checkTokenizerJson's limits for user files are needed.
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(gunzipSync(readFileSync(GPT2_ASSET)).toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`tokenizer: cannot read GPT-2's tokenizer ${GPT2_ASSET}: ${(e as Error).message}`);
  }
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, {});
  } catch (e) {
    throw new Error(`tokenizer: cannot load GPT-2's tokenizer ${GPT2_ASSET}: ${libraryMessage(e)}`);
  }
  const vocabSize = idSpace(hf); // 50257
  const coding = hfCoding(hf, vocabSize, 'gpt2-bpe', GPT2_ASSET);
  const encode = memoEncode(coding.encode);
  gpt2 = { kind: 'gpt2-bpe', vocabSize, eosTokenId: GPT2_EOS, bosTokenId: GPT2_EOS, ...coding, encode };
  return gpt2;
}

// GPT-2's pre-tokenizer split: the pattern of the tokenizer.json's ByteLevel pre-tokenizer (use_regex), which
// @huggingface/tokenizers also hard-codes. The library UTF-8-encodes every piece on every call and keeps only
// 10k pieces in an LRU: the Brown corpus encodes at 1.3 MB/s. A piece's ids never depend on its neighbours,
// so they are kept here per piece and the library encodes each distinct piece once: 5 MB/s the first time
// (Brown has 55k distinct pieces), 40 MB/s after. tokenizer-gpt2.test.ts checks this against the library.
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const EOT = '<|endoftext|>';
const MEMO_PIECES = 1 << 16; // then the memo starts afresh: some 12 MB at most, on any corpus
const MEMO_PIECE_CHARS = 256; // longer pieces (rare) are not kept

function memoEncode(encode: (text: string) => number[]): (text: string) => number[] {
  const memo = new Map<string, number[]>();
  return (text) => {
    const out: number[] = [];
    // <|endoftext|> is an added token, found anywhere (as the library does); the pieces are plain text.
    text.split(EOT).forEach((part, i) => {
      if (i > 0) out.push(GPT2_EOS);
      for (const piece of part.match(GPT2_SPLIT) ?? []) {
        let ids = memo.get(piece);
        if (!ids) {
          ids = encode(piece);
          if (piece.length <= MEMO_PIECE_CHARS) {
            if (memo.size >= MEMO_PIECES) memo.clear();
            memo.set(piece, ids);
          }
        }
        for (const id of ids) out.push(id);
      }
    });
    return out;
  };
}

// ---- tokenizer.json ----

function parseJson(text: string, path: string): Record<string, unknown> {
  const v = parseJsonText(text, `tokenizer: ${path} is `);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`tokenizer: ${path} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Added-token and vocabulary ids may run this far past the number of tokens (ids are dense in real files). */
const ID_SLACK = 65536;

/**
 * Checks what @huggingface/tokenizers would trust: token ids (it allocates and walks an array up to the
 * largest, so an id of 2^31 stalls loading) and user regexes (see regex-check.ts). Messages name the
 * part of the file, never its text.
 */
function checkTokenizerJson(json: Record<string, unknown>, path: string): void {
  const fail = (why: string): never => {
    throw new Error(`tokenizer: ${path}: ${why}`);
  };
  const model = json.model;
  if (typeof model !== 'object' || model === null || Array.isArray(model)) fail('"model" is not an object');
  const vocab = (model as Record<string, unknown>).vocab;
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) fail(`"added_tokens" is ${showValue(added)}, not a list`);
  const addedList = added as unknown[];
  const vocabIds = Array.isArray(vocab) ? null : typeof vocab === 'object' && vocab !== null ? Object.values(vocab) : fail('"model.vocab" is missing');
  const vocabCount = Array.isArray(vocab) ? vocab.length : vocabIds!.length;
  const maxId = vocabCount + addedList.length + ID_SLACK;
  const range = `outside [0, ${maxId}) (${vocabCount} vocabulary entries, ${addedList.length} added tokens)`;
  for (const id of vocabIds ?? [])
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= maxId)
      fail(`"model.vocab" has id ${showValue(id)}, ${range}`);
  for (const [i, t] of addedList.entries()) {
    if (typeof t !== 'object' || t === null) fail(`"added_tokens"[${i}] is not an object`);
    const { id, content } = t as Record<string, unknown>;
    if (typeof content !== 'string') fail(`"added_tokens"[${i}].content is ${showValue(content)}, not a string`);
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) >= maxId)
      fail(`"added_tokens"[${i}].id is ${showValue(id)}, ${range}`);
  }
  // Every pattern outside the model (normalizers, pre-tokenizers, decoders, at any depth in a Sequence).
  const walk = (v: unknown, where: string, depth: number): void => {
    if (depth > 32) fail(`${where} is nested too deeply`);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${where}[${i}]`, depth + 1));
    else if (typeof v === 'object' && v !== null)
      for (const [k, x] of Object.entries(v)) {
        if (k === 'pattern' && typeof x === 'object' && x !== null) {
          const p = x as Record<string, unknown>;
          if (typeof p.Regex === 'string') {
            const why = unsafeRegex(p.Regex);
            if (why) fail(`the regex of ${where}.pattern is refused: ${why}`);
          } else if (typeof p.String !== 'string') fail(`${where}.pattern is neither {"Regex": text} nor {"String": text}`);
        } else walk(x, `${where}.${PLAIN_KEY.test(k) ? k : '?'}`, depth + 1);
      }
  };
  for (const part of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder']) walk(json[part], part, 0);
}
const PLAIN_KEY = /^[A-Za-z0-9_]{1,64}$/;

/** A library error's message when it is plain text (no quoted file content), else only its kind. */
function libraryMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  const unknown = /^Unknown (\w+) type: (.*)$/s.exec(m); // the library's message for an unsupported component
  if (unknown) return `unsupported ${unknown[1]} type ${showValue(unknown[2])}`;
  return /^[\w .,'()\-]{1,200}$/.test(m) ? m : `${e instanceof Error ? e.name : 'error'} in the tokenizer library`;
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

/** A special-token id from the side files counts only when the tokenizer can emit it. */
const inVocab = (id: number | null, vocabSize: number): number | null => (id !== null && id >= 0 && id < vocabSize ? id : null);

function build(folder: string, files: Files): Tokenizer {
  const path = join(folder, 'tokenizer.json');
  const dup = scanJsonKeys(files.tokenizer, { maxKeys: Infinity, maxDepth: 64 }, (why) => new Error(`tokenizer: ${path} ${why}`));
  const json = parseJson(files.tokenizer, path);
  // A repeated token in model.vocab would silently take the last id.
  if (dup) throw new Error(`tokenizer: ${path}: key ${showName(dup.key)} appears twice (under ${showName(dup.top)})`);
  checkTokenizerJson(json, path);
  const cfg = files.config === null ? {} : parseJson(files.config, join(folder, 'tokenizer_config.json'));
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(json, cfg);
  } catch (e) {
    throw new Error(`tokenizer: cannot load ${path}: ${libraryMessage(e)}`);
  }
  // Extra sources for bos/eos ids; unreadable ones are ignored (they are only a fallback).
  const others = [files.generation, files.model].flatMap((t) => {
    try {
      return t === null ? [] : [parseJson(t, '')];
    } catch {
      return [];
    }
  });
  const vocabSize = idSpace(hf);
  return {
    kind: 'tokenizer.json',
    vocabSize,
    eosTokenId: inVocab(specialId(hf, 'eos', cfg, others), vocabSize),
    bosTokenId: inVocab(specialId(hf, 'bos', cfg, others), vocabSize),
    ...hfCoding(hf, vocabSize, 'tokenizer.json', path),
  };
}

/** Largest id + 1, added tokens included. */
function idSpace(hf: HfTokenizer): number {
  let n = 0;
  for (const id of hf.get_vocab(true).values()) n = Math.max(n, id + 1);
  return n;
}

/** encode/decode/streamDecoder through the library, with the conventions at the top of this file. */
function hfCoding(hf: HfTokenizer, vocabSize: number, kind: string, path: string): Pick<Tokenizer, 'encode' | 'decode' | 'streamDecoder'> {
  const decode = (ids: number[]): string => {
    checkIds(ids, vocabSize, kind);
    if (ids.length === 0) return ''; // the library throws on an empty list
    // clean_up_tokenization_spaces off: Python `tokenizers` never applies it (transformers does, per model).
    return hf.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  };
  return {
    encode: (text) => {
      try {
        return hf.encode(text, { add_special_tokens: false }).ids;
      } catch (e) {
        throw new Error(`tokenizer ${path}: cannot encode: ${libraryMessage(e)}`);
      }
    },
    decode,
    streamDecoder: () => makeStreamDecoder(decode),
  };
}

/** tokenizer.json files of real models reach tens of MB (large vocabularies); the others are small. */
const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
const MAX_SIDE_FILE_BYTES = 4 * 1024 * 1024;
const optional = ['tokenizer_config.json', 'generation_config.json', 'config.json'] as const;

const exists = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

function readFiles(folder: string): Files {
  const file = join(folder, 'tokenizer.json');
  if (!exists(file)) throw new Error(`tokenizer: no tokenizer.json in ${folder} (looked for ${file})`);
  // Through folder.ts: inside the folder by real path, a regular file, of a bounded size.
  const tokenizer = readTextInFolder(folder, file, 'tokenizer', MAX_TOKENIZER_BYTES);
  const [config, generation, model] = optional.map((f) =>
    exists(join(folder, f)) ? readTextInFolder(folder, join(folder, f), f, MAX_SIDE_FILE_BYTES) : null,
  );
  return { tokenizer, config: config ?? null, generation: generation ?? null, model: model ?? null };
}

/** Loads folder/tokenizer.json (+ tokenizer_config.json, generation_config.json, config.json for bos/eos). */
export async function loadTokenizer(folder: string): Promise<Tokenizer> {
  return loadTokenizerSync(folder); // the files are small and read at once; the library builds synchronously
}

/** The same as loadTokenizer, synchronously (the library builds the tokenizer synchronously). */
export function loadTokenizerSync(folder: string): Tokenizer {
  return build(folder, readFiles(folder));
}
