// `parallm launch --nproc N -- <parallm command ...>`: N local processes of one run, each given
// torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a
// fresh secret (PARALLM_SECRET), which src/cluster reads to meet in the rendezvous. Their output comes
// out line by line behind "[rank r]". If one fails, the others are ended (SIGTERM, then SIGKILL after
// --kill-timeout) and the launcher exits non-zero naming it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { freePort } from '../../cluster/rendezvous.js';

export interface LaunchOptions {
  nproc: number;
  /** the parallm command and its arguments, e.g. ['train', '--strategy', 'dp', ...] */
  command: string[];
  /** each process gets `--devices` with this many devices (cpu:0..n-1, or its own cuda:p*n..) */
  devicesPerProc?: number;
  deviceKind?: 'cpu' | 'cuda';
  masterAddr?: string;
  /** default: a free port */
  masterPort?: number;
  /** after the first failure, how long the others get to end before SIGKILL, ms */
  killTimeoutMs?: number;
  /** the parallm CLI script (default: this process's) */
  script?: string;
  /** where the prefixed lines go (default: stdout / stderr as they came) */
  onLine?: (rank: number, stream: 'stdout' | 'stderr', line: string) => void;
}

export interface LaunchResult {
  /** 0 when every process ended with 0 */
  code: number;
  /** the first process that failed, and how */
  failed: { rank: number; how: string } | null;
}

/** The devices of process `rank` when each holds `n` (CPU devices are per process; GPUs are the node's). */
export function processDevices(rank: number, n: number, kind: 'cpu' | 'cuda'): string[] {
  return Array.from({ length: n }, (_, i) => `${kind}:${kind === 'cuda' ? rank * n + i : i}`);
}

export async function launch(o: LaunchOptions): Promise<LaunchResult> {
  if (!Number.isInteger(o.nproc) || o.nproc < 1 || o.nproc > 1024) throw new Error(`launch: --nproc must be an integer 1..1024, got ${o.nproc}`);
  if (!o.command.length) throw new Error('launch: give the parallm command after --, e.g. parallm launch --nproc 2 -- train --strategy dp ...');
  if (o.command[0] === 'launch') throw new Error('launch: the command cannot be launch itself');
  const kind = o.deviceKind ?? 'cpu';
  if (kind !== 'cpu' && kind !== 'cuda') throw new Error(`launch: --device-kind must be cpu or cuda, got ${String(kind)}`);
  if (o.devicesPerProc !== undefined) {
    if (!Number.isInteger(o.devicesPerProc) || o.devicesPerProc < 1) throw new Error(`launch: --devices-per-proc must be an integer >= 1, got ${o.devicesPerProc}`);
    if (o.command.some((a) => a === '--devices' || a.startsWith('--devices='))) throw new Error('launch: --devices-per-proc gives each process its --devices: leave --devices out of the command');
  }
  const killTimeoutMs = o.killTimeoutMs ?? 10_000;
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (await freePort(masterAddr));
  const script = o.script ?? process.argv[1]!;
  const secret = randomBytes(32).toString('hex');
  const onLine = o.onLine ?? ((rank, stream, line) => (stream === 'stdout' ? process.stdout : process.stderr).write(`[rank ${rank}] ${line}\n`));

  const children: ChildProcess[] = [];
  let failed: LaunchResult['failed'] = null;
  let killTimer: NodeJS.Timeout | null = null;
  const stopOthers = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    killTimer ??= setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, killTimeoutMs);
  };
  // The launcher's own end (Ctrl-C, a scheduler's SIGTERM) ends the processes too.
  const onSignal = (sig: NodeJS.Signals) => {
    failed ??= { rank: -1, how: `the launcher got ${sig}` };
    stopOthers();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const exits = Array.from({ length: o.nproc }, (_, rank) => {
    const args = [...o.command];
    if (o.devicesPerProc) args.push('--devices', processDevices(rank, o.devicesPerProc, kind).join(','));
    const env = {
      ...process.env, RANK: String(rank), WORLD_SIZE: String(o.nproc), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(o.nproc),
      MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort), PARALLM_SECRET: secret,
    };
    delete (env as Record<string, string | undefined>).PARALLM_SECRET_FILE;
    const child = spawn(process.execPath, [...process.execArgv, script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    for (const stream of ['stdout', 'stderr'] as const) createInterface({ input: child[stream]!, crlfDelay: Infinity }).on('line', (l) => onLine(rank, stream, l));
    return new Promise<void>((resolve) => {
      child.on('error', (e) => {
        failed ??= { rank, how: `could not start: ${e.message}` };
        stopOthers();
        resolve();
      });
      child.on('exit', (code, signal) => {
        if ((code !== 0 || signal) && !failed) {
          failed = { rank, how: signal ? `was killed by ${signal}` : `exited with code ${code}` };
          stopOthers();
        }
        resolve();
      });
    });
  });
  try {
    await Promise.all(exits);
  } finally {
    if (killTimer) clearTimeout(killTimer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return { code: failed ? 1 : 0, failed };
}

export function register(program: Command): void {
  program
    .command('launch')
    .description('Run a parallm command as N local processes of one multi-process run (torchrun-style variables, a fresh secret)')
    .requiredOption('--nproc <n>', 'processes to start')
    .option('--devices-per-proc <n>', 'give each process --devices with n devices (cpu:0..n-1 each; cuda: its own n GPUs)')
    .option('--device-kind <k>', 'with --devices-per-proc: cpu or cuda', 'cpu')
    .option('--master-addr <a>', 'the address process 0 listens on for the rendezvous', '127.0.0.1')
    .option('--master-port <p>', 'its port (default: a free one)')
    .option('--kill-timeout <ms>', 'after a process fails, how long the others get to end before SIGKILL', '10000')
    .argument('<command...>', 'the parallm command, after --')
    .action(async (command: string[], o: { nproc: string; devicesPerProc?: string; deviceKind: string; masterAddr: string; masterPort?: string; killTimeout: string }) => {
      const int = (flag: string, s: string) => {
        if (!/^\d+$/.test(s.trim())) throw new Error(`launch: ${flag} must be an integer, got '${s}'`);
        return Number(s);
      };
      const r = await launch({
        nproc: int('--nproc', o.nproc),
        command,
        devicesPerProc: o.devicesPerProc === undefined ? undefined : int('--devices-per-proc', o.devicesPerProc),
        deviceKind: o.deviceKind as 'cpu' | 'cuda',
        masterAddr: o.masterAddr,
        masterPort: o.masterPort === undefined ? undefined : int('--master-port', o.masterPort),
        killTimeoutMs: int('--kill-timeout', o.killTimeout),
      });
      if (r.failed) {
        const who = r.failed.rank >= 0 ? `process rank ${r.failed.rank} ${r.failed.how}` : r.failed.how;
        console.error(`parallm launch: ${who}; the other processes were stopped`);
        process.exitCode = 1;
      }
    });
}
