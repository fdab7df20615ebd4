// One process of a multi-process pipeline run for test/unit/launch-pp.test.ts: the compiled
// PipelineTrainer with the options of argv[2] (JSON; the launcher's variables in the environment),
// a JSON line per step on stdout, the error's message on stderr and exit code 1 on a failure.
import { PipelineTrainer } from '../../dist/train/pipeline-parallel.js';

const o = JSON.parse(process.argv[2]);
try {
  const t = await PipelineTrainer.create({ ...o, onStep: (e) => console.log(JSON.stringify({ type: 'step', step: e.step, loss: e.loss })) });
  try {
    await t.run();
  } finally {
    await t.close();
  }
} catch (e) {
  console.error(`ERROR: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
