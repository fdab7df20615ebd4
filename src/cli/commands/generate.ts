// `parallm generate`: stream a model's continuation of a prompt to stdout.
import type { Command } from 'commander';
import { checkDType } from '../../dtype.js';
import { streamText, generateSteps } from '../../engine/generate.js';
import { Model } from '../../models/model.js';

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
      if ((o.prompt === undefined) === (o.promptIds === undefined)) throw new Error('give exactly one of --prompt and --prompt-ids');
      const dtype = o.dtype ? checkDType(o.dtype) : undefined;
      const m = Model.load(o.model, { device: o.device, dtype });
      const opts = {
        maxTokens: num('--max-tokens', o.maxTokens, true),
        temperature: num('--temperature', o.temperature),
        topK: num('--top-k', o.topK, true),
        topP: num('--top-p', o.topP),
        seed: num('--seed', o.seed, true),
        stopStrings: o.stop,
      };
      const t0 = performance.now();
      let n = 0;
      try {
        if (o.promptIds !== undefined) {
          const ids = o.promptIds.split(',').map((s) => num('--prompt-ids', s.trim(), true));
          for await (const ev of generateSteps(m, [ids], opts)) {
            if (ev.tokens[0]! < 0) break;
            process.stdout.write(m.tokenizer ? m.decode([ev.tokens[0]!]) : `${ev.tokens[0]} `);
            n++;
          }
        } else {
          process.stdout.write(o.prompt!);
          for await (const piece of streamText(m, o.prompt!, opts)) {
            process.stdout.write(piece);
            n++;
          }
        }
        process.stdout.write('\n');
        const s = (performance.now() - t0) / 1e3;
        console.error(`[${m.name} on ${m.device}, ${m.dtype}: ${n} pieces in ${s.toFixed(2)} s]`);
      } finally {
        m.dispose();
      }
    });
}
