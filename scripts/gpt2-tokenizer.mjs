// Makes assets/gpt2-tokenizer.json.gz, GPT-2's tokenizer in Hugging Face's tokenizer.json format, from the
// r50k_base ranks bundled in gpt-tokenizer (a devDependency; run once, the output is committed), so that
// src/io/tokenizer.ts reads GPT-2 with @huggingface/tokenizers like every other model.
//
//   node scripts/gpt2-tokenizer.mjs          write the asset (deterministic: the same bytes every run;
//                                            --out FILE writes it elsewhere, for the test that compares)
//   node scripts/gpt2-tokenizer.mjs --check  encode and decode the whole Brown corpus and tricky strings with
//                                            the built parallm (dist/, npm run build:ts first) and with
//                                            gpt-tokenizer: the ids and texts must be identical
//
// r50k_base ranks are GPT-2's ids: 0..255 are the single bytes, 256..50255 the merged tokens in merge order,
// 50256 is <|endoftext|>. Merges come from the ranks the standard way (tiktoken's, and the transformers
// converter's): BPE over a token's own bytes, allowing only merges of lower rank, must end in exactly two
// parts; those two are the merge that makes the token.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outAt = process.argv.indexOf('--out');
const out = outAt > 0 && process.argv[outAt + 1] ? process.argv[outAt + 1] : join(root, 'assets', 'gpt2-tokenizer.json.gz');
const require = createRequire(import.meta.url);
const EOT = '<|endoftext|>';
const EOT_ID = 50256;

// GPT-2's printable stand-ins for bytes (bytes_to_unicode of its encoder.py): printable Latin-1 bytes stand
// for themselves, the others take code points from 256 up, in byte order.
function byteToUnicode() {
  const keep = (b) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const map = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = String.fromCodePoint(keep(b) ? b : 256 + n++);
  return map;
}

function tokenizerJson() {
  const ranks = require('gpt-tokenizer/bpeRanks/r50k_base').default;
  if (ranks.length !== EOT_ID) throw new Error(`gpt2-tokenizer: r50k_base has ${ranks.length} ranks, expected ${EOT_ID}`);
  const utf8 = new TextEncoder();
  const bytes = ranks.map((r) => (typeof r === 'string' ? utf8.encode(r) : Uint8Array.from(r)));
  const b2u = byteToUnicode();
  const show = (b) => Array.from(b, (x) => b2u[x]).join('');
  const keys = bytes.map(show);
  const rank = new Map(keys.map((k, i) => [k, i]));
  if (rank.size !== keys.length) throw new Error('gpt2-tokenizer: r50k_base has a repeated token');
  for (let b = 0; b < 256; b++)
    if (bytes[b].length !== 1) throw new Error(`gpt2-tokenizer: rank ${b} is not a single byte`);

  // BPE of one token's bytes with merges below maxRank (the lowest-rank adjacent pair first, leftmost on ties).
  const bpe = (b, maxRank) => {
    let parts = Array.from(b, (x) => b2u[x]);
    for (;;) {
      let best = -1;
      let bestRank = maxRank;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = rank.get(parts[i] + parts[i + 1]);
        if (r !== undefined && r < bestRank) (best = i), (bestRank = r);
      }
      if (best < 0) return parts;
      parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
    }
  };
  const merges = [];
  for (let r = 256; r < bytes.length; r++) {
    const parts = bpe(bytes[r], r);
    if (parts.length !== 2) throw new Error(`gpt2-tokenizer: rank ${r} (${keys[r]}) reduces to ${parts.length} parts, not 2`);
    merges.push(`${parts[0]} ${parts[1]}`); // byte-level symbols never hold a space (it is 'Ġ')
  }

  const vocab = Object.fromEntries(keys.map((k, i) => [k, i]));
  vocab[EOT] = EOT_ID;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: EOT_ID, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    ],
    normalizer: null,
    // use_regex: GPT-2's split ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+).
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

// Strings where tokenizers tend to differ: whitespace runs before words and at the end, contractions (GPT-2's
// split is case-sensitive: "'S" is not one), the special token inside words, scripts without spaces, emoji
// with modifiers and joiners, combining marks, control characters, lone surrogates' neighbours, a BOM.
const TRICKY = [
  '',
  ' ',
  '   ',
  'a  b   c\t\td\n\n\ne \r\n f',
  'trailing spaces   ',
  '\n\n\nleading newlines',
  "don't I'll we've they're she'd it's I'm DON'T IT'S y'all ''quoted'' 's 't",
  '<|endoftext|>',
  'a<|endoftext|>b',
  'x <|endoftext|> y<|endoftext|><|endoftext|>z',
  '<|endoftext',
  '<|endoftext|',
  'endoftext|>',
  '日本語のテキストです。中文文本。한국어 텍스트',
  'emoji 😀👍🏽 and ZWJ 👨‍👩‍👧 flags 🇫🇷🇯🇵 keycap 1️⃣',
  'e\u0301 n\u0303 combining Z\u0351\u0352\u0353',
  'é ñ ü ß Ω ∑ ∞ € £ ¥',
  'numbers 1234567890 3.14159 1,000,000 ٣٤٥ ⅻ',
  'tabs\tand\u00a0nbsp\u2003em space\u3000ideographic',
  'controls \u0000\u0001\u001f\u007f',
  '\ufeffBOM at the start',
  'mid \ufeff BOM',
  'punctuation!!! ??? ... --- ((())) [[]] {{}} @#$%^&*',
  'URL https://example.com/path?q=1&r=2#frag',
  'code: for (let i = 0; i < n; i++) { x[i] += 1; }',
  'Ġ Ċ ĉ symbols that look like byte-level stand-ins',
  '\u{10ffff}\u{1d400}\u{20000}',
];

async function check() {
  const { gpt2Tokenizer } = await import(join(root, 'dist', 'io', 'tokenizer.js'));
  const { brownDocuments } = await import(join(root, 'dist', 'data', 'corpus.js'));
  const enc = require('gpt-tokenizer/encoding/r50k_base');
  const tok = gpt2Tokenizer();
  // gpt-tokenizer refuses special text by default; split on it as src/io/tokenizer.ts used to.
  const refEncode = (t) => t.split(EOT).flatMap((p, i) => (i > 0 ? [EOT_ID] : []).concat(enc.encode(p)));
  const texts = [...TRICKY, ...brownDocuments().map((d) => d.text)];
  let tokens = 0;
  for (const [i, t] of texts.entries()) {
    const want = refEncode(t);
    const got = tok.encode(t);
    tokens += got.length;
    const at = want.findIndex((id, k) => got[k] !== id);
    if (at >= 0 || got.length !== want.length)
      throw new Error(`gpt2-tokenizer --check: text ${i} encodes differently (first at id ${at < 0 ? want.length : at})`);
    // Both drop <|endoftext|> on decode; gpt-tokenizer's TextDecoder also drops a leading BOM, parallm keeps it.
    const back = tok.decode(got);
    const ref = enc.decode(want.filter((id) => id !== EOT_ID));
    if (back !== t.split(EOT).join('') || (back !== ref && back !== '\ufeff' + ref))
      throw new Error(`gpt2-tokenizer --check: text ${i} decodes differently`);
  }
  console.log(`gpt2-tokenizer --check: ${texts.length} texts (${TRICKY.length} tricky, the whole Brown corpus), ${tokens} tokens: identical`);
}

if (process.argv.includes('--check')) await check();
else {
  const json = JSON.stringify(tokenizerJson());
  const gz = gzipSync(json, { level: 9 });
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, gz);
  console.log(`gpt2-tokenizer: wrote ${out} (${json.length} bytes of JSON, ${gz.length} gzipped)`);
}
