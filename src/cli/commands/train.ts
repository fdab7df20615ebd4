// `parallm train`: train a preset from scratch or fine-tune a folder on one device, data-parallel over
// several (--strategy dp --devices ..., src/train/data-parallel.ts), or with the layers split over them
// (--strategy mp|pp, with --dp for dp x pp and --tp for each stage split over tp devices; --strategy tp,
// one stage split over all of them: src/train/pipeline-parallel.ts), with progress per step (a
// `\r`-updated line on a terminal, plain lines otherwise, or JSON lines), validation and checkpoints.
import type { Command } from 'commander';
import { LoadProgressBar } from '../progress.js';
import { checkDType } from '../../dtype.js';
import { optionalNum as num, positiveInt } from '../args.js';
import { bytes } from '../format.js';
import { defaultDevice, parseDevice } from '../../device.js';
import { launchEnv } from '../../cluster/env.js';
import { DataParallelTrainer } from '../../train/data-parallel.js';
import { PipelineTrainer } from '../../train/pipeline-parallel.js';
import { Trainer, type EpochEvent, type EvalEvent, type StepEvent, type TrainResult } from '../../train/trainer.js';

interface TrainCliOpts {
  model?: string;
  data: string;
  brownFiles?: string;
  dataCache?: string;
  device?: string;
  strategy: string;
  devices?: string;
  dataOrder: string;
  bucketMb: string;
  zero: string;
  dp?: string;
  tp?: string;
  microBatches?: string;
  schedule?: string;
  chunks?: string;
  deferDw?: boolean | string;
  dtype?: string;
  batch: string;
  seq: string;
  steps?: string;
  epochs?: string;
  lr: string;
  warmup: string;
  gradAccum: string;
  evalEvery: string;
  evalBatches?: string;
  weightDecay: string;
  clip: string;
  seed: string;
  save?: string;
  saveEvery: string;
  resume?: string;
  json?: boolean;
}

const clock = (ms: number): string => {
  const s = Math.max(0, Math.round(ms / 1e3));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(s % 60).padStart(2, '0')}s`;
};

export function register(program: Command): void {
  program
    .command('train')
    .description('train a model on one device or several (from a preset\'s random init, or fine-tune a folder), with validation and checkpoints')
    .option('--model <name>', 'a preset (tiny-gpt2, gpt2, ...) to train from scratch, or a Hugging Face folder to fine-tune (optional with --resume)')
    .requiredOption('--data <source>', '"brown", a UTF-8 text file, a folder of .txt/.md files, or a prepared dataset folder')
    .option('--brown-files <ids>', 'with --data brown: only these files, comma-separated (ca01,ca02,...)')
    .option('--data-cache <folder>', 'where the tokenized data is cached (default: under the temp folder)')
    .option('--device <id>', 'cpu:N or cuda:N (default: cuda:0, else cpu:0)')
    .option('--strategy <s>', 'single (one device); dp (a replica per device of --devices, gradients averaged every step); mp or pp (the layers split over --devices, a batch cut into --micro-batches that flow through the stages; mp is pp with one); tp (every layer split over --devices: heads and MLP features)', 'single')
    .option('--devices <ids>', 'with --strategy dp, mp or pp: the devices, comma-separated (cpu:0,cpu:1 or cuda:0,cuda:1)')
    .option('--dp <n>', 'with --strategy pp, mp or tp: n data-parallel pipelines over the devices (dp x pp x tp), each on its share of the data', '1')
    .option('--tp <n>', 'with --strategy pp or mp: each stage split over n devices (tensor parallel: heads and MLP features; dp x pp x tp devices in all)', '1')
    .option('--micro-batches <n>', 'with --strategy pp: micro-batches per batch (default: one per stage)')
    .option('--schedule <s>', 'with --strategy pp: gpipe (all forwards, then all backwards) or 1f1b (activation memory bounded by the stages; the default)')
    .option('--chunks <n>', 'with --strategy pp: stages per device, interleaved (1f1b then needs micro-batches in multiples of the devices)', '1')
    .option('--defer-dw [n]', 'with --strategy pp: each stage adds its weight gradients after its last backward of a micro-step, in one matmul per layer over all the micro-batches (fewer, larger matmuls; every micro-batch\'s linear inputs and output gradients held until then: the bytes are in the summary); n: also after every n micro-batches, holding at most n')
    .option('--data-order <o>', 'with --strategy dp: sharded (each device its shard of every epoch) or global (the batches of one device with n x --batch)', 'sharded')
    .option('--zero <n>', 'with --strategy dp: 1 shards the optimizer state (f32 master, AdamW moments) over the devices (ZeRO-1); 0 keeps it whole on each', '0')
    .option('--bucket-mb <x>', 'with --strategy dp: all-reduce the gradient in buckets of x MiB during the backward (0: once after it)', '0')
    .option('--dtype <dtype>', 'compute dtype: f32, bf16 or f16; master weights and moments stay f32 (default: bf16 on a GPU, f32 on the CPU)')
    .option('--batch <n>', 'sequences per micro-step, on each device (dp: the global batch is n devices x this)', '8')
    .option('--seq <n>', 'tokens per sequence', '64')
    .option('--steps <n>', 'optimizer steps')
    .option('--epochs <n>', 'passes over the training data (instead of --steps)')
    .option('--lr <x>', 'peak learning rate', '3e-4')
    .option('--warmup <n>', 'warmup steps (then cosine decay to a tenth)', '0')
    .option('--grad-accum <n>', 'micro-steps per optimizer step', '1')
    .option('--eval-every <n>', 'validate every n steps (0: at the end of each epoch and of the run)', '0')
    .option('--eval-batches <n>', 'validate on at most n batches (default: all)')
    .option('--weight-decay <x>', 'AdamW decoupled weight decay (matrices and embeddings only)', '0.1')
    .option('--clip <x>', 'clip the gradient\'s global norm (0: off)', '1')
    .option('--seed <n>', 'seed of a preset\'s random init', '0')
    .option('--save <folder>', 'checkpoint folder (a Hugging Face folder plus the optimizer state)')
    .option('--save-every <n>', 'also checkpoint every n steps (0: only at the end)', '0')
    .option('--resume <folder>', 'continue the run saved in this checkpoint folder')
    .option('--json', 'one JSON line per step, evaluation and epoch on stdout')
    .action(async (o: TrainCliOpts) => {
      if ((o.steps === undefined) === (o.epochs === undefined)) throw new Error('give exactly one of --steps and --epochs');
      if (!o.model && !o.resume) throw new Error('give --model (a preset or a folder), or --resume a checkpoint');
      const tty = !o.json && process.stderr.isTTY === true;
      const out = (obj: object) => process.stdout.write(JSON.stringify(obj) + '\n');
      let lineOpen = false;
      const endLine = () => {
        if (lineOpen) process.stderr.write('\n');
        lineOpen = false;
      };
      if (!['single', 'dp', 'mp', 'pp', 'tp'].includes(o.strategy)) throw new Error(`--strategy must be single, dp, mp, pp or tp, got "${o.strategy}"`);
      const dp = o.strategy === 'dp';
      // tp: one stage split over the devices (a pipeline of one stage, each device a tp rank of it)
      const pipeline = o.strategy === 'mp' || o.strategy === 'pp' || o.strategy === 'tp';
      const many = dp || pipeline;
      if (many && !o.devices) throw new Error(`--strategy ${o.strategy} needs --devices, e.g. cpu:0,cpu:1`);
      if (many && o.device) throw new Error(`--strategy ${o.strategy} takes --devices, not --device`);
      if (!many && o.devices) throw new Error('--devices is for --strategy dp, mp, pp or tp; one device is --device');
      if (!pipeline && (o.microBatches !== undefined || o.schedule !== undefined || o.chunks !== '1' || o.dp !== '1' || o.tp !== '1'))
        throw new Error('--micro-batches, --schedule, --chunks, --dp and --tp are for --strategy pp (or mp)');
      if (!pipeline && o.deferDw) throw new Error('--defer-dw is for --strategy pp (or mp)');
      if (o.strategy === 'tp' && (o.microBatches !== undefined || o.schedule !== undefined || o.chunks !== '1' || o.tp !== '1'))
        throw new Error('--strategy tp splits one stage over all the --devices (over each --dp share of them): --micro-batches, --schedule, --chunks and --tp are for --strategy pp');
      if (o.strategy === 'mp' && o.microBatches !== undefined && o.microBatches !== '1') throw new Error('--strategy mp runs one micro-batch; for more, use --strategy pp');
      if (o.schedule !== undefined && o.schedule !== 'gpipe' && o.schedule !== '1f1b') throw new Error(`--schedule must be gpipe or 1f1b, got "${o.schedule}"`);
      if (o.zero !== '0' && o.zero !== '1') throw new Error(`--zero must be 0 or 1, got "${o.zero}"`);
      if (!dp && o.zero !== '0') throw new Error('--zero is for --strategy dp');
      // Launched as several processes, a single-device (or one-process pipeline) run would train N unrelated models.
      const launched = launchEnv();
      // (pp, mp and tp meshes span the processes: cluster/mesh-groups.ts; tp's width is every process's devices / dp)
      if (o.strategy === 'single' && launched && launched.world > 1)
        throw new Error(`launched as process ${launched.rank} of ${launched.world} (${launched.launcher}'s variables): only --strategy dp, pp, mp or tp train across processes`);
      if (o.dataOrder !== 'sharded' && o.dataOrder !== 'global') throw new Error(`--data-order must be sharded or global, got "${o.dataOrder}"`);
      const devices = many ? o.devices!.split(',').map((s) => s.trim()).filter(Boolean) : [];
      const device = many ? devices[0]! : parseDevice(o.device ?? defaultDevice());
      const common = {
        model: o.model,
        data: o.data,
        brownFiles: o.brownFiles?.split(',').map((s) => s.trim()).filter(Boolean),
        dataCache: o.dataCache,
        dtype: checkDType(o.dtype ?? (device.startsWith('cuda') ? 'bf16' : 'f32')),
        batch: num('--batch', o.batch, true)!,
        seq: num('--seq', o.seq, true)!,
        steps: num('--steps', o.steps, true),
        epochs: num('--epochs', o.epochs, true),
        lr: num('--lr', o.lr),
        warmup: num('--warmup', o.warmup, true),
        gradAccum: num('--grad-accum', o.gradAccum, true),
        evalEvery: num('--eval-every', o.evalEvery, true),
        evalBatches: num('--eval-batches', o.evalBatches, true),
        weightDecay: num('--weight-decay', o.weightDecay),
        clip: num('--clip', o.clip),
        seed: num('--seed', o.seed, true),
        save: o.save,
        saveEvery: num('--save-every', o.saveEvery, true),
        resume: o.resume,
        loadProgress: new LoadProgressBar(`loading ${o.model ?? o.resume}`, { quiet: o.json }),
        onStep: (e: StepEvent) => {
          if (o.json) return out({ type: 'step', ...e });
          const line =
            `step ${e.step}/${e.totalSteps}  loss ${e.loss.toFixed(4)}  lr ${e.lr.toExponential(2)}  ` +
            `${Math.round(e.tokensPerSec)} tok/s  ${e.stepMs.toFixed(0)} ms/step  ETA ${clock(e.etaMs)}`;
          if (tty) {
            process.stderr.write(`\r${line}\x1b[K`);
            lineOpen = true;
          } else console.error(line);
        },
        onEval: (e: EvalEvent) => {
          if (o.json) return out({ type: 'eval', ...e });
          endLine();
          console.error(`step ${e.step}: validation loss ${e.valLoss.toFixed(4)}`);
        },
        onEpoch: (e: EpochEvent) => {
          if (o.json) return out({ type: 'epoch', ...e });
          endLine();
          console.error(`epoch ${e.epoch + 1} done at step ${e.step} in ${e.seconds.toFixed(1)} s, ${Math.round(e.tokensPerSec)} tok/s, validation loss ${e.valLoss.toFixed(4)}`);
        },
        onSave: (dir: string, step: number) => {
          if (o.json) return out({ type: 'save', dir, step });
          endLine();
          console.error(`step ${step}: checkpoint saved to ${dir}`);
        },
      };
      const header = (name: string, family: string, n: number, where: string, dtype: string, t: { totalSteps: number; stepsPerEpoch: number; step: number; gradAccum: number; replicas?: number }) => {
        if (!o.json)
          console.error(
            `training ${name} (${family}, ${n} parameters) on ${where}, ${dtype}: ` +
              `${t.totalSteps} steps of ${common.batch} x ${common.seq} x ${t.gradAccum} tokens${dp ? ` on each of ${devices.length} devices` : ''}${pipeline && (t.replicas ?? 1) > 1 ? ` on each of ${t.replicas} pipelines` : ''}, ${t.stepsPerEpoch} steps an epoch` +
              (t.step ? `, resuming at step ${t.step}` : ''),
          );
      };
      let r: TrainResult;
      let held: number[] | null = null; // --defer-dw: per device, the most bytes held for deferred weight gradients
      if (pipeline) {
        const dpN = num('--dp', o.dp, true) ?? 1;
        const t = await PipelineTrainer.create({
          ...common, devices, dp: dpN, dataOrder: o.dataOrder as 'sharded' | 'global',
          // tp: one stage, its width the devices (of every process) left over by dp
          ...(o.strategy === 'tp' ? { pp: 1 } : { tp: num('--tp', o.tp, true) }),
          microBatches: o.strategy === 'mp' ? 1 : num('--micro-batches', o.microBatches, true),
          schedule: o.schedule as 'gpipe' | '1f1b' | undefined, chunks: num('--chunks', o.chunks, true),
          ...(o.deferDw ? { deferWeightGrads: o.deferDw === true ? true : positiveInt('--defer-dw', o.deferDw) } : {}),
        });
        try {
          const split = t.stages.map((s) => `${s.start}-${s.end - 1}@${s.device}`).join(' ');
          const { dp: nDp, pp: nPp, tp: nTp } = t.mesh.shape;
          const perPipeline = nTp > 1 ? `${nPp} stage${nPp > 1 ? 's' : ''} x ${nTp} tp devices` : `${nPp} devices`;
          const shape = nDp > 1 ? `${nDp} pipelines x ${perPipeline}` : perPipeline;
          const across = t.dist ? `; process ${t.dist.process} of ${t.dist.processes}, global ranks ${t.dist.rankOffset}..${t.dist.rankOffset + t.devices.length - 1} of ${t.dist.world}` : '';
          header(t.infos[0]!.name, t.infos[0]!.family, t.parameterCount, `${shape} (${o.strategy}, layers ${split}, ${t.microBatches} micro-batch${t.microBatches > 1 ? 'es' : ''}, ${t.schedule}${o.deferDw ? `, deferred weight gradients${o.deferDw === true ? '' : ` (every ${o.deferDw} micro-batches)`}` : ''}${across})`, t.infos[0]!.dtype, { totalSteps: t.totalSteps, stepsPerEpoch: t.stepsPerEpoch, step: t.step, gradAccum: t.gradAccum, replicas: t.mesh.shape.dp });
          r = await t.run();
          held = t.heldBytes;
        } finally {
          endLine();
          await t.close();
        }
      } else if (dp) {
        const t = await DataParallelTrainer.create({ ...common, devices, dataOrder: o.dataOrder as 'sharded' | 'global', bucketMiB: num('--bucket-mb', o.bucketMb), zero: o.zero === '1' ? 1 : 0 });
        try {
          header(t.info.name, t.info.family, t.info.n, `${t.devices.join(',')} (data parallel, ${o.dataOrder} data order${t.zero ? ', ZeRO-1' : ''}${t.dist ? `; process ${t.dist.process} of ${t.dist.processes}, global ranks ${t.dist.rankOffset}..${t.dist.rankOffset + t.devices.length - 1} of ${t.dist.world}` : ''})`, t.info.dtype, t);
          r = await t.run();
        } finally {
          endLine();
          await t.close();
        }
      } else {
        const t = await Trainer.create({ ...common, device });
        try {
          header(t.source.name, t.cfg.family, t.params.n, t.params.device, t.params.dtype, t);
          r = await t.run();
        } finally {
          endLine();
          t.dispose();
        }
      }
      endLine();
      if (o.json) out({ type: 'done', steps: r.steps, loss: r.losses[r.losses.length - 1], tokensPerSec: r.tokensPerSec, checkpoint: r.checkpoint, ...(held ? { deferredBytes: held } : {}) });
      else
        console.error(
          `done: ${r.steps} steps, ${Math.round(r.tokensPerSec)} tok/s` + (r.checkpoint ? `, checkpoint ${r.checkpoint}` : '') +
            (held ? `; held for deferred weight gradients at most ${held.map((b) => bytes(b)).join(' / ')} per device` : ''),
        );
    });
}
