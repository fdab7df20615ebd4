// The communicators of a (dp, pp, tp) mesh launched as several processes (the mesh trainer,
// train/pipeline-parallel.ts, and mp/pp generation, engine/parallel-model.ts): the mesh spans every
// process's devices in global rank order (process-major, as the rendezvous numbers them), each process's
// pool holding its own. The groups' ids cross through the processes' communicator (cluster/gather.ts
// allGatherJson), made by process 0: CPU, 'tcp' ids from the ports every process reserves for its ranks
// (one per group a rank joins: the rendezvous's one id a device is not enough); GPUs, NCCL ids.
import type { DistWorld } from './rendezvous.js';
import { freePort } from './rendezvous.js';
import { allGatherJson } from './gather.js';
import { newCommId, tcpCommId, type Communicator } from '../parallel/comm.js';
import { MESH_AXES, type Mesh } from '../parallel/mesh.js';
import type { GroupArgs } from '../parallel/mesh-comms.js';

/** "host:port" of a communicator rank ("[v6]:port" for IPv6), as the rendezvous writes them. */
const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** The process holding global rank `rank`. */
export function processOf(w: DistWorld, rank: number): number {
  const p = w.layout.findIndex((l) => rank >= l.firstRank && rank < l.firstRank + l.devices.length);
  if (p < 0) throw new Error(`global rank ${rank} is on no process (world of ${w.world})`);
  return p;
}

/** "ranks 0..1 on process 0, 2..3 on process 1": where every global rank lives (for error messages). */
export function describeWorld(w: DistWorld): string {
  return w.layout.map((l) => `rank${l.devices.length > 1 ? `s ${l.firstRank}..${l.firstRank + l.devices.length - 1}` : ` ${l.firstRank}`} on process ${l.process}`).join(', ');
}

type WireGroup = { axis: GroupArgs['axis']; id: string; b64: boolean; rank: number; size: number };

/**
 * This process's local ranks' mesh groups (GroupArgs per local rank, in local rank order), the ids made
 * by process 0. Every process must call it at once (it gathers twice over `pcomm`). With
 * `processComm`, also the id of one more 'tcp' communicator over the processes (for a communicator
 * with another timeout than `pcomm`'s).
 */
export async function distMeshGroups(w: DistWorld, pcomm: Communicator, mesh: Mesh, kind: 'tcp' | 'nccl', o: { processComm?: boolean } = {}): Promise<GroupArgs[][] & { processComm?: string }> {
  if (mesh.size !== w.world) throw new Error(`train pp: the mesh ${mesh} has ${mesh.size} ranks but the processes have ${w.world} devices`);
  const axes = MESH_AXES.filter((a) => mesh.shape[a] > 1);
  const me = w.layout[w.process]!;
  // a tcp rank listens on its own port in each of its groups (one per axis longer than 1)
  const ports = kind === 'tcp' ? await Promise.all(me.devices.map(() => Promise.all(axes.map(() => freePort(me.host))))) : [];
  const processPort = o.processComm ? await freePort(me.host) : 0;
  const gathered = allGatherJson(pcomm, { ports, processPort }) as { ports: number[][]; processPort: number }[];
  const allPorts = gathered.map((g) => g.ports);
  let wire: WireGroup[][] | null = null;
  let procId: string | null = null;
  if (w.process === 0) {
    if (o.processComm) procId = tcpCommId(gathered.map((g, p) => hostPort(w.layout[p]!.host, g.processPort)));
    wire = Array.from({ length: mesh.size }, () => []);
    for (const [ai, axis] of axes.entries()) {
      for (const g of mesh.groups(axis)) {
        let id: string, b64 = false;
        if (kind === 'tcp') {
          id = tcpCommId(g.map((r) => {
            const p = processOf(w, r);
            const port = allPorts[p]?.[r - w.layout[p]!.firstRank]?.[ai];
            if (!Number.isInteger(port)) throw new Error(`train pp: process ${p} sent no port for global rank ${r}'s ${axis} group`);
            return hostPort(w.layout[p]!.host, port!);
          }));
        } else {
          id = Buffer.from(newCommId('nccl') as Uint8Array).toString('base64');
          b64 = true;
        }
        g.forEach((rank, i) => wire![rank]!.push({ axis, id, b64, rank: i, size: g.length }));
      }
    }
  }
  const sent = allGatherJson(pcomm, { wire, procId })[0] as { wire: WireGroup[][] | null; procId: string | null };
  const got = sent?.wire;
  if (!Array.isArray(got) || got.length !== mesh.size) throw new Error(`train pp: process 0 sent no mesh groups for ${mesh.size} ranks`);
  const out: GroupArgs[][] & { processComm?: string } = me.devices.map((_, r) =>
    got[me.firstRank + r]!.map((g) => ({ axis: g.axis, id: g.b64 ? new Uint8Array(Buffer.from(g.id, 'base64')) : g.id, rank: g.rank, size: g.size })),
  );
  if (o.processComm) {
    if (typeof sent.procId !== 'string') throw new Error('train pp: process 0 sent no id for the processes\' communicator');
    out.processComm = sent.procId;
  }
  return out;
}
