// A device's part of a pipeline training step: its column of a GPipe or 1F1B plan (parallel/schedule.ts),
// run tick by tick as engine/executor.ts runs generation. At the start of each tick the device hands on
// what its task of the tick before made — a forward's activations to the next stage, a backward's input
// gradient to the stage before — and takes what its peers made for it, in one group of sends and receives;
// then it runs its task on the TrainStage of the task's stage. Forward tasks save their activations
// (TrainStage keeps them by micro-batch) for the backward task of the same micro-batch; the parameter
// gradients add up over the micro-batches in each stage's flat gradient buffer. A stage that defers its
// weight gradients (TrainStage deferWeightGrads) adds them right after its last backward task of the
// column, in one matmul per layer over all the column's micro-batches (that task's time includes it), or
// after every flushEvery of its backward tasks as well, to bound what it holds.
//
// On a GPU the transfers go on a stream of their own: the compute stream waits for a transfer only when
// the task that reads it runs, and a transfer waits for the compute that made its data. Were they on the
// compute stream, every tick's group of sends and receives would hold both devices in lock-step, each
// tick as long as the slower device's task (a backward beside a forward), instead of the pipeline's true
// dependencies. Tensors sent are kept until the column ends (the transfer may still be reading them).
import { synchronize } from '../device.js';
import type { Communicator } from '../parallel/comm.js';
import { DeviceEvent, DeviceStream } from '../runtime.js';
import { Tensor } from '../tensor.js';
import type { Column, ColumnTask, TaskAddress, TaskTime } from '../engine/executor.js';
import { sumLosses, type MicroBatch, type TrainStage } from './stage.js';

export interface TrainColumnOptions {
  device: string;
  /** this step's micro-batches, by index (every stage needs the shapes; the first the ids, the last the targets) */
  micro: MicroBatch[];
  /** the logits' gradient scale (1 / the optimizer step's counted targets); false: evaluation, forward only */
  dscale: number | false;
  /** record per-task device times (the training timeline) */
  timeline?: boolean;
  /** stages deferring weight gradients flush them after every this many of their backward tasks too (default: after the last only) */
  flushEvery?: number;
  /** called at every tick: throws to stop the run */
  checkStop?: () => void;
}

export interface TrainColumnResult {
  /** the last stage's summed loss over the micro-batches and its counted targets (0 elsewhere) */
  lossSum: number;
  count: number;
  tasks: (TaskTime & { kind: 'forward' | 'backward' })[];
  /** the most bytes this device's stages held at once for deferred weight gradients (0 without) */
  heldBytes: number;
}

const now = () => performance.timeOrigin + performance.now();

/** A GPU's compute and transfer streams for pipeline columns, made once per device (per worker). */
const streamsOf = new Map<string, { compute: DeviceStream; comm: DeviceStream }>();
function columnStreams(device: string): { compute: DeviceStream; comm: DeviceStream } {
  let s = streamsOf.get(device);
  if (!s) streamsOf.set(device, (s = { compute: new DeviceStream(device), comm: new DeviceStream(device) }));
  return s;
}

export function runTrainingColumn(col: Column, stages: Map<number, TrainStage>, comm: Communicator | null, o: TrainColumnOptions): TrainColumnResult {
  if (!o.device.startsWith('cuda') || !comm) return runColumn(col, stages, comm, o, null);
  const streams = columnStreams(o.device);
  return streams.compute.use(() => runColumn(col, stages, comm, o, streams));
}

function runColumn(
  col: Column, stages: Map<number, TrainStage>, comm: Communicator | null, o: TrainColumnOptions, streams: { compute: DeviceStream; comm: DeviceStream } | null,
): TrainColumnResult {
  const stageOf = (s: number) => {
    const t = stages.get(s);
    if (!t) throw new Error(`device ${col.device} (${o.device}) has no stage ${s}`);
    return t;
  };
  const byTick = new Map(col.tasks.map((k) => [k.tick, k]));
  // each stage's last backward task of the column: its held weight gradients are flushed after it
  const lastBackward = new Map<number, number>();
  for (const k of col.tasks) if (k.kind === 'backward') lastBackward.set(k.stage, Math.max(lastBackward.get(k.stage) ?? -1, k.tick));
  let heldBytes = 0;
  const sinceFlush = new Map<number, number>();
  const recvAt = new Map<number, Column['receives']>();
  for (const r of col.receives) (recvAt.get(r.tick) ?? recvAt.set(r.tick, []).get(r.tick)!).push(r);
  // Activations (for a forward) and gradients (for a backward) that arrived ahead of their task.
  const inbox = new Map<string, Tensor>();
  const key = (kind: 'forward' | 'backward', a: TaskAddress) => `${kind}/${a.stage}/${a.mb}`;
  const landing = (kind: 'forward' | 'backward', to: TaskAddress): Tensor => {
    const st = stageOf(to.stage);
    const mb = o.micro[to.mb]!;
    const x = Tensor.empty([mb.batch * mb.seq, st.cfg.hidden], { dtype: st.params.dtype, device: o.device });
    inbox.set(key(kind, to), x);
    return x;
  };
  // GPU: the event after the transfer group that filled each inbox tensor, and the tensors sent
  const arrived = new Map<string, DeviceEvent>();
  const sent: Tensor[] = [];
  const take = (k: ColumnTask): Tensor | undefined => {
    const t = inbox.get(key(k.kind, k));
    inbox.delete(key(k.kind, k));
    const ev = arrived.get(key(k.kind, k));
    if (ev) streams!.compute.waitEvent(ev); // the compute waits for this input only, when it is needed
    arrived.delete(key(k.kind, k));
    return t;
  };
  let made: { task: ColumnTask; t: Tensor } | null = null;
  const exchange = (t: number) => {
    const outs = made?.task.outputs ?? [];
    const ins = recvAt.get(t) ?? [];
    // what a forward makes feeds a forward; what a backward makes, a backward
    const kindOf = (e: { kind: string }) => (e.kind === 'gradient' ? 'backward' : 'forward') as 'forward' | 'backward';
    for (const e of outs) if (e.device === col.device) landing(kindOf(e), e).copyFrom(made!.t);
    const sends = outs.filter((e) => e.device !== col.device);
    if (sends.length || ins.length) {
      if (!comm) throw new Error(`device ${col.device}: the plan crosses devices but there is no communicator`);
      const group = () =>
        comm.group(() => {
          for (const e of sends) comm.send(made!.t, e.device);
          for (const r of ins) comm.recv(landing(kindOf(r), r.to), r.from);
        });
      if (!streams) group();
      else {
        // after what the compute has queued (the data sent, and the last use of the landing memory)
        const ready = new DeviceEvent(o.device).record();
        streams.comm.waitEvent(ready);
        const done = streams.comm.use(() => {
          group();
          return new DeviceEvent(o.device).record();
        });
        for (const r of ins) arrived.set(key(kindOf(r), r.to), done);
        if (made && sends.length) {
          sent.push(made.t);
          made = null;
        }
      }
    }
    made?.t.dispose();
    made = null;
  };

  let count = 0;
  const lossTensors: Tensor[] = [];
  let synced = !streams;
  const marks: { k: ColumnTask; start: DeviceEvent; end: DeviceEvent; h0: number; h1: number }[] = [];
  synchronize(o.device);
  const base = o.timeline ? new DeviceEvent(o.device).record() : undefined;
  const hostBase = now();
  try {
    for (let t = 0; t <= col.ticks; t++) {
      o.checkStop?.();
      const h0 = now();
      exchange(t);
      const k = byTick.get(t);
      if (!k) continue;
      const st = stageOf(k.stage);
      const start = o.timeline ? new DeviceEvent(o.device).record() : undefined;
      if (k.kind === 'forward') {
        const x = st.isFirst ? undefined : take(k);
        if (!st.isFirst && !x) throw new Error(`device ${col.device}: forward of micro-batch ${k.mb} at stage ${k.stage} has no input`);
        try {
          const r = st.forward(k.mb, o.micro[k.mb]!, x, { dscale: o.dscale, deferLoss: true });
          if (r.out) made = { task: k, t: r.out };
          else {
            lossTensors.push(r.losses!); // read once the column is queued: the host never waits mid-column
            count += r.count!;
          }
        } finally {
          x?.dispose();
        }
      } else {
        if (o.dscale === false) throw new Error('an evaluation plan has only forward tasks');
        const dOut = st.isLast ? undefined : take(k);
        if (!st.isLast && !dOut) throw new Error(`device ${col.device}: backward of micro-batch ${k.mb} at stage ${k.stage} has no gradient`);
        try {
          const dIn = st.backward(k.mb, dOut);
          if (dIn) made = { task: k, t: dIn };
        } finally {
          dOut?.dispose();
        }
        if (st.deferWeightGrads) {
          // the most the device's stages hold at once is reached at a backward's end, before a flush
          heldBytes = Math.max(heldBytes, [...stages.values()].reduce((h, s) => h + s.deferredBytes().now, 0));
          const n = (sinceFlush.get(k.stage) ?? 0) + 1;
          sinceFlush.set(k.stage, n);
          if (lastBackward.get(k.stage) === t || (o.flushEvery && n >= o.flushEvery)) {
            st.flushWeightGrads();
            sinceFlush.set(k.stage, 0);
          }
        }
      }
      if (start) marks.push({ k, start, end: new DeviceEvent(o.device).record(), h0, h1: now() });
    }
    if (streams) streams.comm.use(() => comm!.drain());
    else comm?.drain();
    synchronize(o.device);
    synced = true;
    let lossSum = 0;
    for (const l of lossTensors) lossSum += sumLosses(l);
    const tasks = marks.map((m) => ({
      stage: col.device, vstage: m.k.stage, mb: m.k.mb, step: 0, kind: m.k.kind,
      t0: hostBase + base!.elapsedMs(m.start), t1: hostBase + base!.elapsedMs(m.end), h0: m.h0, h1: m.h1,
    }));
    return { lossSum, count, tasks, heldBytes };
  } catch (e) {
    // peers may be waiting on this device: break the communicator so they fail at once
    comm?.abort();
    throw e;
  } finally {
    (made as { t: Tensor } | null)?.t.dispose();
    // After a success the device is idle (synchronized above). A failed run may leave transfers queued on
    // an aborted communicator, and waiting for them could hang: their tensors are left to the worker's end
    // (a failed step ends the run) rather than handed back to the allocator under a live transfer.
    if (synced) for (const t of sent) t.dispose();
    for (const t of inbox.values()) t.dispose();
    for (const t of lossTensors) t.dispose();
    for (const s of stages.values()) s.clear();
  }
}
