// `parallm plan`: where each layer goes and what each device will hold, before anything loads.
import type { Command } from 'commander';
import { checkDType, type DType } from '../../dtype.js';
import { deviceInfo, ensureCpuDevices, parseDevice } from '../../device.js';
import { modelConfig } from '../../models/source.js';
import { tpLayout } from '../../models/tp.js';
import type { ModelConfig } from '../../io/config.js';
import { strategyMesh } from '../../engine/plan.js';
import { Mesh } from '../../parallel/mesh.js';
import { placeMesh, placeStages, stageMemory, STRATEGIES, type PlacedStage, type Strategy } from '../../parallel/placement.js';
import { bytes, table } from '../format.js';

interface PlanOpts {
  model: string;
  devices?: string;
  gpus?: string;
  strategy?: string;
  mesh?: string;
  split: string;
  map?: string;
  chunks: string;
  batch: string;
  maxLen: string;
  dtype?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('plan')
    .description('print the device map and the memory each device will hold, without loading anything')
    .requiredOption('--model <name>', 'a preset or a model folder (only config.json is read)')
    .option('--devices <list>', 'comma-separated devices of this machine, e.g. cuda:0,cuda:1')
    .option('--gpus <spec>', 'GPUs this machine need not have: 4x80GiB, 2xH100, 8xH200 (nothing touches CUDA)')
    .option('--strategy <s>', 'dp (a replica per device), mp or pp (layers split across devices), tp (every layer split across devices); default pp')
    .option('--mesh <shape>', 'instead of --strategy: dp=..,pp=..,tp=.. over the devices in rank order (tp peers adjacent, then stages, then replicas)')
    .option('--split <how>', 'mp/pp: even (the seed\'s get_device_map) or memory (by free memory)', 'even')
    .option('--map <json>', 'mp/pp: explicit map, e.g. \'{"cuda:0":[0,1,2],"cuda:1":[3,4,5]}\'')
    .option('--chunks <n>', 'mp/pp, even split: stages per device, interleaved (device d of D holds stages d, d + D, ...)', '1')
    .option('--batch <n>', 'sequences the KV cache holds (per device for dp)', '1')
    .option('--max-len <n>', 'tokens per sequence the KV cache holds', '1024')
    .option('--dtype <dtype>', 'bf16 (default on GPUs) or f32 (default on CPUs)')
    .option('--json', 'print JSON')
    .action((o: PlanOpts) => {
      const cfg = modelConfig(o.model);
      if ((o.devices === undefined) === (o.gpus === undefined)) throw new Error('give exactly one of --devices (this machine) and --gpus (e.g. 4x80GiB)');
      const planned = o.gpus ? parseGpus(o.gpus) : undefined;
      let devices: string[];
      if (planned) devices = Array.from({ length: planned.count }, (_, i) => `cuda:${i}`);
      else {
        const list = o.devices!.split(',').map((d) => d.trim());
        ensureCpuDevices(list);
        devices = list.map((d) => parseDevice(d));
      }
      const freeOf = (d: string) => (planned ? planned.bytes : deviceInfo(d).memoryFree);
      const dtype: DType = checkDType(o.dtype ?? (devices[0]!.startsWith('cuda') ? 'bf16' : 'f32'));
      const batch = Number(o.batch), maxLen = Number(o.maxLen), chunks = Number(o.chunks);
      for (const [flag, v] of [['--batch', batch], ['--max-len', maxLen], ['--chunks', chunks]] as const)
        if (!Number.isInteger(v) || v < 1) throw new Error(`${flag} must be a positive integer`);
      const need = { dtype, batch, maxLen };
      if (o.mesh !== undefined && o.strategy !== undefined) throw new Error('give --strategy or --mesh, not both');
      const strategy = o.strategy ?? 'pp';
      if (!STRATEGIES.includes(strategy as Strategy) || strategy === 'single') throw new Error(`--strategy must be dp, mp, pp or tp, got "${strategy}"`);
      const replicated = strategy === 'dp' || strategy === 'tp';
      const split = replicated || o.mesh ? {} : { placement: o.map ? parseMap(o.map) : (o.split as 'even' | 'memory'), chunks };
      if (!replicated && !o.map && o.split !== 'even' && o.split !== 'memory') throw new Error(`--split must be even or memory, got "${o.split}"`);
      if (chunks > 1 && (o.map || o.split !== 'even')) throw new Error('--chunks > 1 places layers evenly: drop --map and --split');
      if (o.mesh !== undefined && (o.map || o.split !== 'even' || chunks > 1)) throw new Error('--mesh splits the layers evenly over pp: drop --map, --split and --chunks');
      const mesh = o.mesh !== undefined ? Mesh.parse(o.mesh) : strategy === 'tp' ? strategyMesh('tp', devices.length) : null;
      const stages: PlacedStage[] = o.mesh !== undefined ? placeMesh(cfg, mesh!, devices) : placeStages(cfg, strategy as Strategy, devices, { ...split, need, freeBytes: freeOf });
      // A device's stages (several when interleaved) must fit together; CPU devices are shares of one
      // host, so all of theirs must fit in its memory together.
      const perDevice = new Map<string, number>();
      const pool = (d: string) => (d.startsWith('cpu') ? 'host' : d);
      for (const s of stages) perDevice.set(pool(s.device), (perDevice.get(pool(s.device)) ?? 0) + stageMemory(cfg, s, need).total);
      const rows = stages.map((s) => {
        const m = stageMemory(cfg, s, need);
        const free = freeOf(s.device);
        return { ...s, ...m, free, fits: perDevice.get(pool(s.device))! <= free };
      });
      // A mesh (or tp) gives each device its coordinates and, when tp splits layers, its share of them.
      const meshRows = mesh ? rows.map((r, rank) => ({ ...r, coords: mesh.coords(rank), shard: shardText(cfg, r) })) : null;
      const how = o.mesh !== undefined ? `mesh ${mesh}` : strategy;
      if (o.json) return void console.log(JSON.stringify({ model: o.model, strategy: o.mesh !== undefined ? 'mesh' : strategy, ...(mesh ? { mesh: mesh.shape } : {}), dtype, ...(planned ? { gpus: planned } : {}), stages: meshRows ?? rows }, null, 2));
      console.log(`${o.model}: ${cfg.family}, ${cfg.layers} layers, hidden ${cfg.hidden}; ${how} on ${planned ? `${planned.count} x ${planned.name} (planned, not this machine's)` : devices.join(', ')}; ${dtype}, KV cache for ${batch} x ${maxLen} tokens${devices.some((d) => d.startsWith('cpu')) && devices.length > 1 ? '; CPU devices share the host memory' : ''}`);
      if (meshRows)
        return void console.log(
          table(
            ['device', 'dp', 'pp', 'tp', 'layers', 'holds', 'shard', 'weights', 'KV cache', 'total', 'free', 'fits'],
            meshRows.map((r) => [
              r.device, String(r.coords.dp), String(r.coords.pp), String(r.coords.tp), `${r.start}-${r.end - 1}`,
              [r.embed && 'embeddings', r.head && 'head'].filter(Boolean).join(' + '), r.shard,
              bytes(r.weights), bytes(r.kvCache), bytes(r.total), bytes(r.free), r.fits ? 'yes' : 'NO',
            ]),
          ),
        );
      console.log(
        table(
          ['device', 'layers', 'holds', 'weights', 'KV cache', 'total', 'free', 'fits'],
          rows.map((r) => [r.device, `${r.start}-${r.end - 1}`, [r.embed && 'embeddings', r.head && 'head'].filter(Boolean).join(' + '), bytes(r.weights), bytes(r.kvCache), bytes(r.total), bytes(r.free), r.fits ? 'yes' : 'NO']),
        ),
      );
    });
}

/** "heads 0-5 of 12, KV heads 0-1 of 4, MLP 0-1535 of 3072": a tp rank's share of each layer. */
function shardText(cfg: ModelConfig, s: PlacedStage): string {
  if (!s.tp || s.tp.size < 2) return 'whole layers';
  const l = tpLayout(cfg, s.tp);
  const span = (a: number, n: number) => (n === 1 ? `${a}` : `${a}-${a + n - 1}`);
  return `heads ${span(l.q0, l.heads)} of ${cfg.heads}, KV heads ${span(l.kv0, l.kvHeads)} of ${cfg.kvHeads}, MLP ${span(l.f0, l.features)} of ${cfg.intermediate}`;
}

function parseMap(text: string): Record<string, number[]> {
  try {
    return JSON.parse(text) as Record<string, number[]>;
  } catch {
    throw new Error('--map must be JSON like {"cuda:0":[0,1],"cuda:1":[2,3]}');
  }
}

// Usable memory of GPUs by name (what the driver reports free on an idle card, about).
const KNOWN_GPUS: Record<string, number> = {
  A100: 79 * 2 ** 30, 'A100-40GB': 39 * 2 ** 30, H100: 79 * 2 ** 30, H200: 139 * 2 ** 30, B200: 178 * 2 ** 30,
  L40S: 44 * 2 ** 30, L4: 22 * 2 ** 30, RTX4090: 23 * 2 ** 30, RTX3090: 23 * 2 ** 30,
};

/** "4x80GiB", "2xH100", "8 x 141GB" -> count, bytes each and a name. */
export function parseGpus(spec: string): { count: number; bytes: number; name: string } {
  const m = /^\s*(\d{1,4})\s*x\s*(?:(\d+(?:\.\d+)?)\s*(GiB|GB|TiB|TB)|([A-Za-z0-9-]+))\s*$/i.exec(spec);
  if (!m || Number(m[1]) < 1) throw new Error(`--gpus must be COUNTxMEMORY or COUNTxNAME, e.g. 4x80GiB or 2xH100, got "${spec}"`);
  const count = Number(m[1]);
  if (m[4] !== undefined) {
    const key = Object.keys(KNOWN_GPUS).find((k) => k.toLowerCase() === m[4]!.toLowerCase());
    if (!key) throw new Error(`--gpus: unknown GPU "${m[4]}"; known: ${Object.keys(KNOWN_GPUS).join(', ')} (or give the memory, e.g. 4x80GiB)`);
    return { count, bytes: KNOWN_GPUS[key]!, name: key };
  }
  const unit = m[3]!.toLowerCase();
  const bytes = Number(m[2]) * (unit === 'gib' ? 2 ** 30 : unit === 'tib' ? 2 ** 40 : unit === 'gb' ? 1e9 : 1e12);
  return { count, bytes, name: `${m[2]}${m[3]}` };
}
