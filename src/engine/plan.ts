// A pipeline plan, computed once on the main thread, then executed by the workers: the stages (layer
// ranges, device, chunk) and the schedule's tasks (kind, micro-batch, inputs and consumers as explicit
// edges). Each worker receives its column (engine/executor.ts `columnOf`) and runs it.
import type { ModelConfig } from '../io/config.js';
import { Mesh } from '../parallel/mesh.js';
import type { PlacedStage, Strategy } from '../parallel/placement.js';
import { deviceOfStage, generationSchedule, gpipeSchedule, interleavedOneFOneBSchedule, splitSizes, type Schedule } from '../parallel/schedule.js';
import { columnOf, type Column } from './executor.js';

export interface PlanStage extends PlacedStage {
  /** its place in the pipeline */
  index: number;
  /** the pipeline rank (device index in the pp group) that holds it: index mod pipeline devices */
  rank: number;
  /** which of that device's stages it is: index div pipeline devices (interleaved stages) */
  chunk: number;
}

export interface PipelinePlan {
  mesh: Mesh;
  /** the pipeline's devices, by rank */
  devices: string[];
  stages: PlanStage[];
  /** micro-batch sizes */
  micro: number[];
  schedule: Schedule;
}

/** The strategies as mesh shapes: single (1, 1, 1), dp (n, 1, 1), mp and pp (1, n, 1), tp (1, 1, n). */
export function strategyMesh(strategy: Strategy, devices: number): Mesh {
  if (strategy === 'tp') return new Mesh({ tp: devices });
  return strategy === 'dp' || strategy === 'single' ? new Mesh({ dp: devices }) : new Mesh({ pp: devices });
}

/**
 * Number the placed stages of a pipeline: stage i lives on rank i mod D (its device is the rank's), so the
 * ranks are the devices of the first D stages, in stage order (an explicit map may reorder the devices).
 */
export function numberStages(placed: PlacedStage[], chunks: number): PlanStage[] {
  if (placed.length % chunks) throw new Error(`${placed.length} stages do not split into ${chunks} per device`);
  const D = placed.length / chunks;
  return placed.map((s, index) => {
    const rank = deviceOfStage(index, D);
    if (s.device !== placed[rank]!.device) throw new Error(`stage ${index} is on ${s.device}, but stage ${index} lives on rank ${rank} (${placed[rank]!.device})`);
    return { ...s, index, rank, chunk: Math.floor(index / D) };
  });
}

/**
 * The micro-batch count of a pipeline run: the one given, or by default one per stage (as many as the
 * batch allows: MP is one micro-batch). A count above the batch is an error, not a clamp.
 */
export function microBatchCount(batch: number, stages: number, given?: number): number {
  if (given === undefined) return Math.min(batch, stages);
  if (!Number.isInteger(given) || given < 1) throw new Error(`micro-batches must be a positive integer, got ${given}`);
  if (given > batch) throw new Error(`${given} micro-batches for a batch of ${batch}: at most one micro-batch per sequence`);
  return given;
}

/** The plan of a generation run: `batch` sequences in `micro` micro-batches, prefill and `steps - 1` decode steps. */
export function generationPlan(cfg: ModelConfig, stages: PlanStage[], batch: number, microBatches: number, steps: number): PipelinePlan {
  if (!stages.length) throw new Error('a pipeline plan needs at least one stage');
  const D = Math.max(...stages.map((s) => s.rank)) + 1;
  const covered = stages.reduce((n, s) => n + s.end - s.start, 0);
  if (covered !== cfg.layers) throw new Error(`the stages hold ${covered} layers, the model has ${cfg.layers}`);
  return {
    mesh: new Mesh({ pp: D }),
    devices: stages.slice(0, D).map((s) => s.device),
    stages,
    micro: splitSizes(batch, microBatches),
    schedule: generationSchedule(microBatches, stages.length, D, steps),
  };
}

/** How a training step orders its forward and backward tasks (parallel/schedule.ts). */
export type TrainingScheduleName = 'gpipe' | '1f1b';
export const TRAINING_SCHEDULES: readonly TrainingScheduleName[] = ['gpipe', '1f1b'];

function pipelineDevices(cfg: ModelConfig, stages: PlanStage[]): number {
  if (!stages.length) throw new Error('a pipeline plan needs at least one stage');
  const covered = stages.reduce((n, s) => n + s.end - s.start, 0);
  if (covered !== cfg.layers) throw new Error(`the stages hold ${covered} layers, the model has ${cfg.layers}`);
  return Math.max(...stages.map((s) => s.rank)) + 1;
}

/**
 * The plan of one training micro-step: `batch` sequences in `microBatches` micro-batches, each forward
 * through every stage and backward again, ordered by GPipe or 1F1B (interleaved when a device holds
 * several stages; then the micro-batches must be a multiple of the devices).
 */
export function trainingPlan(cfg: ModelConfig, stages: PlanStage[], batch: number, microBatches: number, schedule: TrainingScheduleName): PipelinePlan {
  const D = pipelineDevices(cfg, stages);
  if (!TRAINING_SCHEDULES.includes(schedule)) throw new Error(`schedule must be ${TRAINING_SCHEDULES.join(' or ')}, got ${String(schedule)}`);
  return {
    mesh: new Mesh({ pp: D }),
    devices: stages.slice(0, D).map((s) => s.device),
    stages,
    micro: splitSizes(batch, microBatches),
    schedule: schedule === 'gpipe' ? gpipeSchedule(microBatches, stages.length, D) : interleavedOneFOneBSchedule(microBatches, stages.length, D),
  };
}

/** The plan of an evaluation batch: one micro-batch forward through the stages (no backward). */
export function evaluationPlan(cfg: ModelConfig, stages: PlanStage[], batch: number): PipelinePlan {
  const D = pipelineDevices(cfg, stages);
  return { mesh: new Mesh({ pp: D }), devices: stages.slice(0, D).map((s) => s.device), stages, micro: [batch], schedule: generationSchedule(1, stages.length, D, 1) };
}

/** Every rank's column of the plan (what each worker is sent). */
export function planColumns(plan: PipelinePlan): Column[] {
  return plan.devices.map((_, rank) => columnOf(plan.schedule, rank));
}
