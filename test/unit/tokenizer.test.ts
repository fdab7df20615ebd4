// Tokenizers against known ids (GPT-2's published encoding; Python `tokenizers` for the tiny tokenizer.json),
// round trips, streaming that never splits a character, and load errors that name the path.
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpt2Tokenizer, loadTokenizer, loadTokenizerSync, type Tokenizer } from '../../src/io/tokenizer.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const tinyLlama = join(fixtures, 'tiny-llama');
const expected = JSON.parse(readFileSync(join(fixtures, 'expected.json'), 'utf8')).tokenizer as {
  texts: string[];
  ids: number[][];
  decoded: string[];
};
const TEXTS = ['Hello world', '  leading spaces', ' 日本語のテキスト', 'emoji 😀👍🏽 and ZWJ 👨‍👩‍👧', 'é ñ ü', 'a\nb\tc', ''];

// Streams ids in chunks of `step`; returns the pieces (flush last).
function stream(tok: Tokenizer, ids: number[], step: number): string[] {
  const d = tok.streamDecoder();
  const pieces: string[] = [];
  for (let i = 0; i < ids.length; i += step) pieces.push(d.push(ids.slice(i, i + step)));
  pieces.push(d.flush());
  return pieces;
}

describe('GPT-2 BPE', () => {
  const tok = gpt2Tokenizer();

  it('encodes like GPT-2', () => {
    expect(tok.kind).toBe('gpt2-bpe');
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.vocabSize).toBe(50257);
    expect(tok.eosTokenId).toBe(50256);
    // Special text becomes the special token, anywhere in the text.
    expect(tok.encode('<|endoftext|>a<|endoftext|>b<|endoftext|>')).toEqual([50256, 64, 50256, 65, 50256]);
  });

  it('round-trips text, special tokens skipped', () => {
    for (const t of TEXTS) expect(tok.decode(tok.encode(t))).toBe(t);
    expect(tok.decode([15496, 50256, 995])).toBe('Hello world');
  });

  it('decode calls are independent (no bytes carried over from a cut character)', () => {
    const [first] = tok.encode('😀'); // 😀 is two tokens; the first holds 3 of its 4 bytes
    expect(tok.decode([first])).toBe('\uFFFD');
    expect(tok.decode([15496])).toBe('Hello');
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([50257])).toThrow(/50257/);
    expect(() => tok.decode([-1])).toThrow(/-1/);
  });

  it('streams pieces that add up to the full decode without U+FFFD', () => {
    for (const t of TEXTS) {
      const ids = tok.encode(t);
      for (const step of [1, 2, 3]) {
        const pieces = stream(tok, ids, step);
        expect(pieces.join('')).toBe(tok.decode(ids));
        for (const p of pieces) expect(p).not.toContain('\uFFFD');
      }
    }
  });

  it('streams text while a character is still incomplete, and flushes a cut one as U+FFFD', () => {
    // 'b' + half of 😀: 'b' comes out at once, the half waits.
    const d = tok.streamDecoder();
    const emoji = tok.encode('😀');
    expect(d.push([65])).toBe('b');
    expect(d.push([emoji[0]])).toBe('');
    expect(d.push([emoji[1]])).toBe('😀');
    expect(d.push([emoji[0]])).toBe('');
    expect(d.flush()).toBe('\uFFFD'); // the same as decode() of the cut character
  });
});

describe('tokenizer.json', () => {
  it('matches Python tokenizers on the tiny BPE', async () => {
    const tok = await loadTokenizer(tinyLlama);
    expect(tok.kind).toBe('tokenizer.json');
    expect(tok.vocabSize).toBe(259); // 256 byte-level symbols and merges + 3 specials
    expect(tok.bosTokenId).toBe(1); // no tokenizer_config.json here: from generation_config.json
    expect(tok.eosTokenId).toBe(2);
    expect(expected.texts.map((t) => tok.encode(t))).toEqual(expected.ids);
    expect(expected.ids.map((ids) => tok.decode(ids))).toEqual(expected.decoded);
    expect(tok.decode([1, ...expected.ids[0], 2])).toBe(expected.decoded[0]); // specials skipped
  });

  it('streams, and the sync loader gives the same tokenizer', () => {
    const tok = loadTokenizerSync(tinyLlama);
    for (const t of [...expected.texts, ...TEXTS]) {
      const ids = tok.encode(t);
      expect(tok.decode(ids)).toBe(t); // byte-level: any text round-trips
      const pieces = stream(tok, ids, 1);
      expect(pieces.join('')).toBe(t);
      for (const p of pieces) expect(p).not.toContain('\uFFFD');
    }
  });

  it('reads bos/eos from tokenizer_config.json', () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallm-tok-'));
    copyFileSync(join(tinyLlama, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '</s>', eos_token: { content: '<pad>' } }));
    const tok = loadTokenizerSync(dir);
    expect([tok.bosTokenId, tok.eosTokenId]).toEqual([2, 0]);
  });

  it('errors name the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallm-tok-'));
    const nowhere = join(dir, 'no-such-folder');
    await expect(loadTokenizer(nowhere)).rejects.toThrow(join(nowhere, 'tokenizer.json'));
    expect(() => loadTokenizerSync(nowhere)).toThrow(join(nowhere, 'tokenizer.json'));
    await expect(loadTokenizer(dir)).rejects.toThrow(`no tokenizer.json in ${dir}`);
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": {');
    await expect(loadTokenizer(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')} is not valid JSON`);
    writeFileSync(join(dir, 'tokenizer.json'), '[1, 2]');
    expect(() => loadTokenizerSync(dir)).toThrow(`${join(dir, 'tokenizer.json')} is not a JSON object`);
    copyFileSync(join(tinyLlama, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'tokenizer_config.json'), 'not json');
    expect(() => loadTokenizerSync(dir)).toThrow(join(dir, 'tokenizer_config.json'));
  });
});
