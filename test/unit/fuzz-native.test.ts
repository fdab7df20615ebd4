// Property-based fuzzing of the native op surface (fast-check), through the raw binding (to reach the
// native checks themselves) and through `ops`: random sizes (huge, zero, negative, fractional, NaN),
// strides, dtypes, devices (valid and not), disposed tensors, views, and foreign objects (plain
// objects, numbers, other wrapped classes) in tensor positions. Property: the process never dies, and
// every rejection is an Error with a message. Valid calls run on small CPU tensors (views over them
// carry the huge sizes, never allocations).
//
// PARALLM_FUZZ_RUNS sets the runs per property (default 300, a few seconds); the native calls made are
// printed at the end. Strides are never 0: a zero stride legitimately lets a huge count pass every
// reach check (all rows alias one), and the kernel then loops for minutes, which is not a crash.
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tensor, ops } from '../../src/index.js';
import { NATIVE_KEYS, native, type NativeTensor } from '../../src/native.js';

// An integer: fast-check never stops at a fractional numRuns.
const RUNS = Math.max(1, Math.floor(Number(process.env.PARALLM_FUZZ_RUNS ?? 300) || 300));
let calls = 0;
let returned = 0; // attempts that returned normally (a kernel ran, or a query answered)

// Count every call of the addon's module functions, also those `ops` makes (it reads native.* per call).
const restore: (() => void)[] = [];
function countCalls() {
  const b = native as unknown as Record<string, unknown>;
  for (const k of NATIVE_KEYS) {
    const f = b[k];
    if (typeof f !== 'function' || k === 'NativeTensor') continue;
    b[k] = (...args: unknown[]) => {
      calls++;
      return (f as (...a: unknown[]) => unknown).apply(native, args);
    };
    restore.push(() => (b[k] = f));
  }
}

function expectError(err: unknown, what: string) {
  expect(err, `${what} threw a non-Error`).toBeInstanceOf(Error);
  expect((err as Error).message.length, `${what} threw an empty message`).toBeGreaterThan(0);
}

// PARALLM_FUZZ_TRACE=file: each call is written there before it runs, so a crash leaves its culprit last.
const TRACE = process.env.PARALLM_FUZZ_TRACE;
function describeArg(a: unknown): string {
  if (a instanceof native.NativeTensor) {
    const t = a as NativeTensor;
    return t.disposed ? 'T(disposed)' : `T(${t.device},${t.dtype},[${t.shape}])`;
  }
  if (typeof a === 'number') return Object.is(a, -0) ? '-0' : String(a);
  if (typeof a === 'string') return JSON.stringify(a);
  if (typeof a === 'symbol' || typeof a === 'function') return typeof a;
  try {
    return JSON.stringify(a) ?? String(a);
  } catch {
    return Object.prototype.toString.call(a);
  }
}
function trace(what: string, args: unknown[] = []) {
  if (TRACE) appendFileSync(TRACE, `${what}(${args.map(describeArg).join(', ')})\n`);
}

// Call fn; a throw must be an Error with a message (the process surviving is the other half).
function attempt(what: string, fn: () => unknown): unknown {
  try {
    const r = fn();
    returned++;
    return r;
  } catch (err) {
    expectError(err, what);
    return undefined;
  }
}

const DEVICES = ['cpu:0', 'cpu:1'] as const;
const DTYPES = ['f32', 'bf16', 'f16', 'i32'] as const;
const SIZES = [0, 1, 4, 16, 64];
let pool: NativeTensor[] = [];
let disposed: NativeTensor[] = [];
let others: unknown[] = [];

beforeAll(() => {
  if (native.buildInfo().cpuDevices < 2) native.configureCpuDevices(2);
  let seed = 1;
  for (const d of DEVICES)
    for (const dt of DTYPES)
      for (const n of SIZES) {
        const t = native.empty(d, dt, [n]);
        // Small values: i32 tensors serve as ids, positions and lengths, f32 ones as anything.
        const vals = Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % 8));
        if (dt === 'i32') t.writeHost(new Int32Array(vals));
        else if (dt === 'f32') t.writeHost(new Float32Array(vals.map((v) => v / 4 - 1)));
        else t.writeHost(new Uint16Array(vals.map((v) => 0x3c00 + v)));
        pool.push(t);
      }
  for (let i = 0; i < 4; i++) {
    const t = native.empty(DEVICES[i % 2], DTYPES[i], [4]);
    t.dispose();
    disposed.push(t);
  }
  others = [native.eventCreate('cpu:0'), native.streamCreate('cpu:0'), (native.captureBegin('cpu:1'), native.captureEnd('cpu:1')), native.commCreate('cpu', `fuzz-${process.pid}`, 0, 1, 'cpu:1', 1000)];
  countCalls();
});

afterAll(() => {
  for (const r of restore) r();
  native.frozenWeights(false); // (the fuzzer may have left decode's setting on for this thread)
  console.log(`fuzz-native: ${calls} native calls (${RUNS} runs per property); ${returned} attempts returned normally`);
});

// ------------------------------------------------------------ arbitraries

const HUGE = [2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 53 - 1, 2 ** 53, 2 ** 62, 2 ** 63, 2 ** 64, 1e300, -1, -2, -(2 ** 31), -(2 ** 53), 0.5, -0, NaN, Infinity, -Infinity];
const size = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 8 }) },
  { weight: 2, arbitrary: fc.integer({ min: 9, max: 70 }) },
  { weight: 3, arbitrary: fc.constantFrom(...HUGE) },
  { weight: 1, arbitrary: fc.double() },
);
const stride = size.filter((s) => s !== 0);
const float = fc.oneof(fc.double(), fc.constantFrom(0, 1, -1, 1e-5, 0.5, NaN, Infinity));
const device = fc.oneof(fc.constantFrom(...DEVICES), fc.constantFrom('cpu:2', 'cpu:255', 'cuda:0', 'cuda:1', 'gpu:0', 'cpu:', 'cpu:-1', 'cpu:99999', '', 'cpu:0x1', 'cpu:1.5'), fc.string());
const dtype = fc.oneof(fc.constantFrom(...DTYPES), fc.constantFrom('f64', 'int32', '', 'F32'), fc.string());
const foreign = fc.oneof(
  fc.constantFrom<unknown>(null, undefined, 0, 1, -1, NaN, 'cpu:0', true, [], [4], {}, { shape: [4], dtype: 'f32', device: 'cpu:0', nbytes: 16 }, Symbol('t'), () => 0, new Float32Array(4)),
  fc.integer({ min: 0, max: 3 }).map((i) => others[i]),
  fc.anything(),
);
const shape = fc.oneof({ weight: 6, arbitrary: fc.array(size, { maxLength: 4 }) }, { weight: 1, arbitrary: foreign });

// A view of a pool tensor at a fuzzed offset and shape (null when refused).
const view = fc.tuple(fc.nat({ max: pool.length + 100 }), size, shape).map(([i, off, shp]) => {
  const base = pool[i % Math.max(pool.length, 1)]!;
  calls++;
  return (attempt('view', () => base.view(off as number, shp as number[])) as NativeTensor | undefined) ?? base;
});
const tensor = fc.oneof(
  { weight: 8, arbitrary: fc.nat().map((i) => pool[i % pool.length]!) },
  { weight: 2, arbitrary: view },
  { weight: 1, arbitrary: fc.nat().map((i) => disposed[i % disposed.length]!) },
  { weight: 2, arbitrary: foreign },
);
const optTensor = fc.oneof(fc.constantFrom(null, undefined), tensor);
const flag = fc.oneof(fc.boolean(), foreign);

type Kind = 'T' | 'O' | 'N' | 'S' | 'F' | 'B' | 'D' | 'Y' | 'P' | 'X';
const ARB: Record<Kind, fc.Arbitrary<unknown>> = { T: tensor, O: optTensor, N: size, S: stride, F: float, B: flag, D: device, Y: dtype, P: shape, X: foreign };

// The native functions and the kinds of their arguments (native/napi/*.cc; src/native.ts).
const SIGS: Record<string, string> = {
  matmul: 'TTTONNNBBFF',
  attentionPrefill: 'TTTTNNNNNNSSSSF',
  attentionDecode: 'TTTTTNNNNSSSNF',
  kvWrite: 'TTTNNNSSSSN',
  ropeKvWrite: 'TTTTONNNNSNFSSN',
  ropeKvAttentionDecode: 'TTTTTTOONNNNSNFSSNF',
  rmsnormMatmul: 'TTTTONNNFFF',
  rmsnormMatmulSwiglu: 'TTOTNNNF',
  matmulResidualNorm: 'TTTTOTOONNNF',
  layernorm: 'TTTTOONNF',
  rmsnorm: 'TTTONNF',
  gelu: 'TTN',
  siluGate: 'TTTNNS',
  rope: 'TTNNNSNFO',
  embedding: 'TTTNNN',
  add: 'TTTNN',
  cast: 'TTN',
  softmax: 'TTNNF',
  argmax: 'TTNN',
  sample: 'TTOONNFNFNN',
  fillUniform: 'TNNNFF',
  empty: 'DYP',
  devices: '',
  deviceInfo: 'D',
  buildInfo: '',
  synchronize: 'D',
  memoryStats: 'D',
  resetPeakMemory: 'D',
  emptyCache: 'D',
  eventCreate: 'D',
  streamCreate: 'D',
  setStream: 'DX',
  frozenWeights: 'B',
  ncclAvailable: '',
  ncclUniqueId: '',
};

// Arguments of the declared kinds, each sometimes replaced by anything, sometimes one too few or many.
const call = fc
  .constantFrom(...Object.keys(SIGS))
  .chain((name) =>
    fc.tuple(
      fc.constant(name),
      fc.tuple(...[...SIGS[name]!].map((k) => fc.oneof({ weight: 12, arbitrary: ARB[k as Kind] }, { weight: 1, arbitrary: foreign }))),
      fc.constantFrom(0, 0, 0, 0, 0, 0, -1, 1),
    ),
  )
  .map(([name, args, extra]) => [name, extra < 0 ? args.slice(0, -1) : extra > 0 ? [...args, 0] : args] as const);

const binding = native as unknown as Record<string, (...a: unknown[]) => unknown>;

describe('fuzz: the raw native binding', () => {
  it('op and runtime functions: never a crash, every rejection an Error with a message', () => {
    fc.assert(
      fc.property(call, ([name, args]) => {
        trace(name, args);
        attempt(name, () => binding[name]!(...args));
      }),
      { numRuns: RUNS * 4 },
    );
  });

  it('tensor, event, stream and graph methods with fuzzed arguments', () => {
    const method = fc.oneof(
      fc.tuple(tensor, fc.constantFrom('toHost', 'readBegin', 'copyFrom', 'writeHost', 'view', 'dispose'), foreign, tensor, size, shape),
      fc.tuple(fc.constant(null), fc.constantFrom('elapsedMs', 'waitEvent', 'synchronize', 'record', 'replay', 'ops'), foreign, tensor, size, shape),
    );
    fc.assert(
      fc.property(method, fc.nat({ max: 3 }), ([t, m, x, t2, n, shp], which) => {
        calls++;
        trace(`method ${m}`, [t, x, t2, n, shp, which]);
        if (t === null) {
          const [e, s, g] = others as [Record<string, (...a: unknown[]) => unknown>, Record<string, (...a: unknown[]) => unknown>, Record<string, (...a: unknown[]) => unknown>];
          const arg = which === 0 ? x : which === 1 ? e : which === 2 ? s : t2;
          if (m === 'elapsedMs') attempt(m, () => e.elapsedMs!(arg));
          else if (m === 'waitEvent') attempt(m, () => s.waitEvent!(arg));
          else if (m === 'synchronize') attempt(m, () => (which & 1 ? e : s).synchronize!());
          else if (m === 'record') attempt(m, () => e.record!());
          else if (m === 'replay') attempt(m, () => g.replay!());
          else attempt(m, () => g.ops);
          return;
        }
        if (typeof t !== 'object' || t === null || !(t instanceof native.NativeTensor)) {
          // A foreign object in the receiver's place: the methods called on it.
          const f = (native.NativeTensor.prototype as unknown as Record<string, (...a: unknown[]) => unknown>)[m];
          attempt(`${m} on a foreign receiver`, () => f!.call(t, x));
          return;
        }
        if (t.disposed || pool.includes(t)) {
          if (m === 'dispose') return; // keep the pool alive; disposed ones are disposed
        }
        if (m === 'toHost') attempt(m, () => t.toHost());
        else if (m === 'readBegin') attempt(m, () => t.readBegin().wait());
        else if (m === 'copyFrom') attempt(m, () => t.copyFrom((which ? t2 : x) as NativeTensor));
        else if (m === 'writeHost') {
          const bytes = typeof n === 'number' && n >= 0 && n <= 512 ? Math.floor(n) : t.disposed ? 0 : t.nbytes;
          const data = which === 0 ? x : which === 1 ? new Int32Array(Math.ceil(bytes / 4)).map(() => (Math.random() * 2 ** 32) | 0) : new Uint8Array(bytes).fill(0x7f);
          attempt(m, () => t.writeHost(data as ArrayBufferView));
        } else if (m === 'view') attempt(m, () => t.view(n as number, shp as number[]));
        else if (m === 'dispose') attempt(m, () => t.dispose());
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it('methods and accessors of every wrapped class called on a foreign receiver', () => {
    const protos = [native.NativeTensor.prototype, ...others.map((o) => Object.getPrototypeOf(o) as object)];
    const members = protos.flatMap((p) => Object.getOwnPropertyNames(p).filter((k) => k !== 'constructor').map((k) => [p, k] as const));
    fc.assert(
      fc.property(fc.constantFrom(...members), foreign, foreign, ([p, k], self, x) => {
        calls++;
        trace(`${k} on a foreign receiver`, [self, x]);
        const d = Object.getOwnPropertyDescriptor(p, k)!;
        const f = (d.get ?? d.value) as (...a: unknown[]) => unknown;
        attempt(`${k} on a foreign receiver`, () => f.call(self, x));
      }),
      { numRuns: RUNS },
    );
  });

  it('ops recorded while capturing, then replayed; graphs outliving their tensors', () => {
    fc.assert(
      fc.property(fc.array(call, { maxLength: 4 }), device, fc.boolean(), (cs, d, twice) => {
        calls++;
        trace('capture', [d, cs.length, twice]);
        const began = attempt('captureBegin', () => (native.captureBegin(d as string), true));
        for (const [name, args] of cs) attempt(name, () => binding[name]!(...args));
        if (!began) return;
        calls++;
        const g = attempt('captureEnd', () => native.captureEnd(d as string)) as { replay(): void; dispose(): void } | undefined;
        if (!g) return;
        calls += twice ? 3 : 2;
        attempt('replay', () => g.replay());
        if (twice) attempt('replay', () => g.replay());
        g.dispose();
        attempt('replay after dispose', () => g.replay());
      }),
      { numRuns: RUNS },
    );
  });

  it('communicators of one rank, and bad communicator arguments', () => {
    const comm = fc.tuple(fc.constantFrom<unknown>('cpu', 'nccl', 'mpi', 1), fc.oneof(fc.string(), foreign), size, fc.constantFrom<unknown>(1, 0, -1, 5000, NaN, 1.5, undefined), device, fc.constantFrom<unknown>(10, 0, -1, NaN, undefined));
    const use = fc.tuple(fc.constantFrom('allReduce', 'broadcast', 'allGather', 'send', 'recv', 'barrier', 'groupStart', 'groupEnd', 'abort', 'destroy'), tensor, tensor, fc.oneof(size, foreign));
    let n = 0;
    fc.assert(
      fc.property(comm, fc.array(use, { maxLength: 4 }), ([kind, id, rank, world, d, timeout], uses) => {
        const c = attempt('commCreate', () => native.commCreate(kind as 'cpu', `fuzz-${n++}-${String(id)}`, rank as number, world as number, d as string, timeout as number)) as Record<string, (...a: unknown[]) => unknown> | undefined;
        if (!c) return;
        for (const [m, t, t2, x] of uses) {
          calls++;
          trace(`comm ${m}`, [t, t2, x]);
          attempt(m, () => c[m]!(t, m === 'allGather' ? t2 : x));
        }
        calls++;
        c.destroy!();
      }),
      { numRuns: RUNS },
    );
  });

  it('testing hooks with fuzzed arguments', () => {
    fc.assert(
      fc.property(fc.constantFrom('matmulSplitK', 'matmulTmaStore', 'matmulTileRows', 'matmulWTile', 'matmulGemv', 'attentionDecodeSplits', 'attentionPrefillKernel', 'pdl', 'matmulSchedule', 'releaseSms'), fc.oneof(size, foreign), (name, x) => {
        calls++;
        attempt(name, () => (native.testing as unknown as Record<string, (x: unknown) => void>)[name]!(x));
      }),
      { numRuns: Math.ceil(RUNS / 3) },
    );
    fc.assert(
      fc.property(fc.oneof(size, foreign), fc.oneof(size, foreign), (d, b) => {
        calls++;
        attempt('holdSms', () => native.testing.holdSms(d as number, b as number));
        attempt('releaseSms', () => native.testing.releaseSms(d as number));
        attempt('busySms', () => native.testing.busySms(d as unknown as string, b as number, d as number));
      }),
      { numRuns: Math.ceil(RUNS / 6) },
    );
    native.testing.matmulSchedule(-1);
    native.testing.matmulSplitK(-1);
    native.testing.matmulTmaStore(true);
    native.testing.matmulTileRows(-1);
    native.testing.matmulWTile(-1);
    native.testing.matmulGemv(-1);
    native.testing.attentionDecodeSplits(-1);
    native.testing.attentionPrefillKernel(0);
    native.testing.pdl(1);
  });
});

// ------------------------------------------------------------ near-valid calls

// A random source for tensor contents and consistent sizes, seeded by fast-check (so shrinking works).
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => ((x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0), x / 2 ** 32);
  return { f: next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)), pick: <T,>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]! };
}
type Rng = ReturnType<typeof rng>;

// A fresh tensor of n elements on `d` with random contents: floats mostly in [-4, 4] with some NaN and
// infinities; half-precision ones any bit pattern; i32 ones from `ints`.
function fresh(r: Rng, d: string, dt: string, n: number, ints?: () => number): NativeTensor {
  calls += 2;
  const t = native.empty(d, dt as 'f32', [n]);
  if (dt === 'i32') t.writeHost(new Int32Array(n).map(() => (ints ? ints() : r.int(0, 7))));
  else if (dt === 'f32') t.writeHost(new Float32Array(n).map(() => (r.f() < 0.03 ? r.pick([NaN, Infinity, -Infinity, 3e38]) : r.f() * 8 - 4)));
  else t.writeHost(new Uint16Array(n).map(() => (r.f() < 0.1 ? r.int(0, 65535) : 0x3c00 + r.int(-512, 512))));
  return t;
}

// Valid arguments for each op (small sizes that agree), built from a seed. Mutations then replace a few.
const VALID: Record<string, (r: Rng, d: string) => unknown[]> = {
  matmul: (r, d) => {
    const dt = r.pick(['f32', 'bf16', 'f16']), M = r.int(0, 5), N = r.int(0, 5), K = r.int(0, 5);
    return [fresh(r, d, dt, M * N), fresh(r, d, dt, M * K), fresh(r, d, dt, K * N), r.f() < 0.5 ? null : fresh(r, d, dt, N), M, N, K, r.f() < 0.5, r.f() < 0.5, r.f() * 2 - 1, r.pick([0, 1, 0.5])];
  },
  attentionPrefill: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), B = r.int(1, 2), Tq = r.int(1, 3), Tk = Tq + r.int(0, 2), Hkv = r.int(1, 2), Hq = Hkv * r.int(1, 2), D = r.int(1, 8);
    return [fresh(r, d, dt, B * Tq * Hq * D), fresh(r, d, dt, B * Tq * Hq * D), fresh(r, d, dt, B * Tk * Hkv * D), fresh(r, d, dt, B * Tk * Hkv * D), B, Tq, Tk, Hq, Hkv, D, Tq * Hq * D, Hq * D, Tk * Hkv * D, Hkv * D, r.f()];
  },
  attentionDecode: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), B = r.int(1, 3), Hkv = r.int(1, 2), Hq = Hkv * r.int(1, 2), D = r.int(1, 8), L = r.int(1, 5);
    const lens = fresh(r, d, 'i32', B, () => (r.f() < 0.9 ? r.int(1, L) : r.pick([0, -1, L + 1, 2 ** 31 - 1])));
    return [fresh(r, d, dt, B * Hq * D), fresh(r, d, dt, B * Hq * D), fresh(r, d, dt, B * L * Hkv * D), fresh(r, d, dt, B * L * Hkv * D), lens, B, Hq, Hkv, D, Hq * D, L * Hkv * D, Hkv * D, L, r.f()];
  },
  kvWrite: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), B = r.int(1, 3), T = r.int(1, 3), W = r.int(1, 8), L = T + r.int(0, 3);
    const pos = fresh(r, d, 'i32', B, () => (r.f() < 0.8 ? r.int(0, L - T) : r.pick([-1, L, L - T + 1, -(2 ** 31), 2 ** 31 - 1])));
    return [fresh(r, d, dt, B * L * W), fresh(r, d, dt, B * T * W), pos, B, T, W, T * W, W, L * W, W, L];
  },
  rmsnormMatmul: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), M = r.int(0, 5), N = r.int(0, 5), K = r.int(1, 9);
    return [fresh(r, d, dt, M * N), fresh(r, d, dt, M * K), fresh(r, d, dt, K), fresh(r, d, dt, N * K), r.f() < 0.5 ? null : fresh(r, d, dt, N), M, N, K, r.pick([1e-5, 0]), r.f() * 2 - 1, r.pick([0, 1])];
  },
  matmulResidualNorm: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), M = r.int(0, 5), N = r.int(1, 9), K = r.int(1, 9);
    return [fresh(r, d, dt, M * N), fresh(r, d, dt, M * N), fresh(r, d, dt, M * K), fresh(r, d, dt, N * K), r.f() < 0.5 ? null : fresh(r, d, dt, N), fresh(r, d, dt, N), r.f() < 0.5 ? null : fresh(r, d, dt, N), null, M, N, K, r.pick([1e-5, 0])];
  },
  rmsnormMatmulSwiglu: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), M = r.int(0, 5), F = r.int(0, 5), K = r.int(1, 9);
    return [fresh(r, d, dt, M * F), fresh(r, d, dt, M * K), fresh(r, d, dt, K), fresh(r, d, dt, 2 * F * K), M, F, K, r.pick([1e-5, 0])];
  },
  ropeKvWrite: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), B = r.int(1, 3), Hkv = r.int(1, 2), Hq = Hkv * r.int(1, 2), D = 2 * r.int(1, 4), L = r.int(1, 4);
    const rot = r.pick([0, D, 2]), W3 = (Hq + 2 * Hkv) * D;
    const pos = fresh(r, d, 'i32', B, () => (r.f() < 0.8 ? r.int(0, L - 1) : r.pick([-1, L, -(2 ** 31), 2 ** 31 - 1])));
    const freqs = rot && r.f() < 0.3 ? fresh(r, d, 'f32', rot / 2) : null;
    return [fresh(r, d, dt, B * W3), fresh(r, d, dt, B * L * Hkv * D), fresh(r, d, dt, B * L * Hkv * D), pos, freqs, B, Hq, Hkv, D, W3, rot, r.pick([10000, 0, -1]), L * Hkv * D, Hkv * D, L];
  },
  ropeKvAttentionDecode: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), B = r.int(1, 3), Hkv = r.int(1, 2), Hq = Hkv * r.int(1, 2), D = 2 * r.int(1, 4), L = r.int(1, 4);
    const rot = r.pick([0, D, 2]), W3 = (Hq + 2 * Hkv) * D;
    const pos = fresh(r, d, 'i32', B, () => (r.f() < 0.8 ? r.int(0, L - 1) : r.pick([-1, L, -(2 ** 31), 2 ** 31 - 1])));
    const lens = fresh(r, d, 'i32', B, () => (r.f() < 0.9 ? r.int(1, L) : r.pick([0, -1, L + 1, 2 ** 31 - 1])));
    const freqs = rot && r.f() < 0.3 ? fresh(r, d, 'f32', rot / 2) : null;
    const counter = r.f() < 0.3 ? fresh(r, d, 'i32', B * Hq, () => 0) : null;
    return [fresh(r, d, dt, B * Hq * D), fresh(r, d, dt, B * W3), fresh(r, d, dt, B * L * Hkv * D), fresh(r, d, dt, B * L * Hkv * D), pos, lens, freqs, counter, B, Hq, Hkv, D, W3, rot, r.pick([10000, 0, -1]), L * Hkv * D, Hkv * D, L, r.f()];
  },
  layernorm: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), C = r.int(1, 9);
    return [fresh(r, d, dt, R * C), fresh(r, d, dt, R * C), fresh(r, d, dt, C), fresh(r, d, dt, C), r.f() < 0.5 ? null : fresh(r, d, 'f32', R), r.f() < 0.5 ? null : fresh(r, d, 'f32', R), R, C, r.pick([1e-5, 0, -1])];
  },
  rmsnorm: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), C = r.int(1, 9);
    return [fresh(r, d, dt, R * C), fresh(r, d, dt, R * C), fresh(r, d, dt, C), r.f() < 0.5 ? null : fresh(r, d, 'f32', R), R, C, r.pick([1e-5, 0])];
  },
  gelu: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), n = r.int(0, 40);
    return [fresh(r, d, dt, n), fresh(r, d, dt, n), n];
  },
  siluGate: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), F = r.int(1, 8), st = F + r.int(0, F);
    return [fresh(r, d, dt, R * F), fresh(r, d, dt, R * st), fresh(r, d, dt, R * st), R, F, st];
  },
  rope: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), H = r.int(1, 2), D = 2 * r.int(1, 4), rot = 2 * r.int(1, D / 2), st = H * D + r.int(0, 2);
    const freqs = r.f() < 0.5 ? null : fresh(r, d, 'f32', rot / 2);
    return [fresh(r, d, dt, R * st), fresh(r, d, 'i32', R, () => r.pick([0, 1, 7, -1, 2 ** 31 - 1, -(2 ** 31)])), R, H, D, st, rot, r.pick([10000, 1, 0, -1, NaN]), freqs];
  },
  embedding: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), N = r.int(0, 5), V = r.int(1, 6), C = r.int(1, 6);
    return [fresh(r, d, dt, N * C), fresh(r, d, 'i32', N, () => r.int(-2, V + 1)), fresh(r, d, dt, V * C), N, V, C];
  },
  add: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), C = r.int(1, 6), n = C * r.int(0, 4), per = r.pick([n || 1, C]);
    return [fresh(r, d, dt, n), fresh(r, d, dt, n), fresh(r, d, dt, per), n, per];
  },
  cast: (r, d) => {
    const n = r.int(0, 20);
    return [fresh(r, d, r.pick(['f32', 'bf16', 'f16']), n), fresh(r, d, r.pick(['f32', 'bf16', 'f16']), n), n];
  },
  softmax: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), C = r.int(1, 9);
    return [fresh(r, d, dt, R * C), fresh(r, d, dt, R * C), R, C, r.pick([1, 0.5, 0, -1, NaN])];
  },
  argmax: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), C = r.int(1, 9);
    return [fresh(r, d, 'i32', R), fresh(r, d, dt, R * C), R, C];
  },
  sample: (r, d) => {
    const dt = r.pick(['f32', 'bf16']), R = r.int(0, 4), V = r.int(1, 12);
    const any = () => r.pick([0, 1, 5, -1, 2 ** 31 - 1, -(2 ** 31)]);
    return [fresh(r, d, 'i32', R), fresh(r, d, dt, R * V), r.f() < 0.5 ? null : fresh(r, d, 'i32', R, any), r.f() < 0.5 ? null : fresh(r, d, 'i32', R, any), R, V, r.pick([1, 0.7, 0, -1, NaN, 1e-30]), r.int(0, V + 1), r.pick([1, 0.9, 0.5, 1e-9]), r.int(0, 2 ** 32 - 1), r.int(0, 2 ** 32 - 1)];
  },
  fillUniform: (r, d) => {
    const n = r.int(0, 20);
    return [fresh(r, d, r.pick(['f32', 'bf16', 'f16']), n), n, r.int(0, 100), r.int(0, 100), r.f(), r.f() + 1];
  },
};

// A valid call, or one with a few of its arguments replaced by fuzzed ones of the same kind (or anything).
const nearValid = fc
  .tuple(fc.constantFrom(...Object.keys(VALID)), fc.integer(), fc.constantFrom(...DEVICES), fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 2 }))
  .chain(([name, seed, d, muts]) =>
    fc.tuple(
      fc.constant(name),
      fc.constant(seed),
      fc.constant(d),
      fc.tuple(...muts.map(([i, any]) => fc.tuple(fc.constant(i % SIGS[name]!.length), any ? foreign : ARB[SIGS[name]![i % SIGS[name]!.length] as Kind]))),
    ),
  );

describe('fuzz: near-valid native calls', () => {
  it('valid calls run, and calls one or two arguments away from valid: never a crash', () => {
    let valid = 0, ran = 0;
    const refused: string[] = [];
    fc.assert(
      fc.property(nearValid, ([name, seed, d, muts]) => {
        const args = VALID[name]!(rng(seed), d);
        for (const [i, v] of muts) args[i] = v;
        if (muts.length === 0) valid++;
        trace(name, args);
        try {
          binding[name]!(...args);
          if (muts.length === 0) ran++;
        } catch (err) {
          expectError(err, name);
          if (muts.length === 0) refused.push((err as Error).message);
        }
      }),
      { numRuns: RUNS * 4 },
    );
    // Unmutated calls run, but for lens outside [1, maxLen] (attention_decode refuses them on the CPU).
    for (const m of refused) expect(m).toMatch(/attention_decode: lens\[\d+\]=-?\d+ is outside/);
    expect(ran).toBeGreaterThan(valid / 2);
  });
});

// ------------------------------------------------------------ through ops

const T = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...DEVICES), fc.constantFrom(...DTYPES), fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 })).map(([d, dt, s]) => Tensor.zeros(s, { device: d, dtype: dt })) },
  { weight: 1, arbitrary: fc.constant(null).map(() => { const t = Tensor.zeros([4]); t.dispose(); return t; }) },
  { weight: 1, arbitrary: fc.tuple(size, shape).map(([off, s]) => attempt('Tensor.view', () => Tensor.zeros([16]).view(off as number, s as number[])) ?? Tensor.zeros([2, 8])) },
  { weight: 1, arbitrary: foreign },
);
const opt = (keys: Record<string, fc.Arbitrary<unknown>>) => fc.record(keys, { requiredKeys: [] });
const pair = fc.tuple(stride, stride);
const OPS: [string, fc.Arbitrary<unknown[]>, (...a: never[]) => unknown][] = [
  ['matmul', fc.tuple(T, T, opt({ bias: T, transA: flag, transB: flag, alpha: float, beta: float, out: T })), ops.matmul],
  ['linear', fc.tuple(T, T, T, T), ops.linear],
  ['attentionPrefill', fc.tuple(T, T, T, opt({ batch: size, headsQ: size, headsKv: size, headDim: size, queries: size, keys: size, scale: float, qStrides: pair, kvStrides: pair, out: T })), ops.attentionPrefill],
  ['attentionDecode', fc.tuple(T, T, T, T, opt({ batch: size, headsQ: size, headsKv: size, headDim: size, maxLen: size, scale: float, qStride: stride, kvStrides: pair, out: T })), ops.attentionDecode],
  ['kvWrite', fc.tuple(T, T, T, opt({ batch: size, tokens: size, width: size, maxLen: size, srcStrides: pair, dstStrides: pair })), ops.kvWrite],
  ['rmsnormLinear', fc.tuple(T, T, T, opt({ eps: float, bias: T, alpha: float, beta: float, out: T })), ops.rmsnormLinear],
  ['rmsnormLinearSwiGLU', fc.tuple(T, T, T, opt({ eps: float, out: T })), ops.rmsnormLinearSwiGLU],
  ['layernormLinear', fc.tuple(T, T, T, T, opt({ eps: float, bias: T, gelu: flag, out: T })), ops.layernormLinear],
  ['linearSwiGLU', fc.tuple(T, T, opt({ out: T })), ops.linearSwiGLU],
  ['linearGelu', fc.tuple(T, T, opt({ bias: T, out: T })), ops.linearGelu],
  ['linearResidualNorm', fc.tuple(T, T, T, T, opt({ bias: T, normB: T, eps: float, counter: T, out: T })), ops.linearResidualNorm],
  ['ropeKvWrite', fc.tuple(T, T, T, T, opt({ batch: size, headsQ: size, headsKv: size, headDim: size, maxLen: size, qkvStride: stride, kvStrides: pair, rope: opt({ theta: float, rotaryDim: size, freqs: T }) })), ops.ropeKvWrite],
  ['ropeKvAttentionDecode', fc.tuple(T, T, T, T, T, opt({ batch: size, headsQ: size, headsKv: size, headDim: size, maxLen: size, qkvStride: stride, kvStrides: pair, scale: float, counter: T, out: T, rope: opt({ theta: float, rotaryDim: size, freqs: T }) })), ops.ropeKvAttentionDecode],
  ['decodeLayerGpt2', fc.tuple(T, fc.record({ norm1: T, norm1Bias: T, qkv: T, qkvBias: T, out: T, outBias: T, norm2: T, norm2Bias: T, up: T, upBias: T, down: T, downBias: T }, { requiredKeys: ['norm1', 'qkv', 'out', 'norm2', 'up', 'down'] }),
    T, T, T, T, opt({ heads: size, headDim: size, maxLen: size, kvStrides: pair, eps: float, counter: T })), ops.decodeLayerGpt2],
  ['layernorm', fc.tuple(T, T, T, opt({ eps: float, out: T, mean: T, rstd: T })), ops.layernorm],
  ['rmsnorm', fc.tuple(T, T, opt({ eps: float, out: T, rstd: T })), ops.rmsnorm],
  ['gelu', fc.tuple(T, T), ops.gelu],
  ['siluGate', fc.tuple(T, T, opt({ rows: size, cols: size, inStride: stride, out: T })), ops.siluGate],
  ['rope', fc.tuple(T, T, opt({ heads: size, headDim: size, theta: float, rotaryDim: size, tokenStride: stride, tokens: size })), ops.rope],
  ['embedding', fc.tuple(T, T, T), ops.embedding],
  ['add', fc.tuple(T, T, T), ops.add],
  ['cast', fc.tuple(T, dtype, T), ops.cast],
  ['softmax', fc.tuple(T, opt({ scale: float, out: T })), ops.softmax],
  ['argmax', fc.tuple(T, T), ops.argmax],
  ['sample', fc.tuple(T, opt({ temperature: float, topK: size, topP: float, seed: size, offsets: T, rows: T, out: T })), ops.sample],
  ['fillUniform', fc.tuple(T, opt({ seed: size, low: float, high: float })), ops.fillUniform],
];

describe('fuzz: ops', () => {
  it('every op with fuzzed tensors and options: never a crash, every rejection an Error with a message', () => {
    const opCall = fc.integer({ min: 0, max: OPS.length - 1 }).chain((i) => fc.tuple(fc.constant(i), OPS[i]![1]));
    fc.assert(
      fc.property(opCall, ([i, args]) => {
        const [name, , f] = OPS[i]!;
        trace(`ops.${name}`, args);
        attempt(`ops.${name}`, () => (f as (...a: unknown[]) => unknown)(...args));
      }),
      { numRuns: RUNS * 2 },
    );
  });
});
