// The sm90 matmul's blocks drawing their tiles from a counter (native/cuda/matmul.cu's tile_counter) against striding
// over them (native.testing.matmulSchedule): the same bits on fresh inputs, outputs poisoned first; with SMs held by
// another stream's kernel (native.testing.holdSms, as NCCL's blocks hold them beside data-parallel training's
// backward); launch after launch (each launch's last block rearms the counter: a counter left spent would leave the
// next output unwritten); and replayed from a captured graph. Skipped where there is no GPU.
import { afterEach, describe, expect, it } from 'vitest';
import { Tensor, capture, cudaDeviceCount, deviceInfo, ops } from '../../src/index.js';
import { DeviceEvent } from '../../src/runtime.js';
import { native } from '../../src/native.js';
import { uniformArray } from '../../src/random.js';
import { poisoned, randT } from '../helpers/cases.js';
import { matmulRef, relError } from '../helpers/reference.js';

const gpus = cudaDeviceCount();
const dev = 'cuda:0';

/** out = a' b' with the blocks' schedule set to `mode` (0 strided, 1 drawn, 2 drawn after their own), into a fresh poisoned tensor. */
function product(a: Tensor, b: Tensor, M: number, N: number, ta: boolean, tb: boolean, mode: 0 | 1 | 2): Float32Array {
  const out = poisoned([M, N], a.dtype, dev);
  native.testing.matmulSchedule(mode);
  try {
    ops.matmul(a, b, { transA: ta, transB: tb, out });
  } finally {
    native.testing.matmulSchedule(-1);
  }
  const o = out.toArray() as Float32Array;
  out.dispose();
  for (let i = 0; i < o.length; i++) if (!Number.isFinite(o[i]!)) throw new Error(`${M}x${N}: element ${i} unwritten (schedule ${mode})`);
  return o;
}

function inputs(M: number, N: number, K: number, ta: boolean, tb: boolean) {
  const seed = Math.floor(Math.random() * 1e6);
  const a = randT(ta ? [K, M] : [M, K], 'bf16', dev, seed);
  const b = randT(tb ? [N, K] : [K, N], 'bf16', dev, seed + 1);
  return { a, b, seed, dispose: () => [a.t, b.t].forEach((t) => t.dispose()) };
}

const same = (x: Float32Array, y: Float32Array) => {
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
  return true;
};

describe.skipIf(gpus === 0)('sm90 matmul: tiles drawn from a counter', () => {
  afterEach(() => native.testing.releaseSms(0));

  // GPT-2's training products at 8,192 tokens (qkv 256 wide, down 192 wide by the width rule, the up weight gradient
  // split in K by the wave rule, an input gradient), tile edges, and a decode-sized product on the 64-row tile (which
  // strides whatever the hook says).
  const shapes: [number, number, number, boolean, boolean][] = [
    [8192, 2304, 768, false, true],
    [8192, 768, 3072, false, true],
    [3072, 768, 8192, true, false],
    [8192, 3072, 768, false, false],
    [1000, 520, 1000, false, false],
    [40, 4096, 4096, false, true],
  ];
  for (const [M, N, K, ta, tb] of shapes)
    it(`${M}x${N}x${K}${ta ? ' A^T' : ''}${tb ? ' B^T' : ''}: the bits of the strided blocks${M * N * K <= 6e8 ? ', and float64' : ''}`, () => {
      const x = inputs(M, N, K, ta, tb);
      const strided = product(x.a.t, x.b.t, M, N, ta, tb, 0);
      const drawn = product(x.a.t, x.b.t, M, N, ta, tb, 1);
      expect(same(drawn, strided), `seed ${x.seed}`).toBe(true);
      expect(same(product(x.a.t, x.b.t, M, N, ta, tb, 2), strided), `seed ${x.seed}, drawn after their own`).toBe(true);
      if (M * N * K <= 6e8) expect(relError(drawn, matmulRef(x.a.v, x.b.v, null, null, M, N, K, ta, tb)), `seed ${x.seed}`).toBeLessThan(1e-2);
      x.dispose();
    });

  it('with a sixth of the SMs held by another stream\'s kernel: the same bits, drawn or strided', () => {
    const sms = deviceInfo(dev).multiprocessors ?? 132;
    const [M, N, K] = [8192, 2304, 768];
    const x = inputs(M, N, K, false, true);
    const free = product(x.a.t, x.b.t, M, N, false, true, 1);
    // each kernel launched once before the hold: a kernel's first launch may wait for every running kernel, the
    // holding one too (lazy module loading)
    for (const mode of [0, 2] as const) product(x.a.t, x.b.t, M, N, false, true, mode);
    native.testing.holdSms(0, Math.floor(sms / 6));
    const drawn = product(x.a.t, x.b.t, M, N, false, true, 1);
    const strided = product(x.a.t, x.b.t, M, N, false, true, 0);
    const own = product(x.a.t, x.b.t, M, N, false, true, 2);
    native.testing.releaseSms(0);
    expect(same(drawn, free), `seed ${x.seed}`).toBe(true);
    expect(same(own, free), `seed ${x.seed}`).toBe(true);
    expect(same(strided, free), `seed ${x.seed}`).toBe(true);
    x.dispose();
  });

  it('launch after launch, each into a poisoned output: every one whole (the counter rearmed)', () => {
    const [M, N, K] = [2048, 2304, 768];
    const x = inputs(M, N, K, false, true);
    const first = product(x.a.t, x.b.t, M, N, false, true, 1);
    for (let i = 0; i < 24; i++) expect(same(product(x.a.t, x.b.t, M, N, false, true, i % 2 ? 1 : 2), first), `launch ${i + 2}`).toBe(true);
    x.dispose();
  });

  it('captured into a graph: replays with new inputs give what a launch gives', () => {
    const [M, N, K] = [4096, 768, 3072];
    const x = inputs(M, N, K, false, true);
    const out = poisoned([M, N], 'bf16', dev);
    native.testing.matmulSchedule(1);
    let g: ReturnType<typeof capture>;
    try {
      ops.matmul(x.a.t, x.b.t, { transB: true, out }); // the stream's counter exists before the capture
      g = capture(dev, () => void ops.matmul(x.a.t, x.b.t, { transB: true, out }));
    } finally {
      native.testing.matmulSchedule(-1);
    }
    for (const seed of [11, 12, 13]) {
      x.a.t.write(uniformArray(M * K, seed));
      out.write(new Float32Array(M * N).fill(NaN));
      g.replay();
      const want = product(x.a.t, x.b.t, M, N, false, true, 0);
      expect(same(out.toArray() as Float32Array, want), `seed ${seed}`).toBe(true);
    }
    g.dispose();
    out.dispose();
    x.dispose();
  });

  it('busySms holds its SMs for the time asked, from a captured graph too; refuses a CPU device, no SMs, every SM', () => {
    const sms = deviceInfo(dev).multiprocessors ?? 132;
    expect(() => native.testing.busySms('cpu:0', 4, 10)).toThrow(/busySms: holds SMs of a CUDA device, got cpu:0/);
    expect(() => native.testing.busySms(dev, 0, 10)).toThrow(/busySms: expected 1 to/);
    expect(() => native.testing.busySms(dev, sms, 10)).toThrow(/busySms: expected 1 to/);
    expect(() => native.testing.busySms(dev, 4, 2e6)).toThrow(/busySms: expected 1 to/);
    const held = (fn: () => void) => {
      const [t0, t1] = [new DeviceEvent(dev), new DeviceEvent(dev)];
      t0.record();
      fn();
      t1.record();
      t1.synchronize();
      return t0.elapsedMs(t1);
    };
    expect(held(() => native.testing.busySms(dev, 16, 2000))).toBeGreaterThanOrEqual(1.9);
    const g = capture(dev, () => native.testing.busySms(dev, 16, 2000));
    expect(held(() => g.replay())).toBeGreaterThanOrEqual(1.9);
    g.dispose();
  });

  it('holdSms refuses no SMs, every SM, and a second hold; releaseSms without a hold does nothing', () => {
    const sms = deviceInfo(dev).multiprocessors ?? 132;
    expect(() => native.testing.holdSms(0, 0)).toThrow(/holdSms: expected 1 to/);
    expect(() => native.testing.holdSms(0, sms)).toThrow(/holdSms: expected 1 to/);
    native.testing.holdSms(0, 2);
    expect(() => native.testing.holdSms(0, 2)).toThrow(/already holds 2 SMs/);
    native.testing.releaseSms(0);
    native.testing.releaseSms(0);
  });
});
