// Training attention at GPT-2's head size and long sequences: CUDA (bf16 and f32) against the CPU backend
// (f32) on the same random inputs, for out, lse, dq, dk, dv; max |diff| / max |ref| per tensor.
// Usage: node bench/probes/attn-bwd-long.mjs [T ...]
import { Tensor, ops } from '../../dist/index.js';
import { rng } from '../../dist/random.js';

const Ts = process.argv.slice(2).map(Number);
const B = 2, Hq = 12, Hkv = 12, D = 64;
const rel = (a, b) => {
  let m = 0, r = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    r = Math.max(r, Math.abs(b[i]));
  }
  return +(m / r).toExponential(2);
};
for (const T of Ts.length ? Ts : [128, 256, 512, 1024]) {
  const r = rng(T);
  const n = B * T * Hq * D;
  const data = () => Float32Array.from({ length: n }, () => (r() * 2 - 1) * 2);
  const [q, k, v, dout] = [data(), data(), data(), data()];
  const run = (device, dtype) => {
    const t = (a) => Tensor.from(a, [B, T, Hq, D], { device, dtype });
    const Q = t(q), K = t(k), V = t(v), DO = t(dout);
    const shape = { batch: B, tokens: T, headsQ: Hq, headsKv: Hkv, headDim: D };
    const { out, lse } = ops.attentionForward(Q, K, V, shape);
    const dq = Tensor.empty([B, T, Hq, D], { device, dtype }), dk = Tensor.empty([B, T, Hq, D], { device, dtype }), dv = Tensor.empty([B, T, Hq, D], { device, dtype });
    ops.attentionBackward(Q, K, V, out, DO, lse, { ...shape, dq, dk, dv });
    const res = Object.fromEntries(Object.entries({ out, lse, dq, dk, dv }).map(([name, x]) => [name, x.toArray()]));
    for (const x of [Q, K, V, DO, out, lse, dq, dk, dv]) x.dispose();
    return res;
  };
  const ref = run('cpu:0', 'f32');
  for (const dtype of ['bf16', 'f32']) {
    const got = run('cuda:0', dtype);
    console.log(JSON.stringify({ T, dtype, ...Object.fromEntries(Object.keys(ref).map((name) => [name, rel(got[name], ref[name])])) }));
  }
}
