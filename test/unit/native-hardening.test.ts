// Faults of the native layer that once crashed the process or returned garbage, each kept as a test:
// wrapped size products, negative strides, unchecked native objects, reads during capture, and
// sampling keyed on the row of a batch rather than the sequence.
import { describe, expect, it } from 'vitest';
import { Tensor, capture, ops } from '../../src/index.js';
import { native } from '../../src/native.js';
import { uniformArray } from '../../src/random.js';

const dev = 'cpu:0';
const rand = (shape: number[], seed: number) =>
  Tensor.from(uniformArray(shape.reduce((a, b) => a * b, 1), seed, -2, 2), shape, { device: dev });

describe('size products are overflow-checked', () => {
  it('a view whose element count wraps 64 bits is refused', () => {
    const t = rand([4], 1);
    expect(() => t.native.view(0, [2 ** 32, 2 ** 32])).toThrow(/view: .*overflows 64 bits/);
    expect(() => t.native.view(0, [2 ** 31, 2 ** 31, 4])).toThrow(/overflows 64 bits/);
    expect(() => t.native.view(1, [4])).toThrow(/outside a tensor of 4/);
    expect(() => native.empty(dev, 'f32', [2 ** 32, 2 ** 32])).toThrow(/empty: .*overflows 64 bits/);
    // a zero dimension makes the product 0 whatever the others are
    expect(t.native.view(0, [0, 2 ** 40]).shape).toEqual([0, 2 ** 40]);
  });

  it("an op's reach (R x C, ...) that wraps is refused, and nothing is written", () => {
    const x = rand([4], 2);
    const y = Tensor.from(new Float32Array(4).fill(NaN), [4], { device: dev });
    expect(() => native.softmax(y.native, x.native, 2 ** 32, 2 ** 32, 1)).toThrow(/softmax: .*overflows 64 bits/);
    expect(() => native.layernorm(y.native, x.native, x.native, x.native, null, null, 2 ** 32, 2 ** 32, 1e-5)).toThrow(/overflows/);
    expect(() => native.matmul(y.native, x.native, x.native, null, 2 ** 32, 2 ** 32, 0, false, false, 1, 0)).toThrow(/overflows/);
    expect(() => native.embedding(y.native, native.empty(dev, 'i32', [4]), x.native, 0, 2 ** 32, 2 ** 32)).toThrow(/overflows/);
    expect(() => native.attentionPrefill(y.native, x.native, x.native, x.native, 2 ** 20, 2 ** 20, 2 ** 20, 4096, 4096, 4096, 0, 0, 0, 0, 1)).toThrow(/overflows/);
    expect(() => native.fillUniform(y.native, 2 ** 32 + 4, 0, 0, 0, 1)).toThrow(/reaches/);
    expect(Array.from(y.toArray()).every(Number.isNaN)).toBe(true);
  });

  it('ops.softmax over the wrapped view is refused too', () => {
    const t = rand([4], 3);
    expect(() => {
      const v = t.view(0, [2 ** 32, 2 ** 32]);
      ops.softmax(v, { out: v });
    }).toThrow(/overflow|numel|shape|dimension|safe/);
  });
});

describe('strides are checked with their sign', () => {
  it('attentionPrefill with a negative q stride is refused', () => {
    const shape = [2, 2, 1, 4];
    const q = rand(shape, 4), k = rand(shape, 5), v = rand(shape, 6);
    const o = { batch: 2, queries: 2, headsQ: 1, headsKv: 1, headDim: 4 };
    expect(() => ops.attentionPrefill(q, k, v, { ...o, qStrides: [-1e12, 1e12] })).toThrow(/strides reach .* before the start of q/);
    expect(() => ops.attentionPrefill(q, k, v, { ...o, kvStrides: [8, -4] })).toThrow(/before the start of k/);
    const out = native.empty(dev, 'f32', [16]);
    expect(() => native.attentionDecode(out, q.native, k.native, v.native, native.empty(dev, 'i32', [2]), 2, 1, 1, 4, -8, 8, 4, 2, 1)).toThrow(/before the start of q/);
    expect(() => native.kvWrite(k.native, q.native, native.empty(dev, 'i32', [2]), 2, 2, 4, 8, 4, 8, -4, 2)).toThrow(/before the start of dst/);
    expect(() => native.rope(q.native, native.empty(dev, 'i32', [2]), 2, 1, 4, -4, 4, 1e4)).toThrow(/tstride/);
  });

  it('a negative stride over a single row is harmless and allowed', () => {
    const shape = [1, 2, 1, 4];
    const q = rand(shape, 7), k = rand(shape, 8), v = rand(shape, 9);
    const o = { batch: 1, queries: 2, headsQ: 1, headsKv: 1, headDim: 4 };
    const a = ops.attentionPrefill(q, k, v, o).toArray();
    const b = ops.attentionPrefill(q, k, v, { ...o, qStrides: [-1e12, 4], kvStrides: [-5, 4] }).toArray();
    expect(Array.from(b)).toEqual(Array.from(a));
  });
});

describe('native object arguments are type-checked', () => {
  it('elapsedMs, waitEvent, setStream and copyFrom refuse other objects', () => {
    const e = native.eventCreate(dev), s = native.streamCreate(dev);
    e.record();
    const t = rand([4], 10);
    const duck = { record() {}, synchronize() {}, elapsedMs: () => 0, e: 1 };
    for (const bad of [s, duck, t.native, 42, null, undefined, 'x'] as unknown[]) {
      expect(() => e.elapsedMs(bad as never)).toThrow(/elapsedMs: end must be an event/);
      expect(() => s.waitEvent(bad as never)).toThrow(/waitEvent: event must be an event/);
    }
    for (const bad of [e, s, { shape: [4], dtype: 'f32' }, 7, null] as unknown[])
      expect(() => t.native.copyFrom(bad as never)).toThrow(/copyFrom: source must be a tensor/);
    expect(() => native.setStream(dev, e as never)).toThrow(/setStream: stream must be a stream/);
    expect(() => native.gelu(t.native, s as never, 4)).toThrow(/gelu: x must be a tensor, got another object/);
    expect(e.elapsedMs(e)).toBe(0);
  });
});

describe('accessors check their receiver', () => {
  // Found by test/unit/fuzz-native.test.ts: V8 checks a wrapped method's receiver, not an accessor's,
  // so NativeTensor's `shape` getter called on an event read the event as a tensor (a segfault).
  it("every wrapped class's accessors, called on another class's object, throw a TypeError", () => {
    const comm = native.commCreate('cpu', `hardening-${process.pid}`, 0, 1, dev, 1000);
    const objs = [native.empty(dev, 'f32', [2]), native.eventCreate(dev), native.streamCreate(dev), (native.captureBegin(dev), native.captureEnd(dev)), comm];
    let checked = 0;
    for (const owner of objs) {
      const proto = Object.getPrototypeOf(owner) as object;
      for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(proto))) {
        if (!d.get) continue;
        expect(() => d.get!.call(owner), `${k} on its own class`).not.toThrow();
        for (const other of [...objs.filter((o) => o !== owner), {}, [], 1]) {
          expect(() => d.get!.call(other), k).toThrow(other instanceof Object ? /called on something other than|Invalid argument/ : /./);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(30);
    comm.destroy();
  });
});

describe('reading back during capture', () => {
  it('toArray inside capture() is an error naming the op and device', () => {
    const x = rand([8], 11);
    const y = Tensor.zeros([8], { device: dev });
    let msg = '';
    const g = capture(dev, () => {
      ops.gelu(x, y);
      try {
        y.toArray();
      } catch (err) {
        msg = (err as Error).message;
      }
    });
    expect(msg).toMatch(/toHost: cannot read a tensor of cpu:0 back while cpu:0 is capturing/);
    g.replay();
    expect(y.toArray().every(Number.isFinite)).toBe(true);
    g.dispose();
  });
});

describe('sample keyed on rows', () => {
  it('sampling rows [a, b) of a batch with `rows` gives the batch tokens of those rows', () => {
    const R = 12, V = 300;
    const x = rand([R, V], 12);
    const offsets = Tensor.from(Array.from({ length: R }, (_, r) => 3 * r + 1), [R], { dtype: 'i32', device: dev });
    for (const opts of [{ temperature: 1 }, { temperature: 0.8, topK: 20 }, { temperature: 1.2, topP: 0.7 }]) {
      const all = Array.from(ops.sample(x, { ...opts, seed: 77, offsets }).toArray());
      for (const [a, b] of [[0, 1], [3, 7], [5, 12]] as const) {
        const part = x.view(a * V, [b - a, V]);
        const rows = Tensor.from(Array.from({ length: b - a }, (_, i) => a + i), [b - a], { dtype: 'i32', device: dev });
        const offs = offsets.view(a, [b - a]);
        const got = Array.from(ops.sample(part, { ...opts, seed: 77, offsets: offs, rows }).toArray());
        expect(got, `rows [${a}, ${b}) ${JSON.stringify(opts)}`).toEqual(all.slice(a, b));
      }
    }
  });

  it('without rows, the row index of the call keys the draw (a sub-batch draws differently)', () => {
    const R = 16, V = 1000;
    const x = rand([R, V], 13);
    const all = Array.from(ops.sample(x, { seed: 5 }).toArray());
    const tail = Array.from(ops.sample(x.view(8 * V, [8, V]), { seed: 5 }).toArray());
    expect(tail).not.toEqual(all.slice(8));
  });

  it('checks rows: i32, one per row, same device', () => {
    configureDevices();
    const x = rand([2, 10], 14);
    expect(() => ops.sample(x, { rows: Tensor.zeros([2], { device: dev }) })).toThrow(/rows must be i32/);
    expect(() => ops.sample(x, { rows: Tensor.zeros([3], { dtype: 'i32', device: dev }) })).toThrow(/rows/);
    expect(() => ops.sample(x, { rows: Tensor.zeros([2], { dtype: 'i32', device: 'cpu:1' }) })).toThrow(/rows is on cpu:1/);
    const out = native.empty(dev, 'i32', [2]);
    expect(() => native.sample(out, x.native, null, native.empty(dev, 'i32', [1]), 2, 10, 1, 0, 1, 0, 0)).toThrow(/sample: rows has 1 elements but the op reaches 2/);
  });
});

function configureDevices() {
  if (native.buildInfo().cpuDevices < 2) native.configureCpuDevices(2);
}
