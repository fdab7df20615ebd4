// A device holding several interleaved stages reads the model folder once for all of them.
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { WeightStore } from '../../src/io/safetensors.js';
import { Model } from '../../src/models/model.js';

const folder = path.resolve(__dirname, '../fixtures/tiny-llama-sharded');

describe('Model.loadStages', () => {
  it('opens the weights once for every stage, and each stage holds what a load of it alone holds', () => {
    const stages = [
      { start: 0, end: 1, embed: true, head: false },
      { start: 1, end: 2, embed: false, head: true },
    ];
    const open = vi.spyOn(WeightStore, 'open');
    const ms = Model.loadStages(folder, stages, { device: 'cpu:0', dtype: 'f32' });
    expect(open).toHaveBeenCalledTimes(1);
    open.mockRestore();
    try {
      expect(ms.map((m) => m.weights.layers.length)).toEqual([1, 1]);
      expect(ms[0]!.tokenizer).toBe(ms[1]!.tokenizer);
      stages.forEach((stage, i) => {
        const alone = Model.load(folder, { device: 'cpu:0', dtype: 'f32', stage });
        expect(Array.from(ms[i]!.weights.layers[0]!.qkv.toArray())).toEqual(Array.from(alone.weights.layers[0]!.qkv.toArray()));
        alone.dispose();
      });
      expect(ms[0]!.weights.embed).toBeDefined();
      expect(ms[1]!.weights.head).toBeDefined();
    } finally {
      ms.forEach((m) => m.dispose());
    }
  });
});
