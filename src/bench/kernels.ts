// `parallm bench kernels`: what each kernel family achieves on one device, against the hardware's
// ceilings. FLOPs and bytes are counted as the minimum the op must do (see .library METHOD): GEMM 2MNK;
// causal attention 4*B*H*T*T*D/2; GEMV and decode attention by the bytes of weights / cache read.
import type { DType } from '../dtype.js';
import { defaultDevice, parseDevice, deviceInfo, emptyCache } from '../device.js';
import * as ops from '../ops.js';
import { rand } from '../random.js';
import { native } from '../native.js';
import { capture, withFrozenWeights } from '../runtime.js';
import { Tensor } from '../tensor.js';
import { timeOnDevice, type Timing } from './stats.js';

export interface KernelBenchOptions {
  device?: string;
  /** compute dtype; default bf16 on a GPU, f32 on the CPU */
  dtype?: DType;
  /** smaller shapes and fewer runs */
  quick?: boolean;
  runs?: number;
  /** only cases whose name contains one of these */
  filter?: string[];
  /** K slices of the sm90 matmul: 'auto' (default) or a count (1 turns split-K off) */
  splitK?: 'auto' | number;
  /**
   * GPU: this many SMs held by a spinning kernel on another stream while each case is timed (native.testing.holdSms),
   * as NCCL's blocks hold them beside data-parallel training's backward: what a kernel loses when it shares the GPU.
   */
  busySms?: number;
  onResult?: (r: KernelBenchResult) => void;
}

export interface KernelBenchResult {
  name: string;
  shape: string;
  dtype: DType;
  device: string;
  ms: number;
  tflops?: number;
  gbps?: number;
  /** GEMV cases: a device-to-device copy of the weight bytes (read + written), timed right after the case */
  copyGbps?: number;
  /** gbps / copyGbps: the share of the copy rate the kernel streams its weights at */
  ofCopy?: number;
  /** timed as replays of a captured graph of back-to-back calls (the launch cost a decode step pays), not as host calls */
  graphed?: boolean;
}

interface Case {
  name: string;
  shape: string;
  flops?: number;
  bytes?: number;
  /** time a copy of this many bytes after the case, as its ceiling (GEMV: the weights) */
  copyBytes?: number;
  /**
   * On a GPU, time replays of a captured graph of GRAPH_CALLS calls: a call of a few microseconds (a
   * decode GEMV or attention) is otherwise timed at the rate the host issues calls, not the GPU's.
   */
  graph?: boolean;
  setup: () => { run: (i: number) => void; dispose: () => void };
}

/** PARALLM_PDL's level (launch.cuh), to restore after a case run without PDL. */
function pdlLevelFromEnv(): 0 | 1 | 2 {
  const v = process.env.PARALLM_PDL;
  return v === '0' ? 0 : v === '2' ? 2 : 1;
}

/** The name suffix of a GEMV case forcing matmulGemv(path): 0 the register kernel, 1 the pipelined one, 2
 * and 3 its other shapes, 4 the register kernel's single-plain-load form at every N, 6 it on 16 rows a block, 8 and 9
 * on 32 (unroll 4, 2). */
const GEMV_VARIANT = { 0: '-reg', 1: '-pipe', 2: '-b', 3: '-c', 4: '-reg1', 6: '-reg16', 7: '-tile64', 8: '-reg32', 9: '-reg32u2' } as const;

interface GemmCaseOptions {
  /** a decode-batch GEMM (judged by its weight bytes too, graph-timed) */
  decode?: boolean;
  /** M <= 16, B^T: the GEMV kernel forced while the case runs (native.testing.matmulGemv; GEMV_VARIANT names each) */
  gemvPath?: keyof typeof GEMV_VARIANT;
  /** false: programmatic dependent launch off while the case runs */
  pdl?: boolean;
  /** the sm90 tile forced while the case runs (native.testing.matmulTileRows) */
  tileRows?: 64 | 128;
  /** the W-as-A tile while the case runs (native.testing.matmulWTile: 1 the tile's products, 2 also the GEMV's) */
  wtile?: 1 | 2;
  /** a weight gradient's product: A^T ([K, M], K the tokens), B as it lies ([K, N]) */
  transA?: boolean;
}

/** Inputs below this rotate among 3 copies in the graphed cases (about 4 times an H200's L2). */
const L2_SAFE_BYTES = 192 << 20;

/**
 * A matmul case. `pdl` false: the case runs with programmatic dependent launch off (native.testing.pdl(0)),
 * so the table shows what PDL gains between back-to-back GEMVs. `gemvPath` (M <= 16, B^T): which GEMV kernel
 * the case forces (by default the one the dispatch chooses: the register kernel, its load form by N).
 * `tileRows`: the sm90 GEMM's 64- or 128-row tile forced (by default 64 rows up to M = 64).
 */
function gemmCase(dev: string, dt: DType, M: number, N: number, K: number, transB: boolean, opts: GemmCaseOptions = {}): Case {
  const { decode = false, gemvPath, pdl = true, tileRows, wtile, transA = false } = opts;
  const gemv = M <= 16 && !transA;
  const variant =
    (gemvPath === undefined ? '' : GEMV_VARIANT[gemvPath]) + (pdl ? '' : '-nopdl') + (tileRows ? `-t${tileRows}` : '') + (wtile ? '-wtile' : '');
  return {
    name: gemv ? `gemv${variant}` : decode ? `gemm-decode${variant}` : transA ? 'gemm-dw' : 'gemm',
    shape: `${M}x${N}x${K}${transA ? ' (A^T)' : ''}${transB ? ' (B^T)' : ''}`,
    flops: 2 * M * N * K,
    // GEMV is judged by the weight bytes it must stream; GEMM by arithmetic; a decode-batch GEMM by
    // both (it sits near the ridge: the weights' bytes and M rows of arithmetic take similar time).
    bytes: gemv || decode ? N * K * (dt === 'f32' ? 4 : 2) : undefined,
    copyBytes: (gemv || decode) && transB ? N * K * (dt === 'f32' ? 4 : 2) : undefined,
    graph: gemv || decode,
    setup: () => {
      // Rotate among copies of B unless one alone is several times L2 (50 MB on an H100/H200), so the cache
      // is not measured: a 90 MB W read again at once could still find part of itself there.
      const copies = N * K * 2 < L2_SAFE_BYTES ? 3 : 1;
      const a = rand(transA ? [K, M] : [M, K], { dtype: dt, device: dev, seed: 1 });
      const bs = Array.from({ length: copies }, (_, i) => rand(transB ? [N, K] : [K, N], { dtype: dt, device: dev, seed: 2 + i }));
      const c = Tensor.empty([M, N], { dtype: dt, device: dev });
      if (gemvPath !== undefined) native.testing.matmulGemv(gemvPath);
      if (!pdl) native.testing.pdl(0);
      if (tileRows) native.testing.matmulTileRows(tileRows);
      if (wtile) native.testing.matmulWTile(wtile);
      // GEMVs and decode GEMMs as decode runs them: under its frozen weights (nothing here writes a B), which lets
      // the register GEMV load its first weights before its PDL wait (runtime.ts's withFrozenWeights).
      const mm = (i: number) => void ops.matmul(a, bs[i % copies]!, { transA, transB, out: c });
      return {
        run: gemv || decode ? (i) => withFrozenWeights(() => mm(i)) : mm,
        dispose: () => {
          if (gemvPath !== undefined) native.testing.matmulGemv(-1);
          if (!pdl) native.testing.pdl(pdlLevelFromEnv());
          if (tileRows) native.testing.matmulTileRows(-1);
          if (wtile) native.testing.matmulWTile(-1);
          [a, c, ...bs].forEach((t) => t.dispose());
        },
      };
    },
  };
}

/**
 * Decode's projections at batch 1 around a norm: rmsnormLinear (or rmsnormLinearSwiGLU with W holding the gate
 * then the up rows) on the dispatch's default (`apart`: rmsnorm, then the GEMV, then siluGate: two or three
 * kernels) or `fused` (matmulGemv(5): the register GEMV with the norm in its prologue and SwiGLU in its
 * epilogue); or `prenormed`, the gate + up product as batch-1 decode runs it (linearSwiGLU: the row normalized
 * by the projection before it, SwiGLU in the GEMV's epilogue), so a layer's four one-row products can be timed
 * apart (qkv and out by `gemv`, down by `gemv 1x4096x11008`).
 */
function normGemvCase(dev: string, N: number, K: number, swiglu: boolean, form: 'apart' | 'fused' | 'prenormed'): Case {
  const fused = form === 'fused';
  return {
    name: form === 'prenormed' ? 'gemv-swiglu' : `gemv-rms${swiglu ? '-swiglu' : ''}${fused ? '-fused' : ''}`,
    shape: `1x${N}x${K} (B^T)`,
    flops: 2 * N * K,
    bytes: N * K * 2,
    copyBytes: N * K * 2,
    graph: true,
    setup: () => {
      const copies = N * K * 2 < L2_SAFE_BYTES ? 3 : 1;
      const x = rand([1, K], { dtype: 'bf16', device: dev, seed: 1 });
      const g = rand([K], { dtype: 'bf16', device: dev, seed: 5 });
      const ws = Array.from({ length: copies }, (_, i) => rand([N, K], { dtype: 'bf16', device: dev, seed: 2 + i }));
      const c = Tensor.empty([1, swiglu ? N / 2 : N], { dtype: 'bf16', device: dev });
      if (fused) native.testing.matmulGemv(5);
      const run = (w: Tensor) => {
        if (form === 'prenormed') ops.linearSwiGLU(x, w, { out: c });
        else if (swiglu) ops.rmsnormLinearSwiGLU(x, g, w, { out: c });
        else ops.rmsnormLinear(x, g, w, { out: c });
      };
      return {
        run: (i) => run(ws[i % copies]!),
        dispose: () => {
          if (fused) native.testing.matmulGemv(-1);
          [x, g, c, ...ws].forEach((t) => t.dispose());
        },
      };
    },
  };
}

/** The name suffix of a prefill case forcing attentionPrefillKernel(kernel): 1 the mma.sync kernel, 2 the
 * sm90 (wgmma + TMA) one, 3 it with the intra-warpgroup overlap, 4 with the ping-pong, 5 both, where it
 * applies (bf16, D 64 or 128, compute capability 9.0; elsewhere the mma.sync kernel runs). */
const PREFILL_VARIANT = { 1: '-mma', 2: '-sm90', 3: '-sm90o', 4: '-sm90p', 5: '-sm90op' } as const;

/** `kernel`: which bf16 prefill kernel the case forces while it runs; by default the one the dispatch chooses. */
function prefillCase(dev: string, dt: DType, B: number, H: number, T: number, D: number, kernel?: keyof typeof PREFILL_VARIANT): Case {
  return {
    name: `attention-prefill${kernel === undefined ? '' : PREFILL_VARIANT[kernel]}`,
    shape: `B${B} H${H} T${T} D${D} causal`,
    flops: (4 * B * H * T * T * D) / 2,
    setup: () => {
      const q = rand([B, T, H, D], { dtype: dt, device: dev, seed: 3 });
      const k = rand([B, T, H, D], { dtype: dt, device: dev, seed: 4 });
      const v = rand([B, T, H, D], { dtype: dt, device: dev, seed: 5 });
      const out = Tensor.empty([B, T, H, D], { dtype: dt, device: dev });
      const o = { batch: B, headsQ: H, headsKv: H, headDim: D, queries: T, out };
      if (kernel !== undefined) native.testing.attentionPrefillKernel(kernel);
      return {
        run: () => void ops.attentionPrefill(q, k, v, o),
        dispose: () => {
          if (kernel !== undefined) native.testing.attentionPrefillKernel(0);
          [q, k, v, out].forEach((t) => t.dispose());
        },
      };
    },
  };
}

/** Decode attention over a cache of L keys; Hkv < H: grouped-query heads (the cache holds Hkv heads). */
function decodeCase(dev: string, dt: DType, B: number, H: number, L: number, D: number, Hkv = H): Case {
  const el = dt === 'f32' ? 4 : 2;
  return {
    name: 'attention-decode',
    shape: `B${B} H${H}${Hkv !== H ? `/${Hkv}` : ''} len${L} D${D}`,
    bytes: 2 * B * L * Hkv * D * el,
    graph: true,
    setup: () => {
      // Rotate among cache copies when one would stay in L2 (50 MB on an H100).
      const copies = 2 * B * L * Hkv * D * el < L2_SAFE_BYTES ? 3 : 1;
      const q = rand([B, H, D], { dtype: dt, device: dev, seed: 6 });
      const ks = Array.from({ length: copies }, (_, i) => rand([B, L, Hkv, D], { dtype: dt, device: dev, seed: 7 + 2 * i }));
      const vs = Array.from({ length: copies }, (_, i) => rand([B, L, Hkv, D], { dtype: dt, device: dev, seed: 8 + 2 * i }));
      const lens = Tensor.full([B], L, { dtype: 'i32', device: dev });
      const out = Tensor.empty([B, H, D], { dtype: dt, device: dev });
      const o = { batch: B, headsQ: H, headsKv: Hkv, headDim: D, maxLen: L, out };
      return {
        run: (i) => void ops.attentionDecode(q, ks[i % copies]!, vs[i % copies]!, lens, o),
        dispose: () => [q, lens, out, ...ks, ...vs].forEach((t) => t.dispose()),
      };
    },
  };
}

/**
 * One GPT-2 124M decode layer (C 768, 12 heads of 64, a cache of 1024 tokens holding `L`, B sequences):
 * `fused` ops.decodeLayerGpt2 (one persistent cooperative kernel: native/cuda/decode_layer.cu), else the
 * ops Transformer.decodeLayers runs for it on one GPU by default (layernormLinear, ropeKvWrite,
 * attentionDecode, matmul + residual, layernormLinear + GELU, matmul + residual: 8 kernels). The calls
 * rotate over 12 layers' weights and caches, as a 12-layer decode step reads them (more than L2 holds).
 * Bytes: the layer's weights and the cache rows attention reads.
 */
function decodeLayerCase(dev: string, B: number, L: number, fused: boolean): Case {
  const H = 12, D = 64, C = H * D, maxLen = 1024, layers = 12;
  return {
    name: `decode-layer-${fused ? 'fused' : 'ops'}`,
    shape: `gpt2 B${B} len${L}`,
    bytes: 12 * C * C * 2 + B * 2 * L * C * 2,
    graph: true,
    setup: () => {
      const dt: DType = 'bf16';
      const ws = 1 / Math.sqrt(C);
      let seed = 100;
      const r = (shape: number[], low: number, high: number) => rand(shape, { dtype: dt, device: dev, seed: seed++, low, high });
      const ls = Array.from({ length: layers }, () => ({
        w: {
          norm1: r([C], 0.5, 1.5), norm1Bias: r([C], -0.1, 0.1), qkv: r([3 * C, C], -ws, ws), qkvBias: r([3 * C], -0.1, 0.1),
          out: r([C, C], -ws, ws), outBias: r([C], -0.1, 0.1), norm2: r([C], 0.5, 1.5), norm2Bias: r([C], -0.1, 0.1),
          up: r([4 * C, C], -ws, ws), upBias: r([4 * C], -0.1, 0.1), down: r([C, 4 * C], -ws / 2, ws / 2), downBias: r([C], -0.1, 0.1),
        },
        k: r([B, maxLen, H, D], -1, 1),
        v: r([B, maxLen, H, D], -1, 1),
      }));
      const x = r([B, C], -1, 1);
      const pos = Tensor.full([B], L - 1, { dtype: 'i32', device: dev });
      const lens = Tensor.full([B], L, { dtype: 'i32', device: dev });
      const counter = Tensor.zeros([1], { dtype: 'i32', device: dev });
      const shape = { batch: B, headsQ: H, headsKv: H, headDim: D, maxLen, qkvStride: 3 * C };
      const run = (i: number) => {
        const { w, k, v } = ls[i % layers]!;
        if (fused) return ops.decodeLayerGpt2(x, w, k, v, pos, lens, { heads: H, headDim: D, maxLen, counter });
        const qkv = ops.layernormLinear(x, w.norm1, w.norm1Bias, w.qkv, { bias: w.qkvBias });
        ops.ropeKvWrite(qkv, k, v, pos, shape);
        const att = ops.attentionDecode(qkv, k, v, lens, { ...shape, qStride: 3 * C });
        const att2 = att.reshape([B, C]);
        ops.matmul(att2, w.out, { transB: true, bias: w.outBias, beta: 1, out: x });
        const a = ops.layernormLinear(x, w.norm2, w.norm2Bias, w.up, { bias: w.upBias, gelu: true });
        ops.matmul(a, w.down, { transB: true, bias: w.downBias, beta: 1, out: x });
        [qkv, att, att2, a].forEach((t) => t.dispose());
      };
      return {
        run,
        dispose: () => [x, pos, lens, counter, ...ls.flatMap((l) => [l.k, l.v, ...Object.values(l.w)])].forEach((t) => t.dispose()),
      };
    },
  };
}

/**
 * A training step's optimizer kernels over a flat buffer of n parameters (on a GPU GPT-2 124M's count):
 * the gradient's squared norm (ops.sumSquares, bytes read) and the fused AdamW update (master, m, v read
 * and written in f32, the gradient read and the compute copy written in dt). Each is judged against a copy
 * moving as many bytes.
 */
function optimizerCase(dev: string, dt: DType, kind: 'sum-squares' | 'adamw', n: number, gdt: DType = dt): Case {
  const el = gdt === 'f32' ? 4 : 2;
  const bytes = kind === 'sum-squares' ? n * el : n * (6 * 4 + 2 * el);
  return {
    name: kind,
    shape: `n=${(n / 1e6).toFixed(1)}M ${gdt}`,
    bytes,
    copyBytes: bytes / 2, // a copy reads and writes: the same traffic
    setup: () => {
      const grad = rand([n], { dtype: gdt, device: dev, seed: 11 });
      if (kind === 'sum-squares') {
        const out = Tensor.empty([1], { dtype: 'f32', device: dev });
        return { run: () => void ops.sumSquares(grad, out), dispose: () => [grad, out].forEach((t) => t.dispose()) };
      }
      const master = rand([n], { dtype: 'f32', device: dev, seed: 12 });
      const m = Tensor.zeros([n], { dtype: 'f32', device: dev });
      const v = Tensor.zeros([n], { dtype: 'f32', device: dev });
      const param = Tensor.empty([n], { dtype: gdt, device: dev });
      const t = { master, param, grad, m, v };
      return {
        run: (i) => ops.adamw(t, { nDecay: n, lr: 1e-4, step: i + 1 }),
        dispose: () => Object.values(t).forEach((x) => x.dispose()),
      };
    },
  };
}

function copyCase(dev: string, bytes: number, graph = false): Case {
  return {
    name: 'copy',
    shape: `${(bytes / 2 ** 20).toFixed(0)} MiB`,
    bytes: 2 * bytes, // read + write
    graph,
    setup: () => {
      // Rotate among pairs when one pair would stay in L2 (as the GEMV's weights rotate), so a copy of
      // a GEMV's bytes is timed from memory as the GEMV is.
      const pairs = 2 * bytes < L2_SAFE_BYTES ? 3 : 1;
      const n = Math.ceil(bytes / 4); // values do not change a copy's speed
      const a = Array.from({ length: pairs }, () => Tensor.empty([n], { dtype: 'f32', device: dev }));
      const b = Array.from({ length: pairs }, () => Tensor.empty([n], { dtype: 'f32', device: dev }));
      return { run: (i) => void b[i % pairs]!.copyFrom(a[i % pairs]!), dispose: () => [...a, ...b].forEach((t) => t.dispose()) };
    },
  };
}

const GEMV_SHAPES = [
  ...[1, 16].flatMap((M) => [
    [M, 4096, 4096],
    [M, 11008, 4096],
    [M, 4096, 11008],
    [M, 12288, 4096],
    [M, 22016, 4096],
  ]),
  // a tp = 2 shard's LLaMA-7B projections at batch 1 (qkv, out, gate+up is 11008x4096, down), and GPT-2's
  [1, 6144, 4096],
  [1, 4096, 2048],
  [1, 4096, 5504],
  [1, 2304, 768],
  [1, 3072, 768],
  [1, 768, 3072],
];

function cases(dev: string, dt: DType, gpu: boolean, quick: boolean): Case[] {
  if (!gpu) {
    const n = quick ? 256 : 1024;
    return [
      gemmCase(dev, dt, n, n, n, false),
      gemmCase(dev, dt, n, n, n, true),
      gemmCase(dev, dt, 1, quick ? 1024 : 4096, quick ? 1024 : 4096, true),
      prefillCase(dev, dt, 1, quick ? 2 : 8, quick ? 128 : 512, 64),
      decodeCase(dev, dt, 1, 8, quick ? 256 : 1024, 64),
      optimizerCase(dev, dt, 'sum-squares', quick ? 1 << 20 : 1 << 23),
      optimizerCase(dev, dt, 'adamw', quick ? 1 << 20 : 1 << 23),
      copyCase(dev, (quick ? 16 : 256) << 20),
    ];
  }
  const big = quick ? 4096 : 8192;
  return [
    gemmCase(dev, dt, big, big, big, false),
    gemmCase(dev, dt, big, big, big, true),
    gemmCase(dev, dt, 16384, 3072, 768, false), // GPT-2 MLP up, training batch
    gemmCase(dev, dt, 16384, 768, 3072, false), // GPT-2 MLP down
    // GPT-2's linears at 64 sequences of 128 (x W^T): N = 768 takes the 192-column tile (matmul.cu's sm90_width), qkv not.
    gemmCase(dev, dt, 8192, 768, 3072, true),
    gemmCase(dev, dt, 8192, 768, 768, true),
    gemmCase(dev, dt, 8192, 2304, 768, true),
    gemmCase(dev, dt, 4096, 4096, 4096, true), // LLaMA-7B attention projection, 4096 tokens
    gemmCase(dev, dt, 4096, 11008, 4096, true), // LLaMA-7B MLP up
    // GPT-2's weight gradients at 128 and 64 sequences of 128 (dY^T X: out x in features, K the tokens): fewer
    // 128 x 256 tiles than SMs, cut in K slices by the wave rule (native/core/split_rule.h).
    ...(quick ? [] : [16384, 8192].flatMap((T) => [[2304, 768], [3072, 768], [768, 3072], [768, 768]].map(([M, N]) => gemmCase(dev, dt, M!, N!, T, false, { transA: true })))),
    gemmCase(dev, dt, 4096, 4096, 11008, true), // LLaMA-7B MLP down
    // GEMV (decode at batch 1 and 16): LLaMA-7B's projections (out, MLP up, MLP down, qkv, gate+up), the
    // kernel the dispatch chooses (see launch_gemv_t) and the pipelined one, each next to a copy of its
    // weight bytes. (gemv-reg: the register kernel, forced; see native/cuda/matmul.cu's launch_gemv_t.)
    ...(quick ? [[1, 4096, 4096], [1, 11008, 4096], [16, 11008, 4096]] : GEMV_SHAPES).flatMap(([M, N, K]) => [
      gemmCase(dev, dt, M!, N!, K!, true),
      gemmCase(dev, dt, M!, N!, K!, true, { pdl: false }),
      gemmCase(dev, dt, M!, N!, K!, true, { gemvPath: 1 }),
      ...(quick ? [] : [gemmCase(dev, dt, M!, N!, K!, true, { gemvPath: 0 }), gemmCase(dev, dt, M!, N!, K!, true, { gemvPath: 4 })]),
      ...(quick || M! < 16 ? [] : ([6, 7, 8, 9] as const).map((p) => gemmCase(dev, dt, M!, N!, K!, true, { gemvPath: p }))),
      gemmCase(dev, dt, M!, N!, K!, true, { wtile: 2 }), // the weight as the wgmma's A operand
    ]),
    // Decode's rmsnorm + qkv and rmsnorm + gate/up + SwiGLU at batch 1, apart and fused.
    ...(quick ? [] : (['apart', 'fused'] as const).flatMap((f) => [normGemvCase(dev, 12288, 4096, false, f), normGemvCase(dev, 22016, 4096, true, f)])),
    // ... and the gate + up product as batch-1 decode takes it (the norm written before it).
    ...(quick ? [] : [normGemvCase(dev, 22016, 4096, true, 'prenormed')]),
    // LLaMA-7B decode projections at the batches of a pipeline's micro-batches: qkv, out, gate+up, down;
    // at 16 and 64 rows on the 64-row tile (the default at 64) and the 128-row one. (The 64-row tile launches
    // with PDL unless PARALLM_PDL_TILE=0: matmul.cu's sm90_pdl.)
    ...[16, 64, 128, 256].flatMap((M) =>
      [[12288, 4096], [4096, 4096], [22016, 4096], [4096, 11008]].flatMap(([N, K]) =>
        M === 16
          ? [gemmCase(dev, dt, M, N!, K!, true, { decode: true, gemvPath: 7, tileRows: 128 })]
          : M === 64
            ? [
                gemmCase(dev, dt, M, N!, K!, true, { decode: true }),
                gemmCase(dev, dt, M, N!, K!, true, { decode: true, tileRows: 128 }),
                gemmCase(dev, dt, M, N!, K!, true, { decode: true, wtile: 1 }),
              ]
            : [gemmCase(dev, dt, M, N!, K!, true, { decode: true })],
      ),
    ),
    // Prefill as dispatched, then each bf16 kernel forced (the sm90 one falls back off compute capability 9.0).
    ...([[1, 32, 2048, 128], [1, 32, 8192, 128], [4, 12, 1024, 64]] as const).flatMap(([B, H, T, D]) => [
      prefillCase(dev, dt, B, H, T, D),
      prefillCase(dev, dt, B, H, T, D, 1),
      prefillCase(dev, dt, B, H, T, D, 2),
      prefillCase(dev, dt, B, H, T, D, 3),
      prefillCase(dev, dt, B, H, T, D, 4),
      prefillCase(dev, dt, B, H, T, D, 5),
    ]),
    decodeCase(dev, dt, 1, 32, 2048, 128),
    decodeCase(dev, dt, 16, 32, 2048, 128),
    decodeCase(dev, dt, 128, 32, 160, 128),
    // Long contexts at batch 1 (flash-decoding: the keys split over the SMs), MHA and 4:1 grouped heads.
    decodeCase(dev, dt, 1, 32, 8192, 128),
    decodeCase(dev, dt, 1, 32, 32768, 128),
    decodeCase(dev, dt, 1, 32, 8192, 128, 8),
    decodeCase(dev, dt, 4, 32, 16384, 128, 8),
    // One GPT-2 124M decode layer: the ops apart against the persistent kernel (decodeLayerGpt2).
    ...([[1, 256], [1, 1024], [4, 256]] as const).flatMap(([B, L]) => [decodeLayerCase(dev, B, L, false), decodeLayerCase(dev, B, L, true)]),
    // The optimizer's kernels over GPT-2 124M's parameters (a training step's fixed cost, issue 12).
    optimizerCase(dev, dt, 'sum-squares', 124_439_808),
    optimizerCase(dev, dt, 'sum-squares', 124_439_808, 'f32'),
    optimizerCase(dev, dt, 'adamw', 124_439_808),
    copyCase(dev, (quick ? 256 : 1024) << 20),
  ];
}

const GRAPH_CALLS = 24; // a multiple of the 3 rotating input copies

/**
 * Median time of one call of the case: plain calls, or (graphed) replays of GRAPH_CALLS captured calls; with `busy`
 * SMs of the GPU held by another stream's kernel while it is timed (native.testing.holdSms), after one call without
 * (a kernel's first launch may wait for every running kernel, the holding one too: lazy module loading).
 */
function timeCase(dev: string, c: Case, graphed: boolean, runs: number, busy = 0): Timing {
  const gpu = dev.startsWith('cuda');
  const { run, dispose } = c.setup();
  const timed = (fn: (i: number) => void, warmup: number): Timing => {
    if (!busy) return timeOnDevice(dev, fn, warmup, runs);
    const index = Number(dev.slice('cuda:'.length));
    fn(0);
    native.testing.holdSms(index, busy);
    try {
      return timeOnDevice(dev, fn, warmup, runs);
    } finally {
      native.testing.releaseSms(index); // (throws where the hold ran out before the timing ended)
    }
  };
  try {
    if (!graphed) return timed(run, gpu ? 5 : 1);
    run(0); // first call outside the capture (kernel attributes, allocator pools)
    const g = capture(dev, () => {
      for (let i = 0; i < GRAPH_CALLS; i++) run(i);
    });
    try {
      const t = timed(() => g.replay(), 3);
      return { ...t, medianMs: t.medianMs / GRAPH_CALLS, minMs: t.minMs / GRAPH_CALLS, maxMs: t.maxMs / GRAPH_CALLS };
    } finally {
      g.dispose();
    }
  } finally {
    dispose();
  }
}

export function runKernelBench(opts: KernelBenchOptions = {}): KernelBenchResult[] {
  const dev = parseDevice(opts.device ?? defaultDevice());
  const gpu = dev.startsWith('cuda');
  const dt: DType = opts.dtype ?? (gpu ? 'bf16' : 'f32');
  const runs = opts.runs ?? (opts.quick ? 5 : gpu ? 30 : 7);
  const results: KernelBenchResult[] = [];
  const busy = opts.busySms ?? 0;
  if (busy && (!gpu || !Number.isInteger(busy) || busy < 1)) throw new Error(`bench kernels: busySms needs a GPU and a positive integer, got ${busy} on ${dev}`);
  // The split-K hook is process-wide: put it back even when a case throws.
  if (opts.splitK !== undefined) native.testing.matmulSplitK(opts.splitK === 'auto' ? -1 : opts.splitK);
  try {
    for (const c of cases(dev, dt, gpu, !!opts.quick)) {
      if (opts.filter?.length && !opts.filter.some((f) => `${c.name} ${c.shape}`.includes(f))) continue;
      const graphed = gpu && !!c.graph;
      const t = timeCase(dev, c, graphed, runs, busy);
      const s = t.medianMs / 1e3;
      const r: KernelBenchResult = { name: c.name, shape: busy ? `${c.shape}, ${busy} SMs held` : c.shape, dtype: c.name === 'copy' ? 'f32' : dt, device: dev, ms: t.medianMs };
      if (c.flops) r.tflops = c.flops / s / 1e12;
      if (c.bytes) r.gbps = c.bytes / s / 1e9;
      if (graphed) r.graphed = true;
      if (c.copyBytes && r.gbps) {
        const cp = copyCase(dev, c.copyBytes, c.graph);
        r.copyGbps = cp.bytes! / (timeCase(dev, cp, graphed, runs).medianMs / 1e3) / 1e9;
        r.ofCopy = r.gbps / r.copyGbps;
      }
      results.push(r);
      opts.onResult?.(r);
    }
  } finally {
    if (gpu) emptyCache(dev);
    if (opts.splitK !== undefined) native.testing.matmulSplitK(-1);
  }
  return results;
}

export function describeDevice(device: string): string {
  const d = deviceInfo(device);
  return `${d.id}: ${d.name}`;
}
