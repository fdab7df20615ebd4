// Property-based fuzzing of the loaders (fast-check): random mutations of the fixture folders (bytes of the
// header length, JSON header and data of a safetensors file; dtypes, shapes, offsets and names in the header;
// values and types in config.json, the shard index and tokenizer.json; truncation) are written to temp
// folders and loaded (Model.load, WeightStore.open, loadConfig, loadTokenizerSync + encode). Properties:
// the process never dies, no case hangs (each runs in a worker thread under a time limit), and every
// rejection is an Error whose message is printable text that never shows a marker planted in the file.
// PARALLM_FUZZ_RUNS sets the number of cases (default: a few seconds' worth for CI).
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDist } from '../helpers/dist.js';
import { fixtures } from '../helpers/models.js';

const RUNS = Number(process.env.PARALLM_FUZZ_RUNS ?? 300);
/** A case still running after this is a hang, stopped; one over SLOW_MS fails too (a tiny model loads in milliseconds). */
const HANG_MS = 10_000;
const SLOW_MS = 2_000;
/** Planted in files; no message may show it. Its ':' keeps it out of what messages quote as plain names. */
const MARKER = 'root:x:0:0:MARKER';

type Op = 'model' | 'weights' | 'config' | 'tokenizer';
type Reply = { ok: boolean; isError?: boolean; message?: string; ms: number } | { hung: true };

/** One worker thread running the loaders; replaced when a case hangs. */
class Runner {
  private worker!: Worker;
  private next = 0;
  private pending = new Map<number, (r: Reply) => void>();
  constructor() {
    this.start();
  }
  private start(): void {
    this.worker = new Worker(new URL('../helpers/fuzz-loaders-worker.mjs', import.meta.url));
    this.worker.on('message', (m: { id: number } & Reply) => {
      this.pending.get(m.id)?.(m);
      this.pending.delete(m.id);
    });
    this.worker.on('error', (e) => {
      for (const done of this.pending.values()) done({ ok: false, isError: false, message: `worker died: ${e.message}`, ms: 0 });
      this.pending.clear();
    });
  }
  run(op: Op, folder: string): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        void this.worker.terminate();
        this.start();
        resolve({ hung: true });
      }, HANG_MS);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.worker.postMessage({ id, op, folder });
    });
  }
  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

// ------------------------------------------------------------------------------------------- mutations

type Target = 'weights' | 'index' | 'config' | 'tokenizer';
type ByteOp = 'flip' | 'set' | 'insert' | 'delete' | 'truncate';
type Mutation =
  | { kind: 'bytes'; target: Target; shard: number; region: 'len' | 'header' | 'data' | 'any'; op: ByteOp; pos: number; bytes: number[]; marker: boolean }
  | { kind: 'header'; shard: number; tensor: number; field: 'dtype' | 'shape' | 'data_offsets' | 'rename' | 'entry' | 'delete' | 'add' | 'dup' | 'meta'; value: unknown; lenDelta: number }
  | { kind: 'json'; target: 'config' | 'index' | 'tokenizer'; node: number; action: 'set' | 'delete'; value: unknown }
  | { kind: 'tokenizer'; field: 'regex' | 'addedId' | 'vocabId'; index: number; value: unknown }
  | { kind: 'config'; key: string; value: unknown };

// The fields the config parser reads, of both families, so values land where they matter.
const CONFIG_KEYS = ['model_type', 'vocab_size', 'n_embd', 'n_head', 'n_layer', 'n_inner', 'n_positions', 'layer_norm_epsilon',
  'activation_function', 'tie_word_embeddings', 'hidden_size', 'num_attention_heads', 'num_key_value_heads', 'head_dim',
  'num_hidden_layers', 'intermediate_size', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta', 'rope_parameters',
  'rope_scaling', 'hidden_act', 'bos_token_id', 'eos_token_id'];
const bigOrSmall = fc.constantFrom<unknown>(2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 1e6, 0, 1, 3, 7, 4096, -1, 1.5);

const oddValue = fc.oneof(
  fc.constantFrom<unknown>(MARKER, -1, 0, 1, 2, 3, 2 ** 31, 2 ** 53, 1e308, -0.5, 0.5, '', null, true, [], {}, [MARKER], { [MARKER]: 1 }, 'F32', 'BF16', 'I8', 'llama', 'gpt2'),
  fc.integer({ min: -5, max: 300 }),
  fc.jsonValue({ maxDepth: 2 }),
);
const REGEXES = ['(a+)+$', '(x|xx)+y', '\\s*\\s*\\s*x', '(.*)\\1', ' ?\\p{L}+| ?\\p{N}+|\\s+', '[', '(?<n', MARKER, 'a{2,}', ''];

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    kind: fc.constant('bytes' as const),
    target: fc.constantFrom<Target>('weights', 'weights', 'weights', 'index', 'config', 'tokenizer'),
    shard: fc.nat(8),
    region: fc.constantFrom('len' as const, 'header' as const, 'header' as const, 'data' as const, 'any' as const),
    op: fc.constantFrom<ByteOp>('flip', 'set', 'insert', 'delete', 'truncate'),
    pos: fc.nat(),
    bytes: fc.array(fc.nat(255), { minLength: 1, maxLength: 12 }),
    marker: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('header' as const),
    shard: fc.nat(8),
    tensor: fc.nat(),
    field: fc.constantFrom('dtype' as const, 'shape' as const, 'data_offsets' as const, 'rename' as const, 'entry' as const, 'delete' as const, 'add' as const, 'dup' as const, 'meta' as const),
    value: oddValue,
    lenDelta: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -9, max: 9 })),
  }),
  fc.record({
    kind: fc.constant('json' as const),
    target: fc.constantFrom('config' as const, 'config' as const, 'index' as const, 'tokenizer' as const),
    node: fc.nat(),
    action: fc.constantFrom('set' as const, 'set' as const, 'delete' as const),
    value: oddValue,
  }),
  fc.record({
    kind: fc.constant('tokenizer' as const),
    field: fc.constantFrom('regex' as const, 'addedId' as const, 'vocabId' as const),
    index: fc.nat(),
    value: fc.oneof(oddValue, fc.constantFrom<unknown>(...REGEXES)),
  }),
  fc.record({ kind: fc.constant('config' as const), key: fc.constantFrom(...CONFIG_KEYS), value: fc.oneof(bigOrSmall, oddValue) }),
);

/** Which fixture a mutation applies to (seed picks among those that have its file). */
const targetOf = (m: Mutation): Target =>
  m.kind === 'bytes' || m.kind === 'json' ? m.target : m.kind === 'header' ? 'weights' : m.kind;

function fixtureFor(m: Mutation, seed: number): string {
  const target = targetOf(m);
  if (target === 'tokenizer') return 'tiny-llama';
  if (target === 'index') return 'tiny-llama-sharded';
  return ['tiny-gpt2', 'tiny-llama', 'tiny-llama-sharded'][seed % 3]!;
}

function weightsFile(dir: string, shard: number): string {
  const shards = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
  return path.join(dir, shards[shard % shards.length]!);
}

function fileOf(dir: string, target: Target, shard: number): string {
  if (target === 'weights') return weightsFile(dir, shard);
  return path.join(dir, { index: 'model.safetensors.index.json', config: 'config.json', tokenizer: 'tokenizer.json' }[target]);
}

function mutateBytes(buf: Buffer, m: Extract<Mutation, { kind: 'bytes' }>): Buffer {
  let lo = 0;
  let hi = buf.length;
  if (m.target === 'weights' && buf.length >= 8) {
    const hl = Number(buf.readBigUInt64LE(0));
    if (m.region === 'len') hi = 8;
    else if (m.region === 'header') [lo, hi] = [8, Math.min(buf.length, 8 + hl)];
    else if (m.region === 'data') lo = Math.min(buf.length, 8 + hl);
  }
  const pos = lo + (hi > lo ? m.pos % (hi - lo) : 0);
  const bytes = m.marker ? Buffer.from(MARKER) : Buffer.from(m.bytes);
  switch (m.op) {
    case 'flip':
      if (pos < buf.length) buf[pos] ^= 1 << (m.bytes[0]! % 8);
      return buf;
    case 'set':
      bytes.copy(buf, pos);
      return buf;
    case 'insert':
      return Buffer.concat([buf.subarray(0, pos), bytes, buf.subarray(pos)]);
    case 'delete':
      return Buffer.concat([buf.subarray(0, pos), buf.subarray(pos + 1 + (m.bytes[0]! % 16))]);
    case 'truncate':
      return buf.subarray(0, pos);
  }
}

function mutateHeader(file: string, m: Extract<Mutation, { kind: 'header' }>): void {
  const buf = readFileSync(file);
  const hl = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + hl).toString()) as Record<string, any>;
  const data = buf.subarray(8 + hl);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = names[m.tensor % names.length]!;
  let text: string;
  switch (m.field) {
    case 'dtype':
    case 'shape':
    case 'data_offsets':
      header[name][m.field] = m.value;
      break;
    case 'rename': {
      const to = typeof m.value === 'string' ? m.value : names[(m.tensor + 1) % names.length]!;
      const entries = Object.entries(header).map(([k, v]) => [k === name ? to : k, v] as const);
      text = `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`; // may repeat a name
      break;
    }
    case 'entry':
      header[name] = m.value;
      break;
    case 'delete':
      delete header[name];
      break;
    case 'add':
      header[typeof m.value === 'string' ? m.value : `${name}.extra`] = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
      break;
    case 'dup':
      text = JSON.stringify(header).replace(/}$/, `,${JSON.stringify(name)}:${JSON.stringify(header[name])}}`);
      break;
    case 'meta':
      header.__metadata__ = m.value;
      break;
  }
  text ??= JSON.stringify(header);
  const body = Buffer.from(text);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Math.max(0, body.length + m.lenDelta)));
  writeFileSync(file, Buffer.concat([len, body, data]));
}

/** Every path into a JSON value (objects and arrays), in a fixed order. */
function jsonPaths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (at.length) out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => jsonPaths(x, [...at, i], out));
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) jsonPaths(x, [...at, k], out);
  return out;
}

function mutateJson(file: string, m: Extract<Mutation, { kind: 'json' }>): void {
  const json = JSON.parse(readFileSync(file, 'utf8'));
  const paths = jsonPaths(json);
  const p = paths[m.node % paths.length]!;
  let parent = json;
  for (const k of p.slice(0, -1)) parent = parent[k];
  const last = p.at(-1)!;
  if (m.action === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else parent[last] = m.value;
  writeFileSync(file, JSON.stringify(json));
}

function mutateTokenizer(file: string, m: Extract<Mutation, { kind: 'tokenizer' }>): void {
  const json = JSON.parse(readFileSync(file, 'utf8'));
  if (m.field === 'regex')
    json.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: m.value }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ] };
  else if (m.field === 'addedId') json.added_tokens[m.index % json.added_tokens.length].id = m.value;
  else {
    const keys = Object.keys(json.model.vocab);
    json.model.vocab[keys[m.index % keys.length]!] = m.value;
  }
  writeFileSync(file, JSON.stringify(json));
}

function apply(dir: string, m: Mutation): Op[] {
  switch (m.kind) {
    case 'bytes': {
      const file = fileOf(dir, m.target, m.shard);
      writeFileSync(file, mutateBytes(readFileSync(file), m));
      break;
    }
    case 'header':
      mutateHeader(weightsFile(dir, m.shard), m);
      break;
    case 'json':
      mutateJson(fileOf(dir, m.target, 0), m);
      break;
    case 'tokenizer':
      mutateTokenizer(path.join(dir, 'tokenizer.json'), m);
      break;
    case 'config': {
      const file = path.join(dir, 'config.json');
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), [m.key]: m.value }));
      break;
    }
  }
  const target = targetOf(m);
  return [target === 'index' ? 'weights' : target, 'model'];
}

// ------------------------------------------------------------------------------------------- the suite

describe('fuzzing the loaders', () => {
  let runner: Runner;
  let tmp: string;
  const fixtureFiles = new Map<string, [string, Buffer][]>();
  beforeAll(() => {
    ensureDist();
    runner = new Runner();
    // Memory-backed when there is one: writing a folder per case to a disk-backed /tmp costs 20-70 ms.
    tmp = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'parallm-fuzz-'));
    for (const f of ['tiny-gpt2', 'tiny-llama', 'tiny-llama-sharded'])
      fixtureFiles.set(f, readdirSync(path.join(fixtures, f)).map((n) => [n, readFileSync(path.join(fixtures, f, n))]));
  });
  afterAll(async () => {
    await runner.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it(`mutated folders never crash or hang a loader, and every rejection is a clean Error (${RUNS} cases)`, async () => {
    const stats = new Map<Op, { tried: number; loaded: number; rejected: number }>();
    let cases = 0;
    let slowest = 0;
    // Sanity: the unmutated fixtures load, so a rejection below is the mutation's doing.
    for (const f of ['tiny-gpt2', 'tiny-llama', 'tiny-llama-sharded']) expect(await runner.run('model', path.join(fixtures, f)), f).toMatchObject({ ok: true });
    expect(await runner.run('tokenizer', path.join(fixtures, 'tiny-llama'))).toMatchObject({ ok: true });

    await fc.assert(
      fc.asyncProperty(mutation, fc.nat(), async (m, seed) => {
        const dir = mkdtempSync(path.join(tmp, 'case-'));
        try {
          for (const [name, bytes] of fixtureFiles.get(fixtureFor(m, seed))!) writeFileSync(path.join(dir, name), bytes);
          const ops = apply(dir, m);
          cases++;
          for (const op of ops) {
            const r = await runner.run(op, dir);
            if ('hung' in r) throw new Error(`${op} hung (over ${HANG_MS} ms)`);
            slowest = Math.max(slowest, r.ms);
            expect(r.ms, `${op} took ${r.ms.toFixed(0)} ms`).toBeLessThan(SLOW_MS);
            const s = stats.get(op) ?? { tried: 0, loaded: 0, rejected: 0 };
            stats.set(op, s);
            s.tried++;
            if (r.ok) {
              s.loaded++;
              continue;
            }
            s.rejected++;
            expect(r.isError, `${op} threw a non-Error: ${r.message}`).toBe(true);
            expect(r.message, op).toBeTruthy();
            expect(r.message, `${op}: the message shows file bytes`).not.toContain('root:x');
            expect(r.message, `${op}: the message shows file bytes`).not.toContain('MARKER');
            expect(r.message, `${op}: the message is not printable text`).not.toMatch(/[\u0000-\u001f\u007f-\u009f\ufffd]/);
          }
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: RUNS },
    );
    const summary = [...stats].map(([op, s]) => `${op}: ${s.tried} tried, ${s.rejected} rejected, ${s.loaded} loaded`).join('; ');
    console.log(`fuzz-loaders: ${cases} mutated folders; ${summary}; slowest case ${slowest.toFixed(0)} ms`);
    // Most mutations break something; some leave a loadable folder (e.g. a changed dtype of an unused value).
    const all = [...stats.values()].reduce((a, s) => ({ rejected: a.rejected + s.rejected, loaded: a.loaded + s.loaded }), { rejected: 0, loaded: 0 });
    expect(all.rejected).toBeGreaterThan(RUNS / 4);
  });
});
