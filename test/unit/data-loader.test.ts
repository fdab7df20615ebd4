// Batches for a language model: every row is a window of the stream (checked against slices of fresh random
// tokens), targets are inputs shifted by one, an epoch visits each window once, ranks' shards are disjoint and
// cover the stream, a saved position resumes to exactly the uninterrupted batches, and too little data is an
// error naming the sizes.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TrainLoader, valBatchCount, valBatches, windowCount, type Batch } from '../../src/data/loader.js';
import { rng } from '../../src/random.js';

function randomTokens(n: number, seed: number): Uint16Array {
  const r = rng(seed);
  return Uint16Array.from({ length: n }, () => Math.floor(r() * 50257));
}
// Token i is i: a row's first input names its window (first input / seq).
const iota = (n: number) => Uint32Array.from({ length: n }, (_, i) => i);
const rowsOf = (b: Batch, seq: number) => Array.from({ length: b.batch }, (_, r) => b.inputs[r * seq]! / seq);

// The reference: window w's inputs and targets, sliced from the stream.
function expectWindows(b: Batch, tokens: ArrayLike<number>, seq: number, windows: number[], note: string): void {
  expect(b.inputs.length).toBe(windows.length * seq);
  expect(b.targets.length).toBe(windows.length * seq);
  const inputs: number[] = [];
  const targets: number[] = [];
  for (const w of windows)
    for (let t = 0; t < seq; t++) inputs.push(tokens[w * seq + t]!), targets.push(tokens[w * seq + t + 1]!);
  expect(Array.from(b.inputs), note).toEqual(inputs);
  expect(Array.from(b.targets), note).toEqual(targets);
}

describe('TrainLoader', () => {
  it('serves windows of the stream, each once an epoch, in a seeded order that changes each epoch', () => {
    const seed = Math.floor(Math.random() * 1e6);
    const r = rng(seed);
    const seq = 4 + Math.floor(r() * 12);
    const batch = 2 + Math.floor(r() * 4);
    const n = 500 + Math.floor(r() * 1000);
    const note = `seed ${seed} seq ${seq} batch ${batch} n ${n}`;
    const tokens = randomTokens(n, seed);
    const W = Math.floor((n - 1) / seq);
    expect(windowCount(n, seq)).toBe(W);
    const data = new TrainLoader(tokens, { batch, seq, seed: 7 });
    const ids = new TrainLoader(iota(n), { batch, seq, seed: 7 });
    expect(data.windows).toBe(W);
    expect(data.batchesPerEpoch, note).toBe(Math.floor(W / batch));
    const epochs: number[][] = [];
    for (let e = 0; e < 3; e++) {
      const seen: number[] = [];
      for (let k = 0; k < data.batchesPerEpoch; k++) {
        expect(data.position).toEqual({ epoch: e, index: k });
        const b = data.next();
        const w = rowsOf(ids.next(), seq);
        expect(b.batch).toBe(batch);
        expect(b.seq).toBe(seq);
        expectWindows(b, tokens, seq, w, note);
        seen.push(...w);
      }
      expect(new Set(seen).size, note).toBe(seen.length); // no window twice in an epoch
      expect(seen.length).toBe(data.batchesPerEpoch * batch);
      expect(seen.every((w) => Number.isInteger(w) && w >= 0 && w < W)).toBe(true);
      epochs.push(seen);
    }
    expect(data.position).toEqual({ epoch: 3, index: 0 });
    expect(epochs[1], note).not.toEqual(epochs[0]);
    expect(epochs[2], note).not.toEqual(epochs[1]);
    // The same seed gives the same order; another seed another.
    const again = new TrainLoader(iota(n), { batch, seq, seed: 7 });
    expect(rowsOf(again.next(), seq)).toEqual(epochs[0]!.slice(0, batch));
    expect(new TrainLoader(iota(n), { batch, seq, seed: 8 }).epochWindows(0)).not.toEqual(again.epochWindows(0));
  });

  it('shards each epoch across ranks: disjoint, covering every window, the same number of batches on each rank', () => {
    const seq = 8;
    const batch = 3;
    for (const world of [2, 3, 4]) {
      const n = 1 + seq * (world * batch * 5 + world - 1); // the windows do not divide evenly among the ranks
      const W = windowCount(n, seq);
      const loaders = Array.from({ length: world }, (_, rank) => new TrainLoader(iota(n), { batch, seq, rank, world, seed: 3 }));
      const bpe = Math.floor(Math.floor(W / world) / batch);
      for (const l of loaders) expect(l.batchesPerEpoch, `world ${world}`).toBe(bpe);
      for (let e = 0; e < 2; e++) {
        const shards = loaders.map((l) => [...l.epochWindows(e)]);
        expect(shards.flat().sort((a, b) => a - b), `world ${world} epoch ${e}`).toEqual(Array.from({ length: W }, (_, i) => i));
        expect(Math.max(...shards.map((s) => s.length)) - Math.min(...shards.map((s) => s.length))).toBeLessThanOrEqual(1);
        const served = loaders.map((l) => Array.from({ length: bpe }, () => rowsOf(l.next(), seq)).flat());
        served.forEach((s, r) => expect(s).toEqual(shards[r]!.slice(0, bpe * batch))); // each rank's shard, in order
        const all = served.flat();
        expect(new Set(all).size, `world ${world} epoch ${e}`).toBe(world * bpe * batch); // disjoint
      }
    }
  });

  it('resumes from a saved position to exactly the batches of the uninterrupted run, across epoch ends', () => {
    const seed = Math.floor(Math.random() * 1e6);
    const n = 700 + (seed % 200);
    const tokens = randomTokens(n, seed);
    const opts = { batch: 4, seq: 9, rank: 1, world: 2, seed };
    const full = new TrainLoader(tokens, opts);
    const steps = full.batchesPerEpoch * 2 + 3;
    const positions = [];
    const batches: Batch[] = [];
    for (let s = 0; s < steps; s++) positions.push(full.position), batches.push(full.next());
    for (const stop of [0, 1, full.batchesPerEpoch - 1, full.batchesPerEpoch, full.batchesPerEpoch + 2, steps - 1]) {
      // The position as a checkpoint would keep it: through JSON.
      const saved = JSON.parse(JSON.stringify(positions[stop]));
      const resumed = new TrainLoader(tokens, { ...opts, position: saved });
      const seeked = new TrainLoader(tokens, opts);
      seeked.next(); // somewhere else first
      seeked.seek(saved);
      for (let s = stop; s < steps; s++) {
        const note = `seed ${seed} stop ${stop} step ${s}`;
        for (const l of [resumed, seeked]) {
          const b = l.next();
          expect(Array.from(b.inputs), note).toEqual(Array.from(batches[s]!.inputs));
          expect(Array.from(b.targets), note).toEqual(Array.from(batches[s]!.targets));
        }
      }
    }
  });

  it('names the sizes when there is less than one batch per rank, and checks its arguments', () => {
    const seq = 16;
    const batch = 4;
    const world = 2;
    const enough = world * batch * seq + 1; // 129 tokens: 8 windows, 4 per rank
    expect(new TrainLoader(iota(enough), { batch, seq, world, rank: 1 }).batchesPerEpoch).toBe(1);
    expect(() => new TrainLoader(iota(enough - 1), { batch, seq, world, rank: 1 })).toThrow(
      'TrainLoader: too little data: 128 tokens make 7 windows of seq 16 + 1, 3 per rank across 2 ranks, fewer than one batch of 4 (batch x seq = 64; one batch on every rank needs at least 129 tokens)',
    );
    expect(() => new TrainLoader(iota(10), { batch: 1, seq: 16 })).toThrow(/10 tokens make 0 windows/);
    expect(() => new TrainLoader(iota(100), { batch: 0, seq: 4 })).toThrow(/batch must be a positive integer, got 0/);
    expect(() => new TrainLoader(iota(100), { batch: 1, seq: 2.5 })).toThrow(/seq must be a positive integer, got 2.5/);
    expect(() => new TrainLoader(iota(100), { batch: 1, seq: 4, rank: 2, world: 2 })).toThrow(/rank 2 is outside \[0, 2\)/);
    const l = new TrainLoader(iota(100), { batch: 2, seq: 4 }); // 24 windows: 12 batches
    expect(() => l.seek({ epoch: 0, index: 12 })).toThrow(/index 12 is outside \[0, 12\)/);
    expect(() => l.seek({ epoch: -1, index: 0 })).toThrow(/epoch must be a non-negative integer, got -1/);
    expect(() => new TrainLoader(iota(100), { batch: 2, seq: 4, position: { epoch: 1, index: 0.5 } })).toThrow(/index 0.5/);
  });
});

describe('TrainLoader properties', () => {
  it('for any sizes: an error exactly when a rank has less than one batch, else disjoint full batches of real windows', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 400 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (n, seq, batch, world, seed) => {
          const W = n > seq ? Math.floor((n - 1) / seq) : 0;
          const make = (rank: number) => new TrainLoader(iota(n), { batch, seq, rank, world, seed });
          if (Math.floor(W / world) < batch) {
            expect(() => make(world - 1)).toThrow(`${n} tokens make ${W} windows of seq ${seq} + 1`);
            return;
          }
          const seen = new Set<number>();
          for (let rank = 0; rank < world; rank++) {
            const l = make(rank);
            for (let k = 0; k < l.batchesPerEpoch; k++) {
              const b = l.next();
              expect(b.inputs.length).toBe(batch * seq);
              for (const w of rowsOf(b, seq)) {
                expect(Number.isInteger(w) && w >= 0 && w < W).toBe(true);
                expect(seen.has(w)).toBe(false);
                seen.add(w);
              }
              // Inputs and targets are the window's tokens, shifted by one.
              for (let i = 0; i < b.inputs.length; i++) expect(b.targets[i]).toBe(b.inputs[i]! + 1);
            }
            expect(l.position).toEqual({ epoch: 1, index: 0 });
          }
          expect(seen.size).toBe(world * Math.floor(Math.floor(W / world) / batch) * batch);
          expect(W - seen.size).toBeLessThan(world * (batch + 1)); // what is dropped: less than a batch and one per rank
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('valBatches', () => {
  it('gives every window in order, keeping the last partial batch unless dropLast', () => {
    const seed = Math.floor(Math.random() * 1e6);
    const n = 300 + (seed % 100);
    const tokens = randomTokens(n, seed);
    const seq = 7;
    const batch = 5;
    const W = Math.floor((n - 1) / seq);
    const kept = [...valBatches(tokens, { batch, seq })];
    expect(kept.length).toBe(Math.ceil(W / batch));
    expect(valBatchCount(n, { batch, seq })).toBe(kept.length);
    let w = 0;
    for (const b of kept) {
      const rows = Array.from({ length: b.batch }, () => w++);
      expectWindows(b, tokens, seq, rows, `seed ${seed}`);
    }
    expect(w).toBe(W);
    expect(kept.at(-1)!.batch).toBe(W % batch || batch);
    const dropped = [...valBatches(tokens, { batch, seq, dropLast: true })];
    expect(dropped.length).toBe(Math.floor(W / batch));
    expect(valBatchCount(n, { batch, seq, dropLast: true })).toBe(dropped.length);
    dropped.forEach((b, i) => expect(Array.from(b.inputs)).toEqual(Array.from(kept[i]!.inputs)));
  });

  it('names the sizes when there is no window, or no full batch with dropLast', () => {
    expect(() => valBatches(iota(8), { batch: 2, seq: 8 })).toThrow('valBatches: too little data: 8 tokens make 0 windows of seq 8 + 1 (at least 9 tokens needed)');
    expect([...valBatches(iota(9), { batch: 2, seq: 8 })].map((b) => b.batch)).toEqual([1]);
    expect(() => valBatches(iota(9), { batch: 2, seq: 8, dropLast: true })).toThrow(/1 windows of seq 8 \+ 1, fewer than one batch of 2 \(batch x seq = 16\) with dropLast/);
  });
});
