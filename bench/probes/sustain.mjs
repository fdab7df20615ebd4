// Probe (not shipped): parallm's GEMM back to back for 2 s on one GPU, then on both at once; TFLOP/s in
// the first 50 ms against the last second. Pairs with torch_pp_prefill.py sustain.
import { ops, Tensor, DeviceEvent, synchronize, cudaDeviceCount } from '../../dist/index.js';
import { rand } from '../../dist/random.js';
const [M, N, K] = (process.argv[2] ?? '2048x22016x4096').split('x').map(Number);
const devs = Array.from({ length: Math.min(2, cudaDeviceCount()) }, (_, i) => `cuda:${i}`);
const t = Object.fromEntries(devs.map((d) => [d, {
  a: rand([M, K], { dtype: 'bf16', device: d, seed: 1 }), b: rand([N, K], { dtype: 'bf16', device: d, seed: 2 }),
  c: Tensor.empty([M, N], { dtype: 'bf16', device: d }) }]));
const flop = 2 * M * N * K;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
for (const load of devs.length > 1 ? [[devs[0]], devs] : [[devs[0]]]) {
  devs.forEach(synchronize); await sleep(1000);
  const evs = Object.fromEntries(load.map((d) => [d, []]));
  const t0 = performance.now();
  while (performance.now() - t0 < 2000) {
    for (const d of load) {
      for (let i = 0; i < 10; i++) ops.matmul(t[d].a, t[d].b, { transB: true, out: t[d].c });
      evs[d].push(new DeviceEvent(d).record());
    }
    if (evs[load[0]].length % 20 === 0) load.forEach(synchronize);
  }
  load.forEach(synchronize);
  for (const d of load) {
    const es = evs[d]; const ts = [0];
    for (let i = 1; i < es.length; i++) ts.push(ts[i - 1] + es[i - 1].elapsedMs(es[i]));
    const rate = (i, j) => (10 * (j - i) * flop) / ((ts[j] - ts[i]) / 1e3) / 1e12;
    const first = ts.findIndex((x) => x >= 50), last = ts.findIndex((x) => x >= ts[ts.length - 1] - 1000);
    console.log('PROBE ' + JSON.stringify({ what: 'parallm_gemm_sustained', shape: `${M}x${N}x${K} B^T`, device: d, loaded: load.length,
      tflops_first_50ms: rate(0, first), tflops_last_1s: rate(last, ts.length - 1) }));
  }
}
