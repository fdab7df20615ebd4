// Generation on one device: prefill the prompts as one right-padded batch, then decode one token per
// sequence per step, on one StageRunner that is both the first and the last stage (the pipeline runs the
// same runner per stage). The decode step (embedding -> layers -> head -> sampler) is captured once and
// replayed (a CUDA graph on a GPU, a recorded op list on the CPU); positions come from a table uploaded
// once, and the new token ids come back each step.
import type { Model } from '../models/model.js';
import type { Tensor } from '../tensor.js';
import { resolveSampling, type SamplingOptions } from './sampling.js';
import { RunInputs, StageRunner } from './stage-runner.js';

export type { SamplingOptions };

export interface GenerateOptions extends SamplingOptions {
  /**
   * new tokens per sequence (default: generation_config.json's max_new_tokens, cut to what the context
   * holds, else 64); temperature / topK / topP left out likewise take the folder's generation_config.json
   * (do_sample false: greedy), else greedy
   */
  maxTokens?: number;
  /** token ids that end a sequence (default: generation_config.json's eos ids, else config.json's) */
  stopTokens?: number[];
  /** texts that end a sequence (needs a tokenizer); the text is cut before them */
  stopStrings?: string[];
  /** capture the decode step as a graph (default true) */
  graph?: boolean;
  /**
   * each prompt's index in a larger request (default 0..B-1): a sampled draw is keyed on the seed, this
   * index and the token's position, so a replica running part of a request draws what one device would
   */
  sequenceIds?: number[];
  /** checked at every step: true ends the generation with an error (a worker being stopped) */
  shouldStop?: () => boolean;
  /**
   * yield to the event loop every 10 ms of generation (default true). A device worker passes false: its
   * thread has no other work to let through, it checks its stop flag each step, and a yield costs it
   * time at every step (its event loop also serves the pool's message port).
   */
  yieldToLoop?: boolean;
  /**
   * enqueue each decode step before waiting for the last one's tokens (default: on a GPU), so the device
   * never idles while the host reads tokens back, checks for stops and launches the next step. The tokens
   * are the same: a step feeds itself the ids it sampled, on the device. When every sequence has stopped,
   * the step already enqueued is waited for and its tokens dropped. On the CPU the step runs when enqueued,
   * so there it only delays the tokens (off by default; tests turn it on to check the same tokens come out).
   * PARALLM_DECODE_AHEAD=0 in the environment turns the GPU's default off.
   */
  ahead?: boolean;
}

export interface StepEvent {
  /** 0 for the token sampled after prefill */
  step: number;
  /** the new token of each sequence (-1 once a sequence has stopped) */
  tokens: number[];
}

export interface Generation {
  tokens: number[];
  text?: string;
  /** why it ended */
  finish: 'stop-token' | 'stop-string' | 'length';
}

export interface GenerationTimes {
  /** prompts in, first tokens out (time to first token) */
  prefillMs: number;
  /** decode steps after the first (the first captures the graph) */
  decodeMs: number;
  decodeSteps: number;
  /**
   * when given (an array), each of those steps' own time: from the tokens of the step before to its own
   * (with GenerateOptions.ahead, the step was enqueued before those earlier tokens were waited for)
   */
  stepMs?: number[];
}

/**
 * The caller's options with what they leave out taken from the model's generation_config.json (see
 * Model.generation), field by field, as transformers merges a call's kwargs into its GenerationConfig.
 */
export function withModelDefaults(model: Model, prompts: unknown[][], opts: GenerateOptions): GenerateOptions {
  const g = model.generation;
  const out: GenerateOptions = { ...opts, stopTokens: opts.stopTokens ?? g?.eosTokenIds ?? model.config.eosTokenIds };
  if (!g) return out;
  if (opts.temperature === undefined && g.temperature !== undefined) out.temperature = g.temperature;
  if (opts.topK === undefined && g.topK !== undefined) out.topK = g.topK;
  if (opts.topP === undefined && g.topP !== undefined) out.topP = g.topP;
  if (opts.maxTokens === undefined && g.maxTokens !== undefined) {
    // A file's max_new_tokens (often the whole context) is a ceiling, not a demand: cut it to what the
    // longest prompt leaves, so a default never makes a valid prompt an error.
    const longest = Math.max(0, ...prompts.map((p) => (Array.isArray(p) ? p.length : 0)));
    out.maxTokens = Math.max(1, Math.min(g.maxTokens, model.config.maxPositions - longest));
  }
  return out;
}

function checkPrompts(model: Model, prompts: number[][], maxTokens: number): void {
  const { vocabSize, maxPositions } = model.config;
  if (!Array.isArray(prompts) || prompts.length === 0) throw new Error('generate: give at least one prompt');
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new Error(`generate: maxTokens must be a positive integer, got ${maxTokens}`);
  prompts.forEach((p, b) => {
    if (!Array.isArray(p) || p.length === 0) throw new Error(`generate: prompt ${b} is empty`);
    for (const id of p)
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize)
        throw new Error(`generate: prompt ${b} has token id ${id}, outside the vocabulary [0, ${vocabSize})`);
    if (p.length + maxTokens > maxPositions)
      throw new Error(
        `generate: prompt ${b} has ${p.length} tokens; with ${maxTokens} new ones that is ${p.length + maxTokens}, over the model's context of ${maxPositions}`,
      );
  });
}

// Generation yields to the event loop at least this often (ms), so timers and I/O keep running while
// generations are consumed in a tight `for await` loop (an async generator alone never yields to it),
// and the tensor wrappers' native parts, which Node frees in an immediate after GC, are freed. The clock
// is shared by all generations: a loop of short ones (each under YIELD_EVERY_MS) yields all the same.
const YIELD_EVERY_MS = 10;
let lastYield = performance.now();
async function yieldIfDue(): Promise<void> {
  if (performance.now() - lastYield <= YIELD_EVERY_MS) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  lastYield = performance.now();
}

// PARALLM_DECODE_AHEAD=0 turns GenerateOptions.ahead's default off on a GPU (a measurement knob: bench/RESULTS.md
// times decode both ways).
const aheadFromEnv = typeof process === 'undefined' || process.env.PARALLM_DECODE_AHEAD !== '0';

/**
 * Generate for a batch of token-id prompts, yielding each step's new tokens. Each prompt gets what it
 * would get alone (greedy); a sampled token's draw depends on the seed, the sequence's index and the
 * token's position alone.
 */
export async function* generateSteps(model: Model, prompts: number[][], opts: GenerateOptions = {}, times?: GenerationTimes): AsyncGenerator<StepEvent> {
  model.assertAlive();
  opts = withModelDefaults(model, prompts, opts);
  const maxTokens = opts.maxTokens ?? 64;
  checkPrompts(model, prompts, maxTokens);
  const sampling = resolveSampling(opts);
  const B = prompts.length;
  const ahead = opts.ahead ?? (model.device.startsWith('cuda') && aheadFromEnv);
  const stop = new Set(opts.stopTokens);
  const run = new RunInputs(model.device, prompts, [B], maxTokens, { first: true, last: true }, opts.sequenceIds);
  let runner: StageRunner | undefined;
  let prefilled: Tensor | undefined; // the ids sampled after prefill: ours to free (decode outputs are the runner's)
  let next: { wait(): Float32Array | Int32Array } | undefined; // the step enqueued ahead, its ids' read begun
  try {
    runner = new StageRunner(model, run, sampling, { first: true, last: true, graph: opts.graph });
    const t0 = performance.now();
    prefilled = runner.prefill(0);
    let tokens = Array.from(prefilled.toArray());
    if (times) times.prefillMs = performance.now() - t0;
    const done = new Array<boolean>(B).fill(false);
    const emit = (step: number): StepEvent => {
      const ev = { step, tokens: tokens.map((t, b) => (done[b] ? -1 : t)) };
      tokens.forEach((t, b) => {
        if (stop.has(t)) done[b] = true;
      });
      return ev;
    };
    if (opts.yieldToLoop !== false) await yieldIfDue();
    yield emit(0);
    // Steady-state decode time: from the end of step 1 (which captures the graph) to the last step.
    let t1 = performance.now();
    let steps = 0;
    // Step s feeds the token sampled at step s - 1 (the runner copies each step's ids back itself, inside
    // the step; the prefill's come from here) and samples the next: so step s + 1 can be enqueued before
    // step s's ids are read (ahead), its read queued between them.
    const r = runner;
    const enqueue = (s: number) => r.decode(0, s).readBegin();
    if (maxTokens > 1) r.inputBuffer(0, 1).copyFrom(prefilled);
    let tPrev = t1;
    for (let s = 1; s < maxTokens && done.some((d) => !d); s++) {
      if (opts.shouldStop?.()) throw new Error(`generate on ${model.device}: stopped (close() or terminate())`);
      if (!next) tPrev = performance.now();
      const read = next ?? enqueue(s);
      next = undefined;
      if (ahead && s + 1 < maxTokens) next = enqueue(s + 1);
      tokens = Array.from(read.wait());
      const now = performance.now();
      if (s === 1) t1 = now;
      else {
        steps++;
        times?.stepMs?.push(now - tPrev);
      }
      tPrev = now;
      if (opts.yieldToLoop !== false) await yieldIfDue();
      yield emit(s);
    }
    if (times) {
      times.decodeMs = performance.now() - t1;
      times.decodeSteps = steps;
    }
  } finally {
    // A step enqueued ahead and not needed (every sequence stopped, or an error or a stop ended the loop):
    // let it finish before the runner's buffers and graph go.
    try {
      next?.wait();
    } catch {
      // (the error that ended the generation, if any, is the one to report)
    }
    prefilled?.dispose();
    runner?.dispose();
    run.dispose();
  }
}

/** Generate to the end for each prompt (token ids or text), with the text decoded when there is a tokenizer. */
export async function generate(model: Model, prompts: (string | number[])[], opts: GenerateOptions = {}): Promise<Generation[]> {
  if (!Array.isArray(prompts) || !prompts.length) throw new Error('generate: give at least one prompt (a string, or an array of token ids)');
  const ids = prompts.map((p, b) => {
    if (typeof p === 'string') return model.encode(p);
    if (!Array.isArray(p)) throw new Error(`generate: prompt ${b} is ${p === null ? 'null' : typeof p}, not a string or an array of token ids`);
    return p;
  });
  opts = withModelDefaults(model, ids, opts);
  const out: Generation[] = ids.map(() => ({ tokens: [], finish: 'length' }));
  const stopStrings = opts.stopStrings ?? [];
  if (stopStrings.length && !model.tokenizer) throw new Error('generate: stop strings need a tokenizer');
  const stop = new Set(opts.stopTokens);
  const ended = new Array<boolean>(ids.length).fill(false);
  for await (const ev of generateSteps(model, ids, opts)) {
    ev.tokens.forEach((t, b) => {
      if (t < 0 || ended[b]) return;
      const g = out[b]!;
      g.tokens.push(t);
      if (stop.has(t)) {
        ended[b] = true;
        g.finish = 'stop-token';
      } else if (stopStrings.length) {
        const text = model.decode(g.tokens);
        if (stopStrings.some((s) => text.includes(s))) {
          ended[b] = true;
          g.finish = 'stop-string';
        }
      }
    });
    if (ended.every(Boolean)) break;
  }
  if (model.tokenizer)
    for (const g of out) {
      const body = g.finish === 'stop-token' ? g.tokens.slice(0, -1) : g.tokens;
      let text = model.decode(body);
      for (const s of stopStrings) {
        const i = text.indexOf(s);
        if (i >= 0) text = text.slice(0, i);
      }
      g.text = text;
    }
  return out;
}

/** Stream one prompt's text as it is generated. */
export async function* streamText(model: Model, prompt: string | number[], opts: GenerateOptions = {}): AsyncGenerator<string> {
  if (!model.tokenizer) throw new Error(`${model.name} has no tokenizer to stream text with`);
  if (typeof prompt !== 'string' && !Array.isArray(prompt)) throw new Error(`streamText: the prompt is ${prompt === null ? 'null' : typeof prompt}, not a string or an array of token ids`);
  const ids = typeof prompt === 'string' ? model.encode(prompt) : prompt;
  opts = withModelDefaults(model, [ids], opts);
  const dec = model.tokenizer.streamDecoder();
  const stop = new Set(opts.stopTokens);
  const stopStrings = opts.stopStrings ?? [];
  let text = '';
  let emitted = 0;
  for await (const ev of generateSteps(model, [ids], opts)) {
    const t = ev.tokens[0]!;
    if (t < 0 || stop.has(t)) break;
    text += dec.push([t]);
    // Hold back a tail that could still grow into a stop string.
    const hit = stopStrings.map((s) => text.indexOf(s)).filter((i) => i >= 0);
    if (hit.length) {
      const cut = Math.min(...hit);
      if (cut > emitted) yield text.slice(emitted, cut);
      return;
    }
    const hold = stopStrings.reduce((m, s) => Math.max(m, s.length - 1), 0);
    const safe = Math.max(emitted, text.length - hold);
    if (safe > emitted) {
      yield text.slice(emitted, safe);
      emitted = safe;
    }
  }
  text += dec.flush();
  if (text.length > emitted) yield text.slice(emitted);
}
