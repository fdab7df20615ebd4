// The same prompts under data, model and pipeline parallelism on two devices (two CPU devices when there
// is no GPU); every strategy gives the single-device tokens.
//   node examples/parallel.mjs [model=tiny-llama]
import { ParallelModel, cudaDeviceCount } from 'parallm';

const [model = 'tiny-llama'] = process.argv.slice(2);
const devices = cudaDeviceCount() >= 2 ? ['cuda:0', 'cuda:1'] : ['cpu:0', 'cpu:1'];
const prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10, 11]];
const tokens = {};
for (const strategy of ['dp', 'mp', 'pp']) {
  const pm = await ParallelModel.load(model, { strategy, devices });
  const r = await pm.generate(prompts, { maxTokens: 8, microBatches: strategy === 'pp' ? 2 : undefined });
  tokens[strategy] = r.tokens;
  await pm.close();
}
const same = JSON.stringify(tokens.dp) === JSON.stringify(tokens.mp) && JSON.stringify(tokens.mp) === JSON.stringify(tokens.pp);
console.log(JSON.stringify({ model, devices, same, tokens: tokens.pp }));
if (!same) process.exitCode = 1;
