// Forward with saved activations and an explicit backward, op by op (as llm.c does; no general autograd),
// for a range of decoder layers: the unit a pipeline executor schedules (src/parallel/schedule.ts runs
// forward and backward tasks per stage and micro-batch); on one device the whole model is one stage.
//
// Per layer the forward of src/models/transformer.ts, keeping what the backward reads:
//   x_l -> h1 = norm1(x_l) -> qkv = h1 Wqkv^T [+ b], rope(q, k) -> att = attention(qkv) (+ lse)
//       -> x_mid = x_l + att Wo^T [+ b] -> h2 = norm2(x_mid) -> a = h2 Wup^T [+ b] -> g = gelu(a) | silu(gate) up
//       -> x_{l+1} = x_mid + g Wdown^T [+ b]
// The last stage ends with the fused classifier: logits = normF(x) Whead^T, cross-entropy with its gradient
// written over the logits in the forward (dscale = the micro-step's share of the mean), so the backward
// starts from them. Padding targets (ignore index -100) count for nothing.
// A tensor-parallel stage (Stage.tp: a rank's heads and MLP features) runs the same ops on its shard's
// shapes, with four all-reduces a layer over its tp group (TrainStageOptions.tp).
import type { ModelConfig } from '../io/config.js';
import * as ops from '../ops.js';
import { Tensor } from '../tensor.js';
import type { ModelWeights } from '../models/weights.js';
import { isSharded, shardConfig } from '../models/tp.js';
import type { Communicator } from '../parallel/comm.js';
import type { FlatParams } from './params.js';
import type { OpProfiler } from './profile.js';

export const IGNORE_INDEX = -100;

// On by default on GPUs (measured S5-8: the weight-gradient matmuls of the 7B shape at 2,048 tokens 25-30%
// faster); PARALLM_DW_SCRATCH=0 turns it off.
const DW_SCRATCH = process.env.PARALLM_DW_SCRATCH !== '0';
// Bias gradients summed in the pass that writes their dy (GPT-2's up bias in the GELU backward, the out and down
// biases in the layernorm backward); =0 sums them apart with sumRows, as before, for measuring (S34-1,
// bench/RESULTS.md).
const BIAS_IN_GELU = process.env.PARALLM_BIAS_IN_GELU !== '0';
const BIAS_IN_NORM = process.env.PARALLM_BIAS_IN_NORM !== '0';

/** One micro-batch: `batch` rows of `seq` tokens, row-major. Targets may hold IGNORE_INDEX (padding). */
export interface MicroBatch {
  readonly inputs: Int32Array;
  readonly targets: Int32Array;
  readonly batch: number;
  readonly seq: number;
  /**
   * The same ids already on the device (i32 [batch * seq]), read instead of uploading inputs / targets:
   * a captured step (src/train/captured-step.ts) writes each batch into the same tensors before it
   * replays. The caller owns them; the stage never disposes them.
   */
  readonly onDevice?: { inputs?: Tensor; targets?: Tensor };
}

export interface ForwardOptions {
  /**
   * The scale of the logits' gradient (last stage): 1 / (counted targets of the whole optimizer step), so
   * gradients summed over micro-steps are those of the step's mean loss. Default: 1 / this batch's count.
   * `false`: evaluation only, no gradient and nothing saved.
   */
  dscale?: number | false;
  /**
   * Last stage: return the per-token losses on the device (`losses`) instead of reading their sum, so
   * the host does not wait for the forward and goes on queueing the backward (a GPU idles while the host
   * queues otherwise). Sum them with `sumLosses` once the step's work is queued.
   */
  deferLoss?: boolean;
}

export interface ForwardResult {
  /** last stage: the sum of the counted targets' losses (f64 on the host) and their count */
  lossSum?: number;
  count?: number;
  /** last stage with deferLoss: the per-token losses (f32 [B*T], the caller's to dispose) */
  losses?: Tensor;
  /** not the last stage: the hidden states [B*T, C] for the next stage (the caller's, to dispose once handed on) */
  out?: Tensor;
}

interface LayerActs {
  x: Tensor; // the layer's input [N, C]
  mean1?: Tensor; rstd1: Tensor; h1: Tensor;
  qkv: Tensor; att: Tensor; lse: Tensor;
  xMid: Tensor; mean2?: Tensor; rstd2: Tensor; h2: Tensor;
  a: Tensor; g: Tensor;
}

interface Saved {
  mb: MicroBatch;
  ids?: Tensor; pos: Tensor; targets?: Tensor;
  layers: LayerActs[];
  xLast: Tensor; // the stage's output (the last layer's x_{l+1})
  meanF?: Tensor; rstdF?: Tensor; hF?: Tensor; dlogits?: Tensor;
}

/** Counted targets: in [0, V) (cross_entropy ignores the rest). */
export function countTargets(targets: ArrayLike<number>, vocabSize: number): number {
  let n = 0;
  for (let i = 0; i < targets.length; i++) if (targets[i]! >= 0 && targets[i]! < vocabSize) n++;
  return n;
}

/** The sum of per-token losses (read from the device, summed in f64). */
export function sumLosses(losses: Tensor): number {
  let sum = 0;
  for (const l of losses.toArray()) sum += l;
  return sum;
}

export interface TrainStageOptions {
  /**
   * Tensor parallel (params.stage.tp): the communicator of the stage's tp group. The forward all-reduces
   * (sums) the row-parallel projections' partial outputs (attention out, MLP down) before their replicated
   * bias; the backward, the column-parallel projections' partial input gradients (qkv, up) before the
   * norm's backward. Everything else is local to the rank.
   */
  tp?: Communicator;
  /**
   * Hold back the linear layers' weight gradients (qkv, out, up, down, and the head): backward(id) keeps
   * each one's output gradient dy and input x for this micro-batch, and flushWeightGrads() then adds
   * dy^T x over every micro-batch held in one matmul per layer (K = all their tokens), where the matmul is
   * several times cheaper per token than at one micro-batch's K (bench/RESULTS.md, "Model and pipeline
   * parallel training"). The price is memory: every held micro-batch's dy and x live until the flush.
   */
  deferWeightGrads?: boolean;
}

/**
 * One linear layer's held-back weight gradient: the dy [N_i, out] and x [N_i, in] of each micro-batch
 * (the stage's tensors, freed by the flush) and the gradient they go into; `group`: what onGradsReady
 * reports once it is complete.
 */
interface DeferredDw {
  group: 'head' | number;
  out: Tensor;
  dy: Tensor[];
  x: Tensor[];
}

export class TrainStage {
  readonly cfg: ModelConfig;
  /** the layers' shapes on this rank: cfg itself, or a tp shard's heads, KV heads and MLP features */
  private readonly local: ModelConfig;
  private readonly tp: Communicator | null;
  private readonly w: ModelWeights;
  private readonly gw: ModelWeights;
  /** set to collect device time by op group (bench train --profile) */
  profiler: OpProfiler | null = null;
  /** saved activations per micro-batch in flight (GPipe keeps several, 1F1B a few) */
  private readonly saved = new Map<number, Saved>();

  constructor(readonly params: FlatParams, o: TrainStageOptions = {}) {
    this.cfg = params.cfg;
    const shard = params.stage.tp;
    this.local = shardConfig(params.cfg, shard);
    this.tp = o.tp ?? null;
    if (isSharded(shard) !== (this.tp !== null) || (this.tp && (this.tp.world !== shard!.size || this.tp.rank !== shard!.rank)))
      throw new Error(`TrainStage on ${params.device}: a tp shard (tp=${shard?.size ?? 1}) needs a communicator of its tp group (got ${this.tp ? `rank ${this.tp.rank} of ${this.tp.world}` : 'none'})`);
    this.w = params.weights;
    this.gw = params.grads;
    this.deferWeightGrads = o.deferWeightGrads ?? false;
  }

  /** see TrainStageOptions.deferWeightGrads; may change between steps (not with weight gradients held) */
  get deferWeightGrads(): boolean {
    return this.deferDw;
  }
  set deferWeightGrads(on: boolean) {
    if (!on && this.deferred.size) throw new Error(`TrainStage on ${this.device}: flushWeightGrads() before turning deferWeightGrads off (${this.deferred.size} layers' gradients are held)`);
    this.deferDw = on;
  }
  private deferDw = false;

  private mark(name: string): void {
    this.profiler?.mark(name);
  }

  get isFirst(): boolean {
    return this.params.stage.embed;
  }
  get isLast(): boolean {
    return this.params.stage.head;
  }
  get device(): string {
    return this.params.device;
  }

  private i32(data: ArrayLike<number>): Tensor {
    return Tensor.from(data, [data.length], { dtype: 'i32', device: this.device });
  }

  /** ids on the device: the caller's tensor (borrowed: a view of it, so freeing ours leaves it alone), or an upload of `data`. */
  private deviceIds(given: Tensor | undefined, data: Int32Array, what: string): Tensor {
    if (!given) return this.i32(data);
    if (given.dtype !== 'i32' || given.numel !== data.length || given.device !== this.device)
      throw new Error(`TrainStage: onDevice.${what} must be i32 [${data.length}] on ${this.device}, got ${given.dtype} [${given.shape}] on ${given.device}`);
    return given.view(0, [data.length]);
  }

  private norm(x: Tensor, g: Tensor, b: Tensor | undefined, N: number): { y: Tensor; mean?: Tensor; rstd: Tensor } {
    const f32 = { dtype: 'f32' as const, device: this.device };
    const rstd = Tensor.empty([N], f32);
    if (this.cfg.family === 'gpt2') {
      const mean = Tensor.empty([N], f32);
      return { y: ops.layernorm(x, g, b!, { eps: this.cfg.normEps, mean, rstd }), mean, rstd };
    }
    return { y: ops.rmsnorm(x, g, { eps: this.cfg.normEps, rstd }), rstd };
  }

  /**
   * The norm's backward: dx += its input gradient, its parameters' gradients added. With `sumInto` (LayerNorm),
   * also the rows' sum of the dx it leaves into that bias gradient (the linear layer below whose output the
   * stream adds), in the same pass; returns the bias gradient so summed, if any.
   */
  private normBackward(dy: Tensor, x: Tensor, g: Tensor, mean: Tensor | undefined, rstd: Tensor, dx: Tensor, dg: Tensor, db: Tensor | undefined, sumInto?: Tensor): Tensor | undefined {
    this.params.takeZeroed(dg); // the norms' kernels add their parameter gradients
    if (db) this.params.takeZeroed(db);
    if (this.cfg.family !== 'gpt2') {
      ops.rmsnormBackward(dy, x, g, rstd, { dx, dw: dg });
      return undefined;
    }
    if (!BIAS_IN_NORM) sumInto = undefined;
    const sum = sumInto ? { dxSum: sumInto, dxSumAccumulate: !this.params.takeZeroed(sumInto) } : {};
    ops.layernormBackward(dy, x, g, mean!, rstd, { dx, dgamma: dg, dbeta: db!, ...sum });
    return sumInto;
  }

  /** Throws unless mb's sizes fit each other and the model, and (first stage) every input id is in the vocabulary. */
  checkBatch(mb: MicroBatch): void {
    const { batch: B, seq: T } = mb;
    if (!Number.isInteger(B) || B < 1 || !Number.isInteger(T) || T < 1) throw new Error(`TrainStage: batch ${B} and seq ${T} must be positive integers`);
    if (T > this.cfg.maxPositions) throw new Error(`TrainStage: seq ${T} is longer than the model's context (${this.cfg.maxPositions} positions)`);
    if (mb.inputs.length !== B * T || mb.targets.length !== B * T)
      throw new Error(`TrainStage: inputs (${mb.inputs.length}) and targets (${mb.targets.length}) must hold batch x seq = ${B * T} ids`);
    if (this.isFirst)
      for (const id of mb.inputs)
        if (!(id >= 0 && id < this.cfg.vocabSize)) throw new Error(`TrainStage: input id ${id} is outside the vocabulary [0, ${this.cfg.vocabSize})`);
  }

  /**
   * Forward of micro-batch `id` (any key unique among those in flight). The first stage embeds mb.inputs;
   * the others take `input` [B*T, C] from the stage before. Saves activations for backward(id) unless
   * dscale is false.
   */
  forward(id: number, mb: MicroBatch, input?: Tensor, o: ForwardOptions = {}): ForwardResult {
    if (this.saved.has(id)) throw new Error(`TrainStage.forward: micro-batch ${id} is already in flight`);
    this.checkBatch(mb);
    const { hidden: C, heads, kvHeads, headDim: D, ropeTheta } = this.local;
    const gpt2 = this.cfg.family === 'gpt2';
    const B = mb.batch, T = mb.seq, N = B * T;
    const W3 = (heads + 2 * kvHeads) * D;
    const train = o.dscale !== false;
    const w = this.w;
    const tp = this.tp;
    const s: Saved = { mb, pos: this.positions(B, T), layers: [], xLast: undefined as unknown as Tensor };
    const free = (...ts: (Tensor | undefined)[]) => ts.forEach((t) => t?.dispose());
    let x: Tensor;
    try {
      if (this.isFirst) {
        s.ids = this.deviceIds(mb.onDevice?.inputs, mb.inputs, 'inputs');
        this.beforeForward?.('embed');
        x = ops.embedding(s.ids, w.embed!);
        if (w.positions) {
          const p = ops.embedding(s.pos, w.positions);
          ops.add(x, p, x);
          p.dispose();
        }
        this.mark('fwd embed');
      } else {
        if (!input || input.numel !== N * C) throw new Error(`TrainStage.forward: expected an input of [${N}, ${C}] from the stage before`);
        x = Tensor.empty([N, C], { dtype: input.dtype, device: this.device }).copyFrom(input);
      }
      for (const [li, l] of w.layers.entries()) {
        this.beforeForward?.(this.params.stage.start + li);
        const n1 = this.norm(x, l.norm1, l.norm1Bias, N);
        this.mark('fwd norm');
        const qkv = ops.linear(n1.y, l.qkv, l.qkvBias);
        this.mark('fwd qkv matmul');
        const k = qkv.view(heads * D, [N * W3 - heads * D]);
        const v = qkv.view((heads + kvHeads) * D, [N * W3 - (heads + kvHeads) * D]);
        if (!gpt2) {
          // the k heads follow the q heads in a row: one launch rotates both (as models/transformer.ts does)
          ops.rope(qkv, s.pos, { heads: heads + kvHeads, headDim: D, theta: ropeTheta, tokenStride: W3, tokens: N });
          this.mark('fwd rope');
        }
        const strides = { qStrides: [T * W3, W3] as [number, number], kvStrides: [T * W3, W3] as [number, number] };
        const fa = ops.attentionForward(qkv, k, v, { batch: B, tokens: T, headsQ: heads, headsKv: kvHeads, headDim: D, ...strides });
        this.mark('fwd attention');
        free(k, v);
        const att = fa.out.reshape([N, heads * D]);
        fa.out.dispose();
        const xMid = ops.linear(att, l.out, tp ? undefined : l.outBias);
        if (tp) this.reduceRowParallel(xMid, l.outBias);
        ops.add(xMid, x, xMid);
        this.mark('fwd out matmul');
        const n2 = this.norm(xMid, l.norm2, l.norm2Bias, N);
        this.mark('fwd norm');
        const a = ops.linear(n2.y, l.up, l.upBias);
        this.mark('fwd up matmul');
        let g: Tensor;
        if (gpt2) g = ops.gelu(a);
        else {
          const F = this.local.intermediate;
          const up = a.view(F, [N * 2 * F - F]);
          g = ops.siluGate(a, up, { rows: N, cols: F, inStride: 2 * F });
          up.dispose();
        }
        this.mark('fwd activation');
        const xNext = ops.linear(g, l.down, tp ? undefined : l.downBias);
        if (tp) this.reduceRowParallel(xNext, l.downBias);
        ops.add(xNext, xMid, xNext);
        this.mark('fwd down matmul');
        const acts: LayerActs = { x, mean1: n1.mean, rstd1: n1.rstd, h1: n1.y, qkv, att, lse: fa.lse, xMid, mean2: n2.mean, rstd2: n2.rstd, h2: n2.y, a, g };
        if (train) s.layers.push(acts);
        else free(...Object.values(acts));
        x = xNext;
      }
      s.xLast = x;
      if (!this.isLast) {
        if (train) this.saved.set(id, s);
        else free(s.ids, s.pos);
        return { out: x };
      }
      this.beforeForward?.('head');
      const nF = this.norm(x, w.normF!, w.normFBias, N);
      this.mark('fwd norm');
      const logits = ops.linear(nF.y, this.paddedHead());
      this.mark('fwd head matmul');
      const targets = this.deviceIds(mb.onDevice?.targets, mb.targets, 'targets');
      const count = countTargets(mb.targets, this.cfg.vocabSize);
      const dscale = o.dscale === false ? 0 : (o.dscale ?? 1 / Math.max(count, 1));
      const losses = ops.crossEntropy(logits, targets, { ignoreIndex: IGNORE_INDEX, dlogits: train ? 'inplace' : undefined, dscale, vocab: this.cfg.vocabSize });
      this.mark('classifier (cross-entropy)');
      const lossSum = o.deferLoss ? 0 : sumLosses(losses);
      if (!o.deferLoss) losses.dispose();
      if (train) {
        Object.assign(s, { meanF: nF.mean, rstdF: nF.rstd, hF: nF.y, dlogits: logits, targets });
        this.saved.set(id, s);
      } else {
        free(nF.mean, nF.rstd, nF.y, logits, targets, x, s.ids, s.pos);
      }
      return o.deferLoss ? { losses, count } : { lossSum, count };
    } catch (e) {
      this.release(s);
      throw e;
    }
  }

  /**
   * Called during backward as each group of parameter gradients is complete for this micro-batch: 'head'
   * (the head and final norm), then each layer's index from the last to the first, then 'embed' (the
   * embeddings, on the first stage). Data parallel all-reduces gradient buckets from it (src/train/grad-buckets.ts).
   * With deferWeightGrads the groups are complete only in flushWeightGrads(), which calls it instead, in
   * the same order.
   */
  onGradsReady?: (what: 'head' | 'embed' | number) => void;

  /**
   * Called on the first stage in place of adding the lookup's rows into the embeddings' gradient, with the
   * ids and their gradient [tokens, C]; true when it took them (data parallel's tied gradient split,
   * BucketedAllReduce.embedLookup), false to add them here as usual.
   */
  embedGrad?: (ids: Tensor, dx: Tensor) => boolean;

  /**
   * Called during forward before it reads each group of weights: 'embed' (first stage), each layer's
   * index from the first, then 'head' (last stage). ZeRO-1 waits there for the all-gather of the buckets
   * holding them (src/train/zero.ts), so the gathers of the later layers overlap the earlier ones' forward.
   */
  beforeForward?: (what: 'head' | 'embed' | number) => void;

  /**
   * Backward of micro-batch `id`: parameter gradients added into params.grad. The last stage starts from
   * its saved logits' gradient; the others take dOut [B*T, C] from the stage after. Returns the gradient of
   * the stage's input (for the stage before), or null on the first stage. Frees the saved activations
   * (but, with deferWeightGrads, the linear layers' inputs, held for flushWeightGrads with their dy).
   */
  backward(id: number, dOut?: Tensor): Tensor | null {
    const s = this.saved.get(id);
    if (!s) throw new Error(`TrainStage.backward: micro-batch ${id} has no saved forward (run forward first, with a dscale)`);
    this.saved.delete(id);
    const { hidden: C, heads, kvHeads, headDim: D, ropeTheta } = this.local;
    const gpt2 = this.cfg.family === 'gpt2';
    const B = s.mb.batch, T = s.mb.seq, N = B * T;
    const W3 = (heads + 2 * kvHeads) * D;
    const w = this.w, gw = this.gw;
    const dt = this.params.dtype;
    const opt = { dtype: dt, device: this.device };
    const tmp: Tensor[] = [];
    const keep = <X extends Tensor>(t: X) => (tmp.push(t), t);
    // deferWeightGrads: the tensors handed to this.deferred (release and tmp leave them alone)
    const defer = this.deferDw;
    if (defer) this.readyOwed = true;
    const held = new Set<Tensor>();
    const dW = (key: string, group: 'head' | number, dy: Tensor, x: Tensor, out: Tensor, copyDy: boolean): void => {
      if (copyDy) dy = Tensor.empty([...dy.shape], { dtype: dy.dtype, device: this.device }).copyFrom(dy);
      else {
        const i = tmp.indexOf(dy);
        if (i >= 0) tmp.splice(i, 1);
        held.add(dy);
      }
      held.add(x);
      let d = this.deferred.get(key);
      if (!d) this.deferred.set(key, (d = { group, out, dy: [], x: [] }));
      d.dy.push(dy);
      d.x.push(x);
      this.heldBytes += dy.nbytes + x.nbytes;
      this.heldPeak = Math.max(this.heldPeak, this.heldBytes);
    };
    const paramGrads = (key: string, li: number, dy: Tensor, x: Tensor, gw: Tensor, gb: Tensor | undefined, residual: boolean): void => {
      if (!defer) return this.paramGrads(dy, x, gw, gb);
      if (gb) this.biasGrad(dy, gb);
      dW(`${li}.${key}`, this.params.stage.start + li, dy, x, gw, residual);
    };
    let dx: Tensor | null = null;
    // the bias gradient the last norm backward summed dx into (the next linear layer down's), so not again
    let summed: Tensor | undefined;
    const unsummed = (gb: Tensor | undefined) => (gb === summed ? undefined : gb);
    try {
      // dx: the gradient of the residual stream, updated in place from the top down.
      if (this.isLast) {
        const dl = s.dlogits!; // [N, Vp]: the padding's gradient is 0
        const head = this.paddedHead(false);
        const dhF = keep(ops.matmul(dl, head));
        if (defer) dW('head', 'head', dl, s.hF!, gw.head!, false);
        else this.headGrad(dl, s.hF!, gw.head!);
        this.mark('bwd head matmul');
        dx = ops.fillUniform(Tensor.empty([N, C], opt), { low: 0, high: 0 });
        summed = this.normBackward(dhF, s.xLast, w.normF!, s.meanF, s.rstdF!, dx, gw.normF!, gw.normFBias, gw.layers.at(-1)?.downBias);
        this.mark('bwd norm');
        if (!defer) this.onGradsReady?.('head');
      } else {
        if (!dOut || dOut.numel !== N * C) throw new Error(`TrainStage.backward: expected dOut of [${N}, ${C}] from the stage after`);
        dx = Tensor.empty([N, C], opt).copyFrom(dOut);
      }
      const gwLayers = gw.layers;
      for (let li = s.layers.length - 1; li >= 0; li--) {
        const a = s.layers[li]!, l = w.layers[li]!, gl = gwLayers[li]!;
        // MLP: x_{l+1} = x_mid + g Wdown^T
        paramGrads('down', li, dx, a.g, gl.down, unsummed(gl.downBias), true); // dx changes below: a copy is held
        this.mark('bwd down dW');
        const dg = keep(ops.matmul(dx, l.down));
        this.mark('bwd down dX');
        let da: Tensor;
        let upBias = gl.upBias; // summed by paramGrads below, unless the GELU backward's pass sums it
        if (gpt2) {
          const fused = BIAS_IN_GELU && upBias ? { biasGrad: upBias, accumulate: !this.params.takeZeroed(upBias) } : undefined;
          da = ops.geluBackward(a.a, dg, dg, fused);
          if (fused) upBias = undefined;
        } else {
          const F = this.local.intermediate;
          da = keep(Tensor.empty([N, 2 * F], opt));
          const up = keep(a.a.view(F, [N * 2 * F - F]));
          const dup = keep(da.view(F, [N * 2 * F - F]));
          ops.siluGateBackward(a.a, up, dg, { dgate: da, dup, rows: N, cols: F, inStride: 2 * F });
        }
        this.mark('bwd activation');
        paramGrads('up', li, da, a.h2, gl.up, upBias, false);
        this.mark('bwd up dW');
        const dh2 = keep(ops.matmul(da, l.up));
        this.mark('bwd up dX');
        if (this.tp) this.reduceInputGrad(dh2); // each rank's features' share of the input gradient
        summed = this.normBackward(dh2, a.xMid, l.norm2, a.mean2, a.rstd2, dx, gl.norm2, gl.norm2Bias, gl.outBias);
        this.mark('bwd norm');
        // attention: x_mid = x_l + att Wo^T
        paramGrads('out', li, dx, a.att, gl.out, unsummed(gl.outBias), true);
        this.mark('bwd out dW');
        const datt = keep(keep(ops.matmul(dx, l.out)).reshape([B, T, heads, D]));
        this.mark('bwd out dX');
        const dqkv = keep(Tensor.empty([N, W3], opt));
        const k = keep(a.qkv.view(heads * D, [N * W3 - heads * D]));
        const v = keep(a.qkv.view((heads + kvHeads) * D, [N * W3 - (heads + kvHeads) * D]));
        const dk = keep(dqkv.view(heads * D, [N * W3 - heads * D]));
        const dv = keep(dqkv.view((heads + kvHeads) * D, [N * W3 - (heads + kvHeads) * D]));
        const att4 = keep(a.att.reshape([B, T, heads, D]));
        const strides = { qStrides: [T * W3, W3] as [number, number], kvStrides: [T * W3, W3] as [number, number] };
        ops.attentionBackward(a.qkv, k, v, att4, datt, a.lse, { batch: B, tokens: T, headsQ: heads, headsKv: kvHeads, headDim: D, ...strides, dq: dqkv, dk, dv });
        this.mark('bwd attention');
        if (!gpt2) {
          ops.ropeBackward(dqkv, s.pos, { heads: heads + kvHeads, headDim: D, theta: ropeTheta, tokenStride: W3, tokens: N });
          this.mark('bwd rope');
        }
        paramGrads('qkv', li, dqkv, a.h1, gl.qkv, gl.qkvBias, false);
        this.mark('bwd qkv dW');
        const dh1 = keep(ops.matmul(dqkv, l.qkv));
        this.mark('bwd qkv dX');
        if (this.tp) this.reduceInputGrad(dh1); // each rank's heads' share of the input gradient
        summed = this.normBackward(dh1, a.x, l.norm1, a.mean1, a.rstd1, dx, gl.norm1, gl.norm1Bias, gwLayers[li - 1]?.downBias);
        this.mark('bwd norm');
        tmp.splice(0).forEach((t) => t.dispose());
        if (!defer) this.onGradsReady?.(this.params.stage.start + li);
      }
      if (this.isFirst) {
        this.params.takeZeroed(gw.embed!); // the lookups add (into the tied head's gradient too)
        if (!this.embedGrad?.(s.ids!, dx)) ops.embeddingBackward(s.ids!, dx, gw.embed!);
        if (gw.positions) {
          this.params.takeZeroed(gw.positions);
          ops.embeddingBackward(s.pos, dx, gw.positions);
        }
        this.mark('bwd embed');
        if (!defer) this.onGradsReady?.('embed');
        dx.dispose();
        return null;
      }
      return dx;
    } catch (e) {
      dx?.dispose();
      throw e;
    } finally {
      tmp.forEach((t) => t.dispose());
      this.release(s, held);
    }
  }

  /**
   * deferWeightGrads: adds every held linear layer's weight gradient, dW += dy^T x with dy and x the
   * row-wise concatenation of its held micro-batches' (K = all their tokens, in one matmul), frees what
   * was held, and reports each group complete to onGradsReady (head, the layers from the last, embed).
   * Nothing to do when no backward ran since the last flush. The sum is the per-micro-batch one in
   * another order (f32: within 1e-6 of the gradient's largest element, test/unit/train-defer-dw.test.ts).
   *
   * The operands are gathered here into one buffer each (a copy per held micro-batch, O(N C) beside the
   * matmul's O(N C F)) rather than written by the forward and backward into slots of a step-wide buffer:
   * the stage does not know a step's micro-batches ahead (a column or a trainer hands them one at a time),
   * and the saved activations it keeps are the forward's own outputs. Each held tensor is freed once
   * copied, so the flush adds at most one operand's worth to what is held.
   */
  flushWeightGrads(): void {
    if (!this.deferred.size && !this.readyOwed) return;
    this.readyOwed = false;
    const f = (ts: Tensor[]) => ts.reduce((b, t) => b + t.nbytes, 0);
    let group: 'head' | number | null = null;
    try {
      for (const [key, d] of this.deferred) {
        if (group !== null && d.group !== group) this.onGradsReady?.(group);
        group = d.group;
        const bytes = f(d.dy) + f(d.x);
        const dy = this.rows(d.dy), x = this.rows(d.x);
        try {
          if (key === 'head') this.headGrad(dy, x, d.out);
          else this.weightGrad(dy, x, d.out);
          this.mark(key === 'head' ? 'bwd head matmul' : `bwd ${key.slice(key.indexOf('.') + 1)} dW`);
        } finally {
          if (d.dy.length > 1) dy.dispose();
          if (d.x.length > 1) x.dispose();
        }
        this.freeHeld(d);
        this.heldBytes -= bytes;
        this.deferred.delete(key);
      }
      if (group !== null) this.onGradsReady?.(group);
      if (this.isFirst) this.onGradsReady?.('embed');
    } finally {
      this.dropHeld();
    }
  }

  /** the tensors' rows one after the other: the tensor itself when one, else one [sum N_i, cols] buffer (each tensor freed once copied) */
  private rows(ts: Tensor[]): Tensor {
    if (ts.length === 1) return ts[0]!;
    const cols = ts[0]!.numel / ts[0]!.shape[0]!;
    const n = ts.reduce((t, x) => t + x.numel / cols, 0);
    const out = Tensor.empty([n, cols], { dtype: ts[0]!.dtype, device: this.device });
    let at = 0;
    for (const t of ts) {
      const v = out.view(at, [t.numel]);
      const src = t.reshape([t.numel]);
      v.copyFrom(src);
      v.dispose();
      src.dispose();
      t.dispose();
      at += t.numel;
    }
    return out;
  }

  private freeHeld(d: DeferredDw): void {
    for (const t of [...d.dy, ...d.x]) if (!t.disposed) t.dispose();
    d.dy = [];
    d.x = [];
  }

  /** Frees every held weight gradient's operands (after a flush, or to abandon a step). */
  private dropHeld(): void {
    for (const d of this.deferred.values()) this.freeHeld(d);
    this.deferred.clear();
    this.heldBytes = 0;
    this.readyOwed = false;
  }

  /** Bytes held for deferred weight gradients now, and at most since the last call with reset. */
  deferredBytes(reset = false): { now: number; peak: number } {
    const r = { now: this.heldBytes, peak: this.heldPeak };
    if (reset) this.heldPeak = this.heldBytes;
    return r;
  }
  private readonly deferred = new Map<string, DeferredDw>();
  private heldBytes = 0;
  private heldPeak = 0;
  /** a deferred backward ran: onGradsReady is owed by the next flush */
  private readyOwed = false;

  /**
   * Tensor parallel: the sum over the tp group of a row-parallel projection's partial outputs, then its
   * bias (whole on every rank: added once, and its gradient, the rows' sum of the output's, the same on
   * every rank).
   */
  private reduceInputGrad(dh: Tensor): void {
    this.tp!.allReduce(dh, 'sum');
    this.mark('tp all-reduce');
  }

  private reduceRowParallel(y: Tensor, bias: Tensor | undefined): void {
    this.tp!.allReduce(y, 'sum');
    this.mark('tp all-reduce');
    if (bias) ops.add(y, bias, y);
  }

  /**
   * The head as the classifier's matmuls read it: the weights themselves when the vocabulary is a multiple
   * of 64, else a copy with zero rows up to the next multiple (GPT-2's 50257 to 50304, as llm.c pads it),
   * so the logits' gradient has aligned rows and its two matmuls (K or M = the vocabulary) take the fast
   * tensor-core path instead of element loads. `refresh`: copy the current weights in (the forward).
   */
  private paddedHead(refresh = true): Tensor {
    const head = this.w.head!;
    const V = this.cfg.vocabSize;
    const Vp = Math.ceil(V / 64) * 64;
    if (Vp === V) return head;
    if (!this.headPad) {
      this.headPad = Tensor.empty([Vp, this.cfg.hidden], { dtype: head.dtype, device: this.device });
      ops.fillUniform(this.headPad, { low: 0, high: 0 });
    }
    if (refresh) {
      const rows = this.headPad.view(0, [V, this.cfg.hidden]);
      rows.copyFrom(head);
      rows.dispose();
    }
    return this.headPad;
  }
  private headPad: Tensor | null = null;
  private dheadPad: Tensor | null = null;

  /** A linear layer's parameter gradients, summed over the step's micro-batches: weight (weightGrad), bias. */
  private paramGrads(dy: Tensor, x: Tensor, gw: Tensor, gb: Tensor | undefined): void {
    this.weightGrad(dy, x, gw);
    if (gb) this.biasGrad(dy, gb);
  }

  /** A bias's gradient, the rows' sum of dy: stored when the gradient still holds zeros, else added. */
  private biasGrad(dy: Tensor, gb: Tensor): void {
    ops.sumRows(dy, { out: gb, accumulate: !this.params.takeZeroed(gb) });
  }

  /**
   * The head's weight gradient, out (+)= dy^T x. With a padded vocabulary (paddedHead) the product over the
   * padded rows goes to a scratch, then its first V rows into the gradient. Stored, not added, when the
   * gradient still holds zeros (FlatParams.takeZeroed); the unpadded head adds in the matmul's epilogue
   * (beta = 1) rather than through a head-sized scratch.
   */
  private headGrad(dy: Tensor, x: Tensor, out: Tensor): void {
    const store = this.params.takeZeroed(out);
    if (out.shape[0] === dy.shape[1]) {
      ops.matmul(dy, x, { transA: true, beta: store ? 0 : 1, out });
      return;
    }
    this.dheadPad ??= Tensor.empty([dy.shape[1]!, x.shape[1]!], { dtype: out.dtype, device: this.device });
    ops.matmul(dy, x, { transA: true, out: this.dheadPad });
    const rows = this.dheadPad.view(0, [...out.shape]);
    try {
      if (store) out.copyFrom(rows);
      else ops.add(out, rows, out);
    } finally {
      rows.dispose();
    }
  }

  /**
   * A linear layer's weight gradient, summed over the step's micro-batches: out += dy^T x. On a GPU the
   * product goes to a scratch buffer through the matmul's fast (TMA) store, then one add into the
   * gradient, instead of the matmul reading and writing the gradient in its register epilogue (beta = 1),
   * which holds the tensor cores idle when the token count (K) is small.
   */
  private weightGrad(dy: Tensor, x: Tensor, out: Tensor): void {
    if (this.params.takeZeroed(out)) {
      ops.matmul(dy, x, { transA: true, out }); // the first sum since zeroGrad: stored, nothing to add to
      return;
    }
    if (!DW_SCRATCH || !this.device.startsWith('cuda')) {
      ops.matmul(dy, x, { transA: true, beta: 1, out });
      return;
    }
    if (!this.dwScratch || this.dwScratch.numel < out.numel) {
      this.dwScratch?.dispose();
      this.dwScratch = Tensor.empty([out.numel], { dtype: out.dtype, device: this.device });
    }
    const tmp = this.dwScratch.view(0, [...out.shape]);
    try {
      ops.matmul(dy, x, { transA: true, out: tmp });
      ops.add(out, tmp, out);
    } finally {
      tmp.dispose();
    }
  }
  private dwScratch: Tensor | null = null;

  /**
   * Positions 0..T-1 per row, [B*T] i32: a view of a tensor made once per shape, so a step does not
   * build and upload them again (the host would hold the device idle at the start of every micro-batch).
   */
  /**
   * Uploads now what a forward of this shape would upload (its positions), so a forward being captured
   * into a graph (src/train/captured-step.ts) uploads nothing: a host copy cannot be captured.
   */
  prepare(B: number, T: number): void {
    this.positions(B, T).dispose();
  }

  private positions(B: number, T: number): Tensor {
    const key = `${B}x${T}`;
    let t = this.posCache.get(key);
    if (!t) {
      if (this.posCache.size >= 8) this.clearPositions();
      t = this.i32(Int32Array.from({ length: B * T }, (_, i) => i % T));
      this.posCache.set(key, t);
    }
    return t.view(0, [B * T]);
  }
  private readonly posCache = new Map<string, Tensor>();
  private clearPositions(): void {
    for (const t of this.posCache.values()) t.dispose();
    this.posCache.clear();
  }

  /** Micro-batches whose forward is saved and whose backward has not run. */
  get inFlight(): number[] {
    return [...this.saved.keys()];
  }

  /** Drop every saved forward and every held weight gradient (after a failure, or to abandon a step). */
  clear(): void {
    for (const s of this.saved.values()) this.release(s);
    this.saved.clear();
    this.dropHeld();
  }

  /** Drop every saved forward only (a column's end: held weight gradients wait for flushWeightGrads). */
  clearSaved(): void {
    for (const s of this.saved.values()) this.release(s);
    this.saved.clear();
  }

  /** Frees the padded head's buffers too (the stage cannot run after). */
  dispose(): void {
    this.clear();
    this.headPad?.dispose();
    this.dheadPad?.dispose();
    this.headPad = this.dheadPad = null;
    this.dwScratch?.dispose();
    this.dwScratch = null;
    this.clearPositions();
  }

  private release(s: Saved, held?: Set<Tensor>): void {
    const ts: (Tensor | undefined)[] = [s.ids, s.pos, s.targets, s.meanF, s.rstdF, s.hF, s.dlogits];
    // the last stage's output stays with the caller when it was handed on (not the last stage)
    if (this.isLast) ts.push(s.xLast);
    for (const l of s.layers) ts.push(...Object.values(l));
    for (const t of ts) if (t && !t.disposed && !held?.has(t)) t.dispose();
    s.layers = [];
  }
}
