// `parallm generate`: stream a model's continuation of a prompt to stdout.
import type { Command } from 'commander';
import { checkDType } from '../../dtype.js';
import { streamText, generateSteps } from '../../engine/generate.js';
import { reportingLoad } from '../../models/load-steps.js';
import { Model } from '../../models/model.js';
import { LoadProgressBar } from '../progress.js';
import { resolveSource, type ModelSource } from '../../models/source.js';
import { resolveSampling } from '../../engine/sampling.js';
import { existsSync } from 'node:fs';
import path from 'node:path';

interface GenOpts {
  model: string;
  prompt?: string;
  promptIds?: string;
  maxTokens: string;
  temperature: string;
  topK: string;
  topP: string;
  seed: string;
  stop?: string[];
  device?: string;
  dtype?: string;
}

function num(flag: string, v: string, int = false): number {
  const n = Number(v);
  if (!Number.isFinite(n) || (int && !Number.isInteger(n))) throw new Error(`${flag} must be ${int ? 'an integer' : 'a number'}, got "${v}"`);
  return n;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('generate text from a prompt, streamed to stdout')
    .requiredOption('--model <name>', 'a preset (gpt2, tiny-llama, ...) or a folder with config.json, safetensors weights and tokenizer.json')
    .option('--prompt <text>', 'the prompt')
    .option('--prompt-ids <ids>', 'the prompt as comma-separated token ids (for models without a tokenizer)')
    .option('--max-tokens <n>', 'new tokens at most', '64')
    .option('--temperature <t>', '0 for greedy', '0')
    .option('--top-k <k>', '0 for no top-k cut', '0')
    .option('--top-p <p>', '1 for no top-p cut', '1')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--stop <text...>', 'stop strings')
    .option('--device <id>', 'cuda:N or cpu:N (default: cuda:0, else cpu:0)')
    .option('--dtype <dtype>', 'bf16 (GPU default), f32 (CPU default), f16')
    .action(async (o: GenOpts) => {
      // Everything is checked before the model loads (a load can take seconds).
      if ((o.prompt === undefined) === (o.promptIds === undefined)) throw new Error('give exactly one of --prompt and --prompt-ids');
      const dtype = o.dtype ? checkDType(o.dtype) : undefined;
      const opts = resolveSampling(
        { temperature: num('--temperature', o.temperature), topK: num('--top-k', o.topK, true), topP: num('--top-p', o.topP), seed: num('--seed', o.seed, true) },
        'generate',
      );
      const maxTokens = num('--max-tokens', o.maxTokens, true);
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

/** "1, 2,3" -> [1, 2, 3]: non-negative integers, none empty. */
function parseIds(text: string): number[] {
  const parts = text.split(',').map((x) => x.trim());
  if (!text.trim() || parts.some((x) => !/^\d{1,10}$/.test(x)))
    throw new Error(`--prompt-ids must be comma-separated token ids (non-negative integers), got "${text}"`);
  return parts.map(Number);
}

/** Whether Model.load will give this source a tokenizer (see Model.loadStages). */
function hasTokenizer(src: ModelSource): boolean {
  if (src.kind === 'preset') return src.config.family === 'gpt2';
  return existsSync(path.join(src.folder, 'tokenizer.json')) || (src.config.family === 'gpt2' && src.config.vocabSize === 50257);
}
