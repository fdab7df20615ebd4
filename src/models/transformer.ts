// The decoder stack of both families, composed from the ops. GPT-2 and LLaMA differ only in a few
// places (norm, position, MLP, biases), which `cfg.family` selects (Mistral and Qwen2 are the LLaMA
// family: Qwen2's q/k/v biases are LayerWeights.qkvBias, LLaMA 3's scaled RoPE is ModelWeights.ropeFreqs):
//
//   x = embed(ids) [+ positions(pos)]                               GPT-2 learns positions
//   per layer:  h = norm1(x)                                        LayerNorm | RMSNorm
//               qkv = h Wqkv^T [+ b]                                one GEMM for q, k and v
//               rope(q, k) at pos                                   LLaMA only
//               cache[pos..] = k, v
//               x += attention(q, cache) Wo^T [+ b]
//               x += mlp(norm2(x))                                  GELU | SiLU-gate
//   logits = normF(x) Whead^T
//
// Prefill runs B sequences of T tokens (right-padded; padding never reaches a real token's output under
// the causal mask, and decode overwrites the padded cache rows). Decode runs one token per sequence
// against the cache, lengths and positions read from device memory, so a step can be captured once.
//
// A tensor-parallel shard (models/tp.ts) runs the same code on its heads and MLP features (`cfg` is its
// share's config); the attention output and MLP down projections then give partial sums, which one
// all-reduce each over the tp group completes (Megatron-LM's two all-reduces a layer).
// Decode fuses what prefill runs apart (fewer launches a step; the same bits): rope with both cache
// writes (ropeKvWrite), and the attention too where that gains (ropeKvAttentionDecode: GPT-2, and LLaMA at
// batch 1; Transformer.fusedDecodeAttention); on one device, the out
// and down projections add into the residual in their epilogue (beta = 1), and each norm runs with the
// projection after it (rmsnormLinear,
// rmsnormLinearSwiGLU, layernormLinear; on a GPU the MLP's activation in that GEMV's epilogue) or (by
// default, Transformer.normInGemv) in the epilogue of the residual projection before it
// (linearResidualNorm, then linearSwiGLU / linearGelu); a tp shard's partial sums are all-reduced first, and for LLaMA that
// kernel adds the residual and writes the next RMSNorm (allReduceAddNorm).
import type { DType } from '../dtype.js';
import type { ModelConfig } from '../io/config.js';
import * as ops from '../ops.js';
import type { Communicator } from '../parallel/comm.js';
import { withFrozenWeights } from '../runtime.js';
import { Tensor } from '../tensor.js';
import { plainRopeFrequencies } from './rope.js';
import { isSharded, shardConfig } from './tp.js';
import type { LayerWeights, ModelWeights } from './weights.js';

/** Keys and values of `layers` layers (default: all) for `batch` sequences of up to `maxLen` tokens. */
export class KvCache {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  /**
   * Decode attention's counters (ops.attentionDecode's `counter`: i32 [batch x heads] zeros, rearmed by
   * each launch; a GPU merges the key chunks with them), made with the cache so a captured step never
   * writes them from the host. A CPU device ignores them (made there too, so CI runs the plumbing:
   * pipeline slices, tp shards' heads).
   */
  readonly counter: Tensor | null = null;
  /** `views`: tensors over another cache's memory (see slice). */
  constructor(
    readonly cfg: ModelConfig,
    readonly batch: number,
    readonly maxLen: number,
    device: string,
    dtype: DType,
    layers = cfg.layers,
    views?: { k: Tensor[]; v: Tensor[]; counter: Tensor | null },
  ) {
    if (views) {
      this.k = views.k;
      this.v = views.v;
      this.counter = views.counter;
      return;
    }
    const shape = [batch, maxLen, cfg.kvHeads, cfg.headDim];
    try {
      for (let i = 0; i < layers; i++) {
        this.k.push(Tensor.empty(shape, { dtype, device }));
        this.v.push(Tensor.empty(shape, { dtype, device }));
      }
      if (layers > 0) this.counter = Tensor.zeros([batch * cfg.heads], { dtype: 'i32', device });
    } catch (e) {
      this.dispose();
      throw e;
    }
  }
  /** Sequences [b0, b0 + n) of this cache, sharing its memory (a pipeline micro-batch's rows). */
  slice(b0: number, n: number): KvCache {
    if (b0 < 0 || n < 1 || b0 + n > this.batch) throw new Error(`KV cache slice [${b0}, ${b0 + n}) outside its ${this.batch} sequences`);
    const per = this.maxLen * this.cfg.kvHeads * this.cfg.headDim;
    const shape = [n, this.maxLen, this.cfg.kvHeads, this.cfg.headDim];
    const k = this.k.map((t) => t.view(b0 * per, shape));
    const v = this.v.map((t) => t.view(b0 * per, shape));
    const H = this.cfg.heads;
    const counter = this.counter ? this.counter.view(b0 * H, [n * H]) : null;
    return new KvCache(this.cfg, n, this.maxLen, '', 'f32', k.length, { k, v, counter });
  }
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
    this.counter?.dispose();
  }
}

export class Transformer {
  /**
   * Where decode on one device writes each norm: in the epilogue of the residual projection before it
   * (ops.linearResidualNorm, with the MLP's activation in the up projection's: linearSwiGLU, linearGelu)
   * at 1 and 16-64 rows ('auto', the default), at batch 1 only ('batch1'), at every batch (true), or never
   * (false: the norm in the next projection's launch). The epilogue norm is one launch fewer a norm but its last block does the norm
   * alone: 7B decode at batch 1 gains 3%, GPT-2 is even, and at batch 16 it loses 22% (7B) and 50% (GPT-2)
   * (S9-2, bench/RESULTS.md). The same bits either way (the ops are held bit for bit on GPUs, S8-9).
   * Since the tenth session the op picks its form by rows: the GEMV's epilogue up to 4 rows, the sm90 64-row
   * tile's split-K reduce with the norm in it (17-64 rows, and 16 on LLaMA-7B's down projection), else
   * the matmul then the norm. With that reduce reading its row once (S14-2), the epilogue norm gains at
   * batch 16 and 64 too: 7B 2,933 / 2,929 → 3,025 / 2,992 and 9,662 / 9,696 → 9,807 / 9,807 tokens/s (S14-3;
   * the first form of the reduce lost 4% at 64, S14-1). So 'auto' (the default) takes it where measured to
   * gain, at 1 and at 16-64 rows. PARALLM_DECODE_NORM_IN_GEMV=0|1|batch1 sets false / true / 'batch1'
   * (read when the module loads).
   */
  static normInGemv: boolean | 'batch1' | 'auto' = Transformer.normInGemvFromEnv();

  /**
   * GPT-2-family decode runs each layer as one kernel (ops.decodeLayerGpt2: a persistent kernel whose
   * phases meet at grid barriers, one launch a layer instead of eight): 'cuda' on a GPU where the kernel
   * takes the sizes (bf16, batch <= 4, ops.decodeLayerGpt2Supported), true on every device (a CPU device
   * runs the op's definition, the ops apart: for the tests), false never (the default: measured, the
   * kernel takes as long as the ops apart, 34 against 35 µs a layer, and GPT-2 decode at batch 1 loses
   * 1,709 against 1,886 tokens/s; S9-4, bench/RESULTS.md). PARALLM_DECODE_LAYER=1 sets 'cuda', =2 true.
   */
  static decodeLayerKernel: boolean | 'cuda' = Transformer.decodeLayerFromEnv();

  /**
   * Decode's rope, KV-cache write and attention as one op (ops.ropeKvAttentionDecode: on a GPU one launch,
   * the split attention kernel writing the new token's cache rows itself, and rotating its q and k), else
   * ropeKvWrite then attentionDecode (two launches a layer); the same bits either way. 'auto' (the default)
   * fuses where nothing rotates (GPT-2): there it gains 1-2.5% at batch 1-16 (S15-6); with the rotation in
   * the kernel (LLaMA) only at batch 1, where 7B decode gains 0.8-1.9% (S17-2), while at 16 and 64 it is even
   * today (S17-2) and lost 0.8-1.6% on earlier kernels (S15-8, S15-9; earlier forms lost up to 4.7%: S15-3,
   * S15-5; bench/RESULTS.md).
   * PARALLM_DECODE_FUSED_ATTN=0|1 sets false / true (read when the module loads).
   */
  static fusedDecodeAttention: boolean | 'auto' = Transformer.fusedAttentionFromEnv();

  /**
   * A timing knob, never for results: PARALLM_DECODE_SKIP=rope,attn leaves decode's rope + KV write and/or
   * its attention out where they run as two launches (the attention's output is then an unwritten tensor), so `bench generate` measures
   * what each costs inside the step as replayed, where a kernel timed alone (ncu) pays cold caches and no
   * overlap. The tokens are wrong with it set.
   */
  static readonly decodeSkip: ReadonlySet<string> = new Set(
    (typeof process !== 'undefined' ? process.env.PARALLM_DECODE_SKIP ?? '' : '').split(',').filter((s) => s === 'rope' || s === 'attn'),
  );

  /**
   * Decode's rope + KV write with the qkv projection (ops.linearRopeKvWrite) where they run apart from the
   * attention and the projection's input comes normalized from the layer before: on a GPU, where the product is
   * cut in K slices (7B at batch 16), in its split-K reduce: one launch a layer fewer, the same bits; 7B batch 16
   * +0.8% (S25-10, bench/RESULTS.md). PARALLM_DECODE_ROPE_IN_PROJECTION=0 sets false (read when the module loads).
   */
  static ropeInProjection: boolean = typeof process === 'undefined' || process.env.PARALLM_DECODE_ROPE_IN_PROJECTION !== '0';

  /**
   * Where the rope + KV write go with the qkv projection (ropeInProjection), the attention too
   * (ops.linearRopeKvAttentionDecode): on a GPU, where the product is cut in K slices, the attention kernel sums
   * them itself, so the split-K reduce's launch goes; the same bits. PARALLM_DECODE_ATTN_IN_PROJECTION=0 sets false
   * (read when the module loads).
   */
  static attentionInProjection: boolean = typeof process === 'undefined' || process.env.PARALLM_DECODE_ATTN_IN_PROJECTION !== '0';

  /**
   * Whether decode attention's chunks are merged by the split kernel's last block a head group (the cache's
   * counter; one launch a layer fewer) rather than by decode_combine's launch; the same bits either way.
   * PARALLM_DECODE_ATTN_COUNTER=0 sets false (a measurement knob, read when the module loads).
   */
  static attentionCounter: boolean = typeof process === 'undefined' || process.env.PARALLM_DECODE_ATTN_COUNTER !== '0';

  private static fusedAttentionFromEnv(): boolean | 'auto' {
    const v = typeof process !== 'undefined' ? process.env.PARALLM_DECODE_FUSED_ATTN : undefined;
    return v === '0' ? false : v === '1' ? true : 'auto';
  }

  private static decodeLayerFromEnv(): boolean | 'cuda' {
    const v = typeof process !== 'undefined' ? process.env.PARALLM_DECODE_LAYER : undefined;
    return v === '1' ? 'cuda' : v === '2' ? true : false;
  }

  private static normInGemvFromEnv(): boolean | 'batch1' | 'auto' {
    const v = typeof process !== 'undefined' ? process.env.PARALLM_DECODE_NORM_IN_GEMV : undefined;
    return v === '1' ? true : v === '0' ? false : v === 'batch1' ? 'batch1' : 'auto';
  }

  /** the config its layers run with: a tp shard's heads and features, else the model's */
  readonly cfg: ModelConfig;
  /**
   * A tp shard's group communicator (set by the worker that holds the shard once its mesh groups are
   * made): it sums the row-parallel projections' partial outputs.
   */
  tp: Communicator | null = null;

  constructor(
    /** the whole model's config */
    readonly modelConfig: ModelConfig,
    readonly w: ModelWeights,
  ) {
    this.cfg = shardConfig(modelConfig, w.stage.tp);
    // The block counter of the fused GEMV epilogues (blockCounter), made here: a first decode may run under
    // graph capture, where a host write (Tensor.zeros) would break the capture.
    const dev = (w.layers[0]?.qkv ?? w.embed ?? w.head)?.device;
    if (dev?.startsWith('cuda')) {
      this.counter = Tensor.zeros([1], { dtype: 'i32', device: dev });
      // Decode's rope frequencies as a table (LLaMA 3's scaled ones already are one): made here for the same reason.
      if (modelConfig.family === 'llama' && !w.ropeFreqs && w.layers.length) {
        const f = plainRopeFrequencies(this.cfg.ropeTheta, this.cfg.headDim);
        this.ropeTable = Tensor.from(f, [f.length], { dtype: 'f32', device: dev });
      }
    }
  }

  /** x += a row-parallel projection's output t, summed over the tp group first (one kernel on the peer path). */
  private reduceAdd(t: Tensor, x: Tensor): void {
    if (!isSharded(this.w.stage.tp)) return void ops.add(x, t, x);
    if (!this.tp) throw new Error(`tensor parallel rank ${this.w.stage.tp.rank} of ${this.w.stage.tp.size}: no tp communicator to sum the layer's partial outputs`);
    this.tp.allReduceAdd(t, x);
  }

  private norm(x: Tensor, g: Tensor, b?: Tensor): Tensor {
    return this.cfg.family === 'gpt2' ? ops.layernorm(x, g, b!, { eps: this.cfg.normEps }) : ops.rmsnorm(x, g, { eps: this.cfg.normEps });
  }

  /** Token (and, for GPT-2, position) embeddings of ids at pos: [n, C]. Needs the first stage. */
  embed(ids: Tensor, pos: Tensor): Tensor {
    if (!this.w.embed || !this.w.stage.embed) throw new Error('embed: this stage does not hold the embeddings');
    const x = ops.embedding(ids, this.w.embed);
    if (this.w.positions) {
      const p = ops.embedding(pos, this.w.positions);
      ops.add(x, p, x);
      p.dispose();
    }
    return x;
  }

  /** q, k and v of `n` tokens, with rotary positions applied unless `rotate` is false: [n, (Hq + 2 Hkv) D]. */
  private qkv(l: LayerWeights, h: Tensor, pos: Tensor, n: number, rotate = true): Tensor {
    const { heads, kvHeads, headDim: D, ropeTheta } = this.cfg;
    const qkv = ops.linear(h, l.qkv, l.qkvBias);
    if (rotate && this.cfg.family === 'llama') {
      const W3 = (heads + 2 * kvHeads) * D;
      const freqs = this.w.ropeFreqs; // scaled RoPE (LLaMA 3.x); plain RoPE needs only theta
      // The k heads follow the q heads in a row, at the same position: one launch rotates both (each
      // head on its own, so this is the two calls' result).
      ops.rope(qkv, pos, { heads: heads + kvHeads, headDim: D, theta: ropeTheta, tokenStride: W3, tokens: n, freqs });
    }
    return qkv;
  }

  /**
   * x += attention output projection; x += MLP: the rest of a layer after attention. `fused` (decode):
   * the two projections add into x in their epilogue (beta = 1, one rounding of the f32 sum) and also
   * write the norm that reads x next (ops.linearResidualNorm: the MLP's, and with `next` that layer's
   * first), which is returned; prefill keeps the separate add (the sm90 GEMM stores C through the TMA only
   * when it need not read C), and so does a tp shard (its partial sums are all-reduced before the add; a
   * LLaMA shard's all-reduce runs the norm instead).
   */
  private finishLayer(l: LayerWeights, x: Tensor, att: Tensor, fused = false, next?: LayerWeights): Tensor | null {
    const addInEpilogue = fused && !isSharded(this.w.stage.tp);
    const mode = Transformer.normInGemv;
    const rows = att.shape[0]!;
    const normInGemv = addInEpilogue && (mode === 'batch1' ? rows === 1 : mode === 'auto' ? rows === 1 || (rows >= 16 && rows <= 64) : mode);
    // A LLaMA tp shard's decode: each all-reduce also writes the next RMSNorm's output (allReduceAddNorm).
    const normInReduce = fused && !addInEpilogue && this.cfg.family === 'llama';
    let h2: Tensor | null = null;
    const gpt2 = this.cfg.family === 'gpt2';
    if (normInGemv) {
      // Decode on one device: the MLP's norm in the out projection's kernel (its last block normalizes the
      // residual), the MLP's activation in the up projection's.
      h2 = ops.linearResidualNorm(att, l.out, x, l.norm2, {
        bias: l.outBias, normB: gpt2 ? l.norm2Bias : undefined, eps: this.cfg.normEps, counter: this.blockCounter(x),
      });
    } else if (addInEpilogue) ops.matmul(att, l.out, { transB: true, bias: l.outBias, beta: 1, out: x });
    else {
      const o = ops.linear(att, l.out, l.outBias);
      if (normInReduce) h2 = this.reduceAddNorm(o, x, l.norm2);
      else this.reduceAdd(o, x);
      o.dispose();
    }
    let a: Tensor;
    if (h2) {
      a = gpt2 ? ops.linearGelu(h2, l.up, { bias: l.upBias }) : ops.linearSwiGLU(h2, l.up);
      h2.dispose();
    } else if (gpt2 && fused) {
      a = ops.layernormLinear(x, l.norm2, l.norm2Bias!, l.up, { bias: l.upBias, eps: this.cfg.normEps, gelu: true });
    } else if (this.cfg.family === 'gpt2') {
      const h = this.norm(x, l.norm2, l.norm2Bias);
      a = ops.linear(h, l.up, l.upBias);
      h.dispose();
      ops.gelu(a, a);
    } else if (fused) {
      a = ops.rmsnormLinearSwiGLU(x, l.norm2, l.up, { eps: this.cfg.normEps });
    } else {
      const F = this.cfg.intermediate;
      const gu = this.normLinear(x, l.norm2, l.up, fused);
      const n = gu.numel / (2 * F);
      const up = gu.view(F, [gu.numel - F]);
      a = ops.siluGate(gu, up, { rows: n, cols: F, inStride: 2 * F });
      up.dispose();
      gu.dispose();
    }
    let hNext: Tensor | null = null;
    if (normInGemv && next) {
      // The next layer's norm in the down projection's kernel (the last block normalizes the residual).
      hNext = ops.linearResidualNorm(a, l.down, x, next.norm1, {
        bias: l.downBias, normB: gpt2 ? next.norm1Bias : undefined, eps: this.cfg.normEps, counter: this.blockCounter(x),
      });
    } else if (addInEpilogue) ops.matmul(a, l.down, { transB: true, bias: l.downBias, beta: 1, out: x });
    else {
      const d = ops.linear(a, l.down, l.downBias);
      if (normInReduce && next) hNext = this.reduceAddNorm(d, x, next.norm1);
      else this.reduceAdd(d, x);
      d.dispose();
    }
    a.dispose();
    return hNext;
  }

  /**
   * The i32 [1] zero a GPU's fused GEMV epilogues count their blocks on (ops.linearResidualNorm); calls on
   * one stream share it, and each leaves it zero. null on the CPU (the ops apart there).
   */
  private counter: Tensor | null = null;
  private ropeTable: Tensor | null = null;
  private blockCounter(x: Tensor): Tensor | undefined {
    return this.counter && this.counter.device === x.device ? this.counter : undefined;
  }

  /** Frees what the transformer allocated itself (the block counter, the rope table); the weights are the model's. */
  dispose(): void {
    this.counter?.dispose();
    this.ropeTable?.dispose();
    this.counter = this.ropeTable = null;
  }

  /** reduceAdd for a tp shard, then rmsnorm(x, g): in one kernel where the peer all-reduce takes it. */
  private reduceAddNorm(t: Tensor, x: Tensor, g: Tensor): Tensor {
    if (!this.tp) throw new Error(`tensor parallel rank ${this.w.stage.tp?.rank} of ${this.w.stage.tp?.size}: no tp communicator to sum the layer's partial outputs`);
    const h = Tensor.empty(x.shape, { dtype: x.dtype, device: x.device });
    try {
      this.tp.allReduceAddNorm(t, x, g, h, this.cfg.normEps);
    } catch (e) {
      h.dispose();
      throw e;
    }
    return h;
  }

  /**
   * RMSNorm then a projection (LLaMA). `fused`: one op (decode: on a GPU the norm runs inside the GEMV;
   * the same bits as the two ops).
   */
  private normLinear(x: Tensor, g: Tensor, w: Tensor, fused: boolean, bias?: Tensor): Tensor {
    if (fused) return ops.rmsnormLinear(x, g, w, { eps: this.cfg.normEps, bias });
    const h = ops.rmsnorm(x, g, { eps: this.cfg.normEps });
    const y = ops.linear(h, w, bias);
    h.dispose();
    return y;
  }

  private kvViews(qkv: Tensor): { k: Tensor; v: Tensor } {
    const { heads, kvHeads, headDim: D } = this.cfg;
    return {
      k: qkv.view(heads * D, [qkv.numel - heads * D]),
      v: qkv.view((heads + kvHeads) * D, [qkv.numel - (heads + kvHeads) * D]),
    };
  }

  /**
   * Prompts of B sequences, T tokens each (ids, pos: i32 [B*T] on the device), written into the cache
   * from row 0. Returns the hidden states [B*T, C] before the final norm.
   */
  prefill(cache: KvCache, ids: Tensor, pos: Tensor, zeros: Tensor, B: number, T: number): Tensor {
    const x = this.embed(ids, pos);
    this.prefillLayers(x, cache, pos, zeros, B, T);
    return x;
  }

  /** This stage's layers over hidden states x [B*T, C] (updated in place); cache layer i is the stage's i-th. */
  prefillLayers(x: Tensor, cache: KvCache, pos: Tensor, zeros: Tensor, B: number, T: number): void {
    const { heads, kvHeads, headDim: D } = this.cfg;
    const W3 = (heads + 2 * kvHeads) * D;
    this.w.layers.forEach((l, i) => {
      const h = this.norm(x, l.norm1, l.norm1Bias);
      const qkv = this.qkv(l, h, pos, B * T);
      h.dispose();
      const { k, v } = this.kvViews(qkv);
      const kv = { batch: B, tokens: T, width: kvHeads * D, maxLen: cache.maxLen, srcStrides: [T * W3, W3] as [number, number] };
      ops.kvWrite(cache.k[i]!, k, zeros, kv);
      ops.kvWrite(cache.v[i]!, v, zeros, kv);
      const att = ops.attentionPrefill(qkv, k, v, {
        batch: B, queries: T, headsQ: heads, headsKv: kvHeads, headDim: D, qStrides: [T * W3, W3], kvStrides: [T * W3, W3],
      });
      [k, v, qkv].forEach((t) => t.dispose());
      const att2 = att.reshape([B * T, heads * D]);
      this.finishLayer(l, x, att2);
      att2.dispose();
      att.dispose();
    });
  }

  /**
   * One new token per sequence: ids, pos (where it goes) and lens (= pos + 1) are i32 [B] on the device.
   * Returns logits [B, V].
   */
  decode(cache: KvCache, ids: Tensor, pos: Tensor, lens: Tensor, B: number): Tensor {
    return withFrozenWeights(() => {
      const x = this.embed(ids, pos);
      this.decodeLayers(x, cache, pos, lens, B);
      const logits = this.logits(x);
      x.dispose();
      return logits;
    });
  }

  /** This stage's layers over one token per sequence, x [B, C] updated in place. */
  decodeLayers(x: Tensor, cache: KvCache, pos: Tensor, lens: Tensor, B: number): void {
    const { heads, kvHeads, headDim: D } = this.cfg;
    const W3 = (heads + 2 * kvHeads) * D;
    const M = cache.maxLen;
    const kvStrides: [number, number] = [M * kvHeads * D, kvHeads * D];
    // Rope of q and k and both cache writes in one launch (three before; GPT-2: the two writes), or with the
    // attention in that launch too (Transformer.fusedDecodeAttention).
    const rope = this.cfg.family === 'llama' ? { theta: this.cfg.ropeTheta, freqs: this.w.ropeFreqs ?? this.ropeTable ?? undefined } : undefined;
    const fusedMode = Transformer.fusedDecodeAttention;
    const fusedAttention = fusedMode === true || (fusedMode === 'auto' && (!rope || B === 1));
    if (this.layerKernel(x, B, kvStrides)) {
      const counter = this.blockCounter(x);
      for (const [i, l] of this.w.layers.entries())
        ops.decodeLayerGpt2(x, l, cache.k[i]!, cache.v[i]!, pos, lens, { heads, headDim: D, maxLen: M, kvStrides, eps: this.cfg.normEps, counter });
      return;
    }
    // The layer before hands over this layer's normalized input (its down projection ran the norm too:
    // in the GEMV's epilogue on one device, in the all-reduce on a LLaMA tp shard; null for the first).
    let h: Tensor | null = null;
    const skip = Transformer.decodeSkip;
    this.w.layers.forEach((l, i) => {
      const shape = { batch: B, headsQ: heads, headsKv: kvHeads, headDim: D, maxLen: M, kvStrides };
      let qkv: Tensor;
      // The rope and cache write with the projection (linearRopeKvWrite: on a GPU in its split-K reduce) where
      // the attention does not take them and the input is normalized already.
      const ropeInProjection = !fusedAttention && !!h && Transformer.ropeInProjection && !skip.has('rope');
      const counter = Transformer.attentionCounter ? (cache.counter ?? undefined) : undefined;
      if (h && ropeInProjection && Transformer.attentionInProjection && !skip.has('attn')) {
        const att = ops.linearRopeKvAttentionDecode(h, l.qkv, cache.k[i]!, cache.v[i]!, pos, lens, { ...shape, rope, bias: l.qkvBias, counter });
        h.dispose();
        const att2 = att.reshape([B, heads * D]);
        h = this.finishLayer(l, x, att2, true, this.w.layers[i + 1]);
        att2.dispose();
        att.dispose();
        return;
      }
      if (h && ropeInProjection) {
        qkv = ops.linearRopeKvWrite(h, l.qkv, cache.k[i]!, cache.v[i]!, pos, { ...shape, rope, bias: l.qkvBias });
        h.dispose();
        h = null;
      } else if (h) {
        qkv = ops.linear(h, l.qkv, l.qkvBias);
        h.dispose();
        h = null;
      } else if (rope) qkv = this.normLinear(x, l.norm1, l.qkv, true, l.qkvBias);
      else qkv = ops.layernormLinear(x, l.norm1, l.norm1Bias!, l.qkv, { bias: l.qkvBias, eps: this.cfg.normEps });
      let att: Tensor;
      if (fusedAttention) {
        att = ops.ropeKvAttentionDecode(qkv, cache.k[i]!, cache.v[i]!, pos, lens, { ...shape, qkvStride: W3, rope, counter });
      } else {
        // (PARALLM_DECODE_SKIP leaves either out: timing only, see decodeSkip)
        if (!skip.has('rope') && !ropeInProjection) ops.ropeKvWrite(qkv, cache.k[i]!, cache.v[i]!, pos, { ...shape, qkvStride: W3, rope });
        att = skip.has('attn')
          ? Tensor.empty([B, heads * D], { dtype: qkv.dtype, device: qkv.device })
          : ops.attentionDecode(qkv, cache.k[i]!, cache.v[i]!, lens, { ...shape, qStride: W3, counter });
      }
      qkv.dispose();
      const att2 = att.reshape([B, heads * D]);
      h = this.finishLayer(l, x, att2, true, this.w.layers[i + 1]);
      att2.dispose();
      att.dispose();
    });
  }

  /** Whether decodeLayers runs each layer as ops.decodeLayerGpt2 (Transformer.decodeLayerKernel). */
  private layerKernel(x: Tensor, B: number, kvStrides: [number, number]): boolean {
    const mode = Transformer.decodeLayerKernel;
    if (!mode || this.cfg.family !== 'gpt2' || isSharded(this.w.stage.tp) || this.cfg.kvHeads !== this.cfg.heads) return false;
    if (!x.device.startsWith('cuda')) return mode === true;
    return x.dtype === 'bf16' && ops.decodeLayerGpt2Supported(B, this.cfg.heads, this.cfg.headDim, kvStrides[0], kvStrides[1]);
  }

  /** Logits of hidden states [R, C] (final norm, then the head): [R, V]. */
  logits(x: Tensor): Tensor {
    if (!this.w.head || !this.w.normF) throw new Error('logits: this stage does not hold the head');
    if (this.cfg.family === 'llama') return this.normLinear(x, this.w.normF, this.w.head, true);
    return ops.layernormLinear(x, this.w.normF, this.w.normFBias!, this.w.head, { eps: this.cfg.normEps });
  }
}
