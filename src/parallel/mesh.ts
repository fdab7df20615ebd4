// A mesh: the devices of a run arranged as (dp, pp, tp) — data-parallel replicas, each a pipeline of pp
// stages, each stage split over tp devices. Rank r (the worker's index in the pool) has coordinates
// (d, p, t) with r = (d * pp + p) * tp + t: tensor-parallel peers are neighbours, then pipeline stages,
// then replicas. A group is the ranks that differ along one axis only; each group gets a communicator of
// its own (parallel/comm.ts: one communicator id per group, made on the main thread).
//
// The strategies are mesh shapes: single (1, 1, 1), dp (n, 1, 1), mp and pp (1, n, 1).

export type MeshAxis = 'dp' | 'pp' | 'tp';
export const MESH_AXES: readonly MeshAxis[] = ['dp', 'pp', 'tp'];

export interface MeshShape {
  dp: number;
  pp: number;
  tp: number;
}

export type MeshCoords = MeshShape;

export class Mesh {
  readonly shape: MeshShape;
  readonly size: number;

  constructor(shape: Partial<MeshShape>) {
    const s = { dp: shape.dp ?? 1, pp: shape.pp ?? 1, tp: shape.tp ?? 1 };
    for (const a of MESH_AXES) if (!Number.isInteger(s[a]) || s[a] < 1) throw new Error(`mesh: ${a} must be a positive integer, got ${s[a]}`);
    this.shape = s;
    this.size = s.dp * s.pp * s.tp;
  }

  /** "dp=2,pp=2" (axes left out are 1). */
  static parse(text: string): Mesh {
    const shape: Partial<MeshShape> = {};
    for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
      const m = /^(dp|pp|tp)=(\d+)$/.exec(part);
      if (!m) throw new Error(`mesh: "${part}" is not axis=size (axes dp, pp, tp), in "${text}"`);
      if (shape[m[1] as MeshAxis] !== undefined) throw new Error(`mesh: ${m[1]} is given twice in "${text}"`);
      shape[m[1] as MeshAxis] = Number(m[2]);
    }
    return new Mesh(shape);
  }

  toString(): string {
    return MESH_AXES.map((a) => `${a}=${this.shape[a]}`).join(',');
  }

  private checkRank(rank: number): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.size) throw new Error(`mesh ${this}: rank ${rank} is not in [0, ${this.size})`);
  }

  coords(rank: number): MeshCoords {
    this.checkRank(rank);
    const { pp, tp } = this.shape;
    return { dp: Math.floor(rank / (pp * tp)), pp: Math.floor(rank / tp) % pp, tp: rank % tp };
  }

  rankOf(c: MeshCoords): number {
    for (const a of MESH_AXES)
      if (!Number.isInteger(c[a]) || c[a] < 0 || c[a] >= this.shape[a]) throw new Error(`mesh ${this}: ${a} coordinate ${c[a]} is not in [0, ${this.shape[a]})`);
    return (c.dp * this.shape.pp + c.pp) * this.shape.tp + c.tp;
  }

  /** The ranks of `rank`'s group along `axis`, in axis order (its index there is its rank in the group). */
  group(rank: number, axis: MeshAxis): number[] {
    const c = this.coords(rank);
    return Array.from({ length: this.shape[axis] }, (_, i) => this.rankOf({ ...c, [axis]: i }));
  }

  /** Every group along `axis`, each in axis order; together they hold every rank once. */
  groups(axis: MeshAxis): number[][] {
    const seen = new Set<number>();
    const out: number[][] = [];
    for (let r = 0; r < this.size; r++) {
      if (seen.has(r)) continue;
      const g = this.group(r, axis);
      g.forEach((x) => seen.add(x));
      out.push(g);
    }
    return out;
  }
}
