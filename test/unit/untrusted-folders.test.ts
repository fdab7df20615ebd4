// Loading folders that may come from anywhere: each case of the reliability issue "Loading untrusted
// folders" (a config with fewer layers, duplicate names, FIFOs and folders, symlinks out of the folder,
// messages that echo file bytes, huge headers, hostile tokenizer.json files, misleading messages).
import { spawnSync } from 'node:child_process';
import {
  cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/io/config.js';
import { DEFAULT_HEADER_LIMITS, SafetensorsFile, WeightStore, writeSafetensors, type StTensorData } from '../../src/io/safetensors.js';
import { loadTokenizerSync } from '../../src/io/tokenizer.js';
import { Model } from '../../src/models/model.js';
import { loadLimits } from '../../src/models/weights.js';
import { generate } from '../../src/engine/generate.js';
import { ensureDist } from '../helpers/dist.js';
import { expected, fixtures } from '../helpers/models.js';

let tmp: string;
beforeAll(() => void (tmp = mkdtempSync(path.join(tmpdir(), 'parallm-untrusted-'))));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh copy of a fixture folder (and a fresh folder next to it, outside it). */
function copy(fixture: string): string {
  const d = path.join(tmp, `${fixture}-${n++}`);
  cpSync(path.join(fixtures, fixture), d, { recursive: true });
  return d;
}
const editJson = (file: string, edit: (j: Record<string, any>) => void) => {
  const j = JSON.parse(readFileSync(file, 'utf8'));
  edit(j);
  writeFileSync(file, JSON.stringify(j));
};
/** Rewrites a safetensors file through `edit` of its tensor list. */
function rewrite(file: string, edit: (ts: StTensorData[]) => StTensorData[]): void {
  const f = SafetensorsFile.open(file);
  const ts = f.tensors().map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: f.readRaw(t.name) }));
  f.close();
  writeSafetensors(file, edit(ts));
}
/** A safetensors file from literal header text. */
function rawSafetensors(file: string, header: string, data = new Uint8Array(0)): void {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(header)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(header), data]));
}
const errorOf = (f: () => unknown): Error => {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, got none');
};
const cpu = { device: 'cpu:0', dtype: 'f32' as const };
const SECRET = 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n';

describe('the config and the checkpoint must agree', () => {
  it('a config with fewer layers than the checkpoint is refused, naming the extra layer', () => {
    for (const [fixture, key, layer1] of [
      ['tiny-llama', 'num_hidden_layers', 'model.layers.1.'],
      ['tiny-gpt2', 'n_layer', 'transformer.h.1.'],
    ] as const) {
      const d = copy(fixture);
      editJson(path.join(d, 'config.json'), (c) => (c[key] = 1));
      const e = errorOf(() => Model.load(d, cpu));
      expect(e.message, fixture).toMatch(/unexpected tensors for this config/);
      expect(e.message, fixture).toContain(layer1);
      // The same for a stage: layer 1 is not another stage's, as the model has one layer.
      expect(() => Model.load(d, { ...cpu, stage: { start: 0, end: 1, embed: true, head: false } }), fixture).toThrow(layer1);
    }
  });

  it('a config claiming 2^31 layers is refused at once (limits are counted, not listed)', () => {
    const d = copy('tiny-llama');
    editJson(path.join(d, 'config.json'), (c) => (c.num_hidden_layers = 2 ** 31));
    const t0 = performance.now();
    // The memory check refuses the whole model before a file is opened (2^31 layers fit no host); three
    // layers pass it and are refused at the first missing one.
    expect(() => Model.load(d, cpu)).toThrow(/Model\.load .*cpu:0 needs [\d.]+ GiB \(\d+ bytes\) of weights but it has [\d.]+ GiB \(\d+ bytes\) free/);
    expect(() => Model.load(d, { ...cpu, stage: { start: 0, end: 3, embed: true, head: false } })).toThrow(
      /missing tensor "model\.layers\.2\.self_attn\.q_proj\.weight"/,
    );
    expect(performance.now() - t0).toBeLessThan(1000);
    // A stage of it loads only its layers; the unexpected-tensor check does not list 2^31 layers' names.
    const stage = Model.load(d, { ...cpu, stage: { start: 0, end: 1, embed: true, head: false } });
    expect(performance.now() - t0).toBeLessThan(1000);
    stage.dispose();
    expect(loadLimits(loadConfig(d))).toEqual({ maxTensors: DEFAULT_HEADER_LIMITS.maxTensors, maxHeaderBytes: (1 << 20) + 1024 * DEFAULT_HEADER_LIMITS.maxTensors });
  });

  it('a stage still skips exactly the layers and ends of the other stages', async () => {
    const d = path.join(fixtures, 'tiny-llama');
    const first = Model.load(d, { ...cpu, stage: { start: 0, end: 1, embed: true, head: false } });
    const last = Model.load(d, { ...cpu, stage: { start: 1, end: 2, embed: false, head: true } });
    expect(first.weights.layers).toHaveLength(1);
    expect(last.weights.head).toBeDefined();
    first.dispose();
    last.dispose();
    const whole = Model.load(d, cpu);
    const exp = expected['tiny-llama']!;
    const [g] = await generate(whole, [exp.prompts[0]!], { maxTokens: exp.new_tokens, stopTokens: [] });
    expect(g!.tokens).toEqual(exp.greedy[0]);
    whole.dispose();
  });

  it('Model.load of a whole model refuses unexpected tensors, of any name', () => {
    for (const extra of ['model.layers.0.self_attn.extra.weight', 'model.layers.7.mlp.up_proj.weight', 'model.layers.01.mlp.up_proj.weight', 'something.else', 'lm_head.bias']) {
      const d = copy('tiny-llama');
      rewrite(path.join(d, 'model.safetensors'), (ts) => [...ts, { name: extra, dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
      expect(() => Model.load(d, cpu), extra).toThrow(`unexpected tensors for this config: "${extra}"`);
    }
    // Buffers that are not weights still load (GPT-2's attention masks, RoPE frequencies) within the config's layers.
    const g = copy('tiny-gpt2');
    rewrite(path.join(g, 'model.safetensors'), (ts) => [...ts, { name: 'transformer.h.1.attn.bias', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    Model.load(g, cpu).dispose();
    rewrite(path.join(g, 'model.safetensors'), (ts) => [...ts, { name: 'transformer.h.2.attn.bias', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    expect(() => Model.load(g, cpu)).toThrow('"transformer.h.2.attn.bias"');
  });

  it('a missing first GPT-2 tensor is reported under the name the other tensors imply', () => {
    const d = copy('tiny-gpt2');
    rewrite(path.join(d, 'model.safetensors'), (ts) => ts.filter((t) => t.name !== 'transformer.wte.weight'));
    expect(() => Model.load(d, cpu)).toThrow(/missing tensor "transformer\.wte\.weight" \(expected shape \[256, 64\]\)/);
  });

  it('a tensor of another dtype is named without library internals', () => {
    const d = copy('tiny-llama');
    rewrite(path.join(d, 'model.safetensors'), (ts) =>
      ts.map((t) => (t.name === 'model.norm.weight' ? { ...t, dtype: 'I32' as const } : t)),
    );
    const e = errorOf(() => Model.load(d, cpu));
    expect(e.message).toMatch(/tensor "model\.norm\.weight" is I32: only F32, F16 and BF16 tensors can be loaded as f32$/);
    expect(e.message).not.toMatch(/readRaw/);
  });
});

describe('safetensors headers', () => {
  it('duplicate tensor names are refused (JSON.parse would keep the last)', () => {
    const f = path.join(tmp, 'dup.safetensors');
    const e = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    rawSafetensors(f, `{"w":${e},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, new Uint8Array(8));
    expect(() => SafetensorsFile.open(f)).toThrow(/dup\.safetensors: header names tensor "w" twice/);
    // A name spelled with an escape is the same name.
    rawSafetensors(f, `{"w":${e},"\\u0077":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, new Uint8Array(8));
    expect(() => SafetensorsFile.open(f)).toThrow(/names tensor "w" twice/);
    rawSafetensors(f, '{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4));
    expect(() => SafetensorsFile.open(f)).toThrow(/tensor "w": key "dtype" appears twice/);
    // Keys in strings and in arrays are not keys.
    rawSafetensors(f, `{"__metadata__":{"a":"\\"w\\":1,"},"w":${e}}`, new Uint8Array(4));
    SafetensorsFile.open(f).close();
  });

  it('duplicate weight_map entries in a shard index are refused', () => {
    const d = copy('tiny-llama-sharded');
    const idx = path.join(d, 'model.safetensors.index.json');
    const text = readFileSync(idx, 'utf8').replace('"weight_map": {', '"weight_map": {"model.norm.weight": "model-00001-of-00009.safetensors", ');
    writeFileSync(idx, text);
    expect(() => WeightStore.open(d)).toThrow(/key "model\.norm\.weight" appears twice \(under "weight_map"\)/);
  });

  it('a header of many empty tensors is refused before it is parsed, in little time', () => {
    const d = path.join(tmp, `huge-${n++}`);
    mkdirSync(d);
    const count = 200_000;
    const parts = ['{'];
    for (let i = 0; i < count; i++) parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}${i + 1 < count ? ',' : '}'}`);
    const header = parts.join('');
    rawSafetensors(path.join(d, 'model.safetensors'), header);
    const cfg = loadConfig(path.join(fixtures, 'tiny-llama'));
    const limits = loadLimits(cfg);
    // 2 layers: 2 * (2 * 10 + 4) + 64 tensors, 1 MiB + 1 KiB each.
    expect(limits).toEqual({ maxTensors: 112, maxHeaderBytes: 1024 * 1024 + 112 * 1024 });
    let t0 = performance.now();
    expect(() => WeightStore.open(d, limits)).toThrow(`header length ${header.length} exceeds the ${limits.maxHeaderBytes}-byte limit`);
    expect(performance.now() - t0).toBeLessThan(50); // refused from the 8 length bytes
    // Within the byte limit, the entry count stops the scan.
    t0 = performance.now();
    expect(() => WeightStore.open(d, { maxTensors: 1000, maxHeaderBytes: 64 << 20 })).toThrow(/header has more than 1001 entries \(the limit is 1000 tensors/);
    // And the defaults, for a file opened on its own.
    expect(() => SafetensorsFile.open(path.join(d, 'model.safetensors'), { limits: { ...DEFAULT_HEADER_LIMITS, maxTensors: 65536 } })).toThrow(/more than 65537 entries/);
    expect(performance.now() - t0).toBeLessThan(1000);
    // Through Model.load, the config's limits apply.
    cpSync(path.join(fixtures, 'tiny-llama', 'config.json'), path.join(d, 'config.json'));
    expect(() => Model.load(d, cpu)).toThrow(/exceeds the 1163264-byte limit/);
  });

  it('the shards of an index share one limit', () => {
    const d = copy('tiny-llama-sharded');
    expect(WeightStore.open(d, { maxTensors: 21, maxHeaderBytes: 1 << 20 }).names()).toHaveLength(21);
    expect(() => WeightStore.open(d, { maxTensors: 20, maxHeaderBytes: 1 << 20 })).toThrow(/weight_map has 21 entries, over the limit of 20/);
    // The nine headers have 2336 bytes together, each at most 536: one byte less fails at the last shard opened.
    expect(WeightStore.open(d, { maxTensors: 21, maxHeaderBytes: 2336 }).names()).toHaveLength(21);
    expect(() => WeightStore.open(d, { maxTensors: 21, maxHeaderBytes: 2335 })).toThrow(/exceeds the \d+-byte limit/);
  });
});

describe('files that are not regular files', () => {
  it('a folder in place of a file is named', () => {
    const d = copy('tiny-llama');
    unlinkSync(path.join(d, 'model.safetensors'));
    mkdirSync(path.join(d, 'model.safetensors'));
    expect(() => Model.load(d, cpu)).toThrow(`${path.join(d, 'model.safetensors')}: the safetensors file is a folder, not a regular file`);
    const t = copy('tiny-llama');
    unlinkSync(path.join(t, 'tokenizer.json'));
    mkdirSync(path.join(t, 'tokenizer.json'));
    expect(() => loadTokenizerSync(t)).toThrow(`${path.join(t, 'tokenizer.json')}: the tokenizer is a folder`);
  });

  it('a FIFO as weights, config, index or tokenizer is refused at once (in a child process: a regression would hang)', () => {
    const d = copy('tiny-llama');
    const s = copy('tiny-llama-sharded');
    const fifos = [
      path.join(d, 'model.safetensors'),
      path.join(d, 'config.json'),
      path.join(d, 'tokenizer.json'),
      path.join(s, 'model-00003-of-00009.safetensors'),
    ];
    for (const f of fifos) unlinkSync(f);
    const mk = spawnSync('mkfifo', fifos);
    if (mk.error) return expect.unreachable(`mkfifo is needed for this test: ${mk.error.message}`);
    // The child runs the compiled library (dist/, as worker threads in tests do).
    ensureDist();
    const dist = path.resolve(import.meta.dirname, '../../dist/index.js');
    const code = `
      import { WeightStore, loadConfig, loadTokenizerSync } from ${JSON.stringify(dist)};
      for (const f of [() => WeightStore.open(${JSON.stringify(d)}), () => loadConfig(${JSON.stringify(d)}),
                       () => loadTokenizerSync(${JSON.stringify(d)}), () => WeightStore.open(${JSON.stringify(s)})]) {
        try { f(); console.log('loaded'); } catch (e) { console.log(e.message); }
      }`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { timeout: 30_000, encoding: 'utf8' });
    expect(r.signal, 'the child was killed: a load hung').toBeNull();
    const lines = r.stdout.trim().split('\n');
    expect(lines, r.stderr).toEqual([
      `${fifos[0]}: the safetensors file is a FIFO, not a regular file`,
      `${fifos[1]}: the model config is a FIFO, not a regular file`,
      `${fifos[2]}: the tokenizer is a FIFO, not a regular file`,
      `${fifos[3]}: the safetensors file is a FIFO, not a regular file`,
    ]);
  });
});

describe('symlinks and containment', () => {
  it('a shard in a symlinked folder that points outside the model folder is refused', () => {
    const d = copy('tiny-llama-sharded');
    const outside = path.join(tmp, `outside-${n++}`);
    mkdirSync(outside);
    renameSync(path.join(d, 'model-00002-of-00009.safetensors'), path.join(outside, 'model-00002-of-00009.safetensors'));
    symlinkSync(outside, path.join(d, 'sub'));
    editJson(path.join(d, 'model.safetensors.index.json'), (j) => {
      for (const [k, v] of Object.entries(j.weight_map)) if (v === 'model-00002-of-00009.safetensors') j.weight_map[k] = 'sub/model-00002-of-00009.safetensors';
    });
    expect(() => WeightStore.open(d)).toThrow(/sub\/model-00002-of-00009\.safetensors: the safetensors file is outside the model folder/);
    // Inside the folder, the same layout loads.
    unlinkSync(path.join(d, 'sub'));
    renameSync(outside, path.join(d, 'sub'));
    expect(WeightStore.open(d).names()).toHaveLength(21);
  });

  it('weights, config and tokenizer symlinked to a file elsewhere are refused without showing its bytes', () => {
    const secret = path.join(tmp, `passwd-${n++}`);
    writeFileSync(secret, SECRET);
    for (const [file, load] of [
      ['model.safetensors', (d: string) => WeightStore.open(d)],
      ['config.json', (d: string) => loadConfig(d)],
      ['tokenizer.json', (d: string) => loadTokenizerSync(d)],
    ] as const) {
      const d = copy('tiny-llama');
      unlinkSync(path.join(d, file));
      symlinkSync(secret, path.join(d, file));
      const e = errorOf(() => load(d));
      expect(e.message, file).toMatch(/is outside the model folder/);
      expect(e.message, file).not.toMatch(/root|daemon|bin/);
    }
  });

  it('a file inside the folder that is not what it should be is described, not shown', () => {
    for (const [file, load] of [
      ['model.safetensors', (d: string) => WeightStore.open(d)],
      ['config.json', (d: string) => loadConfig(d)],
      ['tokenizer.json', (d: string) => loadTokenizerSync(d)],
      ['model.safetensors.index.json', (d: string) => WeightStore.open(d)],
    ] as const) {
      const d = copy(file.includes('index') ? 'tiny-llama-sharded' : 'tiny-llama');
      writeFileSync(path.join(d, file), SECRET);
      const e = errorOf(() => load(d));
      expect(e.message, file).toContain(path.join(d, file));
      expect(e.message, file).not.toMatch(/root|daemon|bin/);
    }
    // The header length of a text file is shown as the number its 8 bytes make, which says what is wrong.
    const d = copy('tiny-llama');
    writeFileSync(path.join(d, 'model.safetensors'), SECRET);
    expect(() => WeightStore.open(d)).toThrow(`header length ${Buffer.from(SECRET).readBigUInt64LE(0)} exceeds`);
    // JSON values that are not plain names are described by their size.
    const c = copy('tiny-llama');
    editJson(path.join(c, 'config.json'), (j) => (j.model_type = SECRET));
    expect(() => loadConfig(c)).toThrow(/"model_type" is a \d+-character string: supported model types/);
    editJson(path.join(c, 'config.json'), (j) => (j.model_type = 'bert'));
    expect(() => loadConfig(c)).toThrow(/"model_type" is "bert"/);
  });

  it('a Hugging Face cache snapshot (symlinks into ../../blobs) loads', () => {
    const repo = path.join(tmp, `models--org--tiny-${n++}`);
    const snap = path.join(repo, 'snapshots', 'abc123');
    mkdirSync(path.join(repo, 'blobs'), { recursive: true });
    mkdirSync(snap, { recursive: true });
    for (const f of readdirSync(path.join(fixtures, 'tiny-llama'))) {
      cpSync(path.join(fixtures, 'tiny-llama', f), path.join(repo, 'blobs', `hash-${f}`));
      symlinkSync(`../../blobs/hash-${f}`, path.join(snap, f));
    }
    const m = Model.load(snap, cpu);
    expect(m.tokenizer?.kind).toBe('tokenizer.json');
    m.dispose();
  });

  it('a shard named ..lm.safetensors is inside the folder; ../x is not', () => {
    const d = copy('tiny-llama-sharded');
    renameSync(path.join(d, 'model-00004-of-00009.safetensors'), path.join(d, '..lm.safetensors'));
    editJson(path.join(d, 'model.safetensors.index.json'), (j) => {
      for (const [k, v] of Object.entries(j.weight_map)) if (v === 'model-00004-of-00009.safetensors') j.weight_map[k] = '..lm.safetensors';
    });
    const one = WeightStore.open(path.join(fixtures, 'tiny-llama'));
    const ws = WeightStore.open(d);
    for (const name of one.names()) expect(Buffer.from(ws.readRaw(name)).equals(Buffer.from(one.readRaw(name))), name).toBe(true);
    one.close();
    ws.close();
    for (const bad of ['../x.safetensors', 'a/../../x.safetensors', '/etc/passwd'])
      editJson(path.join(d, 'model.safetensors.index.json'), (j) => (j.weight_map['model.norm.weight'] = bad)),
        expect(() => WeightStore.open(d), bad).toThrow(/is outside the model folder/);
  });
});

describe('tokenizer.json', () => {
  const withTokenizer = (edit: (j: Record<string, any>) => void) => {
    const d = copy('tiny-llama');
    editJson(path.join(d, 'tokenizer.json'), edit);
    return d;
  };

  it('a pre-tokenizer regex that backtracks exponentially is refused at load', () => {
    const d = withTokenizer((j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false }));
    const t0 = performance.now();
    expect(() => loadTokenizerSync(d)).toThrow(/the regex of pre_tokenizer\.pattern is refused: a repeated group contains a quantifier/);
    expect(performance.now() - t0).toBeLessThan(1000);
    // Nested in a Sequence, and in a normalizer.
    const s = withTokenizer((j) => (j.normalizer = { type: 'Sequence', normalizers: [{ type: 'Replace', pattern: { Regex: '(x|xx)+y' }, content: '' }] }));
    expect(() => loadTokenizerSync(s)).toThrow(/normalizer\.normalizers\[0\]\.pattern is refused: a repeated group contains an alternation/);
    // A safe Split regex loads and encodes, fast, a text that would stall (a+)+$.
    const ok = withTokenizer((j) => (j.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: ' ?\\p{L}+| ?\\p{N}+|\\s+' }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ] }));
    const tok = loadTokenizerSync(ok);
    const text = `${'a'.repeat(40)}!`;
    expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it('added-token and vocabulary ids are bounded by the vocabulary', () => {
    for (const [edit, re] of [
      [(j: any) => (j.added_tokens[0].id = 2 ** 31), /"added_tokens"\[0\]\.id is 2147483648, outside \[0, 65798\) \(259 vocabulary entries, 3 added tokens\)/],
      [(j: any) => (j.added_tokens[1].id = -1), /"added_tokens"\[1\]\.id is -1/],
      [(j: any) => (j.added_tokens[1].id = '7'), /"added_tokens"\[1\]\.id is "7"/],
      [(j: any) => (j.model.vocab[Object.keys(j.model.vocab)[5]!] = 1e9), /"model\.vocab" has id 1000000000/],
      [(j: any) => (j.added_tokens = 5), /"added_tokens" is 5, not a list/],
    ] as const) {
      const d = withTokenizer(edit);
      const t0 = performance.now();
      expect(() => loadTokenizerSync(d)).toThrow(re);
      expect(performance.now() - t0).toBeLessThan(1000);
    }
  });

  it('library errors do not show the file', () => {
    const d = withTokenizer((j) => (j.pre_tokenizer = { type: SECRET }));
    const e = errorOf(() => loadTokenizerSync(d));
    expect(e.message).toMatch(/cannot load .*tokenizer\.json: unsupported PreTokenizer type a \d+-character string/);
    const p = withTokenizer((j) => (j.pre_tokenizer = { type: 'Split', pattern: { Regex: '(?<root:x' }, behavior: 'Isolated', invert: false }));
    const e2 = errorOf(() => loadTokenizerSync(p));
    expect(e2.message).toMatch(/cannot load/);
    expect(e2.message).not.toMatch(/root/);
  });
});

describe('shard indexes', () => {
  it('a tensor in a shard that weight_map does not map there is refused', () => {
    const d = copy('tiny-llama-sharded');
    rewrite(path.join(d, 'model-00003-of-00009.safetensors'), (ts) => [...ts, { name: 'model.layers.9.extra', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    expect(() => WeightStore.open(d)).toThrow(/shard model-00003-of-00009\.safetensors holds tensor "model\.layers\.9\.extra", which weight_map does not map to it/);
    // The same tensor in two shards, mapped to one of them.
    const e = copy('tiny-llama-sharded');
    const idx = JSON.parse(readFileSync(path.join(e, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    const [name, shard] = Object.entries(idx.weight_map).find(([, s]) => s !== 'model-00003-of-00009.safetensors')!;
    const donor = SafetensorsFile.open(path.join(e, shard));
    const t = donor.info(name);
    const data = donor.readRaw(name);
    donor.close();
    rewrite(path.join(e, 'model-00003-of-00009.safetensors'), (ts) => [...ts, { name, dtype: t.dtype, shape: t.shape, data }]);
    expect(() => WeightStore.open(e)).toThrow(`holds tensor "${name}", which weight_map does not map to it`);
  });
});

describe('tokenizer side files', () => {
  it('bos/eos ids outside the vocabulary are ignored, not trusted', () => {
    const d = copy('tiny-llama');
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ bos_token_id: 2 ** 31, eos_token_id: [-3] }));
    const tok = loadTokenizerSync(d);
    expect([tok.bosTokenId, tok.eosTokenId]).toEqual([null, null]);
    writeFileSync(path.join(d, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 0] }));
    expect([loadTokenizerSync(d).bosTokenId, loadTokenizerSync(d).eosTokenId]).toEqual([1, 2]);
  });
});
