// prepareDataset: a few Brown files and folders of text into train/val token files, checked document by
// document against the tokenizer run here; the seeded split; the cache (reused, rebuilt when the text, the
// settings or the files change); progress; a single file cut in two; and the errors.
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { brownDocuments } from '../../src/data/corpus.js';
import { prepareDataset, readDataset, type PrepareProgress } from '../../src/data/prepare.js';
import { readTokenFile } from '../../src/data/tokenfile.js';
import { gpt2Tokenizer } from '../../src/io/tokenizer.js';

const EOT = 50256;
const tmp = () => mkdtempSync(join(tmpdir(), 'parallm-prep-'));
const tok = gpt2Tokenizer();

/** A token file's documents: the runs ending in end-of-text (the file must end with one). */
function documentsOf(path: string): number[][] {
  const f = readTokenFile(path);
  expect(f.eotId).toBe(EOT);
  expect(f.vocabSize).toBe(50257);
  expect(f.dtype).toBe('u16');
  const t = Array.from(f.tokens);
  expect(t.at(-1)).toBe(EOT);
  const docs: number[][] = [];
  for (let start = 0, i = 0; i < t.length; i++) if (t[i] === EOT) docs.push(t.slice(start, i)), (start = i + 1);
  return docs;
}

const IDS = ['ca01', 'ca02', 'cb01', 'cf03', 'ck01', 'cr09'];

describe('prepareDataset', () => {
  it('tokenizes Brown files into train and val by document, each document once, with progress', async () => {
    const out = tmp();
    const progress: PrepareProgress[] = [];
    const r = await prepareDataset({ source: 'brown', brownFiles: IDS, outDir: out, valFraction: 0.34, seed: 5, onProgress: (p) => progress.push(p) });
    expect(r.reused).toBe(false);
    expect(r.train).toBe(join(out, 'train.tok'));
    expect(r.val).toBe(join(out, 'val.tok'));
    // The reference: each file's text tokenized here.
    const expected = new Map(brownDocuments(IDS).map((d) => [JSON.stringify(tok.encode(d.text)), d.name]));
    const train = documentsOf(r.train).map((d) => expected.get(JSON.stringify(d)));
    const val = documentsOf(r.val).map((d) => expected.get(JSON.stringify(d)));
    expect(val.length).toBe(2); // round(0.34 x 6)
    expect([...train, ...val].sort()).toEqual([...IDS].sort()); // every document, once, none altered
    expect(train).toEqual(IDS.filter((id) => train.includes(id))); // source order within a split
    expect(val).toEqual(IDS.filter((id) => val.includes(id)));
    const m = r.manifest;
    expect(m).toMatchObject({ source: 'brown', brownFiles: IDS, valFraction: 0.34, seed: 5, vocabSize: 50257, eotId: EOT, tokenizer: 'gpt2-bpe' });
    expect(m.train).toEqual({ file: 'train.tok', documents: 4, tokens: readTokenFile(r.train).count });
    expect(m.val).toEqual({ file: 'val.tok', documents: 2, tokens: readTokenFile(r.val).count });
    expect(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'))).toEqual(m);
    expect(progress.map((p) => p.documents)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(progress.every((p) => p.totalDocuments === 6)).toBe(true);
    expect(progress.at(-1)!.tokens).toBe(m.train.tokens + m.val.tokens);
    // Another seed, another split (these two seeds pick different documents).
    const other = await prepareDataset({ source: 'brown', brownFiles: IDS, outDir: tmp(), valFraction: 0.34, seed: 6 });
    expect(documentsOf(other.val).map((d) => expected.get(JSON.stringify(d))).sort()).not.toEqual([...val].sort());
  });

  it('reuses the cache for the same text and settings, and rebuilds when either changes or a file is damaged', async () => {
    const src = tmp();
    for (let i = 0; i < 5; i++) writeFileSync(join(src, `doc${i}.txt`), `Document number ${i}.\n\nIt has ${'some words '.repeat(i + 1)}in it.`);
    const out = tmp();
    const opts = { source: src, outDir: out, valFraction: 0.2, seed: 9 };
    const first = await prepareDataset(opts);
    expect(first.reused).toBe(false);
    const mtime = statSync(first.train).mtimeMs;
    let calls = 0;
    const again = await prepareDataset({ ...opts, onProgress: () => calls++ });
    expect(again.reused).toBe(true);
    expect(calls).toBe(0);
    expect(again.manifest).toEqual(first.manifest);
    expect(statSync(first.train).mtimeMs).toBe(mtime);
    // Settings change.
    expect((await prepareDataset({ ...opts, seed: 10 })).reused).toBe(false);
    expect((await prepareDataset({ ...opts, seed: 10 })).reused).toBe(true);
    expect((await prepareDataset({ ...opts, seed: 10, valFraction: 0.4 })).reused).toBe(false);
    // The same text from another folder is another source.
    const copy = tmp();
    cpSync(src, copy, { recursive: true });
    const moved = await prepareDataset({ ...opts, source: copy });
    expect(moved.reused).toBe(false);
    expect(moved.manifest.source).toBe(copy);
    expect(moved.manifest.train).toEqual(first.manifest.train);
    // Text change.
    writeFileSync(join(src, 'doc3.txt'), 'Changed.');
    const changed = await prepareDataset(opts);
    expect(changed.reused).toBe(false);
    const texts = [...documentsOf(changed.train), ...documentsOf(changed.val)].map((d) => tok.decode(d));
    expect(texts).toContain('Changed.');
    // A damaged token file is rebuilt, not trusted.
    truncateSync(changed.val, 70);
    const fixed = await prepareDataset(opts);
    expect(fixed.reused).toBe(false);
    expect(readTokenFile(fixed.val).count).toBe(fixed.manifest.val.tokens);
  });

  it('reads a folder of text into documents, decoding back to the files', async () => {
    const src = tmp();
    const texts = ['Première ligne — ünïcode.', 'Second file\nwith two lines', 'Third: 日本語 😀', '<|endoftext|> spelled in text'];
    texts.forEach((t, i) => writeFileSync(join(src, `f${i}.md`), t));
    const r = await prepareDataset({ source: src, outDir: tmp(), valFraction: 0.25, seed: 1 });
    expect(r.manifest.source).toBe(src);
    expect(r.manifest.train.documents).toBe(3);
    expect(r.manifest.val.documents).toBe(1);
    // Text that spells the end-of-text token becomes it (the tokenizer's rule), so that file shows as two runs.
    const decoded = [...documentsOf(r.train), ...documentsOf(r.val)].map((d) => tok.decode(d));
    for (const t of texts.slice(0, 3)) expect(decoded).toContain(t);
    expect(decoded).toContain(' spelled in text');
  });

  it('cuts a single file at the blank line nearest the split point; valFraction 0 keeps it whole', async () => {
    const paras = Array.from({ length: 20 }, (_, i) => `Paragraph ${i} says something about item ${i * 7}.`);
    const f = join(tmp(), 'one.txt');
    writeFileSync(f, paras.join('\n\n') + '\n');
    const r = await prepareDataset({ source: f, outDir: tmp(), valFraction: 0.1 });
    const [train] = documentsOf(r.train).map((d) => tok.decode(d));
    const [val] = documentsOf(r.val).map((d) => tok.decode(d));
    expect(train).toBe(paras.slice(0, 18).join('\n\n'));
    expect(val).toBe(paras.slice(18).join('\n\n') + '\n');
    const whole = await prepareDataset({ source: f, outDir: tmp(), valFraction: 0 });
    expect(documentsOf(whole.train).map((d) => tok.decode(d))).toEqual([paras.join('\n\n') + '\n']);
    expect(readTokenFile(whole.val).count).toBe(0);
  });

  it('names the problem: bad settings, no text, a document too short to split', async () => {
    const out = tmp();
    await expect(prepareDataset({ source: 'brown', outDir: out, valFraction: 1 })).rejects.toThrow(/valFraction must be in \[0, 1\), got 1/);
    await expect(prepareDataset({ source: 'brown', outDir: out, seed: -1 })).rejects.toThrow(/seed must be an integer/);
    const empty = tmp();
    await expect(prepareDataset({ source: empty, outDir: out })).rejects.toThrow(new RegExp(`folder ${empty} has no text`));
    await expect(prepareDataset({ source: empty, outDir: out, brownFiles: ['ca01'] })).rejects.toThrow(/brownFiles is only for source 'brown'/);
    const short = join(tmp(), 'short.txt');
    writeFileSync(short, 'oneword');
    await expect(prepareDataset({ source: short, outDir: out })).rejects.toThrow(/short\.txt is the only document and is too short \(7 characters\)/);
  });

  it('readDataset opens a prepared folder, and names a missing manifest or a token file that disagrees with it', async () => {
    const src = tmp();
    for (let i = 0; i < 3; i++) writeFileSync(join(src, `d${i}.txt`), `Text ${i} `.repeat(20));
    const out = tmp();
    const r = await prepareDataset({ source: src, outDir: out, valFraction: 0.3 });
    const d = readDataset(out);
    expect(d.manifest).toEqual(r.manifest);
    expect(Array.from(d.train.tokens)).toEqual(Array.from(readTokenFile(r.train).tokens));
    expect(d.val.count).toBe(r.manifest.val.tokens);
    writeFileSync(r.val, readFileSync(r.train)); // a valid token file, but not the one the manifest describes
    expect(() => readDataset(out)).toThrow(new RegExp(`readDataset: ${r.val} holds ${r.manifest.train.tokens} tokens .* says ${r.manifest.val.tokens}`));
    truncateSync(r.train, 10);
    expect(() => readDataset(out)).toThrow(/train\.tok: truncated: 10 bytes/);
    writeFileSync(join(out, 'manifest.json'), '{"format": "other"}');
    expect(() => readDataset(out)).toThrow(/manifest\.json is not a version 1 parallm dataset manifest/);
    rmSync(join(out, 'manifest.json'));
    expect(() => readDataset(out)).toThrow(/cannot read .*manifest\.json \(run prepareDataset first\)/);
  });
});
