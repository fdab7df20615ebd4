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
