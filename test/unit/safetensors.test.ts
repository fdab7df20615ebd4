// Safetensors reading and writing: the committed fixtures (single file and sharded), round trips in
// several dtypes, conversion to the run dtypes against dtype.ts, every malformed-file error, atomic writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, WeightStore, writeSafetensors, type StDType } from '../../src/io/safetensors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/dtype.js';
import { rng } from '../../src/random.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
let tmp: string;
beforeAll(() => void (tmp = mkdtempSync(join(tmpdir(), 'parallm-st-'))));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A file from a header (object or literal text), data bytes, and optionally a forged header length. */
function rawFile(name: string, header: unknown, data = new Uint8Array(0), headerLen?: bigint): string {
  const text = header instanceof Uint8Array ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(text.length));
  const file = join(tmp, name);
  writeFileSync(file, Buffer.concat([len, text, data]));
  return file;
}

const bytesOf = (v: ArrayBufferView) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

describe('fixtures', () => {
  it('reads the tiny GPT-2 checkpoint: names, Conv1D shapes, metadata, f32 values', () => {
    const f = SafetensorsFile.open(join(fixtures, 'tiny-gpt2', 'model.safetensors'));
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(f.tensors()).toHaveLength(28);
    const attn = f.info('transformer.h.0.attn.c_attn.weight');
    expect(attn).toMatchObject({ dtype: 'F32', shape: [64, 192], nbytes: 64 * 192 * 4 });
    expect(f.info('transformer.wte.weight').shape).toEqual([256, 64]);
    expect(f.info('transformer.wpe.weight').shape).toEqual([64, 64]);
    expect(f.info('transformer.h.1.mlp.c_proj.weight').shape).toEqual([256, 64]);
    expect(() => f.info('lm_head.weight')).toThrow(/no tensor named "lm_head.weight"/); // tied to wte
    // Offsets are absolute and the tensors tile the data section exactly.
    const ts = f.tensors();
    for (let i = 1; i < ts.length; i++) expect(ts[i]!.offset).toBe(ts[i - 1]!.offset + ts[i - 1]!.nbytes);
    const last = ts.at(-1)!;
    expect(last.offset + last.nbytes).toBe(readFileSync(f.path).length);
    const raw = f.readRaw('transformer.h.0.ln_1.weight');
    const file = readFileSync(f.path);
    const ln = f.info('transformer.h.0.ln_1.weight');
    expect(Buffer.from(raw).equals(file.subarray(ln.offset, ln.offset + ln.nbytes))).toBe(true);
    f.close();
    expect(() => f.readRaw('transformer.h.0.ln_1.weight')).toThrow(/closed/);
  });

  it('the sharded and unsharded tiny LLaMA hold byte-identical tensors', () => {
    const one = WeightStore.open(join(fixtures, 'tiny-llama'));
    const sharded = WeightStore.open(join(fixtures, 'tiny-llama-sharded'));
    expect(one.names()).toHaveLength(21);
    expect([...sharded.names()].sort()).toEqual([...one.names()].sort());
    expect(one.info('model.layers.0.self_attn.k_proj.weight')).toMatchObject({ dtype: 'F32', shape: [32, 64] });
    expect(one.info('model.layers.1.mlp.down_proj.weight').shape).toEqual([64, 128]);
    expect(sharded.info('lm_head.weight').file).toMatch(/model-00008-of-00009\.safetensors$/);
    for (const name of one.names()) {
      expect(sharded.info(name).shape).toEqual(one.info(name).shape);
      expect(Buffer.from(sharded.readRaw(name)).equals(Buffer.from(one.readRaw(name)))).toBe(true);
    }
    const q = one.read('model.layers.0.self_attn.q_proj.weight', 'f32');
    expect(q).toBeInstanceOf(Float32Array);
    expect(q.length).toBe(64 * 64);
    expect(bytesOf(q)).toEqual(one.readRaw('model.layers.0.self_attn.q_proj.weight'));
    expect(one.has('model.norm.weight')).toBe(true);
    expect(one.has('model.nope')).toBe(false);
    expect(() => sharded.read('model.nope', 'f32')).toThrow(/no tensor named "model.nope"/);
    one.close();
    sharded.close();
  });
});

describe('round trip', () => {
  it('writes and reads back bytes, dtypes, shapes and metadata', () => {
    const r = rng(1);
    const f32 = Float32Array.from({ length: 24 }, () => r() - 0.5);
    const bf = Uint16Array.from({ length: 6 }, () => (r() * 65536) | 0);
    const f16 = Uint16Array.from({ length: 5 }, () => (r() * 65536) | 0);
    const i32 = Int32Array.from([1, -2, 2147483647, -2147483648]);
    const i64 = BigInt64Array.from([1n, -1n, 1n << 62n]);
    const u8 = new Uint8Array([1, 2, 3]);
    const tensors: { name: string; dtype: StDType; shape: number[]; data: ArrayBufferView }[] = [
      { name: 'a.f32', dtype: 'F32', shape: [2, 3, 4], data: f32 },
      { name: 'b.bf16', dtype: 'BF16', shape: [2, 3], data: bf },
      { name: 'c.f16', dtype: 'F16', shape: [5], data: f16 },
      { name: 'd.i32', dtype: 'I32', shape: [2, 2], data: i32 },
      { name: 'e.i64', dtype: 'I64', shape: [3], data: i64 },
      { name: 'f.u8', dtype: 'U8', shape: [3], data: u8.subarray(0) },
      { name: 'g.empty', dtype: 'F32', shape: [0, 7], data: new Float32Array(0) },
      { name: 'h.scalar', dtype: 'F32', shape: [], data: new Float32Array([7]) },
      { name: 'i.view', dtype: 'F32', shape: [2], data: f32.subarray(3, 5) }, // a view at an offset
    ];
    const file = join(tmp, 'rt.safetensors');
    writeSafetensors(file, tensors, { format: 'pt', note: 'üñí' });
    const headerLen = Number(readFileSync(file).readBigUInt64LE(0));
    expect(headerLen % 8).toBe(0);

    const st = SafetensorsFile.open(file);
    expect(st.metadata).toEqual({ format: 'pt', note: 'üñí' });
    expect(st.tensors().map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    let offset = 8 + headerLen;
    for (const t of tensors) {
      const info = st.info(t.name);
      expect(info).toMatchObject({ dtype: t.dtype, shape: t.shape, offset, nbytes: t.data.byteLength });
      offset += t.data.byteLength;
      expect(st.readRaw(t.name)).toEqual(bytesOf(t.data));
    }
    st.close();

    // No metadata: no __metadata__ entry, and still readable.
    writeSafetensors(file, [tensors[0]!]);
    const st2 = SafetensorsFile.open(file);
    expect(st2.metadata).toEqual({});
    expect(JSON.parse(readFileSync(file).subarray(8, 8 + Number(readFileSync(file).readBigUInt64LE(0))).toString())).not.toHaveProperty('__metadata__');
    st2.close();
  });

  it('converts F32/BF16/F16 on disk to f32/bf16/f16 exactly as dtype.ts does', () => {
    // Values across the whole f32 range, around the f16 range, ties, subnormals and specials.
    const r = rng(7);
    const n = 20000;
    const src = new Float32Array(n);
    const bits = new Uint32Array(src.buffer);
    for (let i = 0; i < n; i++) {
      if (i % 4 === 0) bits[i] = (r() * 2 ** 32) >>> 0;
      else src[i] = (r() - 0.5) * 2 ** Math.floor(r() * 50 - 30);
    }
    src.set([0, -0, Infinity, -Infinity, NaN, 65504, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -11]);
    const bfBits = Uint16Array.from(src, (v) => f32ToBf16(v));
    const hBits = Uint16Array.from(src, (v) => f32ToF16(v));
    const file = join(tmp, 'conv', 'model.safetensors');
    mkdirSync(join(tmp, 'conv'));
    writeSafetensors(file, [
      { name: 'f32', dtype: 'F32', shape: [n], data: src },
      { name: 'bf16', dtype: 'BF16', shape: [n], data: bfBits },
      { name: 'f16', dtype: 'F16', shape: [n], data: hBits },
      { name: 'i32', dtype: 'I32', shape: [1], data: new Int32Array(1) },
    ]);
    const ws = WeightStore.open(join(tmp, 'conv'));
    const f32Bits = (a: ArrayLike<number>) => new Uint32Array(Float32Array.from(a).buffer);

    expect(ws.read('f32', 'f32')).toEqual(src);
    expect(ws.read('f32', 'bf16')).toEqual(bfBits);
    expect(ws.read('f32', 'f16')).toEqual(hBits);
    expect(ws.read('bf16', 'bf16')).toEqual(bfBits);
    expect(new Uint32Array(ws.read('bf16', 'f32').buffer)).toEqual(f32Bits(Array.from(bfBits, bf16ToF32)));
    expect(ws.read('bf16', 'f16')).toEqual(Uint16Array.from(bfBits, (h) => f32ToF16(bf16ToF32(h))));
    expect(ws.read('f16', 'f16')).toEqual(hBits);
    expect(new Uint32Array(ws.read('f16', 'f32').buffer)).toEqual(f32Bits(Array.from(hBits, f16ToF32)));
    expect(ws.read('f16', 'bf16')).toEqual(Uint16Array.from(hBits, (h) => f32ToBf16(f16ToF32(h))));
    expect(() => ws.read('i32', 'f32')).toThrow(/"i32" is I32: only F32, F16 and BF16 tensors can be loaded as f32$/);
    ws.close();
  });
});

describe('malformed files', () => {
  const open = (file: string) => () => SafetensorsFile.open(file);
  const t = (dtype: string, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });

  it('rejects a truncated file or a bad header length', () => {
    const good = join(tmp, 'good.safetensors');
    writeSafetensors(good, [{ name: 'w', dtype: 'F32', shape: [16], data: new Float32Array(16) }]);
    const cut = join(tmp, 'cut.safetensors');
    cpSync(good, cut);
    truncateSync(cut, readFileSync(good).length - 4);
    expect(open(cut)).toThrow(/cut\.safetensors: tensor "w": data_offsets \[0, 64\] beyond the data section \(60 bytes\): truncated/);
    writeFileSync(cut, Buffer.alloc(5));
    expect(open(cut)).toThrow(/truncated file: 5 bytes/);
    expect(open(rawFile('long.safetensors', { a: 1 }, undefined, 1000n))).toThrow(/long\.safetensors: header length 1000 is larger than the file/);
    expect(open(rawFile('huge.safetensors', {}, undefined, 200_000_000n))).toThrow(/header length 200000000 exceeds the 104857600-byte limit/);
    expect(open(rawFile('huge2.safetensors', {}, undefined, 1n << 63n))).toThrow(/exceeds/);
  });

  it('rejects a header that is not a JSON object', () => {
    expect(open(rawFile('json.safetensors', '{"w": {"dtype": "F32",'))).toThrow(/json\.safetensors: header is not valid JSON/);
    expect(open(rawFile('arr.safetensors', '[1, 2]'))).toThrow(/header is not a JSON object/);
    expect(open(rawFile('utf.safetensors', new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])))).toThrow(/not valid JSON/);
    expect(open(rawFile('meta.safetensors', { __metadata__: { a: 1 } }))).toThrow(/__metadata__ must be an object of strings/);
  });

  it('rejects bad tensor entries, naming the file and the tensor', () => {
    const data = new Uint8Array(64);
    const cases: [string, unknown, RegExp][] = [
      ['dtype', { w: t('Q4', [4], [0, 4]) }, /dtype\.safetensors: tensor "w": unknown dtype "Q4"/],
      ['shape', { w: t('F32', [4, -1], [0, 16]) }, /tensor "w": shape \[4,-1\] is not an array of non-negative integers/],
      ['shape2', { w: t('F32', '4', [0, 16]) }, /tensor "w": shape "4" is not an array/],
      ['offs', { w: t('F32', [4], [16, 0]) }, /tensor "w": data_offsets \[16,0\] is not \[begin, end\]/],
      ['offs2', { w: t('F32', [4], [0.5, 16.5]) }, /tensor "w": data_offsets/],
      ['offs3', { w: t('F32', [4], [0]) }, /tensor "w": data_offsets/],
      ['range', { w: t('F32', [32], [0, 128]) }, /tensor "w": data_offsets \[0, 128\] beyond the data section \(64 bytes\)/],
      ['length', { w: t('F32', [4, 4], [0, 60]) }, /tensor "w": byte length 60 does not match shape \[4, 4\] of F32 \(64 bytes\)/],
      ['overlap', { a: t('F32', [8], [0, 32]), b: t('F32', [8], [28, 60]) }, /tensor "b" overlaps tensor "a"/],
      ['entry', { w: [1, 2] }, /tensor "w": entry is not an object/],
    ];
    for (const [name, header, re] of cases) expect(open(rawFile(`${name}.safetensors`, header, data)), name).toThrow(re);
    // Zero-size tensors may sit anywhere, even on another tensor's bytes.
    const ok = SafetensorsFile.open(rawFile('zero.safetensors', { a: t('F32', [16], [0, 64]), z: t('BF16', [0, 3], [8, 8]) }, data));
    expect(ok.info('z').nbytes).toBe(0);
    expect(ok.readRaw('z')).toEqual(new Uint8Array(0));
    ok.close();
  });

  it('rejects missing shards, wrong index entries and empty folders', () => {
    const dir = join(tmp, 'shards');
    cpSync(join(fixtures, 'tiny-llama-sharded'), dir, { recursive: true });
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map: Record<string, string> };

    index.weight_map['model.norm.weight'] = 'model-00001-of-00009.safetensors';
    writeFileSync(indexPath, JSON.stringify(index));
    expect(() => WeightStore.open(dir)).toThrow(/tensor "model.norm.weight" is mapped to shard "model-00001-of-00009.safetensors", which lacks it/);

    index.weight_map['model.norm.weight'] = '../elsewhere.safetensors';
    writeFileSync(indexPath, JSON.stringify(index));
    expect(() => WeightStore.open(dir)).toThrow(/outside the model folder/);

    unlinkSync(join(dir, 'model-00009-of-00009.safetensors'));
    const shardOf = readFileSync(join(fixtures, 'tiny-llama-sharded', 'model.safetensors.index.json'), 'utf8');
    writeFileSync(indexPath, shardOf);
    expect(() => WeightStore.open(dir)).toThrow(/shard "model-00009-of-00009.safetensors" \(for tensor "[^"]+"\) is missing/);

    writeFileSync(indexPath, '{"metadata": {}}');
    expect(() => WeightStore.open(dir)).toThrow(/no "weight_map" object/);
    writeFileSync(indexPath, '{"weight_map": ');
    expect(() => WeightStore.open(dir)).toThrow(/index\.json: not valid JSON/);

    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    expect(() => WeightStore.open(empty)).toThrow(/no weights found: looked for model.safetensors and model.safetensors.index.json/);
  });
});

describe('atomic write', () => {
  const tmpFiles = (dir: string) => readdirSync(dir).filter((f) => f.includes('.tmp-'));

  it('a failed write leaves the target unchanged and no temp file behind', () => {
    const dir = join(tmp, 'atomic');
    mkdirSync(dir);
    const target = join(dir, 'model.safetensors');
    writeSafetensors(target, [{ name: 'old', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
    const before = readFileSync(target);

    const bad = [{ name: 'new', dtype: 'F32' as const, shape: [3], data: new Float32Array(2) }];
    expect(() => writeSafetensors(target, bad)).toThrow(/tensor "new": data has 8 bytes, shape \[3\] of F32 needs 12/);
    expect(() => writeSafetensors(target, [{ name: 'x', dtype: 'F17' as never, shape: [1], data: new Float32Array(1) }])).toThrow(/unknown dtype "F17"/);
    expect(() => writeSafetensors(target, [{ name: '__metadata__', dtype: 'F32', shape: [1], data: new Float32Array(1) }])).toThrow(/reserved/);
    expect(readFileSync(target).equals(before)).toBe(true);
    expect(tmpFiles(dir)).toEqual([]);

    // A failure after the temp file exists (rename onto a non-empty directory) also cleans up.
    const blocker = join(dir, 'blocked');
    mkdirSync(join(blocker, 'inside'), { recursive: true });
    expect(() => writeSafetensors(blocker, [{ name: 'w', dtype: 'F32', shape: [1], data: new Float32Array(1) }])).toThrow();
    expect(tmpFiles(dir)).toEqual([]);

    // A good write replaces the file in one step.
    writeSafetensors(target, [{ name: 'new', dtype: 'F32', shape: [3], data: new Float32Array([4, 5, 6]) }]);
    const st = SafetensorsFile.open(target);
    expect(st.tensors().map((x) => x.name)).toEqual(['new']);
    expect(new Float32Array(st.readRaw('new').buffer)).toEqual(new Float32Array([4, 5, 6]));
    st.close();
    expect(tmpFiles(dir)).toEqual([]);
  });
});
