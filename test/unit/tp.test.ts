// Tensor parallelism (models/tp.ts): the share arithmetic (with fast-check over shapes), each rank's
// weights against slices of the file's (or the preset's whole) tensors and the bytes it reads, its
// logits against one device's, and greedy generation with strategy tp for GPT-2 and LLaMA at tp=2 and
// tp=3, with grouped-query KV heads split and replicated.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generate } from '../../src/engine/generate.js';
import { ParallelModel } from '../../src/engine/parallel-model.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { Model } from '../../src/models/model.js';
import { modelConfig } from '../../src/models/source.js';
import { blockRanges, shardConfig, spanBytes, tpLayout } from '../../src/models/tp.js';
import { KvCache } from '../../src/models/transformer.js';
import { newCommId } from '../../src/parallel/comm.js';
import { DevicePool } from '../../src/parallel/pool.js';
import { rng } from '../../src/random.js';
import { Tensor } from '../../src/tensor.js';
import { ensureDist } from '../helpers/dist.js';
import { fixtures } from '../helpers/models.js';
import { relError } from '../helpers/reference.js';
import { tinyGpt2Folder, tinyLlamaFolder, type TinyFolder } from '../helpers/tp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cpu = { device: 'cpu:0', dtype: 'f32' as const };

// Independent slicing of a row-major [R, C] array (what a rank's share must equal).
const rowsOf = (a: ArrayLike<number>, C: number, r0: number, r1: number) => Array.from(a).slice(r0 * C, r1 * C);
const colsOf = (a: ArrayLike<number>, R: number, C: number, c0: number, c1: number) =>
  Array.from({ length: R }, (_, r) => Array.from(a).slice(r * C + c0, r * C + c1)).flat();
const transposeOf = (a: number[], R: number, C: number) => Array.from({ length: R * C }, (_, i) => a[(i % R) * C + Math.floor(i / R)]!);
const arr = (t: Tensor | undefined) => Array.from(t!.toArray());

describe('tp shares', () => {
  const cfg = (heads: number, kvHeads: number, intermediate = 96) => ({ ...modelConfig('tiny-llama'), heads, kvHeads, intermediate });

  it('splits query heads and MLP features; KV heads split, or one replicated per rank', () => {
    expect(tpLayout(cfg(4, 2), { rank: 1, size: 2 })).toMatchObject({ q0: 2, heads: 2, kv0: 1, kvHeads: 1, f0: 48, features: 48 });
    expect(tpLayout(cfg(6, 3), { rank: 2, size: 3 })).toMatchObject({ q0: 4, heads: 2, kv0: 2, kvHeads: 1 });
    // 6 query heads over 1 KV head: every rank holds that head.
    for (let r = 0; r < 3; r++) expect(tpLayout(cfg(6, 1), { rank: r, size: 3 })).toMatchObject({ q0: 2 * r, heads: 2, kv0: 0, kvHeads: 1 });
    // 4 query heads over 2 KV heads on 4 ranks: ranks 0, 1 read KV head 0; ranks 2, 3 KV head 1.
    expect([0, 1, 2, 3].map((r) => tpLayout(cfg(4, 2), { rank: r, size: 4 }).kv0)).toEqual([0, 0, 1, 1]);
    expect(shardConfig(cfg(6, 3), { rank: 0, size: 3 })).toMatchObject({ heads: 2, kvHeads: 1, intermediate: 32, hidden: 64 });
    expect(shardConfig(cfg(6, 3), undefined).heads).toBe(6);
  });

  it('refuses shapes that do not split, naming the sizes', () => {
    expect(() => tpLayout(cfg(4, 2), { rank: 0, size: 3 })).toThrow(/tp=3 does not divide the model's 4 attention heads/);
    expect(() => tpLayout(cfg(6, 2), { rank: 0, size: 3 })).toThrow(/tp=3 neither divides the model's 2 KV heads nor is a multiple/);
    expect(() => tpLayout(cfg(4, 2, 90), { rank: 0, size: 4 })).toThrow(/tp=4 does not divide the model's 90 MLP features/);
    expect(() => tpLayout(cfg(4, 2), { rank: 2, size: 2 })).toThrow(/rank 2 is not in \[0, 2\)/);
  });

  it('property: the ranks partition the query heads and features; each rank holds the KV heads its queries read', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 6 }), (size, kvHeads, groups, f) => {
        const heads = kvHeads * groups;
        const c = cfg(heads, kvHeads, size * f);
        const ok = heads % size === 0 && (kvHeads % size === 0 || size % kvHeads === 0);
        if (!ok) {
          expect(() => tpLayout(c, { rank: 0, size })).toThrow(/tp=/);
          return;
        }
        const ls = Array.from({ length: size }, (_, rank) => tpLayout(c, { rank, size }));
        expect(ls.flatMap((l) => Array.from({ length: l.heads }, (_, i) => l.q0 + i))).toEqual(Array.from({ length: heads }, (_, i) => i));
        expect(ls.flatMap((l) => Array.from({ length: l.features }, (_, i) => l.f0 + i))).toEqual(Array.from({ length: size * f }, (_, i) => i));
        for (const l of ls) {
          expect(l.heads % l.kvHeads).toBe(0); // the shard's own grouped-query layout
          for (let h = 0; h < l.heads; h++) {
            const kv = Math.floor((l.q0 + h) / (heads / kvHeads)); // the KV head query head q0 + h reads
            expect(kv - l.kv0).toBe(Math.floor(h / (l.heads / l.kvHeads))); // ... is the one the shard pairs it with
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('property: blockRanges covers exactly the block, in element order, adjacent ranges merged', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.constantFrom(1, 2, 4),
        fc.nat(), fc.nat(), fc.nat(), fc.nat(),
        (R, C, elem, a, b, c, d) => {
          const r0 = a % (R + 1), r1 = r0 + (b % (R - r0 + 1)), c0 = c % (C + 1), c1 = c0 + (d % (C - c0 + 1));
          const spans = blockRanges([R, C], elem, [r0, r1], [c0, c1]);
          const bytes = Uint8Array.from({ length: R * C * elem }, (_, i) => i % 251);
          const got = spans.flatMap(([x, y]) => Array.from(bytes.subarray(x, y)));
          const want: number[] = [];
          for (let r = r0; r < r1; r++) for (let col = c0; col < c1; col++) want.push(...bytes.subarray((r * C + col) * elem, (r * C + col + 1) * elem));
          expect(got).toEqual(want);
          expect(spanBytes(spans)).toBe((r1 - r0) * (c1 - c0) * elem);
          for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThan(spans[i - 1]![1]); // sorted, apart
          if (r1 > r0 && c1 > c0) expect(spans.length).toBe(c0 === 0 && c1 === C ? 1 : r1 - r0);
        },
      ),
      { numRuns: 500 },
    );
    expect(() => blockRanges([4, 4], 4, [0, 5], [0, 4])).toThrow(/outside a \[4, 4\] tensor/);
  });
});

describe('tp shard loading', () => {
  const folders: Record<string, TinyFolder> = {};
  beforeAll(() => {
    folders.gpt2 = tinyGpt2Folder(6);
    folders.llamaSplit = tinyLlamaFolder(6, 3, { bias: true });
    folders.llamaRepl = tinyLlamaFolder(6, 1);
  });

  /** Every file read while `fn` runs: whole tensors, and the bytes of the ranged reads. */
  function reads<T>(fn: () => T): { value: T; whole: string[]; ranged: Map<string, number> } {
    const whole: string[] = [], ranged = new Map<string, number>();
    const a = vi.spyOn(SafetensorsFile.prototype, 'readRawSteps');
    a.mockImplementation(function (this: SafetensorsFile, name: string, piece: number) {
      whole.push(name);
      return origSteps.call(this, name, piece);
    });
    const b = vi.spyOn(SafetensorsFile.prototype, 'readRanges');
    b.mockImplementation(function (this: SafetensorsFile, name: string, spans: readonly (readonly [number, number])[]) {
      ranged.set(name, (ranged.get(name) ?? 0) + spans.reduce((n, [x, y]) => n + y - x, 0));
      return origRanges.call(this, name, spans);
    });
    try {
      return { value: fn(), whole, ranged };
    } finally {
      a.mockRestore();
      b.mockRestore();
    }
  }
  const origSteps = SafetensorsFile.prototype.readRawSteps;
  const origRanges = SafetensorsFile.prototype.readRanges;

  it('GPT-2 (6 heads, tp=3): each rank holds its heads\' q, k, v and features, sliced from the Conv1D weights; reads only them', () => {
    const { dir, data } = folders.gpt2!;
    const C = 48, F = 192, n = 3, hD = C / n, f = F / n;
    let shareBytes = 0;
    for (let r = 0; r < n; r++) {
      const { value: m, whole, ranged } = reads(() => Model.load(dir, { ...cpu, stage: { start: 0, end: 2, embed: true, head: true, tp: { rank: r, size: n } } }));
      for (let i = 0; i < 2; i++) {
        const p = `h.${i}.`, l = m.weights.layers[i]!;
        const attn = data[`${p}attn.c_attn.weight`]!;
        const q = [0, 1, 2].flatMap((part) => transposeOf(colsOf(attn, C, 3 * C, part * C + r * hD, part * C + (r + 1) * hD), C, hD));
        expect(arr(l.qkv)).toEqual(q);
        expect(l.qkv.shape).toEqual([3 * hD, C]);
        expect(arr(l.qkvBias)).toEqual([0, 1, 2].flatMap((part) => Array.from(data[`${p}attn.c_attn.bias`]!).slice(part * C + r * hD, part * C + (r + 1) * hD)));
        expect(arr(l.out)).toEqual(transposeOf(rowsOf(data[`${p}attn.c_proj.weight`]!, C, r * hD, (r + 1) * hD), hD, C));
        expect(arr(l.up)).toEqual(transposeOf(colsOf(data[`${p}mlp.c_fc.weight`]!, C, F, r * f, (r + 1) * f), C, f));
        expect(arr(l.upBias)).toEqual(Array.from(data[`${p}mlp.c_fc.bias`]!).slice(r * f, (r + 1) * f));
        expect(arr(l.down)).toEqual(transposeOf(rowsOf(data[`${p}mlp.c_proj.weight`]!, C, r * f, (r + 1) * f), f, C));
        // The row-parallel biases are added once, by rank 0.
        expect(l.outBias === undefined).toBe(r > 0);
        expect(l.downBias === undefined).toBe(r > 0);
        if (r === 0) expect(arr(l.outBias)).toEqual(Array.from(data[`${p}attn.c_proj.bias`]!));
        expect(arr(l.norm1)).toEqual(Array.from(data[`${p}ln_1.weight`]!)); // replicated
        // No split tensor is read whole; each is read as exactly the rank's share.
        for (const w of ['attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight']) expect(whole).not.toContain(p + w);
        expect(ranged.get(`${p}attn.c_attn.weight`)).toBe(C * 3 * hD * 4);
        expect(ranged.get(`${p}mlp.c_proj.weight`)).toBe(f * C * 4);
        shareBytes += ranged.get(`${p}mlp.c_fc.weight`)!;
      }
      expect(m.weights.embed!.toArray()).toEqual(data['wte.weight']); // embeddings replicated
      m.dispose();
    }
    expect(shareBytes).toBe(2 * C * F * 4); // the ranks' shares add up to the whole tensor, once
  });

  for (const [key, kvHeads] of [['llamaSplit', 3], ['llamaRepl', 1]] as const)
    it(`LLaMA (6 heads, ${kvHeads} KV, tp=3): q/k/v rows of its heads, o_proj and down columns, gate and up rows`, () => {
      const { dir, data } = folders[key]!;
      const C = 48, D = 8, F = 96, n = 3, f = F / n, bias = key === 'llamaSplit';
      for (let r = 0; r < n; r++) {
        const { value: m, whole, ranged } = reads(() => Model.load(dir, { ...cpu, stage: { start: 0, end: 2, embed: true, head: true, tp: { rank: r, size: n } } }));
        const kv0 = kvHeads === 3 ? r : 0; // split: KV head r; replicated: the one KV head
        for (let i = 0; i < 2; i++) {
          const p = `model.layers.${i}.`, l = m.weights.layers[i]!, s = (x: string) => data[`${p}${x}`]!;
          expect(arr(l.qkv)).toEqual([
            ...rowsOf(s('self_attn.q_proj.weight'), C, 2 * r * D, 2 * (r + 1) * D),
            ...rowsOf(s('self_attn.k_proj.weight'), C, kv0 * D, (kv0 + 1) * D),
            ...rowsOf(s('self_attn.v_proj.weight'), C, kv0 * D, (kv0 + 1) * D),
          ]);
          expect(arr(l.out)).toEqual(colsOf(s('self_attn.o_proj.weight'), C, 6 * D, 2 * r * D, 2 * (r + 1) * D));
          expect(arr(l.up)).toEqual([...rowsOf(s('mlp.gate_proj.weight'), C, r * f, (r + 1) * f), ...rowsOf(s('mlp.up_proj.weight'), C, r * f, (r + 1) * f)]);
          expect(arr(l.down)).toEqual(colsOf(s('mlp.down_proj.weight'), C, F, r * f, (r + 1) * f));
          if (bias) {
            const sl = (x: string, a: number, b: number) => Array.from(s(x)).slice(a, b);
            expect(arr(l.qkvBias)).toEqual([...sl('self_attn.q_proj.bias', 2 * r * D, 2 * (r + 1) * D), ...sl('self_attn.k_proj.bias', kv0 * D, (kv0 + 1) * D), ...sl('self_attn.v_proj.bias', kv0 * D, (kv0 + 1) * D)]);
            expect(l.outBias === undefined).toBe(r > 0);
          }
          for (const w of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) expect(whole).not.toContain(`${p}self_attn.${w}.weight`);
          expect(ranged.get(`${p}self_attn.o_proj.weight`)).toBe(C * 2 * D * 4);
          expect(ranged.get(`${p}self_attn.k_proj.weight`)).toBe(D * C * 4);
        }
        expect(m.transformer.cfg).toMatchObject({ heads: 2, kvHeads: 1, intermediate: f });
        m.dispose();
      }
    });

  it('a shard used without its tp communicator is an error naming the rank, not wrong logits', async () => {
    const m = Model.load('tiny-llama', { ...cpu, stage: { start: 0, end: 6, embed: true, head: true, tp: { rank: 1, size: 2 } } });
    await expect(generate(m, [[1, 2, 3]], { maxTokens: 2, stopTokens: [] })).rejects.toThrow(/tensor parallel rank 1 of 2: no tp communicator/);
    m.dispose();
  });

  it('readRanges reads exactly the byte ranges asked, and refuses one outside the tensor', () => {
    const { dir, data } = folders.llamaRepl!;
    const f = SafetensorsFile.open(path.join(dir, 'model.safetensors'));
    try {
      const name = 'model.layers.1.mlp.down_proj.weight'; // [48, 96] f32
      const got = f.readRanges(name, [[8, 16], [400, 404]]);
      const want = new Uint8Array(data[name]!.buffer);
      expect(Array.from(got)).toEqual([...want.subarray(8, 16), ...want.subarray(400, 404)]);
      expect(() => f.readRanges(name, [[0, 48 * 96 * 4 + 1]])).toThrow(/byte range \[0, 18433\) is outside tensor "model\.layers\.1\.mlp\.down_proj\.weight" \(18432 bytes\)/);
      expect(() => f.readRanges(name, [[8, 4]])).toThrow(/outside tensor/);
    } finally {
      f.close();
    }
    expect(() => f.readRanges('model.norm.weight', [[0, 4]])).toThrow(/file is closed/);
  });

  it('a load reports the bytes it reads: a rank\'s share plus the replicated ends', async () => {
    const { dir } = folders.llamaSplit!;
    const seen: { bytes: number; totalBytes: number }[] = [];
    const m = await Model.loadAsync(dir, { ...cpu, stage: { start: 0, end: 2, embed: true, head: true, tp: { rank: 1, size: 3 } }, onProgress: (p) => seen.push(p) });
    const last = seen[seen.length - 1]!;
    expect(last.bytes).toBe(last.totalBytes);
    const C = 48, D = 8, F = 96, V = 96;
    const layer = (2 * D * C + 2 * D * C + C * 2 * D + 3 * (F / 3) * C + 2 * C + 2 * D + 2 * D) * 4; // q, k+v, o, gate+up+down, norms, q bias, k+v bias
    expect(last.totalBytes).toBe(2 * layer + (2 * V * C + C) * 4);
    m.dispose();
  });

  for (const preset of ['tiny-llama', 'tiny-gpt2'])
    it(`${preset} (a preset, tp=2): each rank's weights are slices of the one seeded draw`, () => {
      const full = Model.load(preset, { ...cpu, seed: 3 });
      const cfg = full.config;
      const { hidden: C, heads: H, kvHeads: KV, headDim: D, intermediate: F } = cfg;
      for (let r = 0; r < 2; r++) {
        const m = Model.load(preset, { ...cpu, seed: 3, stage: { start: 0, end: cfg.layers, embed: true, head: true, tp: { rank: r, size: 2 } } });
        const hq = H / 2, kvl = KV / 2, f = F / 2;
        for (const i of [0, cfg.layers - 1]) {
          const a = full.weights.layers[i]!, b = m.weights.layers[i]!;
          expect(arr(b.qkv)).toEqual([
            ...rowsOf(arr(a.qkv), C, r * hq * D, (r + 1) * hq * D),
            ...rowsOf(arr(a.qkv), C, (H + r * kvl) * D, (H + (r + 1) * kvl) * D),
            ...rowsOf(arr(a.qkv), C, (H + KV + r * kvl) * D, (H + KV + (r + 1) * kvl) * D),
          ]);
          expect(arr(b.out)).toEqual(colsOf(arr(a.out), C, H * D, r * hq * D, (r + 1) * hq * D));
          const upRows = cfg.family === 'gpt2' ? rowsOf(arr(a.up), C, r * f, (r + 1) * f) : [...rowsOf(arr(a.up), C, r * f, (r + 1) * f), ...rowsOf(arr(a.up), C, F + r * f, F + (r + 1) * f)];
          expect(arr(b.up)).toEqual(upRows);
          expect(arr(b.down)).toEqual(colsOf(arr(a.down), C, F, r * f, (r + 1) * f));
        }
        expect(Buffer.from(m.weights.head!.toBuffer()).equals(Buffer.from(full.weights.head!.toBuffer()))).toBe(true); // replicated
        m.dispose();
      }
      full.dispose();
    });
});

/** Prefill logits of every position, then one decode step's, on one device (the reference). */
function oneDeviceLogits(source: string, seed: number, prompt: number[], next: number) {
  const m = Model.load(source, { ...cpu, seed });
  const T = prompt.length, i32 = { dtype: 'i32' as const, device: 'cpu:0' };
  const cache = new KvCache(m.config, 1, T + 1, 'cpu:0', 'f32');
  const ts = [Tensor.from(prompt, [T], i32), Tensor.from(prompt.map((_, t) => t), [T], i32), Tensor.zeros([1], i32)];
  const x = m.transformer.prefill(cache, ts[0]!, ts[1]!, ts[2]!, 1, T);
  const lp = m.transformer.logits(x);
  const ds = [Tensor.from([next], [1], i32), Tensor.from([T], [1], i32), Tensor.from([T + 1], [1], i32)];
  const ld = m.transformer.decode(cache, ds[0]!, ds[1]!, ds[2]!, 1);
  const out = { prefill: lp.toArray() as Float32Array, decode: ld.toArray() as Float32Array };
  [...ts, ...ds, x, lp, ld].forEach((t) => t.dispose());
  cache.dispose();
  m.dispose();
  return out;
}

describe('tp forward on CPU devices', () => {
  let pool: DevicePool;
  const cases: { name: string; source: () => string; size: number; kvHeads: number }[] = [
    { name: 'GPT-2 fixture, tp=2', source: () => path.join(fixtures, 'tiny-gpt2'), size: 2, kvHeads: 2 },
    { name: 'LLaMA fixture (2 KV heads split), tp=2', source: () => path.join(fixtures, 'tiny-llama'), size: 2, kvHeads: 1 },
    { name: 'GPT-2 of 6 heads, tp=3', source: () => gpt2Dir, size: 3, kvHeads: 2 },
    { name: 'LLaMA of 6 heads, 3 KV heads split, biases, tp=3', source: () => splitDir, size: 3, kvHeads: 1 },
    { name: 'LLaMA of 6 heads, 1 KV head replicated, tp=3', source: () => replDir, size: 3, kvHeads: 1 },
    { name: 'tiny-qwen2 preset (q/k/v biases), tp=2', source: () => 'tiny-qwen2', size: 2, kvHeads: 1 },
    { name: 'tiny-llama preset (2 KV heads, each on 2 of 4 ranks), tp=4', source: () => 'tiny-llama', size: 4, kvHeads: 1 },
  ];
  let gpt2Dir = '', splitDir = '', replDir = '';
  beforeAll(async () => {
    ensureDist();
    gpt2Dir = tinyGpt2Folder(6, 11).dir;
    splitDir = tinyLlamaFolder(6, 3, { bias: true, seed: 12 }).dir;
    replDir = tinyLlamaFolder(6, 1, { seed: 13 }).dir;
    pool = await DevicePool.start(['cpu:0', 'cpu:1', 'cpu:2', 'cpu:3'], { cpuDevices: 4, modules: [path.join(root, 'test/helpers/tp-handlers.mjs')] });
  }, 300_000);
  afterAll(() => pool?.close());

  for (const c of cases)
    it(`${c.name}: prefill and decode logits equal one device's within f32 rounding`, async () => {
      const r = rng(c.size * 7 + c.kvHeads);
      const source = c.source();
      const V = modelConfig(source).vocabSize;
      const prompt = Array.from({ length: 5 }, () => Math.floor(r() * V)), next = Math.floor(r() * V);
      const ref = oneDeviceLogits(source, 4, prompt, next);
      const id = newCommId('cpu');
      const got = await Promise.all(
        Array.from({ length: c.size }, (_, rank) =>
          pool.call<{ prefill: Float32Array; decode: Float32Array; kvHeads: number }>(rank, 'logits', { source, seed: 4, tp: { rank, size: c.size }, id, prompt, next }),
        ),
      );
      for (const g of got) {
        expect(g.kvHeads).toBe(c.kvHeads); // a rank caches only its KV heads
        expect(relError(g.prefill, ref.prefill)).toBeLessThan(1e-5);
        expect(relError(g.decode, ref.decode)).toBeLessThan(1e-5);
        expect(Array.from(g.decode)).toEqual(Array.from(got[0]!.decode)); // every rank the same logits (one all-reduce result)
      }
    });
});

describe('strategy tp', () => {
  const prompts = [[5, 9, 3], [17, 2, 40, 8, 1, 6], [30], [11, 12, 13, 14]];
  const N = 6;
  const open: ParallelModel[] = [];
  afterAll(async () => {
    for (const p of open) await p.close();
  });
  beforeAll(() => ensureDist(), 300_000);

  async function check(source: string, devices: string[]) {
    const m = Model.load(source, cpu);
    const want = (await generate(m, prompts, { maxTokens: N, stopTokens: [] })).map((g) => g.tokens);
    m.dispose();
    const p = await ParallelModel.load(source, { strategy: 'tp', devices, dtype: 'f32' });
    open.push(p);
    expect(p.mesh.shape).toEqual({ dp: 1, pp: 1, tp: devices.length });
    expect(p.placed.map((s) => s.tp)).toEqual(devices.map((_, rank) => ({ rank, size: devices.length })));
    const res = await p.generate(prompts, { maxTokens: N });
    expect(res.tokens).toEqual(want);
    // A second call runs on the same shards and communicators.
    expect((await p.generate(prompts.slice(1), { maxTokens: 3 })).tokens).toEqual(want.slice(1).map((t) => t.slice(0, 3)));
  }

  it('GPT-2 and LLaMA fixtures on tp=2: greedy tokens equal one device\'s', async () => {
    await check(path.join(fixtures, 'tiny-gpt2'), ['cpu:0', 'cpu:1']);
    await check(path.join(fixtures, 'tiny-llama'), ['cpu:0', 'cpu:1']);
  }, 120_000);

  it('tp=3: GPT-2 of 6 heads, LLaMA with KV heads split and replicated', async () => {
    await check(tinyGpt2Folder(6, 21).dir, ['cpu:0', 'cpu:1', 'cpu:2']);
    await check(tinyLlamaFolder(6, 3, { bias: true, seed: 22 }).dir, ['cpu:0', 'cpu:1', 'cpu:2']);
    await check(tinyLlamaFolder(6, 1, { seed: 23 }).dir, ['cpu:0', 'cpu:1', 'cpu:2']);
  }, 120_000);

  it('refuses a tp size that does not divide the heads before any worker starts', async () => {
    await expect(ParallelModel.load('tiny-llama', { strategy: 'tp', devices: ['cpu:0', 'cpu:1', 'cpu:2'], dtype: 'f32' })).rejects.toThrow(
      /tp=3 does not divide the model's 4 attention heads/,
    );
    await expect(ParallelModel.load(tinyLlamaFolder(6, 2).dir, { strategy: 'tp', devices: ['cpu:0', 'cpu:1', 'cpu:2'] })).rejects.toThrow(/tp=3 neither divides the model's 2 KV heads/);
    await expect(ParallelModel.load('tiny-llama', { strategy: 'tp', devices: ['cpu:0', 'cpu:1'], chunks: 2 })).rejects.toThrow(/chunks/);
  });
});
