// The token file: round trips of fresh random tokens in both dtypes, the header's bytes read independently,
// atomic writes, and an error naming the file and the problem for each kind of damage.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readTokenFile, readTokenFileHeader, writeTokenFile } from '../../src/data/tokenfile.js';
import { rng } from '../../src/random.js';

const dir = () => mkdtempSync(join(tmpdir(), 'parallm-tok-'));

function randomTokens(n: number, vocab: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * vocab));
}

describe('token file', () => {
  it.each([
    ['u16', 50257, 2],
    ['u16', 65536, 2],
    ['u32', 65537, 4],
    ['u32', 128256, 4],
  ] as const)('round trips %s tokens (vocabulary %i)', (dtype, vocab, width) => {
    const seed = Math.floor(Math.random() * 1e6);
    const n = 1000 + (seed % 37);
    const tokens = randomTokens(n, vocab, seed);
    tokens[0] = vocab - 1; // the largest id must survive
    const path = join(dir(), 'x.tok');
    const h = writeTokenFile(path, tokens, { vocabSize: vocab, eotId: vocab - 1 });
    expect(h).toMatchObject({ dtype, count: n, vocabSize: vocab, eotId: vocab - 1, version: 1 });
    // The header as bytes, read here without the library.
    const bytes = readFileSync(path);
    expect(bytes.length, `seed ${seed}`).toBe(64 + n * width);
    expect(bytes.toString('latin1', 0, 8)).toBe('PLLMTOK\0');
    expect([bytes.readUInt32LE(8), bytes.readUInt32LE(12), Number(bytes.readBigUInt64LE(16)), bytes.readUInt32LE(24), bytes.readUInt32LE(28), bytes.readUInt32LE(32)]).toEqual([1, width, n, vocab, 64, vocab - 1]);
    expect(bytes.subarray(36, 64).every((b) => b === 0)).toBe(true);
    for (let i = 0; i < n; i += 97) expect(width === 2 ? bytes.readUInt16LE(64 + 2 * i) : bytes.readUInt32LE(64 + 4 * i)).toBe(tokens[i]);
    const f = readTokenFile(path);
    expect(f.tokens).toBeInstanceOf(width === 2 ? Uint16Array : Uint32Array);
    expect(Array.from(f.tokens), `seed ${seed}`).toEqual(tokens);
    expect(f).toMatchObject({ dtype, count: n, vocabSize: vocab, eotId: vocab - 1, headerBytes: 64, path });
    expect(readTokenFileHeader(path)).toMatchObject({ dtype, count: n });
  });

  it('writes an empty file and no end-of-text id; leaves no temporary file; replaces an old file whole', () => {
    const d = dir();
    const path = join(d, 'e.tok');
    writeTokenFile(path, [1, 2, 3], { vocabSize: 10 });
    writeTokenFile(path, [], { vocabSize: 10 });
    const f = readTokenFile(path);
    expect(f.count).toBe(0);
    expect(f.eotId).toBeNull();
    expect(readdirSync(d)).toEqual(['e.tok']);
  });

  it('refuses tokens outside the vocabulary and a bad vocabulary when writing, leaving nothing', () => {
    const d = dir();
    const path = join(d, 'w.tok');
    expect(() => writeTokenFile(path, [1, 50257], { vocabSize: 50257 })).toThrow(/w\.tok: token 1 of 2 is 50257, outside the vocabulary \[0, 50257\)/);
    expect(() => writeTokenFile(path, [1, -1], { vocabSize: 50257 })).toThrow(/token 1 of 2 is -1/);
    expect(() => writeTokenFile(path, [1.5], { vocabSize: 50257 })).toThrow(/token 0 of 1 is 1.5/);
    expect(() => writeTokenFile(path, [1], { vocabSize: 0 })).toThrow(/vocabSize must be/);
    expect(() => writeTokenFile(path, [1], { vocabSize: 5, eotId: 5 })).toThrow(/end-of-text id 5 is outside/);
    expect(() => writeTokenFile(join(d, 'no', 'such', 'dir.tok'), [1], { vocabSize: 5 })).toThrow(/dir\.tok/);
    expect(readdirSync(d)).toEqual([]);
  });

  describe('malformed files', () => {
    // A good file to damage: 100 u16 tokens, vocabulary 1000.
    function good(): { path: string; bytes: Buffer } {
      const path = join(dir(), 'd.tok');
      writeTokenFile(path, randomTokens(100, 1000, Math.floor(Math.random() * 1e6)), { vocabSize: 1000, eotId: 999 });
      return { path, bytes: readFileSync(path) };
    }
    function damaged(edit: (b: Buffer) => Buffer): string {
      const { path, bytes } = good();
      writeFileSync(path, edit(Buffer.from(bytes)));
      return path;
    }
    const both = (path: string, re: RegExp) => {
      expect(() => readTokenFile(path)).toThrow(re);
      expect(() => readTokenFileHeader(path)).toThrow(re);
    };

    it('wrong magic', () => {
      const p = damaged((b) => (b.write('GPT2TOK\0', 0, 'latin1'), b));
      both(p, new RegExp(`token file ${p}: not a parallm token file \\(magic "GPT2TOK\\\\u0000"`));
    });
    it('wrong version', () => {
      const p = damaged((b) => (b.writeUInt32LE(2, 8), b));
      both(p, /d\.tok: version 2 is not supported \(this reader knows version 1\)/);
    });
    it('wrong dtype, and u16 with a vocabulary too large for it', () => {
      both(damaged((b) => (b.writeUInt32LE(3, 12), b)), /d\.tok: bytes per token is 3, expected 2 \(u16\) or 4 \(u32\)/);
      both(damaged((b) => (b.writeUInt32LE(70000, 24), b)), /vocabulary size 70000 does not fit u16 tokens/);
    });
    it('truncated header, truncated tokens', () => {
      both(damaged((b) => b.subarray(0, 40)), /d\.tok: truncated: 40 bytes, shorter than the 64-byte header/);
      both(damaged((b) => b.subarray(0, 0)), /truncated: 0 bytes/);
      both(damaged((b) => b.subarray(0, 64 + 199)), /d\.tok: truncated: 263 bytes, but the header's 100 u16 tokens need 264/);
    });
    it('count larger or smaller than the tokens present', () => {
      both(damaged((b) => (b.writeBigUInt64LE(101n, 16), b)), /truncated: 264 bytes, but the header's 101 u16 tokens need 266/);
      both(damaged((b) => (b.writeBigUInt64LE(99n, 16), b)), /d\.tok: size mismatch: 264 bytes, but the header's 99 u16 tokens make 262 \(2 extra\)/);
      both(damaged((b) => Buffer.concat([b, Buffer.alloc(3)])), /size mismatch: 267 bytes.* \(3 extra\)/);
      both(damaged((b) => (b.writeBigUInt64LE(1n << 60n, 16), b)), /token count 1152921504606846976 is not plausible/);
    });
    it('token out of range, end-of-text id out of range, bad header size', () => {
      const p = damaged((b) => (b.writeUInt16LE(1000, 64 + 2 * 57), b));
      expect(() => readTokenFile(p)).toThrow(/d\.tok: token 57 of 100 is 1000, outside the vocabulary \[0, 1000\)/);
      both(damaged((b) => (b.writeUInt32LE(1000, 32), b)), /end-of-text id 1000 is outside the vocabulary/);
      both(damaged((b) => (b.writeUInt32LE(30, 28), b)), /header size 30 is invalid/);
    });
    it('a missing file', () => {
      both(join(dir(), 'none.tok'), /token file .*none\.tok: cannot open/);
    });
  });
});
