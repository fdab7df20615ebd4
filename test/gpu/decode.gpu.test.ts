// The decode-speed kernels on a GPU (skipped without one): the two GEMV kernels (M <= 16, B^T: the
// pipelined one of native/cuda/matmul_gemv.cuh and the older register kernel) against float64 on fresh
// random inputs with the output poisoned, and against each other (same summation order, so the same
// bits); rmsnormLinear, rmsnormLinearSwiGLU, ropeKvWrite and ropeKvAttentionDecode against the launches
// they replace (bit for bit); decode attention over contexts 1..8192 with several key-chunk counts, grouped-query heads,
// against float64 and the CPU backend; greedy generation of the tiny models on both GEMV kernels.
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Tensor, capture, cudaDeviceCount, ops, withFrozenWeights } from '../../src/index.js';
import { generate } from '../../src/engine/generate.js';
import { Model } from '../../src/models/model.js';
import { plainRopeFrequencies } from '../../src/models/rope.js';
import { Transformer } from '../../src/models/transformer.js';
import { native } from '../../src/native.js';
import { uniformArray } from '../../src/random.js';
import { poisoned, randT } from '../helpers/cases.js';
import { expected, fixtures } from '../helpers/models.js';
import { attentionDecodeRef, layernormRef, matmulRef, relError, rmsnormRef } from '../helpers/reference.js';
import { differing, fusedDecode, fusedDecodeCases } from '../helpers/rope-kv-attention.js';

const gpus = cudaDeviceCount();
const dev = 'cuda:0';
const seed = () => Math.floor(Math.random() * 1e6);

const rmsnormRefRows = (x: ArrayLike<number>, w: ArrayLike<number>, R: number, C: number, eps: number) => rmsnormRef(x, w, R, C, eps).y;
const layernormRefRows = (x: ArrayLike<number>, g: ArrayLike<number>, b: ArrayLike<number>, R: number, C: number, eps: number) =>
  layernormRef(x, g, b, R, C, eps).y;

/**
 * A fused op's output and the same ops apart, on each GEMV path (native.testing.matmulGemv): on every path
 * the fused output must equal the ops apart bit for bit, and every output of a forced GEMV path (all but -1)
 * the first forced path's ops apart (the GEMV kernels add in one order). Path -1 is the dispatch's choice,
 * which at 16 rows and a large W is the sm90 GEMM's 64-row tile (its own order), so it is held to its own
 * ops apart only. `run` returns [fused, apart] (disposed here). Returns the outputs, fused first, for the
 * float64 check.
 */
function samePerPath(paths: readonly number[], what: string, s: number, run: () => [Tensor, Tensor]): Float32Array[] {
  const outs = paths.flatMap((path) => {
    native.testing.matmulGemv(path);
    try {
      const [fused, apart] = run();
      const r = [fused.toArray() as Float32Array, apart.toArray() as Float32Array];
      [fused, apart].forEach((t) => t.dispose());
      return r;
    } finally {
      native.testing.matmulGemv(-1);
    }
  });
  outs.forEach((o, i) => finite(o, `output ${i}`));
  const differ = (p: Float32Array, q: Float32Array) => {
    let diff = 0;
    for (let j = 0; j < p.length; j++) if (p[j] !== q[j]) diff++;
    return diff;
  };
  const forced = paths.findIndex((p) => p !== -1);
  for (const [k, path] of paths.entries()) {
    expect(differ(outs[2 * k]!, outs[2 * k + 1]!), `seed ${s}: fused on path ${path} vs ${what}`).toBe(0);
    if (path !== -1 && forced >= 0)
      for (const i of [2 * k, 2 * k + 1])
        expect(differ(outs[i]!, outs[2 * forced + 1]!), `seed ${s}: output ${i} (fused/apart on paths ${paths.join(', ')}) vs ${what} on path ${paths[forced]}`).toBe(0);
  }
  return outs;
}

/** silu(h Wg^T) * (h Wu^T) in float64, W [2F, K] holding the gate rows, then the up rows. */
function swigluRef(h: ArrayLike<number>, w: ArrayLike<number>, M: number, F: number, K: number): Float64Array {
  const gu = matmulRef(h, w, null, null, M, 2 * F, K, false, true);
  const ref = new Float64Array(M * F);
  for (let m = 0; m < M; m++)
    for (let f = 0; f < F; f++) {
      const a = gu[m * 2 * F + f]!;
      ref[m * F + f] = (a / (1 + Math.exp(-a))) * gu[m * 2 * F + F + f]!;
    }
  return ref;
}

function finite(o: ArrayLike<number>, what: string): void {
  for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`${what}: element ${i} unwritten (${o[i]})`);
}

/** C = alpha X W^T + beta C0 + bias on GEMV kernel `path` (0 register, 1 pipelined, 2 and 3 its other shapes, 4 register with one plain load, 6 register on 16 rows a block); C poisoned when beta == 0. */
function gemv(path: 0 | 1 | 2 | 3 | 4 | 6, M: number, N: number, K: number, s: number, o: { bias?: boolean; alpha?: number; beta?: number; dtype?: 'bf16' | 'f16' } = {}) {
  const dt = o.dtype ?? 'bf16';
  const { alpha = 1, beta = 0 } = o;
  const a = randT([M, K], dt, dev, s);
  const b = randT([N, K], dt, dev, s + 1);
  const bias = o.bias ? randT([N], dt, dev, s + 2) : undefined;
  const c0 = beta !== 0 ? randT([M, N], dt, dev, s + 3) : undefined;
  const out = c0 ? Tensor.empty([M, N], { dtype: dt, device: dev }).copyFrom(c0.t) : poisoned([M, N], dt, dev);
  native.testing.matmulGemv(path);
  try {
    ops.matmul(a.t, b.t, { transB: true, bias: bias?.t, alpha, beta, out });
  } finally {
    native.testing.matmulGemv(-1);
  }
  const got = out.toArray() as Float32Array;
  const ref = () => matmulRef(a.v, b.v, bias?.v ?? null, c0?.v ?? null, M, N, K, false, true, alpha, beta);
  [a.t, b.t, bias?.t, c0?.t, out].forEach((t) => t?.dispose());
  return { got, ref };
}

describe.skipIf(gpus === 0)('GEMV, M <= 16 with B^T: the pipelined and the register kernel', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  // M 1..16; N odd, below a tile, and many tiles a block; K a multiple of 8 but not of 32, below one
  // chunk a warp (warps left without K), and LLaMA-7B / GPT-2 decode shapes.
  const shapes: [number, number, number][] = [
    [1, 4096, 4096],
    [1, 11008, 4096],
    [1, 4096, 11008],
    [16, 4096, 4096],
    [16, 12288, 4096],
    [1, 1, 8],
    [2, 7, 24],
    [3, 203, 1000],
    [4, 50257, 768],
    [1, 50257, 768], // GPT-2's head at batch 1 (6,283 row sets, one pass a warp)
    [5, 1000, 776],
    [6, 4097, 520],
    [7, 64, 4104],
    [8, 130, 4096],
    [9, 2049, 3000],
    [10, 333, 8],
    [11, 9, 64],
    [12, 2304, 768],
    [13, 768, 3072],
    [14, 1025, 2056],
    [15, 17, 4096],
    [16, 8, 32],
  ];
  for (const [M, N, K] of shapes)
    it(`${M}x${N}x${K}: every kernel against float64, and bit for bit where they add alike`, () => {
      const s = seed();
      const r = gemv(0, M, N, K, s);
      finite(r.got, `register ${M}x${N}x${K}`);
      const ref = r.ref();
      expect(relError(r.got, ref), `seed ${s}, register`).toBeLessThan(1e-2);
      for (const path of [1, 2, 3, 4, 6] as const) {
        const p = gemv(path, M, N, K, s);
        finite(p.got, `path ${path} ${M}x${N}x${K}`);
        expect(relError(p.got, ref), `seed ${s}, path ${path}`).toBeLessThan(1e-2);
        if (path === 3) continue; // 16 warps split K: other partial sums
        // Shapes 1 and 2 split K over the register kernel's 8 warps and add in its order; 4 and 6 are that
        // kernel (one plain load; 16 rows a block).
        let diff = 0;
        for (let i = 0; i < p.got.length; i++) if (p.got[i] !== r.got[i]) diff++;
        expect(diff, `seed ${s}: elements that differ between the register kernel and path ${path}`).toBe(0);
      }
    });

  for (const [M, N, K, o] of [
    [1, 1001, 4096, { bias: true }],
    [3, 4096, 1000, { bias: true, alpha: 0.5, beta: 0.25 }],
    [16, 777, 512, { alpha: 2, beta: 1 }],
    [5, 300, 264, { bias: true, dtype: 'f16' }],
  ] as const)
    it(`${M}x${N}x${K} ${JSON.stringify(o)}: the epilogue (bias, alpha, beta, f16) on both kernels`, () => {
      for (const path of [1, 2, 3, 4, 6, 0] as const) {
        const s = seed();
        const g = gemv(path, M, N, K, s, o);
        finite(g.got, `path ${path}`);
        expect(relError(g.got, g.ref()), `seed ${s}, path ${path}`).toBeLessThan(1e-2);
      }
    });

  it('K not a multiple of 8 and unaligned X fall back to the tiled kernels, on either setting', () => {
    for (const path of [1, 0] as const)
      for (const [M, N, K] of [
        [1, 513, 1001],
        [16, 64, 4095],
      ]) {
        const s = seed();
        const g = gemv(path, M, N, K, s);
        finite(g.got, `${M}x${N}x${K}`);
        expect(relError(g.got, g.ref()), `seed ${s}, ${M}x${N}x${K}`).toBeLessThan(1e-2);
      }
    // X one element into its buffer: 2-byte aligned only.
    const K = 256, N = 300;
    const xs = randT([1, K + 1], 'bf16', dev, seed());
    const x = xs.t.view(1, [1, K]);
    const w = randT([N, K], 'bf16', dev, seed());
    const out = poisoned([1, N], 'bf16', dev);
    ops.matmul(x, w.t, { transB: true, out });
    const ref = matmulRef(xs.v.subarray(1), w.v, null, null, 1, N, K, false, true);
    const o = out.toArray();
    finite(o, 'unaligned X');
    expect(relError(o, ref)).toBeLessThan(1e-2);
    [x, xs.t, w.t, out].forEach((t) => t.dispose());
  });

  it('the pipelined kernel is captured into a graph and replays with new inputs', () => {
    const a = randT([1, 4096], 'bf16', dev, seed());
    const b = randT([11008, 4096], 'bf16', dev, seed());
    const out = poisoned([1, 11008], 'bf16', dev);
    const g = capture(dev, () => void ops.matmul(a.t, b.t, { transB: true, out }));
    for (const s of [seed(), seed()]) {
      a.t.write(uniformArray(4096, s));
      g.replay();
      const x = a.t.toArray();
      const want = matmulRef(x, b.v, null, null, 1, 11008, 4096, false, true);
      const o = out.toArray();
      finite(o, 'replay');
      expect(relError(o, want), `seed ${s}`).toBeLessThan(1e-2);
    }
    g.dispose();
    [a.t, b.t, out].forEach((t) => t.dispose());
  });
});

describe.skipIf(gpus === 0)('decode attention over long contexts, split over the SMs', () => {
  afterEach(() => native.testing.attentionDecodeSplits(-1));

  function decodeCase(lens: number[], maxLen: number, Hq: number, Hkv: number, D: number, splits: number, dt: 'bf16' | 'f32') {
    const B = lens.length;
    const s = seed();
    const run = (device: string) => {
      const q = randT([B, Hq, D], dt, device, s);
      const k = randT([B, maxLen, Hkv, D], dt, device, s + 1);
      const v = randT([B, maxLen, Hkv, D], dt, device, s + 2);
      const L = Tensor.from(lens, [B], { dtype: 'i32', device });
      const out = poisoned([B, Hq, D], dt, device);
      const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
      ops.attentionDecode(q.t, k.t, v.t, L, { ...shape, out });
      const o = out.toArray() as Float32Array;
      const r = device === dev ? attentionDecodeRef(q.v, k.v, v.v, lens, B, Hq, Hkv, D, Hq * D, maxLen * Hkv * D, Hkv * D, 1 / Math.sqrt(D)) : undefined;
      if (device === dev) {
        // With a counter the split kernel's last block of each head group merges the chunks: the same
        // bits, and the counters left at zero.
        const counter = Tensor.zeros([B * Hq], { dtype: 'i32', device });
        const out2 = poisoned([B, Hq, D], dt, device);
        ops.attentionDecode(q.t, k.t, v.t, L, { ...shape, out: out2, counter });
        const o2 = out2.toArray() as Float32Array;
        let diff = 0;
        for (let i = 0; i < o.length; i++) if (!(o[i] === o2[i])) diff++;
        expect(diff, `seed ${s}: elements the merge in the split kernel changes`).toBe(0);
        expect(Array.from(counter.toArray()).every((x) => x === 0), `seed ${s}: counters rearmed`).toBe(true);
        [counter, out2].forEach((t) => t.dispose());
      }
      [q.t, k.t, v.t, L, out].forEach((t) => t.dispose());
      return { o, r };
    };
    native.testing.attentionDecodeSplits(splits);
    let g: ReturnType<typeof run>;
    try {
      g = run(dev);
    } finally {
      native.testing.attentionDecodeSplits(-1);
    }
    const c = run('cpu:0');
    finite(g.o, 'GPU');
    const tol = dt === 'f32' ? 1e-5 : 1e-2;
    expect(relError(g.o, g.r!), `seed ${s} vs float64`).toBeLessThan(tol);
    expect(relError(g.o, c.o), `seed ${s} vs CPU`).toBeLessThan(2 * tol);
  }

  // Contexts 1..8192; batch 1 with 32/8 heads (LLaMA-2-70B / 3 style GQA), 8/1 (MQA), MHA; ragged lengths.
  for (const [lens, maxLen, Hq, Hkv, D] of [
    [[1], 1, 32, 8, 128],
    [[7], 16, 8, 1, 64],
    [[1023], 1024, 32, 32, 128],
    [[1024], 1024, 32, 8, 128],
    [[3000, 17, 1], 3000, 16, 4, 128],
    [[4097], 4100, 32, 8, 128],
    [[8192], 8192, 32, 8, 128],
    [[8191, 5000], 8192, 8, 2, 64],
  ] as const)
    for (const splits of [-1, 1, 2, 7, 64])
      it(`lens [${lens.join(',')}] of ${maxLen}, Hq ${Hq} Hkv ${Hkv} D ${D}, ${splits < 0 ? 'chosen' : splits} key chunks: vs float64 and the CPU; with a counter, the same bits`, () => {
        decodeCase([...lens], maxLen, Hq, Hkv, D, splits, 'bf16');
        if (maxLen <= 1024) decodeCase([...lens], maxLen, Hq, Hkv, D, splits, 'f32');
      });

  it('with a counter, in a graph of three calls replayed twice: the eager bits each time, the counters rearmed', () => {
    const lens = [3000, 17, 1], B = 3, maxLen = 3000, Hq = 16, Hkv = 4, D = 128, s = seed();
    const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
    const q = randT([B, Hq, D], 'bf16', dev, s), k = randT([B, maxLen, Hkv, D], 'bf16', dev, s + 1), v = randT([B, maxLen, Hkv, D], 'bf16', dev, s + 2);
    const L = Tensor.from(lens, [B], { dtype: 'i32', device: dev });
    const want = ops.attentionDecode(q.t, k.t, v.t, L, shape);
    const w = want.toArray() as Float32Array;
    const counter = Tensor.zeros([B * Hq], { dtype: 'i32', device: dev });
    const outs = [0, 1, 2].map(() => poisoned([B, Hq, D], 'bf16', dev));
    const graph = capture(dev, () => {
      for (const out of outs) ops.attentionDecode(q.t, k.t, v.t, L, { ...shape, out, counter });
    });
    for (let r = 0; r < 2; r++) {
      graph.replay();
      for (const [i, out] of outs.entries()) {
        const o = out.toArray() as Float32Array;
        let diff = 0;
        for (let j = 0; j < o.length; j++) if (!(o[j] === w[j])) diff++;
        expect(diff, `seed ${s}: replay ${r}, call ${i}`).toBe(0);
      }
      expect(Array.from(counter.toArray()).every((x) => x === 0), `seed ${s}: counters after replay ${r}`).toBe(true);
    }
    graph.dispose();
    [q.t, k.t, v.t, L, want, counter, ...outs].forEach((t) => t.dispose());
  });
});

describe.skipIf(gpus === 0)('rmsnormLinear: the norm in the GEMV prologue', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  // K sets norm.cu's threads a row (32, 32, 128, 256: one warp to every warp of the GEMV block).
  for (const [M, N, K, withBias] of [
    [1, 4096, 4096, false],
    [1, 12288, 4096, false],
    [16, 4096, 4096, false],
    [3, 1001, 64, true],
    [7, 300, 768, true],
    [16, 129, 8192, false],
    [12, 2048, 5000, false],
  ] as const)
    it(`${M}x${N}x${K}${withBias ? ' +bias' : ''}: the bits of rmsnorm then linear, on either GEMV setting, and float64`, () => {
      const s = seed();
      const x = randT([M, K], 'bf16', dev, s, -2, 3);
      const g = randT([K], 'bf16', dev, s + 1, 0.5, 1.5);
      const w = randT([N, K], 'bf16', dev, s + 2);
      const bias = withBias ? randT([N], 'bf16', dev, s + 3) : undefined;
      // 1, 2: the pipelined kernel's fused form; 0: rmsnorm then the register kernel; 5: the register
      // kernel's fused form (M <= 4; above, rmsnorm then the register kernel again).
      const all = samePerPath([1, 2, 0, 5], 'rmsnorm + linear', s, () => {
        const fused = poisoned([M, N], 'bf16', dev);
        ops.rmsnormLinear(x.t, g.t, w.t, { eps: 1e-5, bias: bias?.t, out: fused });
        const h = ops.rmsnorm(x.t, g.t, { eps: 1e-5 });
        const apart = ops.linear(h, w.t, bias?.t);
        h.dispose();
        return [fused, apart];
      });
      const h = rmsnormRefRows(x.v, g.v, M, K, 1e-5);
      expect(relError(all[0]!, matmulRef(h, w.v, bias?.v ?? null, null, M, N, K, false, true)), `seed ${s}`).toBeLessThan(1e-2);
      [x.t, g.t, w.t, bias?.t].forEach((t) => t?.dispose());
    });
});

describe.skipIf(gpus === 0)('linearSwiGLU, linearGelu: the activation in the GEMV epilogue', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  for (const [M, N, K, gelu] of [
    [1, 11008, 4096, false],
    [16, 11008, 4096, false],
    [3, 21, 64, false],
    [1, 3072, 768, true],
    [9, 203, 776, true],
  ] as const)
    it(`${gelu ? 'linearGelu' : 'linearSwiGLU'} ${M}x${N}x${K}: the bits of linear then ${gelu ? 'gelu' : 'siluGate'} on the GEMV's settings`, () => {
      const s = seed();
      const x = randT([M, K], 'bf16', dev, s, -2, 2);
      const w = randT([gelu ? N : 2 * N, K], 'bf16', dev, s + 1, -0.2, 0.2);
      const bias = gelu ? randT([N], 'bf16', dev, s + 2) : undefined;
      // (8: the register GEMV on 32 W rows a block, SwiGLU's on 2 gate and 2 up sets: matmul.cu's wide_gemv)
      samePerPath([1, -1, 0, 5, 8], 'linear then the activation', s, () => {
        const fused = poisoned([M, N], 'bf16', dev);
        let apart: Tensor;
        if (gelu) {
          ops.linearGelu(x.t, w.t, { bias: bias!.t, out: fused });
          apart = ops.linear(x.t, w.t, bias!.t);
          ops.gelu(apart, apart);
        } else {
          ops.linearSwiGLU(x.t, w.t, { out: fused });
          const gu = ops.linear(x.t, w.t);
          const up = gu.view(N, [gu.numel - N]);
          apart = ops.siluGate(gu, up, { rows: M, cols: N, inStride: 2 * N });
          [gu, up].forEach((t) => t.dispose());
        }
        return [fused, apart];
      });
      [x.t, w.t, bias?.t].forEach((t) => t?.dispose());
    });
});

describe.skipIf(gpus === 0)('linearResidualNorm: the residual projection with the next norm in its epilogue', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  // (M, N, K, layernorm): LLaMA-2-7B's down projection at batch 1 and 16, GPT-2's at batch 1 (layernorm),
  // a partial last 8-row tile, every norm width from one warp (64) to all eight (8192); on an H100/H200 the
  // sm90 64-row tile with K in slices reduced together with the norm (splitk_reduce_norm): 7B's down
  // projection at 16 rows and its out and down at 64, GPT-2's down at 64 (layernorm).
  for (const [M, N, K, ln] of [
    [1, 4096, 11008, false],
    [16, 4096, 11008, false],
    [64, 4096, 4096, false],
    [64, 4096, 11008, false],
    [64, 768, 3072, true],
    [1, 768, 3072, true],
    [3, 200, 64, true],
    [5, 8192, 520, false],
    [2, 64, 4096, false],
  ] as const)
    it(`${M}x${N}x${K}${ln ? ' layernorm' : ''}: x and h bit for bit the matmul then the norm, on the GEMV's settings; a graph of three replayed`, () => {
      const s = seed();
      const a = randT([M, K], 'bf16', dev, s, -1, 1);
      const w = randT([N, K], 'bf16', dev, s + 1, -0.1, 0.1);
      const bias = randT([N], 'bf16', dev, s + 2);
      const x0 = randT([M, N], 'bf16', dev, s + 3, -2, 3);
      const g = randT([N], 'bf16', dev, s + 4, 0.5, 1.5);
      const b = ln ? randT([N], 'bf16', dev, s + 5, -0.5, 0.5) : undefined;
      const counter = Tensor.zeros([1], { dtype: 'i32', device: dev });
      const run = (withCounter: boolean) => {
        const x = Tensor.from(x0.v, [M, N], { dtype: 'bf16', device: dev });
        const h = poisoned([M, N], 'bf16', dev);
        ops.linearResidualNorm(a.t, w.t, x, g.t, { bias: bias.t, normB: b?.t, eps: 1e-5, counter: withCounter ? counter : undefined, out: h });
        const r = [x.toArray() as Float32Array, h.toArray() as Float32Array];
        [x, h].forEach((t) => t.dispose());
        return r;
      };
      const same = (p: Float32Array, q: Float32Array, what: string) => {
        let diff = 0;
        for (let i = 0; i < p.length; i++) if (!(p[i] === q[i]) || !Number.isFinite(p[i]!)) diff++;
        expect(diff, `seed ${s}: ${what}`).toBe(0);
      };
      // The matmul (beta = 1) then the norm, as two ops.
      const apart = () => {
        const x = Tensor.from(x0.v, [M, N], { dtype: 'bf16', device: dev });
        ops.matmul(a.t, w.t, { transB: true, bias: bias.t, beta: 1, out: x });
        const h = ln ? ops.layernorm(x, g.t, b!.t, { eps: 1e-5 }) : ops.rmsnorm(x, g.t, { eps: 1e-5 });
        const r = [x.toArray() as Float32Array, h.toArray() as Float32Array];
        [x, h].forEach((t) => t.dispose());
        return r;
      };
      // On each path the ops apart against the fused op, with the counter and without. Path -1 (the
      // dispatch's choice: at 16 rows and a large W, and at 17-64 rows, the sm90 64-row tile, in its own
      // order) is held to its own ops apart; the forced GEMV paths (0, 5) also to each other, the GEMV
      // kernels adding in one order.
      const [xa, ha] = apart(); // path -1: also the graph's reference below
      native.testing.matmulGemv(0);
      const [xg, hg] = apart();
      for (const path of [-1, 0, 5]) {
        native.testing.matmulGemv(path);
        const [xp, hp] = path === -1 ? [xa!, ha!] : [xg!, hg!];
        for (const withCounter of [true, false]) {
          const [xf, hf] = run(withCounter);
          same(xf!, xp!, `x on path ${path}${withCounter ? '' : ' (no counter)'}`);
          same(hf!, hp!, `h on path ${path}${withCounter ? '' : ' (no counter)'}`);
        }
        expect(counter.toArray()[0], `seed ${s}: the counter after path ${path}`).toBe(0);
      }
      native.testing.matmulGemv(-1);
      // Three calls in a graph (one counter, rearmed by each), replayed twice: the eager sequence's bits.
      const xs = [0, 1, 2].map(() => Tensor.from(x0.v, [M, N], { dtype: 'bf16', device: dev }));
      const hs = [0, 1, 2].map(() => poisoned([M, N], 'bf16', dev));
      const graph = capture(dev, () => {
        for (let i = 0; i < 3; i++) ops.linearResidualNorm(a.t, w.t, xs[i]!, g.t, { bias: bias.t, normB: b?.t, eps: 1e-5, counter, out: hs[i] });
      });
      graph.replay();
      const once = xs.map((x) => x.toArray() as Float32Array);
      for (const [i, h] of hs.entries()) same(h.toArray() as Float32Array, ha!, `graph call ${i}: h after one replay`);
      for (const x of once) same(x, xa!, 'graph: x after one replay');
      graph.replay(); // x += the product again: h is the norm of that
      const [x2, h2] = (() => {
        const x = Tensor.from(xa!, [M, N], { dtype: 'bf16', device: dev });
        const h = poisoned([M, N], 'bf16', dev);
        ops.linearResidualNorm(a.t, w.t, x, g.t, { bias: bias.t, normB: b?.t, eps: 1e-5, out: h });
        const r = [x.toArray() as Float32Array, h.toArray() as Float32Array];
        [x, h].forEach((t) => t.dispose());
        return r;
      })();
      for (const [i, h] of hs.entries()) same(h.toArray() as Float32Array, h2!, `graph call ${i}: h after two replays`);
      for (const x of xs) same(x.toArray() as Float32Array, x2!, 'graph: x after two replays');
      expect(counter.toArray()[0], `seed ${s}: the counter after the replays`).toBe(0);
      graph.dispose();
      // Against float64.
      const xr = matmulRef(a.v, w.v, bias.v, x0.v, M, N, K, false, true, 1, 1);
      expect(relError(xa!, xr), `seed ${s}: x vs float64`).toBeLessThan(1e-2);
      const hr = ln ? layernormRef(xa!, g.v, b!.v, M, N, 1e-5).y : rmsnormRef(xa!, g.v, M, N, 1e-5).y;
      expect(relError(ha!, hr), `seed ${s}: h vs float64`).toBeLessThan(1e-2);
      [a.t, w.t, bias.t, x0.t, g.t, b?.t, counter, ...xs, ...hs].forEach((t) => t?.dispose());
    });
});

describe.skipIf(gpus === 0)('rmsnormLinearSwiGLU: norm, gate+up projection and SwiGLU in one kernel', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  for (const [M, F, K] of [
    [1, 11008, 4096],
    [16, 1024, 4096],
    [3, 21, 64],
    [9, 700, 2056],
  ] as const)
    it(`${M}x${F}x${K}: the bits of rmsnormLinear then siluGate, on either GEMV setting, and float64`, () => {
      const s = seed();
      const x = randT([M, K], 'bf16', dev, s, -2, 3);
      const g = randT([K], 'bf16', dev, s + 1, 0.5, 1.5);
      const w = randT([2 * F, K], 'bf16', dev, s + 2, -0.2, 0.2);
      const outs = samePerPath([1, 0, 5], 'the ops apart', s, () => {
        const fused = poisoned([M, F], 'bf16', dev);
        ops.rmsnormLinearSwiGLU(x.t, g.t, w.t, { eps: 1e-5, out: fused });
        const gu = ops.rmsnormLinear(x.t, g.t, w.t, { eps: 1e-5 });
        const up = gu.view(F, [gu.numel - F]);
        const apart = ops.siluGate(gu, up, { rows: M, cols: F, inStride: 2 * F });
        [gu, up].forEach((t) => t.dispose());
        return [fused, apart];
      });
      const h = rmsnormRefRows(x.v, g.v, M, K, 1e-5);
      const ref = swigluRef(h, w.v, M, F, K);
      expect(relError(outs[0]!, ref), `seed ${s}`).toBeLessThan(1e-2);
      [x.t, g.t, w.t].forEach((t) => t.dispose());
    });
});

describe.skipIf(gpus === 0)('layernormLinear: GPT-2 decode\'s norm, projection and GELU in the GEMV', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  // GPT-2's qkv and up projections (K 768: one warp a row's statistics), K 4096 (four warps), and rows past
  // the fusion (the ops apart again).
  for (const [M, N, K, gelu] of [
    [1, 2304, 768, false],
    [1, 3072, 768, true],
    [4, 3072, 768, true],
    [3, 1001, 4096, false],
    [7, 300, 768, true],
  ] as const)
    it(`${M}x${N}x${K}${gelu ? ' +gelu' : ''}: the bits of layernorm, linear${gelu ? ', gelu' : ''}, fused (path 5) or not, and float64`, () => {
      const s = seed();
      const x = randT([M, K], 'bf16', dev, s, -2, 3);
      const g = randT([K], 'bf16', dev, s + 1, 0.5, 1.5);
      const b = randT([K], 'bf16', dev, s + 2, -0.5, 0.5);
      const w = randT([N, K], 'bf16', dev, s + 3, -0.2, 0.2);
      const bias = randT([N], 'bf16', dev, s + 4);
      const outs = samePerPath([0, 5], 'the ops apart', s, () => {
        const fused = poisoned([M, N], 'bf16', dev);
        ops.layernormLinear(x.t, g.t, b.t, w.t, { eps: 1e-5, bias: bias.t, gelu, out: fused });
        const h = ops.layernorm(x.t, g.t, b.t, { eps: 1e-5 });
        const apart = ops.linear(h, w.t, bias.t);
        h.dispose();
        if (gelu) ops.gelu(apart, apart);
        return [fused, apart];
      });
      const h = layernormRefRows(x.v, g.v, b.v, M, K, 1e-5);
      const y = matmulRef(h, w.v, bias.v, null, M, N, K, false, true);
      const ref = gelu ? Float64Array.from(y, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))) : y;
      expect(relError(outs[0]!, ref), `seed ${s}`).toBeLessThan(1e-2);
      [x.t, g.t, b.t, w.t, bias.t].forEach((t) => t.dispose());
    });
});

/** A fused op's qkv rows, k cache and v cache (outs[0]) against the ops apart's (outs[1]): written, and bit for bit. */
function sameRowsAndCaches(outs: Float32Array[][], s: number): void {
  for (const [i, name] of ['qkv', 'k cache', 'v cache'].entries()) {
    const [a, b] = [outs[0]![i]!, outs[1]![i]!];
    finite(a, name);
    let diff = 0;
    for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) diff++;
    expect(diff, `seed ${s}: ${name} elements that differ`).toBe(0);
  }
}

describe.skipIf(gpus === 0)('ropeKvWrite: the fused decode rope and cache write', () => {
  // The three launches it replaces, on the same inputs: the same bits (rope_common.cuh is shared).
  for (const [B, Hq, Hkv, D, rot, freqs] of [
    [1, 32, 32, 128, 128, false],
    [16, 32, 8, 128, 128, true],
    [5, 12, 12, 64, 0, false],
    [3, 8, 2, 80, 64, false],
    [3, 5, 1, 320, 64, false], // 7 heads: the last block's fourth warp idle; a 256-element k tail
  ] as const)
    for (const dt of ['bf16', 'f32'] as const)
      it(`B${B} Hq${Hq} Hkv${Hkv} D${D} rot${rot}${freqs ? ' with a frequency table' : ''} [${dt}]: equals rope + two kvWrites`, () => {
        const maxLen = 40, W3 = (Hq + 2 * Hkv) * D, s = seed();
        // (B > 2: the first sequence at -1 and the last past the cache: rotated, and written nowhere)
        const posv = Array.from({ length: B }, (_, b) => (B > 2 && b === 0 ? -1 : B > 2 && b === B - 1 ? maxLen : (s + 11 * b) % maxLen));
        const pos = Tensor.from(posv, [B], { dtype: 'i32', device: dev });
        const f = freqs ? Tensor.from(uniformArray(rot / 2, s + 9, 0.001, 1), [rot / 2], { dtype: 'f32', device: dev }) : undefined;
        const rope = rot ? { theta: 500000, rotaryDim: rot, freqs: f } : undefined;
        const outs = [true, false].map((fused) => {
          const qkv = randT([B, W3], dt, dev, s).t;
          const kc = randT([B, maxLen, Hkv, D], dt, dev, s + 1).t;
          const vc = randT([B, maxLen, Hkv, D], dt, dev, s + 2).t;
          if (fused) ops.ropeKvWrite(qkv, kc, vc, pos, { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen, rope });
          else {
            if (rope) ops.rope(qkv, pos, { heads: Hq + Hkv, headDim: D, tokenStride: W3, tokens: B, ...rope });
            const kv = { batch: B, tokens: 1, width: Hkv * D, maxLen, srcStrides: [W3, W3] as [number, number] };
            const k = qkv.view(Hq * D, [qkv.numel - Hq * D]);
            const v = qkv.view((Hq + Hkv) * D, [qkv.numel - (Hq + Hkv) * D]);
            ops.kvWrite(kc, k, pos, kv);
            ops.kvWrite(vc, v, pos, kv);
            [k, v].forEach((t) => t.dispose());
          }
          const r = [qkv, kc, vc].map((t) => t.toArray() as Float32Array);
          [qkv, kc, vc].forEach((t) => t.dispose());
          return r;
        });
        sameRowsAndCaches(outs, s);
        [pos, f].forEach((t) => t?.dispose());
      });

  // Decode passes plain RoPE's frequencies as a table (Transformer.ropeTable): the bits of theta's.
  for (const dt of ['bf16', 'f32'] as const)
    it(`the plain table (plainRopeFrequencies) gives theta's bits [${dt}]`, () => {
      const B = 16, Hq = 32, Hkv = 8, D = 128, maxLen = 300, W3 = (Hq + 2 * Hkv) * D, s = seed(), theta = 10000;
      const pos = Tensor.from(Array.from({ length: B }, (_, b) => (s + 17 * b) % maxLen), [B], { dtype: 'i32', device: dev });
      const f = Tensor.from(plainRopeFrequencies(theta, D), [D / 2], { dtype: 'f32', device: dev });
      const outs = [undefined, f].map((freqs) => {
        const qkv = randT([B, W3], dt, dev, s).t;
        const kc = Tensor.zeros([B, maxLen, Hkv, D], { dtype: dt, device: dev });
        const vc = Tensor.zeros([B, maxLen, Hkv, D], { dtype: dt, device: dev });
        ops.ropeKvWrite(qkv, kc, vc, pos, { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen, rope: { theta, freqs } });
        const r = [qkv, kc].map((t) => t.toArray() as Float32Array);
        [qkv, kc, vc].forEach((t) => t.dispose());
        return r;
      });
      for (const i of [0, 1]) {
        const [a, b] = [outs[0]![i]!, outs[1]![i]!];
        let diff = 0;
        for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) diff++;
        expect(diff, `seed ${s}: ${i ? 'k cache' : 'qkv'} elements that differ`).toBe(0);
      }
      [pos, f].forEach((t) => t.dispose());
    });
});

describe.skipIf(gpus === 0)('linearRopeKvWrite: the qkv projection with its rope and cache write', () => {
  afterEach(() => {
    native.testing.matmulSplitK(-1);
    native.testing.matmulWTile(-1);
  });
  // linear then ropeKvWrite on the same inputs: the same bits, where the product's split-K reduce does the rope
  // (the W-as-A tile's slices, forced or chosen: 7B's batch-16 qkv) and where it does not (one slice, the GEMV).
  for (const [B, K, Hq, Hkv, D, rot, wtile, splits, bias] of [
    [16, 4096, 32, 32, 128, 128, -1, -1, false], // 7B at batch 16, the dispatch's choice (the W-as-A tile, sliced)
    [16, 4096, 32, 8, 128, 128, 2, 3, true],
    [9, 1024, 12, 4, 64, 32, 2, 4, true], // partial rotation, GQA
    [5, 512, 6, 3, 80, 64, 2, 2, false],
    [3, 256, 4, 4, 64, 0, 2, 3, false], // no rotation: the cache writes alone
    [12, 2048, 8, 8, 128, 128, 2, 1, false], // one slice: no reduce, rope_kv_write after
    [1, 4096, 32, 32, 128, 128, -1, -1, false], // the GEMV: rope_kv_write after
  ] as const)
    it(`B${B} K${K} Hq${Hq} Hkv${Hkv} D${D} rot${rot} wtile ${wtile} splits ${splits}${bias ? ', bias' : ''} [bf16]: equals linear then ropeKvWrite`, () => {
      const maxLen = 48, N = (Hq + 2 * Hkv) * D, s = seed(), dt = 'bf16';
      native.testing.matmulWTile(wtile);
      native.testing.matmulSplitK(splits);
      // (B > 2: the first sequence at -1 and the last past the cache: rotated, and written nowhere)
      const posv = Array.from({ length: B }, (_, b) => (B > 2 && b === 0 ? -1 : B > 2 && b === B - 1 ? maxLen : (s + 7 * b) % maxLen));
      const pos = Tensor.from(posv, [B], { dtype: 'i32', device: dev });
      const x = randT([B, K], dt, dev, s).t;
      const w = randT([N, K], dt, dev, s + 1, -0.05, 0.05).t;
      const bv = bias ? randT([N], dt, dev, s + 2).t : undefined;
      const rope = rot ? { theta: 10000, rotaryDim: rot } : undefined;
      const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
      const outs = [true, false].map((fused) => {
        const kc = randT([B, maxLen, Hkv, D], dt, dev, s + 3).t;
        const vc = randT([B, maxLen, Hkv, D], dt, dev, s + 4).t;
        let qkv: Tensor;
        if (fused) {
          qkv = Tensor.full([B, N], Number.NaN, { dtype: dt, device: dev });
          ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, rope, bias: bv, out: qkv });
        } else {
          qkv = ops.linear(x, w, bv);
          ops.ropeKvWrite(qkv, kc, vc, pos, { ...shape, rope });
        }
        const r = [qkv, kc, vc].map((t) => t.toArray() as Float32Array);
        [qkv, kc, vc].forEach((t) => t.dispose());
        return r;
      });
      sameRowsAndCaches(outs, s);
      [pos, x, w, bv].forEach((t) => t?.dispose());
    });
});

describe.skipIf(gpus === 0)('linearRopeKvAttentionDecode: the qkv projection, rope, cache write and attention', () => {
  afterEach(() => {
    native.testing.matmulSplitK(-1);
    native.testing.matmulWTile(-1);
    native.testing.attentionDecodeSplits(-1);
  });
  // linearRopeKvWrite then attentionDecode on the same inputs: the same bits where the attention kernel sums the
  // product's K slices itself (the W-as-A tile's slices, forced or chosen: 7B's batch-16 qkv), in and out of decode's
  // frozen weights (its PRE form), one key chunk or several; and where it does not (one slice, the GEMV, rotated
  // pairs across 16-byte packs): the ops apart.
  for (const [B, K, Hq, Hkv, D, rot, wtile, splits, chunks, bias] of [
    [16, 4096, 32, 32, 128, 128, -1, -1, -1, false], // 7B at batch 16, the dispatch's choice (sliced, one chunk)
    [16, 4096, 32, 8, 128, 128, 2, 3, 3, true], // GQA, a bias, three chunks merged by the counter
    [9, 1024, 12, 4, 64, 32, 2, 4, -1, true], // partial rotation
    [5, 512, 6, 3, 80, 16, 2, 2, 2, false], // (D 80: the packs line up at rot 16)
    [4, 512, 4, 4, 64, 8, 2, 3, -1, false], // pairs across packs: the ops apart
    [12, 2048, 8, 8, 128, 128, 2, 1, -1, false], // one slice: no reduce, the ops apart
    [1, 4096, 32, 32, 128, 128, -1, -1, -1, false], // the GEMV: the ops apart
  ] as const)
    it(`B${B} K${K} Hq${Hq} Hkv${Hkv} D${D} rot${rot} wtile ${wtile} splits ${splits} chunks ${chunks}${bias ? ', bias' : ''} [bf16]: equals linearRopeKvWrite then attentionDecode`, () => {
      const maxLen = 48, N = (Hq + 2 * Hkv) * D, s = seed(), dt = 'bf16';
      native.testing.matmulWTile(wtile);
      native.testing.matmulSplitK(splits);
      native.testing.attentionDecodeSplits(chunks);
      // (B > 2: the first sequence at -1 and the last past the cache: written nowhere; lens from pos + 1, some past)
      const posv = Array.from({ length: B }, (_, b) => (B > 2 && b === 0 ? -1 : B > 2 && b === B - 1 ? maxLen : (s + 7 * b) % maxLen));
      const lensv = posv.map((p, b) => (p < 0 || p >= maxLen ? 1 + ((s + b) % maxLen) : b % 3 === 2 ? Math.max(1, p) : p + 1));
      const pos = Tensor.from(posv, [B], { dtype: 'i32', device: dev });
      const lens = Tensor.from(lensv, [B], { dtype: 'i32', device: dev });
      const counter = Tensor.zeros([B * Hq], { dtype: 'i32', device: dev });
      const x = randT([B, K], dt, dev, s).t;
      const w = randT([N, K], dt, dev, s + 1, -0.05, 0.05).t;
      const bv = bias ? randT([N], dt, dev, s + 2).t : undefined;
      const rope = { theta: 10000, rotaryDim: rot };
      const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen };
      const run = (fused: boolean, frozen: boolean) => {
        const kc = randT([B, maxLen, Hkv, D], dt, dev, s + 3).t;
        const vc = randT([B, maxLen, Hkv, D], dt, dev, s + 4).t;
        const go = () => {
          if (fused) {
            const out = Tensor.full([B, Hq, D], Number.NaN, { dtype: dt, device: dev });
            ops.linearRopeKvAttentionDecode(x, w, kc, vc, pos, lens, { ...shape, rope, bias: bv, counter, out });
            return out;
          }
          const qkv = ops.linearRopeKvWrite(x, w, kc, vc, pos, { ...shape, rope, bias: bv });
          const out = ops.attentionDecode(qkv, kc, vc, lens, { ...shape, qStride: N, counter });
          qkv.dispose();
          return out;
        };
        const out = frozen ? withFrozenWeights(go) : go();
        const r = [out, kc, vc].map((t) => t.toArray() as Float32Array);
        [out, kc, vc].forEach((t) => t.dispose());
        return r;
      };
      const apart = run(false, false);
      finite(apart[0]!, 'output');
      for (const frozen of [false, true]) {
        const fused = run(true, frozen);
        for (const [i, what] of ['output', 'k cache', 'v cache'].entries())
          expect(differing(fused[i]!, apart[i]!), `seed ${s}${frozen ? ' (frozen)' : ''}: ${what} elements that differ`).toBe(0);
      }
      expect(Array.from(counter.toArray()).every((v) => v === 0), 'counters rearmed').toBe(true);
      [pos, lens, counter, x, w, bv].forEach((t) => t?.dispose());
    });
});

describe.skipIf(gpus === 0)('ropeKvAttentionDecode: rope, cache write and attention in one launch', () => {
  afterEach(() => native.testing.attentionDecodeSplits(-1));
  // The split kernel's FRESH form against ropeKvWrite then attentionDecode on the GPU (the same bits: the
  // rotation is rope_common.cuh's), at several chunk counts with and without a counter; and the output
  // against the CPU backend's (the same definition, its own arithmetic).
  const big = [
    { name: 'LLaMA-2-7B shape, batch 2, 300 keys', Hq: 32, Hkv: 32, D: 128, rot: 128, table: true, maxLen: 320, pos: [299, 150], lens: [300, 151] },
    { name: 'GQA 32/8, 2,000 keys, the new key mid-context', Hq: 32, Hkv: 8, D: 128, rot: 128, maxLen: 2048, pos: [1999, 700], lens: [2000, 1500] },
    { name: 'GPT-2 shape, batch 3', Hq: 12, Hkv: 12, D: 64, rot: 0, maxLen: 256, pos: [0, 130, 255], lens: [1, 131, 256] },
  ];
  for (const c of [...fusedDecodeCases, ...big])
    for (const dt of ['bf16', 'f32'] as const)
      for (const splits of [-1, 1, 3])
        it(`${c.name} [${dt}], ${splits < 0 ? 'chosen' : splits} key chunks: the bits of the two ops, with and without a counter; the CPU's output`, () => {
          const s = seed();
          native.testing.attentionDecodeSplits(splits);
          for (const counter of [false, true]) {
            const r = fusedDecode(dev, dt, c, s, counter);
            for (const [i, what] of ['output', 'k cache', 'v cache'].entries()) {
              finite(r.fused[i]!, what);
              expect(differing(r.fused[i]!, r.apart[i]!), `seed ${s}${counter ? ' (counter)' : ''}: ${what} elements that differ`).toBe(0);
              // (and outside frozen weights: never the PRE form)
              expect(differing(r.fusedThawed[i]!, r.apart[i]!), `seed ${s}${counter ? ' (counter)' : ''}: ${what} elements that differ, not frozen`).toBe(0);
            }
            expect(differing(r.fused[3]!, r.qkv), `seed ${s}: qkv changed`).toBe(0);
            if (!counter && splits === -1) {
              native.testing.attentionDecodeSplits(-1);
              const cpu = fusedDecode('cpu:0', dt, c, s);
              expect(relError(r.fused[0]!, cpu.fused[0]!), `seed ${s}: output vs the CPU`).toBeLessThan(dt === 'f32' ? 1e-5 : 2e-2);
              for (const i of [1, 2]) expect(relError(r.fused[i]!, cpu.fused[i]!), `seed ${s}: cache ${i} vs the CPU`).toBeLessThan(dt === 'f32' ? 1e-6 : 1e-2);
              native.testing.attentionDecodeSplits(splits);
            }
          }
        });

  it('in a graph of two layers replayed with new positions: the eager bits each replay', () => {
    const B = 2, Hq = 8, Hkv = 8, D = 128, maxLen = 64, W3 = (Hq + 2 * Hkv) * D, s = seed();
    const shape = { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen, rope: { theta: 10000 } };
    const qkv = [0, 1].map((l) => randT([B, W3], 'bf16', dev, s + l).t);
    const fresh = () => [0, 1].map((l) => [randT([B, maxLen, Hkv, D], 'bf16', dev, s + 10 + l).t, randT([B, maxLen, Hkv, D], 'bf16', dev, s + 20 + l).t]);
    const caches = fresh(), ref = fresh();
    const pos = Tensor.from([3, 10], [B], { dtype: 'i32', device: dev }), lens = Tensor.from([4, 11], [B], { dtype: 'i32', device: dev });
    const counter = Tensor.zeros([B * Hq], { dtype: 'i32', device: dev });
    const outs = [0, 1].map(() => poisoned([B, Hq, D], 'bf16', dev));
    const graph = capture(dev, () => {
      for (const l of [0, 1]) ops.ropeKvAttentionDecode(qkv[l]!, caches[l]![0]!, caches[l]![1]!, pos, lens, { ...shape, out: outs[l], counter });
    });
    for (const [step, p] of [[3, 10], [4, 11], [20, 63]].entries()) {
      pos.write(p);
      lens.write(p.map((x) => x + 1));
      graph.replay();
      for (const l of [0, 1]) {
        const want = ops.ropeKvAttentionDecode(qkv[l]!, ref[l]![0]!, ref[l]![1]!, pos, lens, shape);
        expect(differing(outs[l]!.toArray() as Float32Array, want.toArray() as Float32Array), `seed ${s}: step ${step} layer ${l}`).toBe(0);
        for (const kv of [0, 1])
          expect(differing(caches[l]![kv]!.toArray() as Float32Array, ref[l]![kv]!.toArray() as Float32Array), `seed ${s}: step ${step} layer ${l} cache ${kv}`).toBe(0);
        want.dispose();
      }
      expect(Array.from(counter.toArray()).every((x) => x === 0), `seed ${s}: counters after step ${step}`).toBe(true);
    }
    graph.dispose();
    [...qkv, ...caches.flat(), ...ref.flat(), pos, lens, counter, ...outs].forEach((t) => t.dispose());
  });
});

describe.skipIf(gpus === 0)('decode of the tiny models on both GEMV kernels', () => {
  afterEach(() => native.testing.matmulGemv(-1));
  for (const name of ['tiny-gpt2', 'tiny-llama'] as const)
    it(`${name} bf16: the same greedy tokens, captured and not, alone and batched, the attention fused or not`, async () => {
      const exp = expected[name]!;
      const m = Model.load(path.join(fixtures, name), { device: dev, dtype: 'bf16' });
      const o = { maxTokens: exp.new_tokens, stopTokens: [] as number[] };
      const runs: number[][][] = [];
      for (const p of [0, 1] as const) {
        native.testing.matmulGemv(p);
        runs.push((await generate(m, exp.prompts, o)).map((g) => g.tokens));
        runs.push((await generate(m, exp.prompts, { ...o, graph: false })).map((g) => g.tokens));
        runs.push([(await generate(m, [exp.prompts[0]!], o))[0]!.tokens]);
      }
      native.testing.matmulGemv(-1);
      // The norms in the residual projections' epilogues (Transformer.normInGemv): the same tokens.
      const was = Transformer.normInGemv;
      try {
        Transformer.normInGemv = true;
        runs.push((await generate(m, exp.prompts, o)).map((g) => g.tokens));
        runs.push((await generate(m, exp.prompts, { ...o, graph: false })).map((g) => g.tokens));
      } finally {
        Transformer.normInGemv = was;
      }
      // Rope, cache write and attention in one launch (ops.ropeKvAttentionDecode) or two: the same tokens.
      const fusedWas = Transformer.fusedDecodeAttention;
      try {
        for (const f of [true, false]) {
          Transformer.fusedDecodeAttention = f;
          runs.push((await generate(m, exp.prompts, o)).map((g) => g.tokens));
        }
      } finally {
        Transformer.fusedDecodeAttention = fusedWas;
      }
      expect(runs[8], 'rope, cache write and attention fused').toEqual(runs[0]);
      expect(runs[9], 'rope and cache write, then attention').toEqual(runs[0]);
      expect(runs[3]).toEqual(runs[0]);
      expect(runs[4]).toEqual(runs[1]);
      expect(runs[5]).toEqual(runs[2]);
      expect(runs[1]).toEqual(runs[0]);
      expect(runs[6], 'norms in the GEMV epilogues, captured').toEqual(runs[0]);
      expect(runs[7], 'norms in the GEMV epilogues, op by op').toEqual(runs[0]);
      m.dispose();
    });
});

describe.skipIf(gpus === 0)("a captured graph's shared workspaces (native/cuda/workspace.h)", () => {
  afterEach(() => native.testing.attentionDecodeSplits(-1));

  // Under a capture, the split-K products share one buffer of partials, decode attention's chunk partials another,
  // argmax's winners another, and nested scratch (rmsnormLinearSwiGLU's gate+up block, then its norm's rows) one a
  // depth: allocated at first use, grown when a larger product comes (12288 then 22016 columns), freed at the
  // capture's end. The replays, each with fresh inputs, must give the bits of the same ops run uncaptured (each call
  // its own allocation), so no product read partials another one wrote.
  it('split-K products, nested scratch, chunked decode attention and argmax replay with the bits of the ops uncaptured', () => {
    const s = seed();
    const M = 16, K = 4096, V = 32000;
    const x = randT([M, K], 'bf16', dev, s);
    const w1 = randT([12288, K], 'bf16', dev, s + 1, -0.05, 0.05);
    const w2 = randT([22016, K], 'bf16', dev, s + 2, -0.05, 0.05);
    const w3 = randT([K, 12288], 'bf16', dev, s + 3, -0.05, 0.05);
    const g = randT([K], 'bf16', dev, s + 4, 0.5, 1.5);
    const wv = randT([V, K], 'bf16', dev, s + 5, -0.05, 0.05);
    const [B, Hq, Hkv, D, maxLen] = [M, 32, 8, 128, 1024];
    const kc = randT([B, maxLen, Hkv, D], 'bf16', dev, s + 6);
    const vc = randT([B, maxLen, Hkv, D], 'bf16', dev, s + 7);
    const L = Tensor.from(Array.from({ length: B }, (_, i) => 1 + ((i * 97) % maxLen)), [B], { dtype: 'i32', device: dev });
    const outs = {
      y1: poisoned([M, 12288], 'bf16', dev),
      y2: poisoned([M, 22016], 'bf16', dev),
      y3: poisoned([M, K], 'bf16', dev),
      sw: poisoned([M, 11008], 'bf16', dev),
      att: poisoned([B, Hq, D], 'bf16', dev),
      logits: poisoned([M, V], 'bf16', dev),
      ids: poisoned([M], 'i32', dev),
    };
    const step = () => {
      ops.matmul(x.t, w1.t, { transB: true, out: outs.y1 });
      ops.matmul(x.t, w2.t, { transB: true, out: outs.y2 }); // a larger buffer of partials
      ops.matmul(outs.y1, w3.t, { transB: true, out: outs.y3 }); // the first product's output, K cut again
      ops.rmsnormLinearSwiGLU(outs.y3, g.t, w2.t, { eps: 1e-5, out: outs.sw });
      const q = outs.y1.view(0, [B, Hq, D]);
      ops.attentionDecode(q, kc.t, vc.t, L, { batch: B, headsQ: Hq, headsKv: Hkv, headDim: D, maxLen, out: outs.att });
      q.dispose();
      ops.matmul(outs.y3, wv.t, { transB: true, out: outs.logits });
      ops.argmax(outs.logits, outs.ids);
    };
    const read = () => Object.values(outs).map((t) => t.toArray());
    native.testing.attentionDecodeSplits(4);
    const graph = capture(dev, step);
    for (const r of [0, 1]) {
      x.t.write(uniformArray(M * K, s + 10 + r, -1, 1));
      Object.values(outs).forEach((t) => t.write(new Array(t.numel).fill(t.dtype === 'i32' ? -123456789 : NaN)));
      graph.replay();
      const replayed = read();
      step();
      const eager = read();
      for (const [i, name] of Object.keys(outs).entries()) {
        finite(replayed[i]!, `replay ${r}: ${name}`);
        let diff = 0;
        for (let j = 0; j < eager[i]!.length; j++) if (replayed[i]![j] !== eager[i]![j]) diff++;
        expect(diff, `seed ${s}, replay ${r}: ${name} elements differing from the uncaptured ops`).toBe(0);
      }
    }
    graph.dispose();
    [x.t, w1.t, w2.t, w3.t, g.t, wv.t, kc.t, vc.t, L, ...Object.values(outs)].forEach((t) => t.dispose());
  });
});
