#!/usr/bin/env node
// The parallm command line: one module per command under commands/.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../native.js';
import { register as registerDevices } from './commands/devices.js';
import { register as registerBench } from './commands/bench.js';
import { register as registerGenerate } from './commands/generate.js';
import { register as registerLaunch } from './commands/launch.js';
import { register as registerPlan } from './commands/plan.js';
import { register as registerTrain } from './commands/train.js';

const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };

const program = new Command()
  .name('parallm')
  .description('Multi-GPU inference and training of GPT-2 and LLaMA models, measured in tokens per second')
  .version(pkg.version);

registerDevices(program);
registerBench(program);
registerGenerate(program);
registerLaunch(program);
registerPlan(program);
registerTrain(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  console.error(`parallm: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
