// The loaders under fuzzing (test/unit/fuzz-loaders.test.ts) run here, in a worker thread, so the test can
// stop one that hangs (terminate) and still report which case it was. Compiled library, as in pool-handlers.mjs.
import { parentPort } from 'node:worker_threads';
import { Model, WeightStore, loadConfig, loadTokenizerSync } from '../../dist/index.js';

const ops = {
  model: (folder) => Model.load(folder, { device: 'cpu:0', dtype: 'f32' }).dispose(),
  weights: (folder) => WeightStore.open(folder).close(),
  config: (folder) => loadConfig(folder),
  tokenizer: (folder) => {
    // Loading is not enough: a hostile regex or id only shows when the tokenizer runs.
    const t = loadTokenizerSync(folder);
    t.decode(t.encode(`Hello world, 12 345! ${'a'.repeat(40)}!  \n\n x`));
  },
};

parentPort.on('message', ({ id, op, folder }) => {
  const t0 = performance.now();
  let reply;
  try {
    ops[op](folder);
    reply = { ok: true };
  } catch (e) {
    reply = { ok: false, isError: e instanceof Error, message: e instanceof Error ? e.message : String(e) };
  }
  parentPort.postMessage({ id, ms: performance.now() - t0, ...reply });
});
