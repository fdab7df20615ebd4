// Safetensors files: an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
// data_offsets relative to the data section), then the raw little-endian tensor bytes. Files are read
// through a file descriptor, one tensor at a time, so a checkpoint never has to fit in memory at once.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { f16ToF32 } from '../dtype.js';
import { isPlainName, namedInside, openInFolder, openRegular, parseJsonText, readTextInFolder, scanJsonKeys, showName, showValue } from './folder.js';

export type StDType =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL' | 'F8_E4M3' | 'F8_E5M2';

/** Bytes per element of each dtype the format names (sub-byte types such as F4 are not supported). */
export const ST_DTYPE_SIZE: Readonly<Record<StDType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

export interface StTensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  file: string;
  /** Absolute byte offset of the tensor's data in `file`. */
  offset: number;
  nbytes: number;
}

/**
 * How much header a file may have, checked before the header is read (bytes) and while it is scanned
 * (entries), so a hostile header costs no more than these. A model load derives them from its config
 * (weights.ts, loadLimits); without one the defaults apply: 100 MiB (the limit of the format's reference
 * implementation) and 65536 entries (real checkpoints have at most a few thousand tensors per file).
 */
export interface HeaderLimits {
  /** Tensors per file; for a WeightStore, in all its files together (and entries of the shard index). */
  maxTensors: number;
  /** Header bytes per file; for a WeightStore, in all its files together (and bytes of the shard index). */
  maxHeaderBytes: number;
}
export const DEFAULT_HEADER_LIMITS: Readonly<HeaderLimits> = { maxTensors: 65536, maxHeaderBytes: 100 * 1024 * 1024 };
/** JSON nesting a header may have: entries are objects of arrays (depth 3); an index is about as deep. */
const MAX_JSON_DEPTH = 8;
/** readSync/writeSync move at most ~2 GB per call; larger tensors go in chunks of this. */
const IO_CHUNK = 1 << 30;

const isStDType = (d: unknown): d is StDType => typeof d === 'string' && Object.hasOwn(ST_DTYPE_SIZE, d);
const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A dangling symlink: existsSync says false, but it is there (and openInFolder says where it points). */
function isLink(p: string): boolean {
  try {
    return fs.lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function readFully(fd: number, buf: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, Math.min(IO_CHUNK, buf.byteLength - done), position + done);
    if (n === 0) throw new Error(`${file}: truncated file: end of file while reading ${what}`);
    done += n;
  }
}

function writeFully(fd: number, buf: Uint8Array): void {
  for (let done = 0; done < buf.byteLength; )
    done += fs.writeSync(fd, buf, done, Math.min(IO_CHUNK, buf.byteLength - done));
}

/** One .safetensors file, open for reading until close(). */
export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** Bytes of the JSON header (what a WeightStore counts against its limit). */
  readonly headerBytes: number;
  private fd: number | null;
  private readonly byName: Map<string, StTensorInfo>;

  private constructor(file: string, fd: number, metadata: Record<string, string>, infos: StTensorInfo[], headerBytes: number) {
    this.path = file;
    this.fd = fd;
    this.metadata = metadata;
    this.headerBytes = headerBytes;
    this.byName = new Map(infos.map((t) => [t.name, t]));
  }

  /**
   * Opens `file` and validates its header; reads only the header, not the tensors. With `folder`, the
   * file must really (symlinks resolved) lie inside that folder.
   */
  static open(file: string, opts: { limits?: HeaderLimits; folder?: string } = {}): SafetensorsFile {
    const what = 'safetensors file';
    const { fd, size } = opts.folder === undefined ? openRegular(file, what) : openInFolder(opts.folder, file, what);
    try {
      const { metadata, infos, headerBytes } = parseHeader(fd, size, file, opts.limits ?? DEFAULT_HEADER_LIMITS);
      return new SafetensorsFile(file, fd, metadata, infos, headerBytes);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Tensors in file order (by data offset). */
  tensors(): StTensorInfo[] {
    return [...this.byName.values()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): StTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new Error(`${this.path}: no tensor named ${showName(name)}`);
    return t;
  }

  /** The tensor's bytes exactly as stored (little-endian), in a fresh buffer of their own. */
  readRaw(name: string): Uint8Array {
    if (this.fd === null) throw new Error(`${this.path}: file is closed (reading ${showName(name)})`);
    const t = this.info(name);
    const out = new Uint8Array(t.nbytes);
    readFully(this.fd, out, t.offset, this.path, `tensor ${showName(name)}`);
    return out;
  }

  /**
   * readRaw in pieces of at most `pieceBytes`: yields each piece's byte count once it is read (so a
   * caller can yield to its event loop between them) and returns the whole tensor's bytes.
   */
  *readRawSteps(name: string, pieceBytes: number): Generator<number, Uint8Array, void> {
    if (this.fd === null) throw new Error(`${this.path}: file is closed (reading ${showName(name)})`);
    const t = this.info(name);
    const out = new Uint8Array(t.nbytes);
    for (let at = 0; at < t.nbytes; ) {
      if (this.fd === null) throw new Error(`${this.path}: file was closed while reading ${showName(name)}`);
      const n = Math.min(pieceBytes, t.nbytes - at);
      readFully(this.fd, out.subarray(at, at + n), t.offset + at, this.path, `tensor ${showName(name)}`);
      at += n;
      yield n;
    }
    return out;
  }

  /**
   * Only the bytes at `spans` ([begin, end) offsets from the tensor's first byte), back to back in a fresh
   * buffer: a tensor-parallel rank's share of a weight (models/tp.ts blockRanges), one read per span.
   */
  readRanges(name: string, spans: readonly (readonly [number, number])[]): Uint8Array {
    if (this.fd === null) throw new Error(`${this.path}: file is closed (reading ${showName(name)})`);
    const t = this.info(name);
    let total = 0;
    for (const [a, b] of spans) {
      if (!(Number.isSafeInteger(a) && Number.isSafeInteger(b) && 0 <= a && a <= b && b <= t.nbytes))
        throw new Error(`${this.path}: byte range [${a}, ${b}) is outside tensor ${showName(name)} (${t.nbytes} bytes)`);
      total += b - a;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const [a, b] of spans) {
      readFully(this.fd, out.subarray(at, at + b - a), t.offset + a, this.path, `tensor ${showName(name)}`);
      at += b - a;
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

function parseHeader(
  fd: number,
  size: number,
  file: string,
  limits: HeaderLimits,
): { metadata: Record<string, string>; infos: StTensorInfo[]; headerBytes: number } {
  if (size < 8) throw new Error(`${file}: truncated file: ${size} bytes, too short for the 8-byte header length`);
  const lenBuf = Buffer.alloc(8);
  readFully(fd, lenBuf, 0, file, 'the header length');
  // Numbers only in these messages: a file that is not safetensors at all (text, another format) would
  // otherwise have its first bytes shown.
  const len = lenBuf.readBigUInt64LE(0);
  if (len > BigInt(limits.maxHeaderBytes))
    throw new Error(`${file}: header length ${len} exceeds the ${limits.maxHeaderBytes}-byte limit: corrupt or not a safetensors file`);
  const headerLen = Number(len);
  if (headerLen > size - 8)
    throw new Error(`${file}: header length ${headerLen} is larger than the file (${size} bytes): truncated or not a safetensors file`);
  const headerBuf = Buffer.alloc(headerLen);
  readFully(fd, headerBuf, 8, file, 'the header');

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
  } catch {
    throw new Error(`${file}: header is not valid JSON: not UTF-8 text`);
  }
  // One key more than maxTensors: __metadata__.
  const dup = scanJsonKeys(text, { maxKeys: limits.maxTensors + 1, maxDepth: MAX_JSON_DEPTH }, (why) =>
    new Error(`${file}: header ${why} (the limit is ${limits.maxTensors} tensors and __metadata__)`));
  const header = parseJsonText(text, `${file}: header is `);
  if (!isPlainObject(header)) throw new Error(`${file}: header is not a JSON object`);
  // The format forbids repeated names; JSON.parse would keep the last one.
  if (dup && dup.top === dup.key) throw new Error(`${file}: header names tensor ${showName(dup.key)} twice`);
  if (dup) throw new Error(`${file}: tensor ${showName(dup.top)}: key ${showName(dup.key)} appears twice`);

  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  let metadata: Record<string, string> = {};
  const infos: StTensorInfo[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry) || !Object.values(entry).every((v) => typeof v === 'string'))
        throw new Error(`${file}: __metadata__ must be an object of strings`);
      metadata = entry as Record<string, string>;
      continue;
    }
    const where = `${file}: tensor ${showName(name)}`;
    if (!isPlainObject(entry)) throw new Error(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offs } = entry;
    if (!isStDType(dtype)) throw new Error(`${where}: unknown dtype ${showValue(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new Error(`${where}: shape ${showValue(shape)} is not an array of non-negative integers`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0) || offs[0] > offs[1])
      throw new Error(`${where}: data_offsets ${showValue(offs)} is not [begin, end] with 0 <= begin <= end`);
    const [begin, end] = offs as [number, number];
    const expected = numel(shape) * ST_DTYPE_SIZE[dtype];
    // A product past 2^53 is not exact; no such tensor fits in a file anyway.
    if (!Number.isSafeInteger(expected))
      throw new Error(`${where}: shape [${shape.join(', ')}] has more elements than any file can hold`);
    if (end - begin !== expected)
      throw new Error(`${where}: byte length ${end - begin} does not match shape [${shape.join(', ')}] of ${dtype} (${expected} bytes)`);
    if (end > dataSize)
      throw new Error(`${where}: data_offsets [${begin}, ${end}] beyond the data section (${dataSize} bytes): truncated file or bad offsets`);
    infos.push({ name, dtype, shape: [...shape], file, offset: dataStart + begin, nbytes: end - begin });
  }
  if (infos.length > limits.maxTensors)
    throw new Error(`${file}: header has ${infos.length} tensors, over the limit of ${limits.maxTensors} for this model`);

  // Sorted by offset, each non-empty tensor must start at or after the previous one's end.
  infos.sort((a, b) => a.offset - b.offset || a.nbytes - b.nbytes);
  let prev: StTensorInfo | null = null;
  for (const t of infos) {
    if (t.nbytes === 0) continue;
    if (prev && t.offset < prev.offset + prev.nbytes)
      throw new Error(`${file}: tensor ${showName(t.name)} overlaps tensor ${showName(prev.name)} in the data section`);
    prev = t;
  }
  return { metadata, infos, headerBytes: headerLen };
}

// ---------------------------------------------------------------------------------------------------
// Conversion to the run dtypes. Everything goes through f32 bit patterns (Uint32Array), which every
// F32/F16/BF16 value is exactly representable in, so there is a single rounding step. The loops work on
// integer bits with no per-element calls; they produce the same bits as f32ToBf16/f32ToF16 in dtype.ts.

let f16Table: Uint32Array | null = null;
/** f16 bits -> f32 bits, all 65536 of them (256 KB, built once from dtype.ts's f16ToF32). */
function f16ToF32Table(): Uint32Array {
  if (!f16Table) {
    const f = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f[h] = f16ToF32(h);
    f16Table = new Uint32Array(f.buffer);
  }
  return f16Table;
}

function toF32Bits(raw: Uint8Array, dtype: 'F32' | 'F16' | 'BF16'): Uint32Array {
  if (dtype === 'F32') return new Uint32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const h = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  const out = new Uint32Array(h.length);
  if (dtype === 'BF16') for (let i = 0; i < h.length; i++) out[i] = h[i]! << 16;
  else {
    const table = f16ToF32Table();
    for (let i = 0; i < h.length; i++) out[i] = table[h[i]!]!;
  }
  return out;
}

/** f32 bits -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
function bitsToBf16(src: Uint32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const u = src[i]!;
    out[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** f32 bits -> IEEE half bits, round to nearest even; overflow -> inf, tiny -> subnormal or zero. */
function bitsToF16(src: Uint32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const u = src[i]!;
    const sign = (u >>> 16) & 0x8000;
    const e8 = (u >>> 23) & 0xff;
    let man = u & 0x7fffff;
    const exp = e8 - 112; // rebias 127 -> 15
    let h: number;
    if (e8 === 0xff) h = sign | 0x7c00 | (man ? 0x200 : 0);
    else if (exp >= 31) h = sign | 0x7c00;
    else if (exp <= 0) {
      if (exp < -10) h = sign;
      else {
        man |= 0x800000;
        const shift = 14 - exp;
        const rem = man & ((1 << shift) - 1);
        const mid = 1 << (shift - 1);
        h = man >>> shift;
        if (rem > mid || (rem === mid && h & 1)) h++;
        h |= sign;
      }
    } else {
      h = sign | (exp << 10) | (man >>> 13);
      const rem = man & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent is still correct
    }
    out[i] = h;
  }
  return out;
}

/** Raw little-endian F32/F16/BF16 bytes -> the run dtype (f32 values, or bf16/f16 bits). */
export function convertRaw(raw: Uint8Array, from: StDType, to: 'f32' | 'bf16' | 'f16', what = 'tensor'): Float32Array | Uint16Array {
  if (os.endianness() !== 'LE') throw new Error('safetensors data is little-endian; this host is big-endian');
  if (from !== 'F32' && from !== 'F16' && from !== 'BF16')
    throw new Error(`${what} is ${from}: only F32, F16 and BF16 tensors can be loaded as ${to}`);
  if (raw.byteOffset % 4 !== 0) raw = raw.slice(); // typed-array views need aligned offsets
  if ((to === 'bf16' && from === 'BF16') || (to === 'f16' && from === 'F16'))
    return new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  const bits = toF32Bits(raw, from);
  if (to === 'f32') return new Float32Array(bits.buffer, bits.byteOffset, bits.length);
  return to === 'bf16' ? bitsToBf16(bits) : bitsToF16(bits);
}

// ---------------------------------------------------------------------------------------------------

/** A model folder's weights: `model.safetensors`, or shards listed by `model.safetensors.index.json`. */
export class WeightStore {
  readonly folder: string;
  private readonly files: SafetensorsFile[];
  private readonly byName: Map<string, SafetensorsFile>;

  private constructor(folder: string, files: SafetensorsFile[], byName: Map<string, SafetensorsFile>) {
    this.folder = folder;
    this.files = files;
    this.byName = byName;
  }

  /**
   * Opens a model folder's weights. Every file must really lie inside the folder, and all the headers
   * together (and the shard index) stay within `limits`.
   */
  static open(folder: string, limits: HeaderLimits = DEFAULT_HEADER_LIMITS): WeightStore {
    const single = path.join(folder, 'model.safetensors');
    const indexPath = path.join(folder, 'model.safetensors.index.json');
    if (fs.existsSync(single) || isLink(single)) {
      const f = SafetensorsFile.open(single, { folder, limits });
      return new WeightStore(folder, [f], new Map(f.tensors().map((t) => [t.name, f])));
    }
    if (!fs.existsSync(indexPath) && !isLink(indexPath))
      throw new Error(`${folder}: no weights found: looked for model.safetensors and model.safetensors.index.json`);

    // An index entry is about the size of a header entry, so the same limits bound it.
    const text = readTextInFolder(folder, indexPath, 'shard index', limits.maxHeaderBytes);
    const where = `${indexPath}: weight_map`;
    const dup = scanJsonKeys(text, { maxKeys: Infinity, maxDepth: MAX_JSON_DEPTH }, (why) => new Error(`${indexPath}: ${why}`));
    const index = parseJsonText(text, `${indexPath}: `);
    const map = isPlainObject(index) ? index.weight_map : undefined;
    if (!isPlainObject(map)) throw new Error(`${indexPath}: no "weight_map" object`);
    if (dup) throw new Error(`${indexPath}: key ${showName(dup.key)} appears twice${dup.top === dup.key ? '' : ` (under ${showName(dup.top)})`}`);
    const entries = Object.entries(map);
    if (entries.length > limits.maxTensors)
      throw new Error(`${where} has ${entries.length} entries, over the limit of ${limits.maxTensors} for this model`);

    const shards = new Map<string, SafetensorsFile>();
    const byName = new Map<string, SafetensorsFile>();
    // What the shards opened so far leave of the limits: each tensor sits in one shard, so the limits
    // bound all the headers together, not each.
    const left = { ...limits };
    try {
      for (const [name, shard] of entries) {
        // Plain names only (real shards are model-00001-of-00002.safetensors): the name becomes a path,
        // and paths appear in messages.
        if (typeof shard !== 'string' || !isPlainName(shard))
          throw new Error(`${where}[${showName(name)}] is ${showValue(shard)}, not a file name of letters, digits and . _ - /`);
        // Shards live in the model folder; an index must not point anywhere else (openInFolder also
        // checks the real path, which symlinks can move).
        if (!namedInside(folder, shard))
          throw new Error(`${where}: shard ${showValue(shard)} for tensor ${showName(name)} is outside the model folder`);
        const shardPath = path.resolve(folder, shard);
        let f = shards.get(shardPath);
        if (!f) {
          if (!fs.existsSync(shardPath) && !isLink(shardPath))
            throw new Error(`${indexPath}: shard ${showValue(shard)} (for tensor ${showName(name)}) is missing: ${shardPath} not found`); // a plain name: safe to show
          f = SafetensorsFile.open(shardPath, { folder, limits: left });
          shards.set(shardPath, f);
          left.maxTensors -= f.tensors().length;
          left.maxHeaderBytes -= f.headerBytes;
        }
        if (!f.has(name)) throw new Error(`${indexPath}: tensor ${showName(name)} is mapped to shard ${showValue(shard)}, which lacks it`);
        byName.set(name, f);
      }
      // And the other way: a tensor in a shard that the index does not map there would go unnoticed
      // (and unchecked by the model's unexpected-tensor check).
      for (const [file, f] of shards)
        for (const t of f.tensors())
          if (byName.get(t.name) !== f)
            throw new Error(`${indexPath}: shard ${path.relative(folder, file)} holds tensor ${showName(t.name)}, which weight_map does not map to it`);
    } catch (e) {
      for (const f of shards.values()) f.close();
      throw e;
    }
    return new WeightStore(folder, [...shards.values()], byName);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  info(name: string): StTensorInfo {
    return this.file(name).info(name);
  }

  readRaw(name: string): Uint8Array {
    return this.file(name).readRaw(name);
  }

  /** See SafetensorsFile.readRanges. */
  readRanges(name: string, spans: readonly (readonly [number, number])[]): Uint8Array {
    return this.file(name).readRanges(name, spans);
  }

  /** See SafetensorsFile.readRawSteps. */
  readRawSteps(name: string, pieceBytes: number): Generator<number, Uint8Array, void> {
    return this.file(name).readRawSteps(name, pieceBytes);
  }

  /** A float tensor converted to the run dtype: f32 -> Float32Array, bf16/f16 -> Uint16Array of bits. */
  read(name: string, dtype: 'f32' | 'bf16' | 'f16'): Float32Array | Uint16Array {
    return this.convert(name, this.readRaw(name), dtype);
  }

  /** `raw`, the bytes of tensor `name` as stored, converted as `read` converts them. */
  convert(name: string, raw: Uint8Array, dtype: 'f32' | 'bf16' | 'f16'): Float32Array | Uint16Array {
    const f = this.file(name);
    return convertRaw(raw, f.info(name).dtype, dtype, `${f.path}: tensor ${showName(name)}`);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private file(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (!f) throw new Error(`${this.folder}: no tensor named ${showName(name)}`);
    return f;
  }
}

// ---------------------------------------------------------------------------------------------------

export interface StTensorData {
  name: string;
  dtype: StDType;
  shape: number[];
  data: ArrayBufferView;
}

/**
 * Writes a safetensors file atomically: a temp file next to `file`, fsynced, renamed over it, then the
 * directory fsynced, so a crash leaves either the old file or the complete new one. Tensors are laid
 * out contiguously in the given order; the header is space-padded to a multiple of 8 bytes.
 */
export function writeSafetensors(file: string, tensors: StTensorData[], metadata?: Record<string, string>): void {
  // Validate everything before touching the disk.
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata))
      if (typeof v !== 'string') throw new Error(`writeSafetensors ${file}: metadata "${k}" is not a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    const where = `writeSafetensors ${file}: tensor "${t.name}"`;
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) throw new Error(`${where}: duplicate or reserved name`);
    if (!isStDType(t.dtype)) throw new Error(`${where}: unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new Error(`${where}: shape ${JSON.stringify(t.shape)} is not an array of non-negative integers`);
    const expected = numel(t.shape) * ST_DTYPE_SIZE[t.dtype];
    if (t.data.byteLength !== expected)
      throw new Error(`${where}: data has ${t.data.byteLength} bytes, shape [${t.shape.join(', ')}] of ${t.dtype} needs ${expected}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.byteLength));

  const tmp = `${file}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx');
    writeFully(fd, len);
    writeFully(fd, headerBytes);
    for (const t of tensors) writeFully(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(path.dirname(file));
}

/** Makes the rename durable; some platforms and file systems can't fsync a directory, which is fine. */
function fsyncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}
