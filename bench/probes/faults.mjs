// Faults injected into pipeline runs, timed: a stage that throws, a worker ended from outside, close()
// during a run, and the call after each. Prints one JSON line. CPU devices by default; on two GPUs:
//   node bench/probes/faults.mjs cuda:0,cuda:1
import { ParallelModel } from '../../dist/index.js';

const devices = (process.argv[2] ?? 'cpu:0,cpu:1').split(',');
const dtype = devices[0].startsWith('cuda') ? 'bf16' : 'f32';
const out = { devices };
const time = async (f) => {
  const t0 = performance.now();
  let error;
  try {
    await f();
  } catch (e) {
    error = e.message;
  }
  return { ms: +(performance.now() - t0).toFixed(1), error: error?.slice(0, 160) };
};
const long = Array.from({ length: devices[0].startsWith('cuda') ? 512 : 64 }, () => [1, 2, 3]);
const small = Array.from({ length: 6 }, (_, b) => [1 + b, 2, 3]);

// 1. A stage that throws at tick 4 (rank 1) and at tick 2 (rank 0), with a 60 s communicator timeout.
let pm = await ParallelModel.load('tiny-llama', { strategy: 'pp', devices, dtype, commTimeoutMs: 60_000 });
const ref = (await pm.generate(small, { maxTokens: 8, microBatches: 3 })).tokens;
out.stageThrows = [];
for (const fault of [{ rank: 1, tick: 4 }, { rank: 0, tick: 2 }]) {
  const r = await time(() => pm.generate(small, { maxTokens: 8, microBatches: 3, fault }));
  const next = await time(async () => {
    const t = (await pm.generate(small, { maxTokens: 8, microBatches: 3 })).tokens;
    if (JSON.stringify(t) !== JSON.stringify(ref)) throw new Error('the next call gave other tokens');
  });
  out.stageThrows.push({ fault, toError: r, nextCall: next });
}
await pm.close();

// 2. close() 300 ms into a long run, with no communicator timeout.
pm = await ParallelModel.load('tiny-llama-32', { strategy: 'pp', devices, dtype, commTimeoutMs: 0 });
let run = time(() => pm.generate(long, { maxTokens: 240 }));
await new Promise((r) => setTimeout(r, 300));
out.closeMidRun = { close: await time(() => pm.close()), run: await run };

// 3. A worker ended from outside 300 ms into a long run (its stop flag not set), no communicator timeout.
pm = await ParallelModel.load('tiny-llama-32', { strategy: 'pp', devices, dtype, commTimeoutMs: 0 });
run = time(() => pm.generate(long, { maxTokens: 240 }));
await new Promise((r) => setTimeout(r, 300));
await pm.pool.slots[1].worker.terminate();
out.workerKilled = { run: await run, close: await time(() => pm.close()) };
console.log(JSON.stringify(out));
