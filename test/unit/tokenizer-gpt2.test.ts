// GPT-2's tokenizer (assets/gpt2-tokenizer.json.gz through @huggingface/tokenizers) against gpt-tokenizer's
// r50k_base, the library it replaced (a devDependency for this test only): identical ids and text on random
// Brown files and fuzzed strings, decode of any ids against the rank table's bytes, and the asset is what
// scripts/gpt2-tokenizer.mjs makes. The whole corpus is compared by `node scripts/gpt2-tokenizer.mjs --check`.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { brownDocuments, brownFiles } from '../../src/data/corpus.js';
import { gpt2Tokenizer, loadTokenizerSync, type Tokenizer } from '../../src/io/tokenizer.js';
import { rng } from '../../src/random.js';

const root = join(import.meta.dirname, '..', '..');
const asset = join(root, 'assets', 'gpt2-tokenizer.json.gz');
const require = createRequire(import.meta.url);
const r50k = require('gpt-tokenizer/encoding/r50k_base') as { encode(t: string): number[]; decode(ids: number[]): string };
const ranks = (require('gpt-tokenizer/bpeRanks/r50k_base') as { default: (string | number[])[] }).default;
const EOT = '<|endoftext|>';
const EOT_ID = 50256;

// gpt-tokenizer refuses special text by default: split on it, each piece plain text.
const refEncode = (t: string): number[] => t.split(EOT).flatMap((p, i) => (i > 0 ? [EOT_ID] : []).concat(r50k.encode(p)));

// Decode from the rank table: each id's bytes, <|endoftext|> skipped, invalid UTF-8 as U+FFFD, a BOM kept.
const utf8 = new TextEncoder();
const rankBytes = ranks.map((r) => (typeof r === 'string' ? utf8.encode(r) : Uint8Array.from(r)));
function refDecode(ids: number[]): string {
  const parts = ids.filter((id) => id !== EOT_ID).map((id) => rankBytes[id]!);
  const buf = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) buf.set(p, o), (o += p.length);
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(buf);
}

const tok = gpt2Tokenizer();
// The same tokenizer.json loaded as a user's file: the library's own whole-text encode, without the per-piece
// memo of gpt2Tokenizer().
const dir = mkdtempSync(join(tmpdir(), 'parallm-gpt2-'));
writeFileSync(join(dir, 'tokenizer.json'), gunzipSync(readFileSync(asset)));
const plain = loadTokenizerSync(dir);

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function expectSame(t: string, note: string): void {
  const ids = tok.encode(t);
  expect(ids, note).toEqual(refEncode(t));
  expect(plain.encode(t), note).toEqual(ids);
  // Text round-trips (lone surrogates become U+FFFD in UTF-8). gpt-tokenizer's decoder (a TextDecoder kept
  // across calls, fed token by token) drops a BOM that starts one of its chunks in the first call of the
  // process, wherever it stands in the text: its output is compared with BOMs left out.
  const text = t.split(EOT).join('').replace(LONE_SURROGATE, '\uFFFD');
  const back = tok.decode(ids);
  expect(back, note).toBe(text);
  const ref = r50k.decode(ids.filter((id) => id !== EOT_ID));
  const noBom = (s: string) => s.split('\uFEFF').join('');
  expect(noBom(back), `${note}: ${JSON.stringify(ref)}`).toBe(noBom(ref));
}

function stream(t: Tokenizer, ids: number[], cuts: number[]): string {
  const d = t.streamDecoder();
  let out = '';
  let at = 0;
  for (const c of cuts) out += d.push(ids.slice(at, (at = Math.min(ids.length, at + c))));
  return out + d.push(ids.slice(at)) + d.flush();
}

// Pieces where tokenizers differ: whitespace runs, contractions and their case, the special token and its
// parts, letters and digits of several scripts, emoji with modifiers and joiners, combining marks, a BOM.
const PIECES = [' ', '  ', '\n', '\n\n', '\t', '\r\n', '\u00a0', '\u3000', "'", "'s", "'S", "'t", "'re", "'ll", "'ve", "'d", "'m",
  'a', 'Z', 'the', ' the', '1', '2024', '٣', '日本', 'é', 'e\u0301', '😀', '👍🏽', '👨‍👩‍👧', '\u200d', '\ufeff', EOT, '<|', '|>',
  'endoftext', '.', '!', '...', '-', '--', '(', '"', 'Ġ', 'Ċ', '\u0000', '\u{10ffff}'];

describe('GPT-2 tokenizer from assets/gpt2-tokenizer.json.gz', () => {
  it('is the tokenizer.json that scripts/gpt2-tokenizer.mjs makes from r50k_base', () => {
    const out = join(dir, 'remade.json.gz');
    execFileSync(process.execPath, [join(root, 'scripts', 'gpt2-tokenizer.mjs'), '--out', out], { stdio: 'pipe' });
    // Compared uncompressed: another zlib may compress the same JSON to other bytes.
    expect(gunzipSync(readFileSync(out)).equals(gunzipSync(readFileSync(asset)))).toBe(true);
    const json = JSON.parse(gunzipSync(readFileSync(asset)).toString('utf8'));
    expect(json.model.merges.length).toBe(50000);
    expect(json.model.merges.slice(0, 3)).toEqual(['Ġ t', 'Ġ a', 'h e']); // GPT-2's merges.txt begins so
    expect(json.added_tokens).toEqual([expect.objectContaining({ id: EOT_ID, content: EOT, special: true })]);
    expect([tok.vocabSize, tok.eosTokenId, tok.bosTokenId, plain.vocabSize]).toEqual([50257, EOT_ID, EOT_ID, 50257]);
  });

  it('encodes and decodes random Brown files like gpt-tokenizer', () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    const ids = brownFiles().map((f) => f.id);
    const r = rng(seed);
    const pick = Array.from({ length: 30 }, () => ids[Math.floor(r() * ids.length)]!);
    let chars = 0;
    for (const d of brownDocuments(pick)) {
      expectSame(d.text, `seed ${seed}, Brown ${d.name}`);
      chars += d.text.length;
    }
    expect(chars).toBeGreaterThan(30 * 9000); // Brown's files hold about 12k characters (some 100 sentences) each
  });

  it('encodes and decodes fuzzed strings like gpt-tokenizer', () => {
    const property = (t: string) => expectSame(t, JSON.stringify(t));
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...PIECES), maxLength: 40 }), property), { numRuns: 400 });
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 40 }), property), { numRuns: 200 });
    // Any UTF-16, lone surrogates included.
    const unit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
    fc.assert(fc.property(fc.string({ unit, maxLength: 40 }), property), { numRuns: 200 });
  });

  it('decodes any ids as their bytes, and streams them in any chunks to the same text', () => {
    const ids = fc.array(fc.oneof(fc.integer({ min: 0, max: EOT_ID }), fc.integer({ min: 0, max: 300 })), { maxLength: 30 });
    const cuts = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 30 });
    fc.assert(
      fc.property(ids, cuts, (ids, cuts) => {
        const text = tok.decode(ids);
        expect(text).toBe(refDecode(ids));
        expect(stream(tok, ids, cuts)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });
});
