// Which process of a multi-process run this is, from the launcher's environment variables: torchrun's
// (and `parallm launch`'s), Slurm's or Open MPI's. Pure: the environment is an argument, so the rules
// are unit-tested without launching anything. A partial or inconsistent set is an error naming the
// variable, never a silent single-process run.
import { readFileSync } from 'node:fs';

export type Launcher = 'torchrun' | 'slurm' | 'mpi';

export interface LaunchEnv {
  /** which launcher's variables were read */
  launcher: Launcher;
  /** this process's rank among the processes (not a device rank) */
  rank: number;
  /** the number of processes */
  world: number;
  /** this process's rank among those of its node */
  localRank: number;
  /** the number of processes on this node, when the launcher says */
  localWorld: number | null;
  /** where process 0 listens for the rendezvous */
  masterAddr: string;
  masterPort: number;
}

type Env = Readonly<Record<string, string | undefined>>;

const TORCHRUN = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE'] as const;
const SLURM = ['SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'] as const;
const MPI = ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_SIZE'] as const;

const has = (env: Env, k: string) => env[k] !== undefined && env[k] !== '';

function int(env: Env, name: string, min: number): number {
  const s = env[name];
  if (s === undefined || s === '') throw new Error(`launch environment: ${name} is not set`);
  if (!/^\s*\d+\s*$/.test(s)) throw new Error(`launch environment: ${name} must be an integer >= ${min}, got '${s}'`);
  const v = Number(s);
  if (!Number.isSafeInteger(v) || v < min) throw new Error(`launch environment: ${name} must be an integer >= ${min}, got '${s}'`);
  return v;
}

function optInt(env: Env, name: string, min: number): number | null {
  return has(env, name) ? int(env, name, min) : null;
}

/** The first host of a Slurm node list: "node[03-05,9],gpu1" -> "node03". */
export function firstSlurmNode(list: string): string {
  const s = list.trim();
  const m = /^([^,[\]]*)(?:\[([^\]]*)\])?/.exec(s);
  const prefix = m?.[1] ?? '';
  if (!m || (!prefix && !m[2])) throw new Error(`launch environment: SLURM_NODELIST '${list}' names no host`);
  if (!m[2]) return prefix;
  const first = m[2].split(',')[0]!.split('-')[0]!;
  if (!/^\d+$/.test(first)) throw new Error(`launch environment: SLURM_NODELIST '${list}' has a range that is not numbers`);
  return prefix + first;
}

function master(env: Env, launcher: Launcher): { masterAddr: string; masterPort: number } {
  let addr = env.MASTER_ADDR?.trim() ?? '';
  if (!addr && launcher === 'slurm') {
    if (has(env, 'SLURM_LAUNCH_NODE_IPADDR')) addr = env.SLURM_LAUNCH_NODE_IPADDR!.trim();
    else if (has(env, 'SLURM_NODELIST')) addr = firstSlurmNode(env.SLURM_NODELIST!);
    else if (has(env, 'SLURM_JOB_NODELIST')) addr = firstSlurmNode(env.SLURM_JOB_NODELIST!);
  }
  if (!addr) {
    const also = launcher === 'slurm' ? ' (or SLURM_LAUNCH_NODE_IPADDR / SLURM_NODELIST)' : '';
    throw new Error(`launch environment: MASTER_ADDR${also} is not set: the address process 0 listens on for the rendezvous`);
  }
  if (!has(env, 'MASTER_PORT')) throw new Error('launch environment: MASTER_PORT is not set: the port process 0 listens on for the rendezvous');
  const masterPort = int(env, 'MASTER_PORT', 1);
  if (masterPort > 65535) throw new Error(`launch environment: MASTER_PORT must be 1..65535, got ${masterPort}`);
  return { masterAddr: addr, masterPort };
}

function check(e: LaunchEnv, names: { rank: string; world: string; localRank: string; localWorld: string }): LaunchEnv {
  if (e.rank >= e.world) throw new Error(`launch environment: ${names.rank}=${e.rank} is not below ${names.world}=${e.world}`);
  if (e.localWorld !== null) {
    if (e.localWorld > e.world) throw new Error(`launch environment: ${names.localWorld}=${e.localWorld} exceeds ${names.world}=${e.world}`);
    if (e.localRank >= e.localWorld) throw new Error(`launch environment: ${names.localRank}=${e.localRank} is not below ${names.localWorld}=${e.localWorld}`);
  }
  if (e.localRank > e.rank) throw new Error(`launch environment: ${names.localRank}=${e.localRank} exceeds ${names.rank}=${e.rank}`);
  return e;
}

/**
 * The launcher's variables, or null when none is set (a single-process run). torchrun's win over
 * Slurm's and Open MPI's (torchrun inside a Slurm allocation is common); Slurm's over Open MPI's.
 */
export function launchEnv(env: Env = process.env): LaunchEnv | null {
  if (TORCHRUN.some((k) => has(env, k))) {
    for (const k of ['RANK', 'WORLD_SIZE'] as const)
      if (!has(env, k)) throw new Error(`launch environment: ${TORCHRUN.filter((n) => has(env, n)).join(', ')} set but ${k} is not (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)`);
    const rank = int(env, 'RANK', 0);
    return check(
      { launcher: 'torchrun', rank, world: int(env, 'WORLD_SIZE', 1), localRank: optInt(env, 'LOCAL_RANK', 0) ?? 0, localWorld: optInt(env, 'LOCAL_WORLD_SIZE', 1), ...master(env, 'torchrun') },
      { rank: 'RANK', world: 'WORLD_SIZE', localRank: 'LOCAL_RANK', localWorld: 'LOCAL_WORLD_SIZE' },
    );
  }
  if (SLURM.some((k) => has(env, k))) {
    for (const k of ['SLURM_PROCID', 'SLURM_NTASKS'] as const)
      if (!has(env, k)) throw new Error(`launch environment: ${SLURM.filter((n) => has(env, n)).join(', ')} set but ${k} is not`);
    return check(
      {
        launcher: 'slurm', rank: int(env, 'SLURM_PROCID', 0), world: int(env, 'SLURM_NTASKS', 1), localRank: optInt(env, 'SLURM_LOCALID', 0) ?? 0,
        localWorld: optInt(env, 'SLURM_NTASKS_PER_NODE', 1), ...master(env, 'slurm'),
      },
      { rank: 'SLURM_PROCID', world: 'SLURM_NTASKS', localRank: 'SLURM_LOCALID', localWorld: 'SLURM_NTASKS_PER_NODE' },
    );
  }
  if (MPI.some((k) => has(env, k))) {
    for (const k of ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'] as const)
      if (!has(env, k)) throw new Error(`launch environment: ${MPI.filter((n) => has(env, n)).join(', ')} set but ${k} is not`);
    return check(
      {
        launcher: 'mpi', rank: int(env, 'OMPI_COMM_WORLD_RANK', 0), world: int(env, 'OMPI_COMM_WORLD_SIZE', 1),
        localRank: optInt(env, 'OMPI_COMM_WORLD_LOCAL_RANK', 0) ?? 0, localWorld: optInt(env, 'OMPI_COMM_WORLD_LOCAL_SIZE', 1), ...master(env, 'mpi'),
      },
      { rank: 'OMPI_COMM_WORLD_RANK', world: 'OMPI_COMM_WORLD_SIZE', localRank: 'OMPI_COMM_WORLD_LOCAL_RANK', localWorld: 'OMPI_COMM_WORLD_LOCAL_SIZE' },
    );
  }
  return null;
}

/** Shorter than this, a secret is refused: it is all that keeps strangers out of the rendezvous. */
export const MIN_SECRET_CHARS = 16;

/**
 * The rendezvous secret: PARALLM_SECRET, or the contents of the file PARALLM_SECRET_FILE (trimmed).
 * `readFile` is for the tests.
 */
export function launchSecret(env: Env = process.env, readFile: (p: string) => string = (p) => readFileSync(p, 'utf8')): string {
  const direct = has(env, 'PARALLM_SECRET');
  const file = has(env, 'PARALLM_SECRET_FILE');
  if (direct && file) throw new Error('launch environment: both PARALLM_SECRET and PARALLM_SECRET_FILE are set: give one');
  if (!direct && !file)
    throw new Error('launch environment: a multi-process run needs a shared secret: set PARALLM_SECRET, or PARALLM_SECRET_FILE to a file holding it (parallm launch makes one)');
  let secret: string;
  if (direct) secret = env.PARALLM_SECRET!;
  else {
    try {
      secret = readFile(env.PARALLM_SECRET_FILE!).trim();
    } catch (e) {
      throw new Error(`launch environment: cannot read PARALLM_SECRET_FILE '${env.PARALLM_SECRET_FILE}': ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (secret.length < MIN_SECRET_CHARS)
    throw new Error(`launch environment: the secret (${direct ? 'PARALLM_SECRET' : `PARALLM_SECRET_FILE '${env.PARALLM_SECRET_FILE}'`}) has ${secret.length} characters; it needs at least ${MIN_SECRET_CHARS}`);
  return secret;
}
