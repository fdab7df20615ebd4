// `parallm generate`: stream a model's continuation of a prompt to stdout; or, for many prompts (a file,
// one a line, or stdin) and/or several devices, generate them as one batch through ParallelModel under a
// strategy and print each continuation when all are done.
import type { Command } from 'commander';
import { checkDType } from '../../dtype.js';
import { num } from '../args.js';
import { streamText, generateSteps } from '../../engine/generate.js';
import { reportingLoad } from '../../models/load-steps.js';
import { Model } from '../../models/model.js';
import { LoadProgressBar } from '../progress.js';
import { hasTokenizer, resolveSource } from '../../models/source.js';
import { resolveSampling } from '../../engine/sampling.js';
import { ParallelModel } from '../../engine/parallel-model.js';
import { defaultDevice } from '../../device.js';
import { Mesh } from '../../parallel/mesh.js';
import { STRATEGIES, type Strategy } from '../../parallel/placement.js';
import { readFileSync } from 'node:fs';

interface GenOpts {
  model: string;
  prompt?: string;
  promptIds?: string;
  maxTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed: string;
  stop?: string[];
  device?: string;
  dtype?: string;
  prompts?: string;
  devices?: string;
  strategy?: string;
  mesh?: string;
  microBatches?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('generate text from a prompt, streamed to stdout')
    .requiredOption('--model <name>', 'a preset (gpt2, tiny-llama, ...) or a folder with config.json, safetensors weights and tokenizer.json')
    .option('--prompt <text>', 'the prompt')
    .option('--prompt-ids <ids>', 'the prompt as comma-separated token ids (for models without a tokenizer)')
    // Left out, these take the folder's generation_config.json (do_sample false: greedy), else 64 / greedy.
    .option('--max-tokens <n>', 'new tokens at most (default: generation_config.json max_new_tokens, else 64)')
    .option('--temperature <t>', '0 for greedy (default: generation_config.json, else 0)')
    .option('--top-k <k>', '0 for no top-k cut (default: generation_config.json)')
    .option('--top-p <p>', '1 for no top-p cut (default: generation_config.json)')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--stop <text...>', 'stop strings')
    .option('--device <id>', 'cuda:N or cpu:N (default: cuda:0, else cpu:0)')
    .option('--dtype <dtype>', 'bf16 (GPU default), f32 (CPU default), f16')
    .option('--prompts <file>', 'many prompts, one a line, from a file ("-": standard input), generated as one batch')
    .option('--devices <list>', 'generate across these devices (comma-separated), e.g. cuda:0,cuda:1')
    .option('--strategy <s>', 'with --devices: dp (default), mp, pp or tp (every layer split across the devices)')
    .option('--mesh <shape>', 'with --devices, instead of --strategy: dp=..,pp=..,tp=.. over the devices in rank order (tp peers adjacent)')
    .option('--micro-batches <n>', 'pp: micro-batches (default one per stage)')
    .option('--json', 'with --prompts or --devices: one JSON line per prompt')
    .action(async (o: GenOpts) => {
      // Everything is checked before the model loads (a load can take seconds).
      const given = [o.prompt, o.promptIds, o.prompts].filter((x) => x !== undefined).length;
      if (given !== 1) throw new Error('give exactly one of --prompt, --prompt-ids and --prompts');
      if (o.prompts !== undefined || o.devices !== undefined) return batch(o);
      const dtype = o.dtype ? checkDType(o.dtype) : undefined;
      // Only the flags given are passed on (checked here), so generate fills the rest from the model.
      const opts = {
        temperature: o.temperature === undefined ? undefined : num('--temperature', o.temperature),
        topK: o.topK === undefined ? undefined : num('--top-k', o.topK, true),
        topP: o.topP === undefined ? undefined : num('--top-p', o.topP),
        seed: num('--seed', o.seed, true),
      };
      resolveSampling(opts, 'generate');
      const maxTokens = o.maxTokens === undefined ? undefined : num('--max-tokens', o.maxTokens, true);
      if (maxTokens !== undefined && maxTokens < 1) throw new Error(`--max-tokens must be a positive integer, got ${maxTokens}`);
      const ids = o.promptIds !== undefined ? parseIds(o.promptIds) : undefined;
      const src = resolveSource(o.model);
      if (o.prompt !== undefined && !hasTokenizer(src))
        throw new Error(`${o.model} has no tokenizer, so --prompt cannot be encoded: give token ids with --prompt-ids 1,2,3 (or a folder with tokenizer.json)`);
      if (src.kind === 'preset') console.error(`[${o.model} is a preset: seeded random weights of the real shape, so its text is noise]`);
      const bar = new LoadProgressBar(`loading ${o.model}`);
      const m = await reportingLoad(bar, (onProgress) => Model.loadAsync(o.model, { device: o.device, dtype, onProgress }));
      // A reader that goes away (generate ... | head) ends the generation quietly.
      let gone = false;
      process.stdout.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EPIPE') gone = true;
        else throw e;
      });
      const write = (text: string) => {
        if (!gone) process.stdout.write(text);
      };
      const t0 = performance.now();
      let n = 0;
      try {
        const g = { ...opts, maxTokens, stopStrings: o.stop };
        if (ids) {
          for await (const ev of generateSteps(m, [ids], g)) {
            if (ev.tokens[0]! < 0 || gone) break;
            write(m.tokenizer ? m.decode([ev.tokens[0]!]) : `${ev.tokens[0]} `);
            n++;
          }
        } else {
          write(o.prompt!);
          for await (const piece of streamText(m, o.prompt!, g)) {
            if (gone) break;
            write(piece);
            n++;
          }
        }
        write('\n');
        const sec = (performance.now() - t0) / 1e3;
        if (!gone) console.error(`[${m.name} on ${m.device}, ${m.dtype}: ${n} pieces in ${sec.toFixed(2)} s]`);
      } finally {
        m.dispose();
      }
    });
}

/** Many prompts and/or several devices: one batch through ParallelModel, each result printed at the end. */
async function batch(o: GenOpts): Promise<void> {
  const dtype = o.dtype ? checkDType(o.dtype) : undefined;
  const sampling = resolveSampling(
    {
      temperature: o.temperature === undefined ? undefined : num('--temperature', o.temperature),
      topK: o.topK === undefined ? undefined : num('--top-k', o.topK, true),
      topP: o.topP === undefined ? undefined : num('--top-p', o.topP),
      seed: num('--seed', o.seed, true),
    },
    'generate',
  );
  const maxTokens = o.maxTokens === undefined ? 64 : num('--max-tokens', o.maxTokens, true);
  if (o.stop?.length) throw new Error('--stop applies to a single streamed prompt; with --prompts or --devices sequences end at the end-of-sequence token');
  const devices = (o.devices ?? o.device ?? defaultDevice()).split(',').map((d) => d.trim());
  if (o.mesh !== undefined && o.strategy !== undefined) throw new Error('give --strategy or --mesh, not both');
  if (o.mesh !== undefined && o.devices === undefined) throw new Error('--mesh needs --devices (as many as the mesh has ranks)');
  const mesh = o.mesh === undefined ? undefined : Mesh.parse(o.mesh);
  const strategy = devices.length === 1 && o.devices === undefined ? 'single' : ((o.strategy ?? 'dp') as Strategy);
  if (!STRATEGIES.includes(strategy)) throw new Error(`--strategy must be dp, mp, pp or tp, got "${o.strategy}"`);
  const micro = o.microBatches === undefined ? undefined : num('--micro-batches', o.microBatches, true);
  const src = resolveSource(o.model);
  let prompts: (string | number[])[];
  if (o.promptIds !== undefined) prompts = [parseIds(o.promptIds)];
  else if (o.prompt !== undefined) prompts = [o.prompt];
  else {
    const text = o.prompts === '-' ? readFileSync(0, 'utf8') : readFileSync(o.prompts!, 'utf8');
    prompts = text.split(/\r?\n/).filter((l) => l.trim());
    if (!prompts.length) throw new Error(`--prompts ${o.prompts === '-' ? '(standard input)' : o.prompts}: no prompts (one a line)`);
  }
  if (prompts.some((p) => typeof p === 'string') && !hasTokenizer(src))
    throw new Error(`${o.model} has no tokenizer, so text prompts cannot be encoded: give token ids with --prompt-ids`);
  if (src.kind === 'preset') console.error(`[${o.model} is a preset: seeded random weights of the real shape, so its text is noise]`);
  const pm = await ParallelModel.load(o.model, mesh ? { mesh, devices, dtype } : { strategy, devices, dtype });
  try {
    const r = await pm.generateText(prompts, { ...sampling, maxTokens, microBatches: micro });
    // launched as several processes, each has every result: process 0 prints them
    if (pm.dist && pm.dist.process !== 0) return;
    r.generations.forEach((g, i) => {
      const p = prompts[i]!;
      if (o.json) console.log(JSON.stringify({ prompt: p, text: g.text, tokens: g.tokens, finish: g.finish }));
      else console.log(`${typeof p === 'string' ? p : ''}${g.text ?? g.tokens.join(' ')}\n`);
    });
    console.error(`[${pm.strategy === 'mesh' ? `mesh ${pm.mesh}` : pm.strategy} on ${pm.devices.join(', ')}${pm.dist ? ` and the other processes' (${pm.dist.world} ${pm.strategy === 'dp' ? 'replicas' : pm.strategy === 'pp' || pm.strategy === 'mp' ? 'stages' : 'ranks'} in ${pm.dist.processes} processes)` : ''}: ${prompts.length} prompts, ${prompts.length * maxTokens} tokens in ${(r.wallMs / 1e3).toFixed(2)} s]`);
  } finally {
    await pm.close();
  }
}

/** "1, 2,3" -> [1, 2, 3]: non-negative integers, none empty. */
function parseIds(text: string): number[] {
  const parts = text.split(',').map((x) => x.trim());
  if (!text.trim() || parts.some((x) => !/^\d{1,10}$/.test(x)))
    throw new Error(`--prompt-ids must be comma-separated token ids (non-negative integers), got "${text}"`);
  return parts.map(Number);
}
