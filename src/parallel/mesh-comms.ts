// The communicators of a mesh (parallel/mesh.ts): one per group along each axis longer than 1, its id made
// on the main thread and handed to every rank of the group, and each worker joining its groups in axis
// order (NCCL's create blocks until the whole group has joined, so every rank joins in the same order).
import { Communicator, newCommId, type CommKind } from './comm.js';
import { MESH_AXES, type Mesh, type MeshAxis } from './mesh.js';

/** A rank's place in one of its groups. */
export interface GroupArgs {
  axis: MeshAxis;
  id: string | Uint8Array;
  /** its rank within the group */
  rank: number;
  size: number;
}

/** One communicator id per group of each mesh axis longer than 1, and each rank's place in its groups. */
export function meshGroups(mesh: Mesh, kind: CommKind): GroupArgs[][] {
  const perRank: GroupArgs[][] = Array.from({ length: mesh.size }, () => []);
  for (const axis of MESH_AXES) {
    if (mesh.shape[axis] < 2) continue;
    for (const g of mesh.groups(axis)) {
      const id = newCommId(kind);
      g.forEach((rank, i) => perRank[rank]!.push({ axis, id, rank: i, size: g.length }));
    }
  }
  return perRank;
}

/** Joins a worker's groups (in the order given, the same on every rank); on a failure none is left open. */
export function joinGroups(kind: CommKind, groups: GroupArgs[], device: string, o: { timeoutMs?: number; stopFlag?: Int32Array }): Map<MeshAxis, Communicator> {
  const made = new Map<MeshAxis, Communicator>();
  try {
    for (const g of groups) made.set(g.axis, Communicator.create(kind, g.id, g.rank, g.size, device, o));
  } catch (e) {
    for (const c of made.values()) c.destroy();
    throw e;
  }
  return made;
}
