// Capture and replay, events and streams, on a CPU device: the same API a GPU serves with CUDA graphs; and
// decode's frozen-weights setting (withFrozenWeights).
import { describe, expect, it } from 'vitest';
import { DeviceEvent, DeviceStream, Tensor, capture, ops, synchronize, withFrozenWeights } from '../../src/index.js';
import { native } from '../../src/native.js';

describe('capture and replay (CPU)', () => {
  it('records without running, replays on the same memory with new inputs', () => {
    const x = Tensor.from([1, 2, 3, 4], [2, 2], { device: 'cpu:0' });
    const w = Tensor.from([1, 0, 0, 2], [2, 2], { device: 'cpu:0' });
    const y = Tensor.zeros([2, 2], { device: 'cpu:0' });
    const z = Tensor.zeros([2, 2], { device: 'cpu:0' });
    const g = capture('cpu:0', () => {
      ops.matmul(x, w, { out: y });
      ops.add(y, x, z);
    });
    expect(g.ops).toBe(2);
    expect(Array.from(z.toArray())).toEqual([0, 0, 0, 0]); // nothing ran yet
    g.replay();
    expect(Array.from(z.toArray())).toEqual([2, 6, 6, 12]);
    x.write([1, 1, 1, 1]);
    g.replay();
    expect(Array.from(z.toArray())).toEqual([2, 3, 2, 3]);
    // The graph keeps its tensors' memory alive after dispose().
    x.dispose();
    g.replay();
    g.dispose();
    [w, y, z].forEach((t) => t.dispose());
  });

  it('a failed capture still ends', () => {
    expect(() =>
      capture('cpu:0', () => {
        throw new Error('boom');
      }),
    ).toThrow(/boom/);
    const g = capture('cpu:0', () => {});
    expect(g.ops).toBe(0);
  });
});

describe('events and streams (CPU)', () => {
  it('time the work between two events', () => {
    const a = Tensor.zeros([256, 256], { device: 'cpu:0' });
    const s = new DeviceEvent('cpu:0').record();
    ops.matmul(a, a);
    const e = new DeviceEvent('cpu:0').record();
    expect(s.elapsedMs(e)).toBeGreaterThanOrEqual(0);
    expect(() => new DeviceEvent('cpu:0').elapsedMs(e)).toThrow(/recorded/);
    const st = new DeviceStream('cpu:0');
    st.use(() => ops.add(a, a));
    st.waitEvent(e);
    st.synchronize();
    // the current stream waits for an event (the join after a fork): nothing to wait for on a CPU device
    e.wait();
    expect(() => new DeviceEvent('cpu:0').wait()).toThrow(/wait on an event that was never recorded \(cpu:0\)/);
    synchronize('cpu:0');
  });
});

describe('withFrozenWeights', () => {
  it('sets the calling thread\'s setting for fn only, nests, and restores it after a throw', () => {
    const state = () => {
      const was = native.frozenWeights(false); // (read by setting, then put back)
      native.frozenWeights(was);
      return was;
    };
    expect(state()).toBe(false);
    expect(withFrozenWeights(() => [state(), withFrozenWeights(() => state()), state()])).toEqual([true, true, true]);
    expect(state()).toBe(false);
    expect(() => withFrozenWeights(() => { throw new Error('inside'); })).toThrow('inside');
    expect(state()).toBe(false);
    // Decode's ops give the same results under it (it only lets a GPU's GEMV read weights early).
    const x = Tensor.from([1, 2, 3, 4], [1, 4], { device: 'cpu:0' });
    const w = Tensor.from([1, 0, 0, 1, 2, 2, 2, 2], [2, 4], { device: 'cpu:0' });
    const a = ops.linear(x, w);
    const b = withFrozenWeights(() => ops.linear(x, w));
    expect(Array.from(b.toArray())).toEqual(Array.from(a.toArray()));
    [x, w, a, b].forEach((t) => t.dispose());
  });

  it('the native setter takes only a boolean', () => {
    expect(() => (native.frozenWeights as (v: unknown) => boolean)(1)).toThrow(/frozenWeights: on must be a boolean, got a number/);
    expect(() => (native.frozenWeights as (v?: unknown) => boolean)()).toThrow(/got undefined/);
  });
});
