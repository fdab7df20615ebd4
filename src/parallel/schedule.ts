// Pipeline schedules as pure functions: which task runs on which device at which tick, and what each
// task hands to which other. A schedule is data; the engine (src/engine/executor.ts) executes it.
//
// The seed's clock-cycle table (after torchgpipe's `clock_cycles`) is the simplest: micro-batch i is at
// stage j at clock i + j, so with m micro-batches and n stages the pipeline fills, runs and drains in
// m + n - 1 clocks. For m = 3, n = 3, pairs (micro-batch, stage):
//
//   clock 0: (0,0)                       stage 0 busy
//   clock 1: (1,0) (0,1)                 stages 0-1
//   clock 2: (2,0) (1,1) (0,2)           all three busy
//   clock 3:       (2,1) (1,2)           draining
//   clock 4:             (2,2)
//
// The engine runs by tick, in lock-step through the exchange: at the start of tick t every device hands
// on what its task of tick t - 1 made and takes what its peers' tasks of tick t - 1 made for it (one group
// of sends and receives), then runs its task of tick t. A task runs on a tick after every task it needs,
// so the table above is `generationSchedule(3, 3, 3)` read by tick. The generators below extend it to
// decode steps (the last stage's sampled ids fed back to the first), interleaved stages (stage s on
// device s mod D, Megatron-LM's virtual stages) and, for training, backward tasks (GPipe and 1F1B).

/** What a task does. */
export type TaskKind = 'forward' | 'backward';

/**
 * What crosses an edge: activations to the next stage, the sampled token ids from the last stage back to
 * the first (generation), activation gradients to the stage before (training), or a stage's own saved
 * activations from its forward to its backward (never leaves the device).
 */
export type EdgeKind = 'activation' | 'token-feedback' | 'gradient' | 'stash';

export interface Edge {
  kind: EdgeKind;
  /** task ids: the producer and the consumer */
  from: number;
  to: number;
}

export interface PlanTask {
  /** its index in `Schedule.tasks` */
  id: number;
  kind: TaskKind;
  /** generation: 0 = prefill, then one decode step each; training: 0 */
  step: number;
  /** micro-batch */
  mb: number;
  stage: number;
  /** the device (rank in the pipeline) that holds the stage */
  device: number;
  tick: number;
  /** what it takes, and from which tasks */
  inputs: Edge[];
  /** who takes what it makes */
  consumers: Edge[];
}

export interface Schedule {
  /** how tasks are ordered: 'generation' (fill-run-drain with decode steps), 'gpipe' or '1f1b' */
  name: string;
  micro: number;
  stages: number;
  devices: number;
  steps: number;
  ticks: number;
  tasks: PlanTask[];
}

/** Stage s of `stages` lives on device s mod `devices`: the one home of that rule. */
export const deviceOfStage = (stage: number, devices: number): number => stage % devices;

/** The stages device d holds, in stage order: d, d + devices, ... */
export function stagesOfDevice(device: number, stages: number, devices: number): number[] {
  return Array.from({ length: stages / devices }, (_, i) => device + i * devices);
}

/** The fraction of device-ticks that do work when every task takes one tick: m / (m + n - 1) for one step. */
export function idealUtilization(microBatches: number, stages: number): number {
  check(microBatches, stages, stages, 1);
  return microBatches / (microBatches + stages - 1);
}

interface Draft {
  kind: TaskKind;
  step: number;
  mb: number;
  stage: number;
  /** which tasks (draft indices) it needs, and what each gives */
  needs: { from: number; kind: EdgeKind }[];
}

/**
 * Ticks for tasks with dependencies: each tick, each device runs one task whose inputs were all made on
 * earlier ticks. `order[d]` is device d's list, most wanted first. `strict`: a device runs its list in
 * order and waits when the next one is not ready (1F1B: the order bounds the activations in flight);
 * otherwise it runs the first ready task of its list.
 */
function assignTicks(name: string, drafts: Draft[], order: number[][], dims: Omit<Schedule, 'name' | 'ticks' | 'tasks'>, strict: boolean): Schedule {
  const tickOf = new Int32Array(drafts.length).fill(-1);
  const pending = order.map((l) => [...l]);
  const doneBefore = (i: number, t: number) => tickOf[i]! >= 0 && tickOf[i]! < t;
  let left = drafts.length;
  let t = 0;
  for (; left > 0; t++) {
    if (t > 2 * drafts.length + dims.stages) throw new Error(`${name} schedule: no progress (a dependency cycle)`);
    for (const list of pending) {
      const at = strict ? (list.length && drafts[list[0]!]!.needs.every((n) => doneBefore(n.from, t)) ? 0 : -1) : list.findIndex((i) => drafts[i]!.needs.every((n) => doneBefore(n.from, t)));
      if (at < 0) continue;
      tickOf[list.splice(at, 1)[0]!] = t;
      left--;
    }
  }
  // Ids in execution order (tick, then device), so a device's column is its tasks in id order.
  const sorted = drafts.map((_, i) => i).sort((a, b) => tickOf[a]! - tickOf[b]! || deviceOfStage(drafts[a]!.stage, dims.devices) - deviceOfStage(drafts[b]!.stage, dims.devices));
  const idOf = new Int32Array(drafts.length);
  sorted.forEach((old, id) => (idOf[old] = id));
  const tasks: PlanTask[] = sorted.map((old, id) => {
    const d = drafts[old]!;
    return {
      id,
      kind: d.kind,
      step: d.step,
      mb: d.mb,
      stage: d.stage,
      device: deviceOfStage(d.stage, dims.devices),
      tick: tickOf[old]!,
      inputs: d.needs.map((n) => ({ kind: n.kind, from: idOf[n.from]!, to: id })),
      consumers: [],
    };
  });
  for (const k of tasks) for (const e of k.inputs) tasks[e.from]!.consumers.push(e);
  return { name, ...dims, ticks: t, tasks };
}

/**
 * Generation: every task of `steps` steps (prefill, then decode steps) over `micro` micro-batches and
 * `stages` stages on `devices` devices. A forward needs the same micro-batch on the stage before; the
 * first stage, at a decode step, the ids the last stage sampled for it at the step before. Each tick,
 * each device runs the ready task of its latest stage, then the earliest micro-batch: depth first, so a
 * micro-batch leaves the pipeline as soon as it can and few activations wait on a device. With
 * stages = v * devices each device holds v interleaved chunks and starts work after 1/v of a stage's time
 * instead of a whole one, which cuts the fill and drain by v. With v = 1 and one step this is the
 * clock-cycle table above.
 */
export function generationSchedule(micro: number, stages: number, devices: number, steps = 1): Schedule {
  check(micro, stages, devices, steps);
  const at = (step: number, mb: number, stage: number) => (step * micro + mb) * stages + stage;
  const drafts: Draft[] = [];
  for (let step = 0; step < steps; step++)
    for (let mb = 0; mb < micro; mb++)
      for (let stage = 0; stage < stages; stage++)
        drafts.push({
          kind: 'forward',
          step,
          mb,
          stage,
          needs:
            stage > 0
              ? [{ from: at(step, mb, stage - 1), kind: 'activation' }]
              : step > 0
                ? [{ from: at(step - 1, mb, stages - 1), kind: 'token-feedback' }]
                : [],
        });
  const order: number[][] = Array.from({ length: devices }, () => []);
  for (let stage = stages - 1; stage >= 0; stage--)
    for (let step = 0; step < steps; step++) for (let mb = 0; mb < micro; mb++) order[deviceOfStage(stage, devices)]!.push(at(step, mb, stage));
  return assignTicks('generation', drafts, order, { micro, stages, devices, steps }, false);
}

/** Training drafts: forward f(mb, s) needs f(mb, s - 1); backward b(mb, s) needs b(mb, s + 1) and f(mb, s). */
function trainingDrafts(micro: number, stages: number): { drafts: Draft[]; f: (mb: number, s: number) => number; b: (mb: number, s: number) => number } {
  const f = (mb: number, s: number) => mb * stages + s;
  const b = (mb: number, s: number) => micro * stages + mb * stages + s;
  const drafts: Draft[] = [];
  for (let mb = 0; mb < micro; mb++)
    for (let s = 0; s < stages; s++) drafts.push({ kind: 'forward', step: 0, mb, stage: s, needs: s > 0 ? [{ from: f(mb, s - 1), kind: 'activation' }] : [] });
  for (let mb = 0; mb < micro; mb++)
    for (let s = 0; s < stages; s++)
      drafts.push({
        kind: 'backward',
        step: 0,
        mb,
        stage: s,
        needs: [...(s < stages - 1 ? [{ from: b(mb, s + 1), kind: 'gradient' as const }] : []), { from: f(mb, s), kind: 'stash' as const }],
      });
  return { drafts, f, b };
}

/**
 * GPipe (training): every micro-batch's forward through the pipeline, then every backward, last stage
 * first. Each stage holds the activations of all m micro-batches until their backward.
 */
export function gpipeSchedule(micro: number, stages: number, devices = stages): Schedule {
  check(micro, stages, devices, 1);
  const { drafts, f, b } = trainingDrafts(micro, stages);
  const order: number[][] = Array.from({ length: devices }, () => []);
  for (let s = 0; s < stages; s++) for (let mb = 0; mb < micro; mb++) order[deviceOfStage(s, devices)]!.push(f(mb, s));
  for (let s = stages - 1; s >= 0; s--) for (let mb = 0; mb < micro; mb++) order[deviceOfStage(s, devices)]!.push(b(mb, s));
  return assignTicks('gpipe', drafts, order, { micro, stages, devices, steps: 1 }, false);
}

/**
 * 1F1B (training, one stage per device): stage s runs min(m, S - s) forwards to fill the pipeline, then
 * alternates one backward and one forward, then drains its backwards. A stage never holds more than
 * S - s micro-batches' activations, whatever m is (GPipe holds m).
 */
export function oneFOneBSchedule(micro: number, stages: number): Schedule {
  check(micro, stages, stages, 1);
  const { drafts, f, b } = trainingDrafts(micro, stages);
  const order = Array.from({ length: stages }, (_, s) => {
    const warm = Math.min(micro, stages - s);
    const list: number[] = [];
    for (let mb = 0; mb < warm; mb++) list.push(f(mb, s));
    for (let mb = 0; mb < micro; mb++) {
      list.push(b(mb, s));
      if (warm + mb < micro) list.push(f(warm + mb, s));
    }
    return list;
  });
  return assignTicks('1f1b', drafts, order, { micro, stages, devices: stages, steps: 1 }, true);
}

/**
 * Interleaved 1F1B (Megatron-LM's virtual stages; training): stages = v x devices, device d holding stages
 * d, d + D, ... The forwards go through a device's chunks in groups of D micro-batches (chunk 0 for
 * micro-batches 0..D-1, chunk 1 for the same ones, ..., then the next D), the backwards the same way with
 * the chunks reversed. Device d runs (D - d - 1) * 2 + (v - 1) * D forwards to fill the pipeline, then one
 * forward and one backward in turn, then drains its backwards: the fill and drain shrink by v against
 * plain 1F1B, and a device holds at most that many micro-batches' activations (GPipe: m x v). Needs m to
 * be a multiple of the devices, as Megatron-LM does.
 */
export function interleavedOneFOneBSchedule(micro: number, stages: number, devices: number): Schedule {
  check(micro, stages, devices, 1);
  const D = devices, v = stages / devices;
  if (v === 1) return oneFOneBSchedule(micro, stages);
  if (micro % D) throw new Error(`interleaved 1f1b: ${micro} micro-batches must be a multiple of the ${D} devices`);
  const { drafts, f, b } = trainingDrafts(micro, stages);
  const total = micro * v;
  const mbOf = (k: number) => Math.floor(k / (D * v)) * D + (k % D);
  const order = Array.from({ length: D }, (_, d) => {
    const fwd = (k: number) => f(mbOf(k), (Math.floor(k / D) % v) * D + d);
    const bwd = (k: number) => b(mbOf(k), (v - 1 - (Math.floor(k / D) % v)) * D + d);
    const warm = Math.min(total, (D - d - 1) * 2 + (v - 1) * D);
    const list: number[] = [];
    for (let k = 0; k < warm; k++) list.push(fwd(k));
    for (let i = 0; i < total - warm; i++) list.push(fwd(warm + i), bwd(i));
    for (let i = total - warm; i < total; i++) list.push(bwd(i));
    return list;
  });
  return assignTicks('interleaved-1f1b', drafts, order, { micro, stages, devices, steps: 1 }, true);
}

/** The schedule as the seed prints it: per tick, the (micro-batch, stage) pairs in stage order. */
export function clockTable(s: Schedule): string {
  const rows: string[] = [];
  for (let t = 0; t < s.ticks; t++) {
    const ks = s.tasks.filter((k) => k.tick === t).sort((a, b) => a.stage - b.stage);
    rows.push(`clock ${t}: ${ks.map((k) => `${k.kind === 'backward' ? 'B' : ''}(${s.steps > 1 ? `${k.step}:` : ''}${k.mb},${k.stage})`).join(' ')}`);
  }
  return rows.join('\n');
}

/**
 * Check a schedule as data: every input made on an earlier tick by the task it names, on the device of the
 * stage that needs it (or handed across); every output consumed unless it is an end of the run; no device
 * running two tasks in a tick; every stage on its device. Returns the problems found (none: []).
 */
export function scheduleProblems(s: Schedule): string[] {
  const out: string[] = [];
  const busy = new Set<string>();
  s.tasks.forEach((k, i) => {
    const name = `${k.kind}(step ${k.step}, mb ${k.mb}, stage ${k.stage})`;
    if (k.id !== i) out.push(`${name}: id ${k.id} at index ${i}`);
    if (k.device !== deviceOfStage(k.stage, s.devices)) out.push(`${name}: on device ${k.device}, its stage lives on ${deviceOfStage(k.stage, s.devices)}`);
    const slot = `${k.device}@${k.tick}`;
    if (busy.has(slot)) out.push(`${name}: device ${k.device} runs two tasks at tick ${k.tick}`);
    busy.add(slot);
    for (const e of k.inputs) {
      const p = s.tasks[e.from];
      if (!p || e.to !== k.id) out.push(`${name}: input edge ${e.from} -> ${e.to} is broken`);
      else if (p.tick >= k.tick) out.push(`${name}: input from tick ${p.tick}, not before its tick ${k.tick}`);
      else if (!p.consumers.includes(e)) out.push(`${name}: its producer does not list it as a consumer`);
      else if (e.kind === 'stash' && p.device !== k.device) out.push(`${name}: a stash crosses devices`);
    }
    const end = k.kind === 'backward' ? k.stage === 0 : s.name === 'generation' ? k.stage === s.stages - 1 && k.step === s.steps - 1 : false;
    if (!k.consumers.length && !end) out.push(`${name}: its output is never consumed`);
  });
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

function check(m: number, n: number, devices: number, steps: number): void {
  if (!Number.isInteger(m) || m < 1) throw new Error(`micro-batches must be a positive integer, got ${m}`);
  if (!Number.isInteger(n) || n < 1) throw new Error(`stages must be a positive integer, got ${n}`);
  if (!Number.isInteger(devices) || devices < 1) throw new Error(`devices must be a positive integer, got ${devices}`);
  if (n % devices) throw new Error(`${n} stages on ${devices} devices: each device must hold the same number of stages`);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be a positive integer, got ${steps}`);
}
