// The token file: a flat run of token ids behind a fixed 64-byte header, all little-endian.
//
//   offset  size  field
//        0     8  magic 'PLLMTOK\0'
//        8     4  u32 version (1)
//       12     4  u32 bytes per token: 2 (u16, when vocabSize <= 65536) or 4 (u32)
//       16     8  u64 token count
//       24     4  u32 vocabulary size (every token is < this)
//       28     4  u32 header size in bytes (64; the tokens start here, so a later version can add fields)
//       32     4  u32 end-of-text token id (0xffffffff: none); documents are separated by it
//       36    28  reserved, zero
//
// Files are written to a temporary name and renamed, so a reader never sees a half-written file under the
// final name. Reading checks every field, the size against the count, and every token against the vocabulary.
import { closeSync, openSync, readSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { randomBytes } from 'node:crypto';

export const TOKEN_FILE_MAGIC = 'PLLMTOK\0';
export const TOKEN_FILE_VERSION = 1;
export const TOKEN_FILE_HEADER_BYTES = 64;
const NO_EOT = 0xffffffff;

export type TokenArray = Uint16Array | Uint32Array;

export interface TokenFileHeader {
  readonly version: number;
  readonly dtype: 'u16' | 'u32';
  readonly count: number;
  readonly vocabSize: number;
  readonly headerBytes: number;
  /** The end-of-text id that separates documents, or null. */
  readonly eotId: number | null;
}

export interface TokenFile extends TokenFileHeader {
  readonly path: string;
  readonly tokens: TokenArray;
}

function checkHost(op: string): void {
  // The tokens are read and written as typed-array views, which use the host's byte order.
  if (endianness() !== 'LE') throw new Error(`${op}: token files are little-endian; this host is big-endian`);
}

/** u16 when every id < vocabSize fits, else u32. */
export function tokenDType(vocabSize: number): 'u16' | 'u32' {
  return vocabSize <= 0x10000 ? 'u16' : 'u32';
}

export interface WriteTokenFileOptions {
  vocabSize: number;
  eotId?: number | null;
}

/** Writes tokens (each in [0, vocabSize)) to `path` atomically: a temporary file in the same folder, renamed. */
export function writeTokenFile(path: string, tokens: ArrayLike<number>, opts: WriteTokenFileOptions): TokenFileHeader {
  const op = `writeTokenFile ${path}`;
  checkHost(op);
  const { vocabSize } = opts;
  const eotId = opts.eotId ?? null;
  if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize > NO_EOT)
    throw new Error(`${op}: vocabSize must be an integer in [1, ${NO_EOT}], got ${vocabSize}`);
  if (eotId !== null && (!Number.isInteger(eotId) || eotId < 0 || eotId >= vocabSize))
    throw new Error(`${op}: end-of-text id ${eotId} is outside the vocabulary [0, ${vocabSize})`);
  const dtype = tokenDType(vocabSize);
  const n = tokens.length;
  const body = dtype === 'u16' ? new Uint16Array(n) : new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize)
      throw new Error(`${op}: token ${i} of ${n} is ${t}, outside the vocabulary [0, ${vocabSize})`);
    body[i] = t;
  }
  const header = Buffer.alloc(TOKEN_FILE_HEADER_BYTES);
  header.write(TOKEN_FILE_MAGIC, 0, 'latin1');
  header.writeUInt32LE(TOKEN_FILE_VERSION, 8);
  header.writeUInt32LE(body.BYTES_PER_ELEMENT, 12);
  header.writeBigUInt64LE(BigInt(n), 16);
  header.writeUInt32LE(vocabSize, 24);
  header.writeUInt32LE(TOKEN_FILE_HEADER_BYTES, 28);
  header.writeUInt32LE(eotId ?? NO_EOT, 32);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeFileSync(fd, header);
      writeFileSync(fd, new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`${op}: ${(e as Error).message}`);
  }
  return { version: TOKEN_FILE_VERSION, dtype, count: n, vocabSize, headerBytes: TOKEN_FILE_HEADER_BYTES, eotId };
}

function parseHeader(path: string, buf: Buffer, fileBytes: number): TokenFileHeader {
  const op = `token file ${path}`;
  if (fileBytes < TOKEN_FILE_HEADER_BYTES)
    throw new Error(`${op}: truncated: ${fileBytes} bytes, shorter than the ${TOKEN_FILE_HEADER_BYTES}-byte header`);
  const magic = buf.toString('latin1', 0, 8);
  if (magic !== TOKEN_FILE_MAGIC)
    throw new Error(`${op}: not a parallm token file (magic ${JSON.stringify(magic)}, expected ${JSON.stringify(TOKEN_FILE_MAGIC)})`);
  const version = buf.readUInt32LE(8);
  if (version !== TOKEN_FILE_VERSION)
    throw new Error(`${op}: version ${version} is not supported (this reader knows version ${TOKEN_FILE_VERSION})`);
  const width = buf.readUInt32LE(12);
  if (width !== 2 && width !== 4) throw new Error(`${op}: bytes per token is ${width}, expected 2 (u16) or 4 (u32)`);
  const count64 = buf.readBigUInt64LE(16);
  if (count64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${op}: token count ${count64} is not plausible`);
  const count = Number(count64);
  const vocabSize = buf.readUInt32LE(24);
  if (vocabSize < 1) throw new Error(`${op}: vocabulary size is 0`);
  if (width === 2 && vocabSize > 0x10000) throw new Error(`${op}: vocabulary size ${vocabSize} does not fit u16 tokens`);
  const headerBytes = buf.readUInt32LE(28);
  if (headerBytes < TOKEN_FILE_HEADER_BYTES || headerBytes % 4 !== 0)
    throw new Error(`${op}: header size ${headerBytes} is invalid (at least ${TOKEN_FILE_HEADER_BYTES}, a multiple of 4)`);
  const eot = buf.readUInt32LE(32);
  if (eot !== NO_EOT && eot >= vocabSize)
    throw new Error(`${op}: end-of-text id ${eot} is outside the vocabulary [0, ${vocabSize})`);
  const expected = headerBytes + count * width;
  if (fileBytes < expected)
    throw new Error(
      `${op}: truncated: ${fileBytes} bytes, but the header's ${count} ${width === 2 ? 'u16' : 'u32'} tokens need ${expected}`,
    );
  if (fileBytes > expected)
    throw new Error(
      `${op}: size mismatch: ${fileBytes} bytes, but the header's ${count} ${width === 2 ? 'u16' : 'u32'} tokens make ${expected} (${fileBytes - expected} extra)`,
    );
  return { version, dtype: width === 2 ? 'u16' : 'u32', count, vocabSize, headerBytes, eotId: eot === NO_EOT ? null : eot };
}

function readAt(fd: number, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new Error(`file ended at byte ${position + done} while reading`);
    done += n;
  }
}

function withFile<T>(path: string, f: (fd: number, bytes: number) => T): T {
  let fd: number;
  let bytes: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new Error(`token file ${path}: cannot open: ${(e as Error).message}`);
  }
  try {
    bytes = statSync(path).size;
    return f(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

/** The header alone, checked against the file's size (a cheap validity check for cached files). */
export function readTokenFileHeader(path: string): TokenFileHeader {
  return withFile(path, (fd, bytes) => {
    const buf = Buffer.alloc(TOKEN_FILE_HEADER_BYTES);
    readAt(fd, buf.subarray(0, Math.min(bytes, TOKEN_FILE_HEADER_BYTES)), 0);
    return parseHeader(path, buf, bytes);
  });
}

/** Reads and checks a whole token file; the tokens are u16 or u32 as stored. */
export function readTokenFile(path: string): TokenFile {
  checkHost(`token file ${path}`);
  return withFile(path, (fd, bytes) => {
    const head = Buffer.alloc(TOKEN_FILE_HEADER_BYTES);
    readAt(fd, head.subarray(0, Math.min(bytes, TOKEN_FILE_HEADER_BYTES)), 0);
    const h = parseHeader(path, head, bytes);
    const tokens = h.dtype === 'u16' ? new Uint16Array(h.count) : new Uint32Array(h.count);
    try {
      readAt(fd, new Uint8Array(tokens.buffer), h.headerBytes);
    } catch (e) {
      throw new Error(`token file ${path}: ${(e as Error).message}`);
    }
    for (let i = 0; i < tokens.length; i++)
      if (tokens[i]! >= h.vocabSize)
        throw new Error(`token file ${path}: token ${i} of ${h.count} is ${tokens[i]}, outside the vocabulary [0, ${h.vocabSize})`);
    return { ...h, path, tokens };
  });
}
