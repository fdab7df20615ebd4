// The rendezvous of a multi-process run: process 0 listens on MASTER_ADDR:MASTER_PORT (that address
// only), every other process connects, proves it knows the shared secret, and says its process rank and
// devices; process 0 numbers the devices (global ranks, process-major), makes the ids of the
// communicators, and sends every process the same world. Then the connections close: from there on the
// processes talk through their communicators only.
//
// Wire: one JSON object per line. Process 0 opens with a random nonce; the client answers with its own
// nonce and HMAC-SHA256(secret, both nonces and its rank) — the secret itself never crosses the wire —
// and process 0's world message carries HMAC-SHA256(secret, the nonces and the world's digest), so a
// client also knows the world came from a holder of the secret. A connection that fails the check is
// answered 'refused', closed and logged; it never ends process 0's rendezvous. Nothing is encrypted:
// the ids travel in the clear (a tcp communicator's token keeps strangers out of its connections, not
// eavesdroppers); run on a trusted network.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { parseDevice } from '../device.js';
import { newCommId, tcpCommId } from '../parallel/comm.js';
import type { LaunchEnv } from './env.js';

export type DistCommKind = 'tcp' | 'nccl';

export interface ProcessLayout {
  /** process rank */
  process: number;
  /** where its communicator ranks listen (tcp) */
  host: string;
  /** its devices, in local rank order */
  devices: string[];
  /** the global rank of its first device */
  firstRank: number;
}

/** What every process knows after the rendezvous (the same on all of them but `process`). */
export interface DistWorld {
  /** this process's rank */
  process: number;
  processes: number;
  /** every process's devices and first global rank, by process rank */
  layout: ProcessLayout[];
  /** global rank of this process's first device: its local rank r is global rank rankOffset + r */
  rankOffset: number;
  /** the number of devices over all processes (global ranks 0..world-1) */
  world: number;
  /** one communicator over all global ranks ('tcp' for CPU devices, NCCL for CUDA ones); null for a world of 1 */
  comm: { kind: DistCommKind; id: string | Uint8Array } | null;
  /**
   * A 'tcp' communicator id over the processes themselves (rank = process rank, on cpu:0 of each, from
   * the main thread): for what the main threads exchange (allGatherJson); null for one process.
   */
  processComm: string | null;
}

export interface RendezvousOptions {
  env: LaunchEnv;
  secret: string;
  /** this process's devices (cpu:N or cuda:N, all one kind) */
  devices: string[];
  /** bound on the whole rendezvous, ms (default 120 s) */
  timeoutMs?: number;
  /** where process 0's notes go (a refused connection); default console.error */
  onLog?: (line: string) => void;
  /** @internal tests: make an NCCL id (default: the addon's ncclUniqueId) */
  ncclId?: () => Uint8Array;
}

const PROTOCOL = 'parallm-rendezvous-1';
const MAX_LINE = 1 << 20;

interface Hello {
  t: 'hello';
  protocol: string;
  nonce: string;
  mac: string;
  rank: number;
  devices: string[];
  ports: number[];
  /** the address its ports are reserved on (its end of this connection) */
  host: string;
  /** the port of its rank in the processes' communicator */
  processPort: number;
}

interface WireWorld extends Omit<DistWorld, 'process' | 'rankOffset' | 'comm'> {
  comm: { kind: DistCommKind; id: string; encoding: 'utf8' | 'base64' } | null;
}

const hmac = (secret: string, ...parts: (string | number)[]) => createHmac('sha256', secret).update(parts.join('|')).digest('hex');

function sameHex(a: unknown, b: string): boolean {
  if (typeof a !== 'string' || a.length !== b.length || !/^[0-9a-f]*$/.test(a)) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

/** A port free on `host` now (the OS picks it); a tcp communicator rank listens there later. */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (e) => reject(new Error(`rendezvous: cannot reserve a port on ${host}: ${e.message}`)));
    s.listen({ host, port: 0, exclusive: true }, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** "host:port" of a communicator rank ("[v6]:port" for IPv6). */
const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** Newline-delimited JSON over a socket: each parsed object to `onMessage`; a bad line ends the socket. */
function lines(sock: net.Socket, onMessage: (m: any) => void, onBad: (why: string) => void): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > MAX_LINE && !buf.includes('\n')) {
      onBad(`a line over ${MAX_LINE} bytes`);
      sock.destroy();
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let m: unknown;
      try {
        m = JSON.parse(line);
      } catch {
        onBad('a line that is not JSON');
        sock.destroy();
        return;
      }
      onMessage(m);
    }
  });
}

const send = (sock: net.Socket, m: object) => {
  if (!sock.destroyed) sock.write(JSON.stringify(m) + '\n');
};

// Another process's devices are names only (they need not exist here): checked by their form.
function deviceKind(devices: string[], who: string): DistCommKind {
  if (!Array.isArray(devices) || devices.length === 0) throw new Error(`rendezvous: ${who} has no devices`);
  for (const d of devices) if (typeof d !== 'string' || !/^(cpu|cuda):\d+$/.test(d)) throw new Error(`rendezvous: ${who} sent device '${String(d)}', not cpu:N or cuda:N`);
  const kinds = new Set(devices.map((d) => (d.startsWith('cuda') ? 'nccl' : 'tcp')));
  if (kinds.size > 1) throw new Error(`rendezvous: ${who}'s devices ${devices.join(',')} mix CPU and CUDA: use one kind`);
  return [...kinds][0] as DistCommKind;
}

function localWorld(w: WireWorld, process: number): DistWorld {
  const me = w.layout[process];
  if (!me) throw new Error(`rendezvous: the world has no process ${process}`);
  const comm = w.comm ? { kind: w.comm.kind, id: w.comm.encoding === 'base64' ? new Uint8Array(Buffer.from(w.comm.id, 'base64')) : w.comm.id } : null;
  return { process, processes: w.processes, layout: w.layout, rankOffset: me.firstRank, world: w.world, comm, processComm: w.processComm };
}

/**
 * Meet the other processes of a launched run (see the top of this file). Resolves to the same world on
 * every process; rejects on a timeout (naming the missing process ranks), a refusal or a bad layout.
 */
export async function rendezvous(o: RendezvousOptions): Promise<DistWorld> {
  const { env } = o;
  const timeoutMs = o.timeoutMs ?? 120_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error(`rendezvous: timeoutMs must be a positive integer, got ${timeoutMs}`);
  if (typeof o.secret !== 'string' || o.secret.length === 0) throw new Error('rendezvous: the secret must be a non-empty string');
  if (!Array.isArray(o.devices) || o.devices.length === 0) throw new Error(`rendezvous: process ${env.rank} has no devices`);
  const devices = o.devices.map((d) => parseDevice(d));
  const kind = deviceKind(devices, `process ${env.rank}`);
  return env.rank === 0 ? serve(o, devices, kind, timeoutMs) : join(o, devices, kind, timeoutMs);
}

async function serve(o: RendezvousOptions, devices: string[], kind: DistCommKind, timeoutMs: number): Promise<DistWorld> {
  const { env, secret } = o;
  const log = o.onLog ?? ((l: string) => console.error(l));
  const where = `rendezvous on ${hostPort(env.masterAddr, env.masterPort)}`;
  const ports = kind === 'tcp' ? await Promise.all(devices.map(() => freePort(env.masterAddr))) : [];
  const processPort = env.world > 1 ? await freePort(env.masterAddr) : 0;
  const joined = new Map<number, { sock: net.Socket; hello: Hello; host: string; snonce: string }>();
  const server = net.createServer();
  const open = new Set<net.Socket>();

  return new Promise<DistWorld>((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null, world?: DistWorld) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) for (const { sock } of joined.values()) send(sock, { t: 'error', message: err.message });
      for (const s of open) s.end();
      server.close();
      if (err) reject(err);
      else resolve(world!);
    };
    const missing = () => Array.from({ length: env.world - 1 }, (_, i) => i + 1).filter((r) => !joined.has(r));
    const timer = setTimeout(
      () => finish(new Error(`${where}: timed out after ${timeoutMs} ms waiting for process rank(s) ${missing().join(', ')} (of ${env.world} processes)`)),
      timeoutMs,
    );

    const complete = () => {
      try {
        const layout: ProcessLayout[] = [];
        const addrs: string[] = [];
        let first = 0;
        for (let p = 0; p < env.world; p++) {
          const h = p === 0 ? { devices, ports, host: env.masterAddr } : { devices: joined.get(p)!.hello.devices, ports: joined.get(p)!.hello.ports, host: joined.get(p)!.host };
          if (deviceKind(h.devices, `process ${p}`) !== kind)
            throw new Error(`${where}: process ${p}'s devices (${h.devices.join(',')}) are not the kind of process 0's (${devices.join(',')}): use one kind`);
          if (kind === 'tcp' && h.ports.length !== h.devices.length) throw new Error(`${where}: process ${p} sent ${h.ports.length} ports for ${h.devices.length} devices`);
          layout.push({ process: p, host: h.host, devices: h.devices, firstRank: first });
          if (kind === 'tcp') addrs.push(...h.ports.map((port) => hostPort(h.host, port)));
          first += h.devices.length;
        }
        if (first > 4096) throw new Error(`${where}: ${first} devices in all; at most 4096`);
        let comm: WireWorld['comm'] = null;
        if (first > 1 && kind === 'tcp') comm = { kind, id: tcpCommId(addrs), encoding: 'utf8' };
        if (first > 1 && kind === 'nccl') comm = { kind, id: Buffer.from((o.ncclId ?? defaultNcclId)()).toString('base64'), encoding: 'base64' };
        const procAddrs = Array.from({ length: env.world }, (_, p) => (p === 0 ? hostPort(env.masterAddr, processPort) : hostPort(joined.get(p)!.host, joined.get(p)!.hello.processPort)));
        const processComm = env.world > 1 ? tcpCommId(procAddrs) : null;
        const wire: WireWorld = { processes: env.world, layout, world: first, comm, processComm };
        const digest = createHash('sha256').update(JSON.stringify(wire)).digest('hex');
        for (const [p, j] of joined) send(j.sock, { t: 'world', world: wire, proof: hmac(secret, PROTOCOL, 'server', j.hello.nonce, j.snonce, p, digest) });
        finish(null, localWorld(wire, 0));
      } catch (e) {
        finish(e instanceof Error ? e : new Error(String(e)));
      }
    };

    server.on('connection', (sock) => {
      open.add(sock);
      sock.on('close', () => open.delete(sock));
      sock.on('error', () => {}); // a reset connection is only a closed one
      const from = `${sock.remoteAddress}:${sock.remotePort}`;
      const snonce = randomBytes(32).toString('hex');
      let answered = false;
      const refuse = (why: string) => {
        log(`parallm ${where}: refused a connection from ${from}: ${why}`);
        send(sock, { t: 'refused', reason: why });
        sock.end();
      };
      lines(
        sock,
        (m: Hello) => {
          if (answered || done) return;
          answered = true;
          if (!m || m.t !== 'hello' || m.protocol !== PROTOCOL) return refuse('not a parallm rendezvous hello');
          if (!Number.isInteger(m.rank)) return refuse(`process rank ${String(m.rank)} is not an integer`);
          if (!sameHex(m.mac, hmac(secret, PROTOCOL, 'client', snonce, String(m.nonce), m.rank))) return refuse(`process rank ${m.rank}: wrong secret`);
          if (m.rank < 1 || m.rank >= env.world) return refuse(`process rank ${m.rank} is not one of 1..${env.world - 1}`);
          if (joined.has(m.rank)) return refuse(`process rank ${m.rank} has already joined`);
          const okPort = (p: unknown) => Number.isInteger(p) && (p as number) > 0 && (p as number) < 65536;
          if (!Array.isArray(m.devices) || !Array.isArray(m.ports) || !m.ports.every(okPort) || !okPort(m.processPort))
            return refuse(`process rank ${m.rank} sent no device list or bad ports`);
          // where its ranks listen: the address it reserved its ports on, else the one it came from
          const host = typeof m.host === 'string' && net.isIP(m.host) ? m.host : (sock.remoteAddress ?? '').replace(/^::ffff:/, '');
          if (kind === 'tcp' && !host) return refuse(`process rank ${m.rank}: no address to reach it at`);
          joined.set(m.rank, { sock, hello: m, host, snonce });
          sock.on('close', () => {
            // a process that leaves before the world is sent is missing again (its launcher may restart it)
            if (!done && joined.get(m.rank)?.sock === sock) joined.delete(m.rank);
          });
          if (joined.size === env.world - 1) complete();
        },
        (why) => log(`parallm ${where}: dropped a connection from ${from}: ${why}`),
      );
      send(sock, { t: 'challenge', protocol: PROTOCOL, nonce: snonce });
    });
    server.on('error', (e) => finish(new Error(`${where}: cannot listen: ${e.message}`)));
    server.listen({ host: env.masterAddr, port: env.masterPort, exclusive: true }, () => {
      if (env.world === 1) complete();
    });
  });
}

function defaultNcclId(): Uint8Array {
  return newCommId('nccl') as Uint8Array;
}

async function join(o: RendezvousOptions, devices: string[], kind: DistCommKind, timeoutMs: number): Promise<DistWorld> {
  const { env, secret } = o;
  const master = hostPort(env.masterAddr, env.masterPort);
  const where = `rendezvous of process rank ${env.rank} with process 0 at ${master}`;
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt';
  for (;;) {
    if (Date.now() >= deadline) throw new Error(`${where}: timed out after ${timeoutMs} ms connecting (last error: ${lastError})`);
    const sock = await new Promise<net.Socket | null>((resolve) => {
      const s = net.connect({ host: env.masterAddr, port: env.masterPort });
      const t = setTimeout(() => {
        lastError = 'connect timed out';
        s.destroy();
        resolve(null);
      }, Math.max(1, deadline - Date.now()));
      s.once('connect', () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        lastError = e.message;
        s.destroy();
        resolve(null);
      });
    });
    if (!sock) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    return talk(o, sock, devices, kind, deadline, where, timeoutMs, secret);
  }
}

async function talk(o: RendezvousOptions, sock: net.Socket, devices: string[], kind: DistCommKind, deadline: number, where: string, timeoutMs: number, secret: string): Promise<DistWorld> {
  const { env } = o;
  const host = (sock.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  const ports = kind === 'tcp' ? await Promise.all(devices.map(() => freePort(host))) : [];
  const processPort = await freePort(host);
  const cnonce = randomBytes(32).toString('hex');
  return new Promise<DistWorld>((resolve, reject) => {
    let done = false;
    let snonce = '';
    const finish = (err: Error | null, w?: DistWorld) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(w!);
    };
    const timer = setTimeout(() => finish(new Error(`${where}: timed out after ${timeoutMs} ms waiting for the other processes to join`)), Math.max(1, deadline - Date.now()));
    sock.on('error', (e) => finish(new Error(`${where}: ${e.message}`)));
    sock.on('close', () => finish(new Error(`${where}: process 0 closed the connection before sending the world`)));
    lines(
      sock,
      (m: any) => {
        if (m?.t === 'challenge') {
          if (m.protocol !== PROTOCOL || typeof m.nonce !== 'string') return finish(new Error(`${where}: the master speaks another protocol (${String(m.protocol)})`));
          snonce = m.nonce;
          send(sock, { t: 'hello', protocol: PROTOCOL, nonce: cnonce, mac: hmac(secret, PROTOCOL, 'client', snonce, cnonce, env.rank), rank: env.rank, devices, ports, host, processPort } satisfies Hello);
        } else if (m?.t === 'refused') {
          finish(new Error(`${where}: refused: ${String(m.reason)}`));
        } else if (m?.t === 'error') {
          finish(new Error(`${where}: process 0 failed: ${String(m.message)}`));
        } else if (m?.t === 'world') {
          const digest = createHash('sha256').update(JSON.stringify(m.world)).digest('hex');
          if (!snonce || !sameHex(m.proof, hmac(secret, PROTOCOL, 'server', cnonce, snonce, env.rank, digest)))
            return finish(new Error(`${where}: the master did not prove it knows the secret; ignoring its world`));
          try {
            const w = localWorld(m.world as WireWorld, env.rank);
            if (w.layout[env.rank]!.devices.join(',') !== devices.join(','))
              return finish(new Error(`${where}: the world gives this process devices ${w.layout[env.rank]!.devices.join(',')}, not its own ${devices.join(',')}`));
            finish(null, w);
          } catch (e) {
            finish(e instanceof Error ? e : new Error(String(e)));
          }
        }
      },
      (why) => finish(new Error(`${where}: process 0 sent ${why}`)),
    );
  });
}
