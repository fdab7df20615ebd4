// The pipeline's clock-cycle schedule, as a pure function (after torchgpipe's `clock_cycles`, and the
// seed's explanation): micro-batch i is at stage j at clock i + j. With m micro-batches and n stages
// there are m + n - 1 clocks: the pipeline fills, runs, and drains. For m = 3, n = 3:
//
//   clock 0: (0,0)                       stage 0 busy
//   clock 1: (1,0) (0,1)                 stages 0-1
//   clock 2: (2,0) (1,1) (0,2)           all three busy
//   clock 3:       (2,1) (1,2)           draining
//   clock 4:             (2,2)
// (pairs are (micro-batch, stage))
//
// Each stage's own work list is the column of that table: micro-batches 0..m-1 in order. Stages run
// their lists independently and meet only through send/recv of activations, so a fast stage runs ahead
// and no central lock-step is needed; the table is what they do when every task takes one clock.

/** [micro-batch, stage] pairs active at each clock. */
export function clockCycles(microBatches: number, stages: number): [number, number][][] {
  check(microBatches, stages);
  const clocks: [number, number][][] = [];
  for (let k = 0; k < microBatches + stages - 1; k++) {
    const tasks: [number, number][] = [];
    // In stage order, as the seed lists them: (1,0) before (0,1).
    for (let i = Math.min(k, microBatches - 1); i >= Math.max(0, k - stages + 1); i--) tasks.push([i, k - i]);
    clocks.push(tasks);
  }
  return clocks;
}

/** What stage `stage` does, in order: the micro-batches it processes. */
export function stageTasks(microBatches: number, stages: number, stage: number): number[] {
  check(microBatches, stages);
  if (!Number.isInteger(stage) || stage < 0 || stage >= stages) throw new Error(`stage ${stage} is not in [0, ${stages})`);
  return clockCycles(microBatches, stages).flatMap((tasks) => tasks.filter(([, j]) => j === stage).map(([i]) => i));
}

/** The fraction of stage-clocks that do work when every task takes one clock: m / (m + n - 1). */
export function idealUtilization(microBatches: number, stages: number): number {
  check(microBatches, stages);
  return microBatches / (microBatches + stages - 1);
}

/** One task of a pipeline run: micro-batch `mb` at decode step `step` (0 = prefill) on stage `stage`. */
export interface PipelineTask {
  step: number;
  mb: number;
  stage: number;
  /** the device that holds the stage: stage mod devices */
  device: number;
  /** when it runs: a device runs one task a tick, after every task it needs has run on an earlier tick */
  tick: number;
}

/**
 * The whole run as ticks: every task of `steps` steps (prefill, then decode steps) over `micro`
 * micro-batches and `stages` stages on `devices` devices. Stage s lives on device s mod devices, so with
 * stages = v * devices each device holds v chunks of layers (interleaved, as Megatron-LM's virtual
 * stages): a device then starts work after 1/v of a stage's time instead of a whole one, which cuts the
 * fill and drain (the bubble) by v. With v = 1 and one step this is the clock-cycle table above.
 *
 * A task needs the same micro-batch on the stage before (the first stage, at a decode step, the ids the
 * last stage sampled for it at the step before). Each tick, each device runs the ready task of its latest
 * stage, then the earliest micro-batch: depth first, so a micro-batch leaves the pipeline as soon as it
 * can and few activations wait on a device. Every worker computes the same table; a task's output goes
 * from its device to the next task's device at the start of the tick after it runs.
 */
export function pipelineSchedule(micro: number, stages: number, devices: number, steps = 1): PipelineTask[] {
  check(micro, stages);
  if (!Number.isInteger(devices) || devices < 1) throw new Error(`devices must be a positive integer, got ${devices}`);
  if (stages % devices) throw new Error(`${stages} stages on ${devices} devices: each device must hold the same number of stages`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be a positive integer, got ${steps}`);
  const at = (step: number, mb: number, stage: number) => (step * micro + mb) * stages + stage;
  const tickOf = new Int32Array(steps * micro * stages).fill(-1);
  // Each device's tasks, most wanted first: latest stage, then earliest (step, micro-batch).
  const pending: PipelineTask[][] = Array.from({ length: devices }, () => []);
  for (let stage = stages - 1; stage >= 0; stage--)
    for (let step = 0; step < steps; step++)
      for (let mb = 0; mb < micro; mb++) pending[stage % devices]!.push({ step, mb, stage, device: stage % devices, tick: -1 });
  const doneBefore = (i: number, t: number) => tickOf[i]! >= 0 && tickOf[i]! < t;
  const ready = (k: PipelineTask, t: number) =>
    k.stage > 0 ? doneBefore(at(k.step, k.mb, k.stage - 1), t) : k.step === 0 || doneBefore(at(k.step - 1, k.mb, stages - 1), t);
  const out: PipelineTask[] = [];
  for (let t = 0, left = tickOf.length; left > 0; t++) {
    if (t > 2 * tickOf.length + stages) throw new Error('pipelineSchedule: no progress (a dependency cycle)');
    for (const list of pending) {
      const i = list.findIndex((k) => ready(k, t));
      if (i < 0) continue;
      const k = list.splice(i, 1)[0]!;
      k.tick = t;
      out.push(k);
    }
    for (const k of out) if (k.tick === t) (tickOf[at(k.step, k.mb, k.stage)] = t), left--;
  }
  return out;
}

/** Split `batch` items into `parts` micro-batches as evenly as possible (the first ones get the extra): sizes. */
export function splitSizes(batch: number, parts: number): number[] {
  if (!Number.isInteger(batch) || batch < 1) throw new Error(`batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(parts) || parts < 1) throw new Error(`micro-batches must be a positive integer, got ${parts}`);
  if (parts > batch) throw new Error(`${parts} micro-batches for a batch of ${batch}: at most one micro-batch per sequence`);
  const base = Math.floor(batch / parts);
  return Array.from({ length: parts }, (_, i) => base + (i < batch % parts ? 1 : 0));
}

function check(m: number, n: number): void {
  if (!Number.isInteger(m) || m < 1) throw new Error(`micro-batches must be a positive integer, got ${m}`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`stages must be a positive integer, got ${n}`);
}
