// Training checkpoints: one folder that is both a Hugging Face model folder and a resumable run.
//   config.json, model.safetensors   HF names and layouts (GPT-2 Conv1D [in, out]; LLaMA q/k/v and gate/up
//                                    apart), f32 from the master weights: `Model.load` and `parallm generate`
//   tokenizer.json                   copied from a fine-tuned folder that has one
//   optimizer.safetensors            the flat master, m and v (src/train/params.ts layout)
// A pipeline's checkpoint is sharded by stage, as Hugging Face shards big models: model-0000k-of-0000S
// .safetensors with model.safetensors.index.json, and optimizer-0000k-of-0000S.safetensors; each stage's
// worker writes its own pair into the temp folder (writeStageFiles), the main thread the rest.
//   trainer.json                     step, data position, and what a resume must match
// A save writes every file into a sibling temp folder, then swaps it in with two renames (old -> .prev,
// temp -> the folder) and drops .prev, so a run killed mid-save leaves the previous checkpoint whole: at
// worst only as <folder>.prev (between the renames), which the next save or load puts back.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ModelConfig } from '../io/config.js';
import { SafetensorsFile, writeSafetensors, type StTensorData } from '../io/safetensors.js';
import type { LoaderPosition } from '../data/loader.js';
import { isSharded } from '../models/tp.js';
import { paramLayout, type FlatParams } from './params.js';
import { cutShard, wholeStage } from './tp-shards.js';

/** What naming a stage's weights needs: its config, layers and flat layout (FlatParams, or a tp stage's whole layout). */
export type StageLayout = Pick<FlatParams, 'cfg' | 'stage' | 'layout' | 'n' | 'nDecay'>;

export const CHECKPOINT_FORMAT = 'parallm-train-checkpoint';
export const CHECKPOINT_VERSION = 1;

/** trainer.json: where the run is and what it was run with. */
export interface CheckpointState {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  config: ModelConfig;
  /** optimizer steps done */
  step: number;
  /** the training loader's next batch */
  loader: LoaderPosition;
  /** settings a resume must share for the same run to continue (batch, seq, grad accumulation, data) */
  run: {
    batch: number; seq: number; gradAccum: number; dataHash: string; dtype: string; dataSeed: number;
    /** data parallel (src/train/data-parallel.ts): replicas and how the batches were dealt (absent: one device) */
    world?: number; dataOrder?: string;
    /** pipeline (src/train/pipeline-parallel.ts): the layers of each stage (a resume must split the same way) */
    stages?: number[][];
  };
  /** elements of the flat buffers and how many get weight decay (a pipeline's: summed over its stages) */
  params: { n: number; nDecay: number };
  /** a pipeline's stages, each saved in its own files (stageFiles); absent: one whole-model stage */
  stages?: StageRecord[];
  /** the loss of every step so far (for the curve) */
  losses: number[];
}

function hfConfig(cfg: ModelConfig): Record<string, unknown> {
  const eos = cfg.eosTokenIds.length === 0 ? null : cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds;
  if (cfg.family === 'gpt2')
    return {
      model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: cfg.vocabSize, n_positions: cfg.maxPositions,
      n_embd: cfg.hidden, n_layer: cfg.layers, n_head: cfg.heads, n_inner: cfg.intermediate, activation_function: 'gelu_new',
      layer_norm_epsilon: cfg.normEps, tie_word_embeddings: true, scale_attn_weights: true, scale_attn_by_inverse_layer_idx: false,
      resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: cfg.bosTokenId, eos_token_id: eos, torch_dtype: 'float32',
    };
  return {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: cfg.vocabSize, hidden_size: cfg.hidden,
    intermediate_size: cfg.intermediate, num_hidden_layers: cfg.layers, num_attention_heads: cfg.heads,
    num_key_value_heads: cfg.kvHeads, head_dim: cfg.headDim, max_position_embeddings: cfg.maxPositions,
    rms_norm_eps: cfg.normEps, rope_theta: cfg.ropeTheta, tie_word_embeddings: cfg.tieEmbeddings, hidden_act: 'silu',
    attention_bias: false, mlp_bias: false, bos_token_id: cfg.bosTokenId, eos_token_id: eos, torch_dtype: 'float32',
  };
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c]!;
  return out;
}

/**
 * A stage's weights under Hugging Face names and layouts, from the host copy of master: its layers, the
 * embeddings on the first stage, the final norm and (untied) head on the last. The last stage's copy of
 * tied embeddings is not written: the first stage's is the model's.
 */
export function hfTensors(p: StageLayout, master = (p as FlatParams).hostMaster()): StTensorData[] {
  const { cfg, stage } = p;
  const { heads, kvHeads, headDim: D, intermediate: F, hidden: C } = cfg;
  const at = new Map(p.layout.map((e) => [e.key, e]));
  const get = (key: string) => {
    const e = at.get(key)!;
    return { data: master.subarray(e.offset, e.offset + e.numel), shape: [...e.shape] };
  };
  const out: StTensorData[] = [];
  const put = (name: string, data: Float32Array, shape: number[]) => out.push({ name, dtype: 'F32', shape, data });
  const layers = Array.from({ length: stage.end - stage.start }, (_, j) => stage.start + j);
  if (cfg.family === 'gpt2') {
    const conv = (name: string, key: string) => {
      const { data, shape } = get(key); // [out, in] -> Conv1D [in, out]
      put(name, transpose(data, shape[0]!, shape[1]!), [shape[1]!, shape[0]!]);
    };
    const plain = (name: string, key: string) => put(name, get(key).data, get(key).shape);
    if (stage.embed) {
      plain('transformer.wte.weight', 'embed');
      plain('transformer.wpe.weight', 'positions');
    }
    for (const i of layers) {
      const p0 = `transformer.h.${i}.`, k = `layers.${i}.`;
      plain(`${p0}ln_1.weight`, `${k}norm1`);
      plain(`${p0}ln_1.bias`, `${k}norm1Bias`);
      conv(`${p0}attn.c_attn.weight`, `${k}qkv`);
      plain(`${p0}attn.c_attn.bias`, `${k}qkvBias`);
      conv(`${p0}attn.c_proj.weight`, `${k}out`);
      plain(`${p0}attn.c_proj.bias`, `${k}outBias`);
      plain(`${p0}ln_2.weight`, `${k}norm2`);
      plain(`${p0}ln_2.bias`, `${k}norm2Bias`);
      conv(`${p0}mlp.c_fc.weight`, `${k}up`);
      plain(`${p0}mlp.c_fc.bias`, `${k}upBias`);
      conv(`${p0}mlp.c_proj.weight`, `${k}down`);
      plain(`${p0}mlp.c_proj.bias`, `${k}downBias`);
    }
    if (stage.head) {
      plain('transformer.ln_f.weight', 'normF');
      plain('transformer.ln_f.bias', 'normFBias');
    }
    return out;
  }
  if (stage.embed) put('model.embed_tokens.weight', get('embed').data, [cfg.vocabSize, C]);
  for (const i of layers) {
    const p0 = `model.layers.${i}.`, k = `layers.${i}.`;
    const qkv = get(`${k}qkv`).data;
    const rows = (r0: number, n: number) => qkv.subarray(r0 * C, (r0 + n) * C);
    put(`${p0}input_layernorm.weight`, get(`${k}norm1`).data, [C]);
    put(`${p0}self_attn.q_proj.weight`, rows(0, heads * D), [heads * D, C]);
    put(`${p0}self_attn.k_proj.weight`, rows(heads * D, kvHeads * D), [kvHeads * D, C]);
    put(`${p0}self_attn.v_proj.weight`, rows((heads + kvHeads) * D, kvHeads * D), [kvHeads * D, C]);
    put(`${p0}self_attn.o_proj.weight`, get(`${k}out`).data, [C, heads * D]);
    put(`${p0}post_attention_layernorm.weight`, get(`${k}norm2`).data, [C]);
    const gu = get(`${k}up`).data;
    put(`${p0}mlp.gate_proj.weight`, gu.subarray(0, F * C), [F, C]);
    put(`${p0}mlp.up_proj.weight`, gu.subarray(F * C), [F, C]);
    put(`${p0}mlp.down_proj.weight`, get(`${k}down`).data, [C, F]);
  }
  if (stage.head) {
    put('model.norm.weight', get('normF').data, [C]);
    if (!cfg.tieEmbeddings) put('lm_head.weight', get('head').data, [cfg.vocabSize, C]);
  }
  return out;
}

function writeFileDurable(file: string, text: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const prevOf = (dir: string) => `${dir}.prev`;

/** Put back a checkpoint left as <dir>.prev by a save killed between its two renames. */
function recover(dir: string): void {
  if (!fs.existsSync(dir) && fs.existsSync(prevOf(dir))) fs.renameSync(prevOf(dir), dir);
}

/**
 * Fails clearly, before any training, when `dir` cannot take a checkpoint: its parent must be (or become)
 * a writable folder, and `dir` itself, if it exists, a folder.
 */
export function checkSaveFolder(dir: string): void {
  const abs = path.resolve(dir);
  const parent = path.dirname(abs);
  try {
    fs.mkdirSync(parent, { recursive: true });
    if (fs.existsSync(abs) && !fs.statSync(abs).isDirectory()) throw new Error('it exists and is not a folder');
    const probe = path.join(parent, `.parallm-write-test-${process.pid}-${randomBytes(4).toString('hex')}`);
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (e) {
    throw new Error(`checkpoint folder ${abs} is not writable: ${(e as Error).message}`);
  }
}

export interface SaveOptions {
  /** a folder whose tokenizer.json goes into the checkpoint */
  tokenizerFrom?: string | null;
  /** called after each file is written into the temp folder (tests inject failures here) */
  onFileWritten?: (file: string) => void;
}

/** A save in progress: the parts are written into `tmp`, then finishCheckpoint swaps it in for `dir`. */
export interface PendingSave {
  dir: string;
  tmp: string;
}

/** Where one stage's part of a checkpoint goes, and what it holds (trainer.json lists them, for resume). */
export interface StageRecord {
  start: number;
  end: number;
  embed: boolean;
  head: boolean;
  /** elements of its flat buffers, and how many get weight decay */
  n: number;
  nDecay: number;
}

/** Stage k of S's files: the single names for one stage, Hugging Face's shard names for several. */
export function stageFiles(k: number, S: number): { model: string; optimizer: string } {
  if (S === 1) return { model: 'model.safetensors', optimizer: 'optimizer.safetensors' };
  const of = (n: number) => String(n).padStart(5, '0');
  return { model: `model-${of(k + 1)}-of-${of(S)}.safetensors`, optimizer: `optimizer-${of(k + 1)}-of-${of(S)}.safetensors` };
}

/** Starts a save into `dir`: checks it, puts back an interrupted one, makes the temp folder beside it. */
export function beginCheckpoint(dir: string): PendingSave {
  const abs = path.resolve(dir);
  checkSaveFolder(abs);
  recover(abs);
  const tmp = `${abs}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    fs.mkdirSync(tmp);
  } catch (e) {
    throw new Error(`saving checkpoint to ${abs}: ${(e as Error).message}`);
  }
  return { dir: abs, tmp };
}

/** Drops a save that failed part way (the previous checkpoint stays). */
export function abandonCheckpoint(s: PendingSave): void {
  fs.rmSync(s.tmp, { recursive: true, force: true });
}

/**
 * Writes stage k of S into a pending save: its weights under Hugging Face names and its optimizer state
 * (master, m, v). Returns the names of the weights written (the shard index of a sharded checkpoint).
 * Each pipeline stage's worker writes its own part, so no device's state crosses to another (a tensor-
 * parallel stage's rank 0 writes the whole stage, gathered from its tp peers: `p` its whole layout, with
 * `state`).
 */
export function writeStageFiles(
  tmpDir: string, p: FlatParams | StageLayout, k: number, S: number, step: number, onFileWritten?: (file: string) => void, state?: HostOptimizerState,
): string[] {
  const f = stageFiles(k, S);
  if (!state && !('hostMaster' in p)) throw new Error(`writeStageFiles: stage ${k} of ${S}: give the optimizer state of a layout`);
  const fp = p as FlatParams;
  const master = state?.master ?? fp.hostMaster();
  const tensors = hfTensors(p, master);
  writeSafetensors(path.join(tmpDir, f.model), tensors, { format: 'pt' });
  onFileWritten?.(f.model);
  const n = [p.n];
  writeSafetensors(
    path.join(tmpDir, f.optimizer),
    [
      { name: 'master', dtype: 'F32', shape: n, data: master },
      { name: 'm', dtype: 'F32', shape: n, data: state?.m ?? (fp.m.toArray() as Float32Array) },
      { name: 'v', dtype: 'F32', shape: n, data: state?.v ?? (fp.v.toArray() as Float32Array) },
    ],
    { step: String(step), stage: `${k}`, stages: `${S}` },
  );
  onFileWritten?.(f.optimizer);
  return tensors.map((t) => t.name);
}

/**
 * Ends a save: config.json, the shard index (several stages), the tokenizer, trainer.json; then the
 * swap (old -> .prev, temp -> the folder, drop .prev). `names[k]`: the weights stage k wrote.
 */
export function finishCheckpoint(
  s: PendingSave, cfg: ModelConfig, stages: StageRecord[], names: string[][],
  state: Omit<CheckpointState, 'format' | 'version' | 'config' | 'params' | 'stages'>, o: SaveOptions = {},
): void {
  const { dir: abs, tmp } = s;
  const done = (f: string) => o.onFileWritten?.(path.basename(f));
  const file = (n: string) => path.join(tmp, n);
  try {
    writeFileDurable(file('config.json'), JSON.stringify(hfConfig(cfg), null, 2) + '\n');
    done('config.json');
    const S = stages.length;
    if (S > 1) {
      const weightMap: Record<string, string> = {};
      names.forEach((ns, k) => ns.forEach((n) => (weightMap[n] = stageFiles(k, S).model)));
      const totalSize = names.flat().length ? stages.reduce((t, _, k) => t + fs.statSync(file(stageFiles(k, S).model)).size, 0) : 0;
      writeFileDurable(file('model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n');
      done('model.safetensors.index.json');
    }
    if (o.tokenizerFrom && fs.existsSync(path.join(o.tokenizerFrom, 'tokenizer.json')))
      fs.copyFileSync(path.join(o.tokenizerFrom, 'tokenizer.json'), file('tokenizer.json'));
    const params = { n: stages.reduce((t, x) => t + x.n, 0), nDecay: stages.reduce((t, x) => t + x.nDecay, 0) };
    const full: CheckpointState = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, config: cfg, params, ...(S > 1 ? { stages } : {}), ...state };
    writeFileDurable(file('trainer.json'), JSON.stringify(full) + '\n');
    done('trainer.json');
    if (fs.existsSync(abs)) {
      fs.rmSync(prevOf(abs), { recursive: true, force: true });
      fs.renameSync(abs, prevOf(abs));
    }
    fs.renameSync(tmp, abs);
    fs.rmSync(prevOf(abs), { recursive: true, force: true });
  } catch (e) {
    abandonCheckpoint(s);
    throw new Error(`saving checkpoint to ${abs}: ${(e as Error).message}`);
  }
}

/** A stage's record in trainer.json. */
export function stageRecord(p: StageLayout): StageRecord {
  const { start, end, embed, head } = p.stage;
  return { start, end, embed, head, n: p.n, nDecay: p.nDecay };
}

/** Saves a whole-model run into `dir` (see the top of this file); the old checkpoint there is replaced only whole. */
/** The whole optimizer state on the host, gathered from the ranks of a ZeRO-1 run (src/train/zero.ts). */
export interface HostOptimizerState {
  master: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export function saveCheckpoint(dir: string, p: FlatParams, state: Omit<CheckpointState, 'format' | 'version' | 'config' | 'params' | 'stages'>, o: SaveOptions & { optimizer?: HostOptimizerState } = {}): void {
  if (!p.stage.embed || !p.stage.head || p.stage.start !== 0 || p.stage.end !== p.cfg.layers)
    throw new Error('saveCheckpoint: only a whole-model stage can be saved as one checkpoint');
  const s = beginCheckpoint(dir);
  let names: string[];
  try {
    names = writeStageFiles(s.tmp, p, 0, 1, state.step, o.onFileWritten, o.optimizer);
  } catch (e) {
    abandonCheckpoint(s);
    throw new Error(`saving checkpoint to ${s.dir}: ${(e as Error).message}`);
  }
  finishCheckpoint(s, p.cfg, [stageRecord(p)], [names], state, o);
}

/** Reads trainer.json of a checkpoint folder, checked for format. */
export function readCheckpointState(dir: string): CheckpointState {
  const abs = path.resolve(dir);
  recover(abs);
  const file = path.join(abs, 'trainer.json');
  let s: CheckpointState;
  try {
    s = JSON.parse(fs.readFileSync(file, 'utf8')) as CheckpointState;
  } catch (e) {
    throw new Error(`resume: ${file} cannot be read (not a parallm training checkpoint?): ${(e as Error).message}`);
  }
  if (s?.format !== CHECKPOINT_FORMAT || s.version !== CHECKPOINT_VERSION || !Number.isInteger(s.step) || !s.config || !s.loader)
    throw new Error(`resume: ${file} is not a version ${CHECKPOINT_VERSION} parallm training checkpoint`);
  return s;
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Loads master, m and v of a checkpoint into `p`, after checking that they are this model's: a whole-model
 * checkpoint into the whole model, a pipeline's into the stage with the same layers (the split must match).
 * A tensor-parallel stage takes its rank's share of the whole stage's buffers (train/tp-shards.ts), so any
 * tp resumes a checkpoint saved with any other.
 */
export function loadOptimizerState(dir: string, p: FlatParams, s: CheckpointState): void {
  const abs = path.resolve(dir);
  if (!sameJson(s.config, p.cfg))
    throw new Error(`resume: ${abs} holds a different model (config ${JSON.stringify(s.config)}) than this run's (${JSON.stringify(p.cfg)})`);
  const stages: StageRecord[] = s.stages ?? [{ start: 0, end: s.config.layers, embed: true, head: true, n: s.params?.n, nDecay: s.params?.nDecay }];
  const split = (st: { start: number; end: number }[]) => st.map((x) => `${x.start}-${x.end}`).join(', ');
  const k = stages.findIndex((x) => x.start === p.stage.start && x.end === p.stage.end && x.embed === p.stage.embed && x.head === p.stage.head);
  if (k < 0)
    throw new Error(`resume: ${abs} was saved with ${stages.length} stage(s) of layers [${split(stages)}]; this run's stage holds layers ${p.stage.start}-${p.stage.end}: resume with the same split`);
  const rec = stages[k]!;
  const tp = isSharded(p.stage.tp);
  const whole = tp ? paramLayout(p.cfg, wholeStage(p.stage)) : p.layout;
  const wholeN = whole.reduce((t, e) => t + e.numel, 0), wholeDecay = whole.filter((e) => e.decay).reduce((t, e) => t + e.numel, 0);
  if (rec.n !== wholeN || rec.nDecay !== wholeDecay)
    throw new Error(`resume: ${abs} has optimizer state of ${rec.n} parameters (${rec.nDecay} decayed), this model ${wholeN} (${wholeDecay})`);
  const file = path.join(abs, stageFiles(k, stages.length).optimizer);
  const f = SafetensorsFile.open(file);
  try {
    // a ZeRO-1 rank's buffers hold its segments only (FlatParams.segments): it reads those parts
    for (const [name, t, sharded] of [['master', p.master, p.masterSharded], ['m', p.m, true], ['v', p.v, true]] as const) {
      if (!f.has(name)) throw new Error(`resume: ${file} has no tensor "${name}"`);
      const info = f.info(name);
      if (info.dtype !== 'F32' || info.shape.length !== 1 || info.shape[0] !== wholeN)
        throw new Error(`resume: ${file} "${name}" is ${info.dtype} [${info.shape.join(', ')}], expected F32 [${wholeN}]`);
      const read = new Float32Array(f.readRaw(name).buffer);
      const all = tp ? cutShard(p.cfg, p.stage, read) : read;
      if (!sharded || t.numel === p.n) {
        t.native.writeHost(all);
        continue;
      }
      for (const g of p.segments) {
        const part = t.view(g.local, [g.hi - g.lo]);
        try {
          part.native.writeHost(all.subarray(g.lo, g.hi));
        } finally {
          part.dispose();
        }
      }
    }
    const step = f.metadata?.step;
    if (step !== undefined && Number(step) !== s.step) throw new Error(`resume: ${file} is of step ${step} but trainer.json of step ${s.step}`);
  } finally {
    f.close();
  }
  p.syncParam();
}
