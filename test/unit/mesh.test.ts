import { describe, expect, it } from 'vitest';
import { strategyMesh } from '../../src/engine/plan.js';
import { Mesh } from '../../src/parallel/mesh.js';

describe('Mesh', () => {
  it('numbers ranks tensor-parallel first, then pipeline, then data; coordinates round-trip', () => {
    const m = new Mesh({ dp: 2, pp: 3, tp: 2 });
    expect(m.size).toBe(12);
    expect(m.coords(0)).toEqual({ dp: 0, pp: 0, tp: 0 });
    expect(m.coords(1)).toEqual({ dp: 0, pp: 0, tp: 1 });
    expect(m.coords(2)).toEqual({ dp: 0, pp: 1, tp: 0 });
    expect(m.coords(6)).toEqual({ dp: 1, pp: 0, tp: 0 });
    for (let r = 0; r < m.size; r++) expect(m.rankOf(m.coords(r))).toBe(r);
  });

  it('groups along each axis partition the ranks, each in axis order', () => {
    const m = new Mesh({ dp: 2, pp: 2, tp: 2 });
    expect(m.groups('tp')).toEqual([[0, 1], [2, 3], [4, 5], [6, 7]]);
    expect(m.groups('pp')).toEqual([[0, 2], [1, 3], [4, 6], [5, 7]]);
    expect(m.groups('dp')).toEqual([[0, 4], [1, 5], [2, 6], [3, 7]]);
    for (const axis of ['dp', 'pp', 'tp'] as const) expect(m.groups(axis).flat().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(m.group(5, 'pp')).toEqual([5, 7]);
  });

  it('parses dp=2,pp=2 and rejects bad shapes', () => {
    expect(Mesh.parse('dp=2,pp=2').shape).toEqual({ dp: 2, pp: 2, tp: 1 });
    expect(Mesh.parse('tp=4').toString()).toBe('dp=1,pp=1,tp=4');
    expect(() => Mesh.parse('dp=2,dp=2')).toThrow(/twice/);
    expect(() => Mesh.parse('xp=2')).toThrow(/axis=size/);
    expect(() => new Mesh({ pp: 0 })).toThrow(/positive integer/);
    expect(() => new Mesh({ pp: 2 }).coords(2)).toThrow(/rank 2/);
  });

  it('is what the strategies are: dp (n,1,1), mp and pp (1,n,1), single (1,1,1)', () => {
    expect(strategyMesh('dp', 4).shape).toEqual({ dp: 4, pp: 1, tp: 1 });
    expect(strategyMesh('pp', 2).shape).toEqual({ dp: 1, pp: 2, tp: 1 });
    expect(strategyMesh('mp', 3).shape).toEqual({ dp: 1, pp: 3, tp: 1 });
    expect(strategyMesh('single', 1).size).toBe(1);
  });
});
