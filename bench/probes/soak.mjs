// Soak: many generate calls in a tight `for await` loop on one device, RSS and allocator figures at the
// start and after each quarter (a leak grows steadily; a plateau is the allocator's and malloc's cache).
// Usage: node --expose-gc bench/probes/soak.mjs [calls=10000] [model=tiny-llama] [device=cpu:0] [graph|nograph]
import { Model, generate, memoryStats } from '../../dist/index.js';

const [calls = '10000', model = 'tiny-llama', device = 'cpu:0', graph = 'graph'] = process.argv.slice(2);
const N = Number(calls);
const m = Model.load(model, { device, dtype: device.startsWith('cuda') ? 'bf16' : 'f32' });
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((r) => setTimeout(r, 10));
  }
};
const snap = (done) => {
  const u = process.memoryUsage();
  const s = memoryStats(device);
  return { calls: done, rssMB: +(u.rss / 2 ** 20).toFixed(1), heapMB: +(u.heapUsed / 2 ** 20).toFixed(1), deviceAllocated: s.allocated, deviceCached: s.cached };
};
const one = () => generate(m, [[1, 2, 3]], { maxTokens: 4, graph: graph !== 'nograph' });
for (let i = 0; i < 100; i++) await one(); // warm: caches and JIT
await settle();
const rows = [snap(0)];
const t0 = performance.now();
for (let q = 1; q <= 4; q++) {
  for (let i = 0; i < N / 4; i++) await one();
  await settle();
  rows.push(snap((q * N) / 4));
}
console.log(JSON.stringify({ model, device, graph, seconds: +((performance.now() - t0) / 1e3).toFixed(1), rows }));
m.dispose();
