// Probe: the training kernels (native/cuda, kernels.h "training") at the shapes of the training
// benchmarks: GPT-2 124M at 128 x 128 and 16 x 1024 tokens (16384 rows either way), and a LLaMA-1B layer
// (C 2048, 32 q / 8 kv heads of 64, F 8192, V 128256) at 4 x 2048. bf16, inputs filled on the device.
// Each op: 3 warm-up calls, then the median of 20 timed with device events; prints ms and the achieved
// GB/s (bytes each op must move, counted below) or TFLOP/s (attention, causal FLOPs). Usage:
//   node bench/probes/grad-kernels.mjs [cuda:0]
import { DeviceEvent, Tensor, ops } from '../../dist/index.js';

const dev = process.argv[2] ?? 'cuda:0';
const dt = 'bf16', es = 2;
const owned = [];
const rand = (shape, seed, low = -1, high = 1, dtype = dt) => {
  const t = Tensor.empty(shape, { dtype, device: dev });
  owned.push(t);
  return ops.fillUniform(t, { seed, low, high });
};
const ids = (n, V, seed) => {
  // Zipf-like token ids drawn on the host (a few frequent tokens, as text has).
  let s = seed >>> 0;
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = Math.min(V - 1, Math.floor(Math.exp((s / 2 ** 32) * Math.log(V))) - 1);
  }
  const t = Tensor.from(a, [n], { dtype: 'i32', device: dev });
  owned.push(t);
  return t;
};

function time(fn) {
  for (let i = 0; i < 3; i++) fn();
  const ms = [];
  for (let i = 0; i < 20; i++) {
    const a = new DeviceEvent(dev).record();
    fn();
    const b = new DeviceEvent(dev).record();
    b.synchronize();
    ms.push(a.elapsedMs(b));
  }
  ms.sort((x, y) => x - y);
  return ms[ms.length >> 1];
}

const rows = [];
function report(model, op, shape, fn, bytes, flops) {
  let ms;
  try {
    ms = time(fn);
  } catch (e) {
    console.log(`PROBE ${model.padEnd(10)} ${op.padEnd(20)} ${shape.padEnd(26)} failed: ${e.message}`);
    return;
  }
  const rate = flops ? `${(flops / ms / 1e9).toFixed(1)} TFLOP/s` : `${(bytes / ms / 1e6).toFixed(0)} GB/s`;
  rows.push({ model, op, shape, ms, bytes, flops });
  console.log(`PROBE ${model.padEnd(10)} ${op.padEnd(20)} ${shape.padEnd(26)} ${ms.toFixed(3).padStart(8)} ms  ${rate}`);
}

function attention(model, B, T, Hq, Hkv, D) {
  const q = rand([B, T, Hq, D], 1), k = rand([B, T, Hkv, D], 2), v = rand([B, T, Hkv, D], 3);
  const shape = { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D };
  const out = rand([B, T, Hq, D], 4), lse = rand([B, Hq, T], 5, 0, 1, 'f32');
  const s = `B${B} T${T} H${Hq}/${Hkv} D${D}`;
  report(model, 'attentionForward', s, () => ops.attentionForward(q, k, v, { ...shape, out, lse }), 0, 2 * B * Hq * T * T * D);
  ops.attentionForward(q, k, v, { ...shape, out, lse });
  const dout = rand([B, T, Hq, D], 6);
  const dq = rand([B, T, Hq, D], 7), dk = rand([B, T, Hkv, D], 8), dv = rand([B, T, Hkv, D], 9);
  const workspace = rand([B * Hq * T * (D + 1)], 10, 0, 1, 'f32');
  report(model, 'attentionBackward', s, () => ops.attentionBackward(q, k, v, out, dout, lse, { ...shape, dq, dk, dv, workspace }), 0, 5 * B * Hq * T * T * D);
}

function layer(model, R, C, F, V, rms, gated, Hq, Hkv, D, B, T) {
  const x = rand([R, C], 11), dy = rand([R, C], 12), dx = rand([R, C], 13);
  const g = rand([C], 14, 0.5, 1.5), dg = rand([C], 15), db = rand([C], 16);
  const rstd = rand([R], 17, 0.5, 2, 'f32'), mean = rand([R], 18, -0.1, 0.1, 'f32');
  report(model, 'sumRows', `${R}x${C}`, () => ops.sumRows(dy, { out: dg, accumulate: true }), R * C * es);
  if (rms) report(model, 'rmsnormBackward', `${R}x${C}`, () => ops.rmsnormBackward(dy, x, g, rstd, { dx, dw: dg }), 4 * R * C * es);
  else report(model, 'layernormBackward', `${R}x${C}`, () => ops.layernormBackward(dy, x, g, mean, rstd, { dx, dgamma: dg, dbeta: db }), 4 * R * C * es);
  if (gated) {
    const gu = rand([R, 2 * F], 19), dgu = rand([R, 2 * F], 20), dh = rand([R, F], 21);
    const n = R * 2 * F - F;
    const views = [gu.view(0, [n]), gu.view(F, [n]), dgu.view(0, [n]), dgu.view(F, [n])];
    owned.push(...views);
    report(model, 'siluGateBackward', `${R}x${F}`, () => ops.siluGateBackward(views[0], views[1], dh, { dgate: views[2], dup: views[3], rows: R, cols: F, inStride: 2 * F }), 5 * R * F * es);
    const qk = rand([R, (Hq + Hkv) * D], 22), pos = ids(R, T, 23);
    report(model, 'ropeBackward', `${R}x${Hq + Hkv}x${D}`, () => ops.ropeBackward(qk, pos, { heads: Hq + Hkv, headDim: D }), 2 * R * (Hq + Hkv) * D * es);
  } else {
    const h = rand([R, F], 24), dh = rand([R, F], 25);
    report(model, 'geluBackward', `${R}x${F}`, () => ops.geluBackward(h, dh, dh), 3 * R * F * es);
  }
  attention(model, B, T, Hq, Hkv, D);
  const tokens = ids(R, V, 26), table = rand([V, C], 27);
  report(model, 'embeddingBackward', `N${R} V${V} C${C}`, () => ops.embeddingBackward(tokens, dy, table), 3 * R * C * es);
  const logits = rand([R, V], 28, -4, 4), losses = rand([R], 29, 0, 1, 'f32');
  report(model, 'crossEntropy inplace', `${R}x${V}`, () => ops.crossEntropy(logits, tokens, { losses, dlogits: 'inplace', dscale: 1 / R }), 3 * R * V * es);
  // (in place, the logits become gradients; timing on those is the same work)
}

function optimizer(model, n) {
  const master = rand([n], 30, -0.1, 0.1, 'f32'), m = rand([n], 31, -1e-3, 1e-3, 'f32'), v = rand([n], 32, 0, 1e-6, 'f32');
  const grad = rand([n], 33, -1e-2, 1e-2), param = rand([n], 34);
  const out = rand([1], 35, 0, 1, 'f32');
  report(model, 'sumSquares', `n=${n}`, () => ops.sumSquares(grad, out), n * es);
  let step = 1;
  report(model, 'adamw', `n=${n}`, () => ops.adamw({ master, param, grad, m, v }, { nDecay: n - 100000, lr: 1e-4, step: step++ }), n * (24 + 2 * es));
}

const gpt2 = (B, T) => layer('gpt2', B * T, 768, 3072, 50304, false, false, 12, 12, 64, B, T);
gpt2(128, 128);
attention('gpt2', 16, 1024, 12, 12, 64);
optimizer('gpt2', 124_475_904);
layer('llama-1b', 4 * 2048, 2048, 8192, 128256, true, true, 32, 8, 64, 4, 2048);
optimizer('llama-1b', 1_235_814_400);
for (const t of owned) t.dispose();
