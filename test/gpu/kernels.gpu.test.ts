// Every CUDA kernel against the CPU backend and the float64 reference, on fresh random inputs, outputs
// poisoned first. Skipped where there is no GPU (CI); run on the lent H100 through the device tool.
import { describe, expect, it } from 'vitest';
import { DeviceEvent, Tensor, capture, cudaDeviceCount, memoryStats, ops, synchronize } from '../../src/index.js';
import { GPU_LARGE_CASES, KERNEL_CASES, poisoned, randT, tolerance, type KernelCase } from '../helpers/cases.js';
import { matmulRef, relError } from '../helpers/reference.js';
import { uniformArray } from '../../src/random.js';
import { native } from '../../src/native.js';

const gpus = cudaDeviceCount();
const dev = 'cuda:0';

function check(c: KernelCase, dt: 'f32' | 'bf16' | 'f16' | 'i32') {
  const seed = Math.floor(Math.random() * 1e6);
  const g = c.run(dev, dt, seed);
  const h = c.run('cpu:0', dt, seed); // same seed, same inputs
  if (g.exact) {
    expect(Array.from(g.out), `seed ${seed} vs reference`).toEqual(Array.from(g.ref));
    expect(Array.from(g.out), `seed ${seed} vs CPU`).toEqual(Array.from(h.out));
  } else {
    expect(relError(g.out, g.ref), `seed ${seed} vs reference`).toBeLessThanOrEqual(tolerance(dt));
    expect(relError(g.out, h.out), `seed ${seed} vs CPU`).toBeLessThanOrEqual(2 * tolerance(dt));
  }
}


/**
 * C = 0.5 A' B' + 0.25 C0 + bias on fresh inputs with `hooks` set (and undone after), every element against
 * float64 and none left unwritten: the sm90 tiles' tests.
 */
function everyElement(M: number, N: number, K: number, ta: boolean, tb: boolean, dt: 'bf16' | 'f16', hooks: { set: () => void; undo: () => void }) {
  const seed = Math.floor(Math.random() * 1e6);
  const a = randT(ta ? [K, M] : [M, K], dt, dev, seed);
  const b = randT(tb ? [N, K] : [K, N], dt, dev, seed + 1);
  const bias = randT([N], dt, dev, seed + 2);
  const c0 = randT([M, N], dt, dev, seed + 3);
  const out = Tensor.empty([M, N], { dtype: dt, device: dev }).copyFrom(c0.t);
  hooks.set();
  try {
    ops.matmul(a.t, b.t, { transA: ta, transB: tb, bias: bias.t, alpha: 0.5, beta: 0.25, out });
  } finally {
    hooks.undo();
  }
  const o = out.toArray();
  for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`seed ${seed}: element ${i} unwritten`);
  const ref = matmulRef(a.v, b.v, bias.v, c0.v, M, N, K, ta, tb, 0.5, 0.25);
  expect(relError(o, ref), `seed ${seed}`).toBeLessThan(1e-2);
  [a.t, b.t, bias.t, c0.t, out].forEach((t) => t.dispose());
}

describe.skipIf(gpus === 0)('CUDA kernels match the CPU backend and float64 references', () => {
  for (const c of [...KERNEL_CASES, ...GPU_LARGE_CASES])
    for (const dt of c.dtypes) it(`${c.name} [${dt}]`, () => check(c, dt));

  for (const [M, N, K, tb] of [
    [512, 768, 1024, true],
    [1000, 1000, 1000, false],
    [257, 4096, 4096, true],
    [4, 11008, 4096, true],
    [16, 4096, 4096, true],
    // One row on the GEMV's XS form (matmul.cu's gemv_xs) with an edge row set (N not a multiple of 8) and the
    // longest row it takes; decode.gpu.test.ts holds 7B's one-row shapes to float64 and the other kernels.
    [1, 4100, 11008, true],
    [8192, 64, 128, false],
    // Decode batches: few tiles, so the sm90 path slices K (split-K) and reduces the partials.
    [64, 4096, 4096, true],
    [128, 12288, 4096, true],
    [200, 4096, 11008, true],
    [100, 1000, 1000, false],
  ] as const)
    it(`bf16 tensor-core matmul ${M}x${N}x${K}${tb ? ' B^T' : ''} vs float64 (sampled rows)`, () => {
      const a = randT([M, K], 'bf16', dev, 1);
      const b = randT(tb ? [N, K] : [K, N], 'bf16', dev, 2);
      const out = poisoned([M, N], 'bf16', dev);
      ops.matmul(a.t, b.t, { transB: tb, out });
      const o = out.toArray();
      // Reference on a few rows (full float64 GEMM of this size is slow in JS).
      const rows = [...new Set([0, 1, M >> 1, M - 1])].filter((r) => r < M);
      for (const r of rows) {
        const ref = matmulRef(a.v.subarray(r * K, (r + 1) * K), b.v, null, null, 1, N, K, false, tb);
        expect(relError(o.subarray(r * N, (r + 1) * N), ref), `row ${r}`).toBeLessThan(1e-2);
      }
      for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`element ${i} unwritten`);
      [a.t, b.t, out].forEach((t) => t.dispose());
    });

  // The register GEMV on 32 W rows a block (matmulGemv 8 and 9): the bits of the register kernel on 8 (path 0: the
  // same sums in the same order) and float64, with edge row sets (N not a multiple of 32), a K tail inside a chunk
  // (K % 32 != 0) and fewer rows of X than 16.
  for (const [M, N, K] of [
    [16, 4100, 4096],
    [13, 1000, 1000],
    [1, 264, 11008],
    [16, 12288, 4096],
  ] as const)
    it(`bf16 GEMV ${M}x${N}x${K} B^T on 32 rows a block: the bits of 8 rows a block, and float64`, () => {
      const a = randT([M, K], 'bf16', dev, 61);
      const b = randT([N, K], 'bf16', dev, 62);
      const bias = randT([N], 'bf16', dev, 63);
      const c0 = randT([M, N], 'bf16', dev, 64);
      const run = (path: number) => {
        const out = poisoned([M, N], 'bf16', dev).copyFrom(c0.t);
        native.testing.matmulGemv(path);
        try {
          ops.matmul(a.t, b.t, { transB: true, bias: bias.t, alpha: 0.5, beta: 0.25, out });
        } finally {
          native.testing.matmulGemv(-1);
        }
        const o = out.toArray();
        out.dispose();
        return o;
      };
      const base = run(0);
      const ref = matmulRef(a.v, b.v, bias.v, c0.v, M, N, K, false, true, 0.5, 0.25);
      expect(relError(base, ref)).toBeLessThan(1e-2);
      for (const path of [8, 9]) {
        const o = run(path);
        let differ = 0;
        for (let i = 0; i < o.length; i++) {
          if (!Number.isFinite(o[i]!)) throw new Error(`path ${path}: element ${i} unwritten`);
          if (o[i] !== base[i]) differ++;
        }
        expect(differ, `path ${path}: elements that differ from path 0`).toBe(0);
      }
      [a.t, b.t, bias.t, c0.t].forEach((t) => t.dispose());
    });
});

describe.skipIf(gpus === 0)('sm90 matmul epilogue: C through the TMA', () => {
  // Tile edges in M (not a multiple of 64 or 128) and N (a multiple of 8, not of 64 or 256), bias and
  // alpha; beta = 0 (the TMA path). The same inputs with the registers' epilogue give identical bits.
  for (const [M, N, K, tb, withBias] of [
    [200, 1000, 512, true, true],
    [333, 4104, 1024, false, false],
    [129, 264, 4096, true, true],
    [2048, 22016, 256, true, false],
  ] as const)
    it(`${M}x${N}x${K}${tb ? ' B^T' : ''}${withBias ? ', bias' : ''}, alpha 0.5: equals the register epilogue${M * N * K < 5e8 ? ' and float64' : ''}`, () => {
      const a = randT([M, K], 'bf16', dev, 41);
      const b = randT(tb ? [N, K] : [K, N], 'bf16', dev, 42);
      const bias = withBias ? randT([N], 'bf16', dev, 43) : null;
      const viaTma = poisoned([M, N], 'bf16', dev);
      const viaRegs = poisoned([M, N], 'bf16', dev);
      ops.matmul(a.t, b.t, { transB: tb, bias: bias?.t, alpha: 0.5, out: viaTma });
      native.testing.matmulTmaStore(false);
      try {
        ops.matmul(a.t, b.t, { transB: tb, bias: bias?.t, alpha: 0.5, out: viaRegs });
      } finally {
        native.testing.matmulTmaStore(true);
      }
      const o = viaTma.toArray(), r = viaRegs.toArray();
      let differ = 0;
      for (let i = 0; i < o.length; i++) {
        if (!Number.isFinite(o[i]!)) throw new Error(`element ${i} unwritten`);
        if (o[i] !== r[i]) differ++;
      }
      expect(differ, 'elements that differ from the register epilogue').toBe(0);
      if (M * N * K < 5e8) expect(relError(o, matmulRef(a.v, b.v, bias?.v ?? null, null, M, N, K, false, tb, 0.5, 0))).toBeLessThan(1e-2);
      [a.t, b.t, viaTma, viaRegs, ...(bias ? [bias.t] : [])].forEach((t) => t.dispose());
    });
});

describe.skipIf(gpus === 0)('sm90 matmul on the 64-row tile (decode batches up to 64 rows)', () => {
  // Every element against float64, fresh inputs each run: both operand layouts, M below, at and above one
  // tile (forced: by default M > 64 takes the 128-row tile), tile edges in N and K, bias, alpha, beta, and
  // the K slices chosen, none, and forced.
  for (const [M, N, K, ta, tb, splits] of [
    [1, 1000, 512, false, true, -1],
    [7, 4104, 1024, false, true, 3],
    [16, 4096, 4096, false, true, -1],
    [33, 264, 2048, false, false, 1],
    [64, 1000, 576, true, true, 2],
    [48, 512, 4160, true, false, -1],
    [64, 12288, 256, false, true, 1],
    [200, 520, 1024, false, true, -1],
  ] as const)
    it(`${M}x${N}x${K}${ta ? ' A^T' : ''}${tb ? ' B^T' : ''} on 64 x 256, ${splits < 0 ? 'automatic' : splits} slices, bias, alpha 0.5, beta 0.25: every element vs float64`, () =>
      everyElement(M, N, K, ta, tb, 'bf16', {
        set: () => (native.testing.matmulTileRows(64), native.testing.matmulSplitK(splits)),
        undo: () => (native.testing.matmulSplitK(-1), native.testing.matmulTileRows(-1)),
      }));

  it(`on 64 x 256 gives what the 128-row tile gives, beta 0 (C through the TMA), for the LLaMA-7B decode projections at M = 16 and 64`, () => {
    for (const [M, N, K] of [
      [64, 12288, 4096],
      [64, 4096, 11008],
      [16, 22016, 4096],
    ] as const) {
      const seed = Math.floor(Math.random() * 1e6);
      const a = randT([M, K], 'bf16', dev, seed);
      const b = randT([N, K], 'bf16', dev, seed + 1);
      const t64 = poisoned([M, N], 'bf16', dev);
      const t128 = poisoned([M, N], 'bf16', dev);
      try {
        native.testing.matmulGemv(7); // M = 16 to the sm90 path too
        native.testing.matmulTileRows(64);
        ops.matmul(a.t, b.t, { transB: true, out: t64 });
        native.testing.matmulTileRows(128);
        ops.matmul(a.t, b.t, { transB: true, out: t128 });
      } finally {
        native.testing.matmulTileRows(-1);
        native.testing.matmulGemv(-1);
      }
      const o = t64.toArray(), w = t128.toArray();
      for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!) || !Number.isFinite(w[i]!)) throw new Error(`${M}x${N}x${K} seed ${seed}: element ${i} unwritten`);
      expect(relError(o, w), `${M}x${N}x${K} seed ${seed}`).toBeLessThan(1e-2);
      // Sampled rows against float64 as well.
      for (const r of [0, M - 1]) {
        const ref = matmulRef(a.v.subarray(r * K, (r + 1) * K), b.v, null, null, 1, N, K, false, true);
        expect(relError(o.subarray(r * N, (r + 1) * N), ref), `${M}x${N}x${K} row ${r} seed ${seed}`).toBeLessThan(1e-2);
      }
      [a.t, b.t, t64, t128].forEach((t) => t.dispose());
    }
  });

  it('takes batch-16 products from the GEMV when asked (matmulGemv(7)), in a captured graph with new inputs', () => {
    const a = randT([16, 4096], 'bf16', dev, 51);
    const b = randT([11008, 4096], 'bf16', dev, 52);
    const out = poisoned([16, 11008], 'bf16', dev);
    native.testing.matmulGemv(7);
    let g;
    try {
      g = capture(dev, () => void ops.matmul(a.t, b.t, { transB: true, out }));
    } finally {
      native.testing.matmulGemv(-1);
    }
    for (const seed of [53, 54]) {
      a.t.write(uniformArray(16 * 4096, seed));
      out.write(new Float32Array(16 * 11008).fill(NaN));
      const x = a.t.toArray();
      g.replay();
      const o = out.toArray();
      for (const r of [0, 15]) {
        const ref = matmulRef(x.subarray(r * 4096, (r + 1) * 4096), b.v, null, null, 1, 11008, 4096, false, true);
        expect(relError(o.subarray(r * 11008, (r + 1) * 11008), ref), `seed ${seed} row ${r}`).toBeLessThan(1e-2);
      }
    }
    g.dispose();
    [a.t, b.t, out].forEach((t) => t.dispose());
  });
});

describe.skipIf(gpus === 0)('sm90 matmul with the weight as the A operand (the W-as-A tile, matmulWTile)', () => {
  // (M, N, K, K slices, dtype): X's rows padded to 8 (1, 5, 8), 16 (16), 32 (17, 32) and 64 (33, 64); a partial
  // last 128-row tile of W and 64-row block (1000, 4104, 264), a K tail (576, 4160), slices chosen and forced.
  for (const [M, N, K, splits, dt] of [
    [1, 1000, 512, -1, 'bf16'],
    [5, 4104, 1024, 3, 'bf16'],
    [8, 264, 4160, -1, 'bf16'],
    [16, 4096, 4096, -1, 'bf16'],
    [16, 4096, 4096, 1, 'f16'],
    [17, 1000, 576, 2, 'bf16'],
    [32, 520, 1024, -1, 'bf16'],
    [33, 2056, 2048, 4, 'bf16'],
    [64, 12288, 256, 1, 'bf16'],
    [64, 1000, 4096, -1, 'bf16'],
  ] as const)
    it(`${M}x${N}x${K} B^T ${dt}, ${splits < 0 ? 'automatic' : splits} slices, bias, alpha 0.5, beta 0.25: every element vs float64`, () =>
      everyElement(M, N, K, false, true, dt, {
        set: () => (native.testing.matmulWTile(2), native.testing.matmulSplitK(splits)),
        undo: () => (native.testing.matmulSplitK(-1), native.testing.matmulWTile(-1)),
      }));

  it('gives what the 64-row tile gives for the LLaMA-7B decode projections at M = 16 and 64 (beta 0 and 1)', () => {
    for (const [M, N, K, beta] of [
      [16, 12288, 4096, 0],
      [16, 22016, 4096, 0],
      [16, 4096, 11008, 1],
      [64, 4096, 4096, 1],
      [64, 12288, 4096, 0],
    ] as const) {
      const seed = Math.floor(Math.random() * 1e6);
      const a = randT([M, K], 'bf16', dev, seed);
      const b = randT([N, K], 'bf16', dev, seed + 1);
      const c0 = randT([M, N], 'bf16', dev, seed + 2);
      const tw = Tensor.empty([M, N], { dtype: 'bf16', device: dev }).copyFrom(c0.t);
      const t64 = Tensor.empty([M, N], { dtype: 'bf16', device: dev }).copyFrom(c0.t);
      try {
        native.testing.matmulGemv(7); // M = 16 to the sm90 path
        native.testing.matmulTileRows(64);
        ops.matmul(a.t, b.t, { transB: true, beta, out: t64 });
        native.testing.matmulWTile(1);
        ops.matmul(a.t, b.t, { transB: true, beta, out: tw });
      } finally {
        native.testing.matmulWTile(-1);
        native.testing.matmulTileRows(-1);
        native.testing.matmulGemv(-1);
      }
      const o = tw.toArray(), w = t64.toArray();
      for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`${M}x${N}x${K} seed ${seed}: element ${i} unwritten`);
      expect(relError(o, w), `${M}x${N}x${K} seed ${seed}`).toBeLessThan(1e-2);
      for (const r of [0, M - 1]) {
        const ref = matmulRef(a.v.subarray(r * K, (r + 1) * K), b.v, null, beta ? c0.v.subarray(r * N, (r + 1) * N) : null, 1, N, K, false, true, 1, beta);
        expect(relError(o.subarray(r * N, (r + 1) * N), ref), `${M}x${N}x${K} row ${r} seed ${seed}`).toBeLessThan(1e-2);
      }
      [a.t, b.t, c0.t, tw, t64].forEach((t) => t.dispose());
    }
  });

  it('is captured into a graph (split K: its workspace and reduce too) and replays with new inputs', () => {
    for (const [M, N, K] of [
      [16, 4096, 11008],
      [64, 12288, 4096],
    ] as const) {
      const a = randT([M, K], 'bf16', dev, 61);
      const b = randT([N, K], 'bf16', dev, 62);
      const out = poisoned([M, N], 'bf16', dev);
      native.testing.matmulWTile(1);
      native.testing.matmulGemv(7);
      let g;
      try {
        g = capture(dev, () => void ops.matmul(a.t, b.t, { transB: true, out }));
      } finally {
        native.testing.matmulGemv(-1);
        native.testing.matmulWTile(-1);
      }
      for (const seed of [63, 64]) {
        a.t.write(uniformArray(M * K, seed));
        out.write(new Float32Array(M * N).fill(NaN));
        const x = a.t.toArray();
        g.replay();
        const o = out.toArray();
        for (const r of [0, M - 1]) {
          const ref = matmulRef(x.subarray(r * K, (r + 1) * K), b.v, null, null, 1, N, K, false, true);
          expect(relError(o.subarray(r * N, (r + 1) * N), ref), `${M}x${N}x${K} seed ${seed} row ${r}`).toBeLessThan(1e-2);
        }
      }
      g.dispose();
      [a.t, b.t, out].forEach((t) => t.dispose());
    }
  });
});

/**
 * Rows `rows` of C = A'B' + beta C0 (A as [K, M] when ta) against float64, from the inputs' host copies: the check
 * for products too large to hold whole to float64 in a test.
 */
function expectRows(o: Float32Array, a: Float32Array, b: Float32Array, c0: Float32Array | null, M: number, N: number,
  K: number, ta: boolean, tb: boolean, beta: number, rows: number[], what: string) {
  for (const r of rows) {
    const row = ta ? Float64Array.from({ length: K }, (_, k) => a[k * M + r]!) : a.subarray(r * K, (r + 1) * K);
    const ref = matmulRef(row, b, null, c0 ? c0.subarray(r * N, (r + 1) * N) : null, 1, N, K, false, tb, 1, beta);
    expect(relError(o.subarray(r * N, (r + 1) * N), ref), `${what} row ${r}`).toBeLessThan(1e-2);
  }
}

describe.skipIf(gpus === 0)('weight-gradient products (the sm90 dispatch: the wave rule\'s K slices, the 192-column tile)', () => {
  // A weight gradient's product: A^T (dY as [tokens, out features]), B as it lies (X [tokens, in features]), K the
  // tokens, accumulated into C (beta 1, as a second micro-batch adds to the gradient). 36-72 tiles of 128 x 256:
  // past a quarter wave, so sm90_wave_splits cuts K, or (up and down at 8,192 tokens) 96 tiles 192 wide. Sampled
  // rows against float64 on fresh inputs, the output poisoned first; the whole product within bf16 rounding of the
  // same product in one slice of 256-wide tiles, and the same bits when run again.
  for (const [M, N, K] of [
    [1536, 768, 4096],
    [2304, 768, 8192],
    [3072, 768, 8192],
    [768, 3072, 8192],
    [768, 3072, 16384],
  ] as const)
    it(`${M}x${N}x${K} A^T, beta 1: sampled rows vs float64, the plain product, the same bits again`, () => {
      const seed = Math.floor(Math.random() * 1e6);
      const a = randT([K, M], 'bf16', dev, seed);
      const b = randT([K, N], 'bf16', dev, seed + 1);
      const c0 = randT([M, N], 'bf16', dev, seed + 2);
      const cut = poisoned([M, N], 'bf16', dev).copyFrom(c0.t);
      const again = poisoned([M, N], 'bf16', dev).copyFrom(c0.t);
      const whole = poisoned([M, N], 'bf16', dev).copyFrom(c0.t);
      ops.matmul(a.t, b.t, { transA: true, beta: 1, out: cut });
      ops.matmul(a.t, b.t, { transA: true, beta: 1, out: again });
      native.testing.matmulSplitK(1);
      native.testing.matmulTileCols(256);
      try {
        ops.matmul(a.t, b.t, { transA: true, beta: 1, out: whole });
      } finally {
        native.testing.matmulTileCols(-1);
        native.testing.matmulSplitK(-1);
      }
      const o = cut.toArray(), w = whole.toArray();
      for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`seed ${seed}: element ${i} unwritten`);
      expectRows(o, a.v, b.v, c0.v, M, N, K, true, false, 1, [0, 1, M >> 1, M - 1], `seed ${seed}`);
      expect(relError(o, w), `seed ${seed} vs one slice`).toBeLessThan(1e-2);
      expect(Buffer.compare(Buffer.from(again.toArray().buffer), Buffer.from(o.buffer)), `seed ${seed}: run again`).toBe(0);
      [a.t, b.t, c0.t, cut, again, whole].forEach((t) => t.dispose());
    });
});

describe.skipIf(gpus === 0)('the 128 x 192 sm90 tile (m64n192k16)', () => {
  const cols192 = { set: () => native.testing.matmulTileCols(192), undo: () => native.testing.matmulTileCols(-1) };
  // Forced on every 128-row product: every element against float64 (bias, alpha 0.5, beta 0.25): edge tiles and a K
  // tail, each transposition (B K-major in one 192-row box, or N-major in three 64-column boxes), both 16-bit types.
  for (const [M, N, K, ta, tb, dt] of [
    [1000, 1000, 1000, false, false, 'f16'],
    [1000, 1000, 1000, true, true, 'bf16'],
    [130, 400, 136, false, true, 'bf16'],
    [256, 384, 200, true, false, 'bf16'],
    [129, 192, 4096, false, true, 'f16'],
  ] as const)
    it(`${M}x${N}x${K}${ta ? ' A^T' : ''}${tb ? ' B^T' : ''} [${dt}]: every element vs float64`, () =>
      everyElement(M, N, K, ta, tb, dt, cols192));

  it('split in K slices, and C through the TMA (beta 0): every element vs float64', () => {
    for (const [M, N, K, splits] of [
      [256, 576, 2048, 3],
      [300, 768, 1024, 1],
    ] as const) {
      const seed = Math.floor(Math.random() * 1e6);
      const a = randT([M, K], 'bf16', dev, seed);
      const b = randT([N, K], 'bf16', dev, seed + 1);
      const out = poisoned([M, N], 'bf16', dev);
      cols192.set();
      native.testing.matmulSplitK(splits);
      try {
        ops.matmul(a.t, b.t, { transB: true, out });
      } finally {
        native.testing.matmulSplitK(-1);
        cols192.undo();
      }
      const o = out.toArray();
      for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`${M}x${N}x${K} seed ${seed}: element ${i} unwritten`);
      expect(relError(o, matmulRef(a.v, b.v, null, null, M, N, K, false, true)), `${M}x${N}x${K} seed ${seed}`).toBeLessThan(1e-2);
      [a.t, b.t, out].forEach((t) => t.dispose());
    }
  });

  // The dispatch's own choice on GPT-2's N = 768 products at 8,192 rows (the down projection's forward, the qkv
  // product's dX): sampled rows against float64, and within bf16 rounding of the 256-wide tile's product.
  for (const [M, N, K] of [
    [8192, 768, 3072],
    [8192, 768, 2304],
  ] as const)
    it(`${M}x${N}x${K} B^T as dispatched: sampled rows vs float64 and the 256-wide tile`, () => {
      const seed = Math.floor(Math.random() * 1e6);
      const a = randT([M, K], 'bf16', dev, seed);
      const b = randT([N, K], 'bf16', dev, seed + 1);
      const o192 = poisoned([M, N], 'bf16', dev);
      const o256 = poisoned([M, N], 'bf16', dev);
      ops.matmul(a.t, b.t, { transB: true, out: o192 });
      native.testing.matmulTileCols(256);
      try {
        ops.matmul(a.t, b.t, { transB: true, out: o256 });
      } finally {
        native.testing.matmulTileCols(-1);
      }
      const o = o192.toArray();
      for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`seed ${seed}: element ${i} unwritten`);
      expectRows(o, a.v, b.v, null, M, N, K, false, true, 0, [0, 127, 128, 4000, M - 1], `seed ${seed}`);
      expect(relError(o, o256.toArray()), `seed ${seed} vs 256 wide`).toBeLessThan(1e-2);
      [a.t, b.t, o192, o256].forEach((t) => t.dispose());
    });
});

describe.skipIf(gpus === 0)('split-K matmul (decode batches on the sm90 path)', () => {
  // Every element against float64: an odd N (scalar partials), bias, alpha and beta.
  for (const [M, N, K, splits] of [
    [33, 1001, 512, -1],
    [48, 1024, 2048, 3],
    [17, 256, 4096, 32],
  ] as const)
    it(`${M}x${N}x${K} B^T, ${splits < 0 ? 'automatic' : splits} slices, bias, alpha 0.5, beta 0.25: every element vs float64`, () => {
      const a = randT([M, K], 'bf16', dev, 11);
      const b = randT([N, K], 'bf16', dev, 12);
      const bias = randT([N], 'bf16', dev, 13);
      const c0 = randT([M, N], 'bf16', dev, 14);
      const out = Tensor.empty([M, N], { dtype: 'bf16', device: dev }).copyFrom(c0.t);
      native.testing.matmulSplitK(splits);
      try {
        ops.matmul(a.t, b.t, { transB: true, bias: bias.t, alpha: 0.5, beta: 0.25, out });
      } finally {
        native.testing.matmulSplitK(-1);
      }
      const ref = matmulRef(a.v, b.v, bias.v, c0.v, M, N, K, false, true, 0.5, 0.25);
      expect(relError(out.toArray(), ref)).toBeLessThan(1e-2);
      [a.t, b.t, bias.t, c0.t, out].forEach((t) => t.dispose());
    });

  it('gives what one slice gives, for the LLaMA-7B decode projections at M = 64 and 256', () => {
    for (const [M, N, K] of [
      [64, 4096, 4096],
      [256, 4096, 11008],
      [64, 22016, 4096],
    ] as const) {
      const a = randT([M, K], 'bf16', dev, 21);
      const b = randT([N, K], 'bf16', dev, 22);
      const split = poisoned([M, N], 'bf16', dev);
      const whole = poisoned([M, N], 'bf16', dev);
      ops.matmul(a.t, b.t, { transB: true, out: split });
      native.testing.matmulSplitK(1);
      try {
        ops.matmul(a.t, b.t, { transB: true, out: whole });
      } finally {
        native.testing.matmulSplitK(-1);
      }
      const w = whole.toArray();
      for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i]!)) throw new Error(`${M}x${N}x${K}: element ${i} unwritten`);
      expect(relError(split.toArray(), w), `${M}x${N}x${K}`).toBeLessThan(1e-2);
      [a.t, b.t, split, whole].forEach((t) => t.dispose());
    }
  });

  it('is captured into a graph and replays with new inputs', () => {
    const a = randT([64, 4096], 'bf16', dev, 31);
    const b = randT([4096, 4096], 'bf16', dev, 32);
    const out = poisoned([64, 4096], 'bf16', dev);
    const g = capture(dev, () => void ops.matmul(a.t, b.t, { transB: true, out }));
    for (const seed of [33, 34]) {
      a.t.write(uniformArray(64 * 4096, seed));
      g.replay();
      const want = ops.matmul(a.t, b.t, { transB: true });
      expect(relError(out.toArray(), want.toArray())).toBeLessThan(1e-6);
      want.dispose();
    }
    g.dispose();
    [a.t, b.t, out].forEach((t) => t.dispose());
  });
});

describe.skipIf(gpus === 0)('CUDA runtime', () => {
  it('lists the GPU with its properties', async () => {
    const { devices } = await import('../../src/index.js');
    const d = devices().find((x) => x.id === dev)!;
    expect(d.memoryTotal).toBeGreaterThan(1e9);
    expect(d.computeCapability![0]).toBeGreaterThanOrEqual(8);
  });

  it('captures a graph and replays it with new inputs', () => {
    const x = randT([64, 256], 'bf16', dev, 3);
    const w = randT([128, 256], 'bf16', dev, 4);
    const g0 = randT([128], 'bf16', dev, 5);
    const b0 = randT([128], 'bf16', dev, 6);
    const y = Tensor.empty([64, 128], { dtype: 'bf16', device: dev });
    const z = Tensor.empty([64, 128], { dtype: 'bf16', device: dev });
    const graph = capture(dev, () => {
      ops.linear(x.t, w.t, null, y);
      ops.layernorm(y, g0.t, b0.t, { out: z });
    });
    expect(graph.ops).toBeGreaterThanOrEqual(2);
    for (const seed of [7, 8]) {
      const nx = uniformArray(64 * 256, seed);
      x.t.write(nx);
      graph.replay();
      const expectY = ops.linear(x.t, w.t);
      const expectZ = ops.layernorm(expectY, g0.t, b0.t);
      expect(relError(z.toArray(), expectZ.toArray())).toBeLessThan(1e-6);
    }
    graph.dispose();
  });

  it('times with events', () => {
    const a = randT([2048, 2048], 'bf16', dev, 9);
    const s = new DeviceEvent(dev).record();
    for (let i = 0; i < 5; i++) ops.matmul(a.t, a.t);
    const e = new DeviceEvent(dev).record();
    expect(s.elapsedMs(e)).toBeGreaterThan(0);
    synchronize(dev);
  });

  it('out of memory is an error that says what was asked and what was free', () => {
    expect(() => Tensor.empty([2 ** 44], { dtype: 'f32', device: dev })).toThrow(/out of memory on cuda:0: asked for 70368744177664 bytes.*free/);
    // The device still works afterwards.
    const t = Tensor.from([1, 2, 3], [3], { device: dev });
    expect(Array.from(t.toArray())).toEqual([1, 2, 3]);
    expect(memoryStats(dev).allocated).toBeGreaterThan(0);
  });

  it('samples the same tokens as the CPU for the same seed', () => {
    const x = uniformArray(64 * 1000, 10, -3, 3);
    const g = Tensor.from(x, [64, 1000], { device: dev });
    const h = Tensor.from(x, [64, 1000], { device: 'cpu:0' });
    for (const o of [
      { temperature: 1, seed: 1 },
      { temperature: 0.8, topK: 40, seed: 2 },
      { temperature: 1.1, topP: 0.9, seed: 3 },
      { temperature: 0, seed: 4 },
    ]) {
      const a = Array.from(ops.sample(g, o).toArray());
      const b = Array.from(ops.sample(h, o).toArray());
      const diff = a.filter((t, i) => t !== b[i]).length;
      expect(diff, JSON.stringify(o)).toBeLessThanOrEqual(1); // f32 sums in another order may flip a boundary
    }
  });

  it('samples with `rows` as the CPU does, and a sub-batch keyed on its rows as the whole batch', () => {
    const R = 48, V = 1000, seed = Math.floor(Math.random() * 1e6);
    const x = uniformArray(R * V, seed, -3, 3);
    const g = Tensor.from(x, [R, V], { device: dev });
    const h = Tensor.from(x, [R, V], { device: 'cpu:0' });
    const keys = Array.from({ length: R }, (_, r) => (r * 7919 + seed) % 100000);
    const offs = Array.from({ length: R }, (_, r) => r % 5);
    const on = (d: string) => ({
      rows: Tensor.from(keys, [R], { dtype: 'i32', device: d }),
      offsets: Tensor.from(offs, [R], { dtype: 'i32', device: d }),
      out: Tensor.from(new Array<number>(R).fill(-1), [R], { dtype: 'i32', device: d }), // poisoned
    });
    for (const o of [{ temperature: 1 }, { temperature: 0.8, topK: 40 }, { temperature: 1.1, topP: 0.9 }]) {
      const a = Array.from(ops.sample(g, { ...o, ...on(dev), seed }).toArray());
      const b = Array.from(ops.sample(h, { ...o, ...on('cpu:0'), seed }).toArray());
      expect(a.filter((t, i) => t !== b[i]).length, `seed ${seed} ${JSON.stringify(o)}`).toBeLessThanOrEqual(1);
      // rows [16, 40) alone, keyed on their rows of the batch: the batch's tokens for those rows
      const part = ops.sample(g.view(16 * V, [24, V]), {
        ...o,
        seed,
        rows: Tensor.from(keys.slice(16, 40), [24], { dtype: 'i32', device: dev }),
        offsets: Tensor.from(offs.slice(16, 40), [24], { dtype: 'i32', device: dev }),
      });
      expect(Array.from(part.toArray()), `seed ${seed} ${JSON.stringify(o)}`).toEqual(a.slice(16, 40));
    }
  });

  it('reading a tensor back while its GPU captures is an error naming the op and device', () => {
    const y = Tensor.zeros([8], { device: dev });
    let msg = '';
    const gr = capture(dev, () => {
      ops.gelu(y, y);
      try {
        y.toArray();
      } catch (err) {
        msg = (err as Error).message;
      }
    });
    expect(msg).toMatch(/toHost: cannot read a tensor of cuda:0 back while cuda:0 is capturing/);
    gr.replay();
    expect(Array.from(y.toArray())).toEqual(new Array(8).fill(0));
    gr.dispose();
  });
});

describe.skipIf(gpus < 2)('two GPUs', () => {
  it('copies GPU to GPU', () => {
    const a = randT([1 << 20], 'bf16', 'cuda:0', 11);
    const b = a.t.to('cuda:1');
    expect(b.device).toBe('cuda:1');
    expect(Array.from(b.toArray())).toEqual(Array.from(a.v));
    const c = Tensor.empty([1 << 20], { dtype: 'bf16', device: 'cuda:0' }).copyFrom(b);
    expect(Array.from(c.toArray())).toEqual(Array.from(a.v));
  });
});
