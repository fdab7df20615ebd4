// A device's part of a pipeline run: its column of the plan, executed tick by tick. At the start of each
// tick the device hands on what its task of the tick before made (to the devices of the tasks that take
// it) and takes what its peers' tasks of the tick before made for it, all in one group of sends and
// receives (so no send waits on a receive that was never posted); then it runs its task of the tick on
// the StageRunner of the task's stage. Which task takes which output is in the plan's edges, not here.
import { DeviceEvent } from '../runtime.js';
import { synchronize } from '../device.js';
import type { Communicator } from '../parallel/comm.js';
import type { EdgeKind, Schedule, TaskKind } from '../parallel/schedule.js';
import { Tensor } from '../tensor.js';
import { trace } from './trace.js';
import type { StageRunner } from './stage-runner.js';

/** Where a task of the column finds, or sends, a tensor: a task of the run. */
export interface TaskAddress {
  step: number;
  mb: number;
  stage: number;
}

export interface ColumnTask extends TaskAddress {
  kind: TaskKind;
  tick: number;
  /** the tasks that take its output, and on which device they run (sent at the start of tick + 1) */
  outputs: (TaskAddress & { kind: EdgeKind; device: number })[];
}

/** One device's share of a schedule: its tasks in tick order, and what it receives at each tick. */
export interface Column {
  device: number;
  ticks: number;
  tasks: ColumnTask[];
  /** at the start of `tick`, from device `from`, the input of this device's task `to` */
  receives: { tick: number; from: number; kind: EdgeKind; to: TaskAddress }[];
}

/** Device `device`'s column of a schedule (what the main thread sends to that device's worker). */
export function columnOf(s: Schedule, device: number): Column {
  const at = (id: number): TaskAddress => {
    const k = s.tasks[id]!;
    return { step: k.step, mb: k.mb, stage: k.stage };
  };
  const tasks: ColumnTask[] = [];
  const receives: Column['receives'] = [];
  for (const k of s.tasks) {
    if (k.device === device)
      tasks.push({
        kind: k.kind,
        step: k.step,
        mb: k.mb,
        stage: k.stage,
        tick: k.tick,
        outputs: k.consumers.filter((e) => e.kind !== 'stash').map((e) => ({ ...at(e.to), kind: e.kind, device: s.tasks[e.to]!.device })),
      });
    for (const e of k.inputs) {
      const p = s.tasks[e.from]!;
      if (k.device === device && p.device !== device && e.kind !== 'stash') receives.push({ tick: p.tick + 1, from: p.device, kind: e.kind, to: at(k.id) });
    }
  }
  return { device, ticks: s.ticks, tasks, receives };
}

/** One task's device time (ms since the epoch, on the host clock) and host enqueue time. */
export interface TaskTime {
  /** the device's rank (a timeline's row) */
  stage: number;
  /** the pipeline stage it ran, when a device holds several (interleaved) */
  vstage?: number;
  mb: number;
  step: number;
  t0: number;
  t1: number;
  /** host clock when the device began and finished enqueuing the task (how far the host runs ahead) */
  h0?: number;
  h1?: number;
}

export interface GenerationColumnResult {
  /** the last stage's sampled tokens, per sequence of the batch (empty on other devices) */
  tokens: number[][];
  tasks: TaskTime[];
}

const now = () => performance.timeOrigin + performance.now();

/**
 * Run a generation column: `runners` by stage index (the stages this device holds), `comm` the
 * pipeline's communicator (null with one device). `starts`: first sequence of each micro-batch.
 */
export function runGenerationColumn(
  col: Column,
  runners: Map<number, StageRunner>,
  comm: Communicator | null,
  o: {
    device: string;
    batch: number;
    starts: number[];
    micro: number[];
    timeline?: boolean;
    interleaved: boolean;
    /** called at every tick: throws to stop the run (close, terminate) */
    checkStop?: () => void;
    /** fault injection for tests: throw at the start of this tick */
    fault?: { tick: number };
  },
): GenerationColumnResult {
  const { device } = o;
  const runnerOf = (stage: number) => {
    const r = runners.get(stage);
    if (!r) throw new Error(`device ${col.device} has no stage ${stage}`);
    return r;
  };
  const byTick = new Map(col.tasks.map((k) => [k.tick, k]));
  const recvAt = new Map<number, Column['receives']>();
  for (const r of col.receives) (recvAt.get(r.tick) ?? recvAt.set(r.tick, []).get(r.tick)!).push(r);
  // Prefill activations that arrived ahead of their task, by stage and micro-batch.
  const inbox = new Map<string, Tensor>();
  const key = (a: TaskAddress) => `${a.stage}/${a.mb}`;
  const landing = (to: TaskAddress): Tensor => {
    const r = runnerOf(to.stage);
    if (to.step > 0 || r.first) return r.inputBuffer(to.mb, to.step);
    const x = r.inputBuffer(to.mb, 0);
    inbox.set(key(to), x);
    return x;
  };
  const sampled: Tensor[][] = o.micro.map(() => []); // last stage: [mb][step] ids, read back at the end
  // What this device's task of the previous tick made, to hand on at the start of this one.
  const hand: { made: { task: ColumnTask; t: Tensor; dispose: boolean } | null } = { made: null };
  const exchange = (t: number) => {
    const { made } = hand;
    const outs = made?.task.outputs ?? [];
    const ins = recvAt.get(t) ?? [];
    for (const e of outs) if (e.device === col.device) landing(e).copyFrom(made!.t); // same device: a copy
    const sends = outs.filter((e) => e.device !== col.device);
    if (sends.length || ins.length) {
      if (!comm) throw new Error(`device ${col.device}: the plan crosses devices but there is no communicator`);
      comm.group(() => {
        for (const e of sends) comm.send(made!.t, e.device);
        for (const r of ins) comm.recv(landing(r.to), r.from);
      });
    }
    if (made?.dispose) made.t.dispose();
    hand.made = null;
  };

  const tasks: TaskTime[] = [];
  const marks: { k: ColumnTask; start: DeviceEvent; end: DeviceEvent; h0: number; h1: number }[] = [];
  synchronize(device); // uploads done: the timeline starts here
  const base = o.timeline ? new DeviceEvent(device).record() : undefined;
  const hostBase = now();
  try {
    for (let t = 0; t <= col.ticks; t++) {
      o.checkStop?.();
      if (o.fault?.tick === t) throw new Error(`device ${col.device}: a fault injected at tick ${t}`);
      const h0 = now();
      exchange(t);
      const k = byTick.get(t);
      if (!k) continue;
      if (k.kind !== 'forward') throw new Error(`a generation plan has only forward tasks, got ${k.kind}`);
      const r = runnerOf(k.stage);
      let start: DeviceEvent | undefined;
      const started = o.timeline ? () => void (start = new DeviceEvent(device).record()) : undefined;
      let out: Tensor;
      if (k.step > 0) {
        out = r.decode(k.mb, k.step, started);
        if (r.last) sampled[k.mb]!.push(Tensor.empty([o.micro[k.mb]!], { dtype: 'i32', device }).copyFrom(out));
        hand.made = { task: k, t: out, dispose: false };
      } else {
        const x = r.first ? undefined : inbox.get(key(k));
        inbox.delete(key(k));
        out = r.prefill(k.mb, x, started);
        if (r.last) sampled[k.mb]!.push(out);
        hand.made = { task: k, t: out, dispose: !r.last };
      }
      if (start) marks.push({ k, start, end: new DeviceEvent(device).record(), h0, h1: now() });
    }
    trace(`device ${col.device}: all ticks enqueued, draining`);
    comm?.drain(); // on a GPU: a peer that failed mid-run ends this wait with an error, not a hang
    synchronize(device);
    // Device times, placed on the host clock through the event recorded when the loop began.
    for (const m of marks)
      tasks.push({
        stage: col.device,
        ...(o.interleaved ? { vstage: m.k.stage } : {}),
        mb: m.k.mb,
        step: m.k.step,
        t0: hostBase + base!.elapsedMs(m.start),
        t1: hostBase + base!.elapsedMs(m.end),
        h0: m.h0,
        h1: m.h1,
      });
    const holdsLast = [...runners.values()].some((r) => r.last);
    const tokens: number[][] = holdsLast ? Array.from({ length: o.batch }, () => []) : [];
    if (holdsLast)
      sampled.forEach((perStep, mb) => perStep.forEach((t) => Array.from(t.toArray()).forEach((id, b) => tokens[o.starts[mb]! + b]!.push(id))));
    return { tokens, tasks };
  } catch (e) {
    // The peers may be waiting on this device: break the communicator so they fail at once instead of
    // waiting out its timeout. The caller makes a new one before the next run.
    trace(`device ${col.device}: run failed (${(e as Error).message}); aborting the communicator`);
    comm?.abort();
    trace(`device ${col.device}: communicator aborted`);
    throw e;
  } finally {
    if (hand.made?.dispose) hand.made.t.dispose(); // an error left a prefill output unsent
    for (const t of inbox.values()) t.dispose();
    for (const t of sampled.flat()) t.dispose();
  }
}
