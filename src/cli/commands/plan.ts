// `parallm plan`: where each layer goes and what each device will hold, before anything loads.
import type { Command } from 'commander';
import { checkDType, type DType } from '../../dtype.js';
import { deviceInfo, ensureCpuDevices, parseDevice } from '../../device.js';
import { modelConfig } from '../../models/source.js';
import { placeStages, stageMemory, STRATEGIES, type Strategy } from '../../parallel/placement.js';
import { bytes, table } from '../format.js';

interface PlanOpts {
  model: string;
  devices: string;
  strategy: string;
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
    .requiredOption('--devices <list>', 'comma-separated devices, e.g. cuda:0,cuda:1')
    .option('--strategy <s>', 'dp (a replica per device), mp or pp (layers split across devices)', 'pp')
    .option('--split <how>', 'mp/pp: even (the seed\'s get_device_map) or memory (by free memory)', 'even')
    .option('--map <json>', 'mp/pp: explicit map, e.g. \'{"cuda:0":[0,1,2],"cuda:1":[3,4,5]}\'')
    .option('--chunks <n>', 'mp/pp, even split: stages per device, interleaved (device d of D holds stages d, d + D, ...)', '1')
    .option('--batch <n>', 'sequences the KV cache holds (per device for dp)', '1')
    .option('--max-len <n>', 'tokens per sequence the KV cache holds', '1024')
    .option('--dtype <dtype>', 'bf16 (default on GPUs) or f32 (default on CPUs)')
    .option('--json', 'print JSON')
    .action((o: PlanOpts) => {
      const cfg = modelConfig(o.model);
      const list = o.devices.split(',').map((d) => d.trim());
      ensureCpuDevices(list);
      const devices = list.map((d) => parseDevice(d));
      const dtype: DType = checkDType(o.dtype ?? (devices[0]!.startsWith('cuda') ? 'bf16' : 'f32'));
      const batch = Number(o.batch), maxLen = Number(o.maxLen), chunks = Number(o.chunks);
      for (const [flag, v] of [['--batch', batch], ['--max-len', maxLen], ['--chunks', chunks]] as const)
        if (!Number.isInteger(v) || v < 1) throw new Error(`${flag} must be a positive integer`);
      const need = { dtype, batch, maxLen };
      if (!STRATEGIES.includes(o.strategy as Strategy) || o.strategy === 'single') throw new Error(`--strategy must be dp, mp or pp, got "${o.strategy}"`);
      const split = o.strategy === 'dp' ? {} : { placement: o.map ? parseMap(o.map) : (o.split as 'even' | 'memory'), chunks };
      if (o.strategy !== 'dp' && !o.map && o.split !== 'even' && o.split !== 'memory') throw new Error(`--split must be even or memory, got "${o.split}"`);
      if (chunks > 1 && (o.map || o.split !== 'even')) throw new Error('--chunks > 1 places layers evenly: drop --map and --split');
      const stages = placeStages(cfg, o.strategy as Strategy, devices, { ...split, need, freeBytes: (d) => deviceInfo(d).memoryFree });
      // A device's stages (several when interleaved) must fit together.
      const perDevice = new Map<string, number>();
      for (const s of stages) perDevice.set(s.device, (perDevice.get(s.device) ?? 0) + stageMemory(cfg, s, need).total);
      const rows = stages.map((s) => {
        const m = stageMemory(cfg, s, need);
        const free = deviceInfo(s.device).memoryFree;
        return { ...s, ...m, free, fits: perDevice.get(s.device)! <= free };
      });
      if (o.json) return void console.log(JSON.stringify({ model: o.model, strategy: o.strategy, dtype, stages: rows }, null, 2));
      console.log(`${o.model}: ${cfg.family}, ${cfg.layers} layers, hidden ${cfg.hidden}; ${o.strategy} on ${devices.join(', ')}; ${dtype}, KV cache for ${batch} x ${maxLen} tokens`);
      console.log(
        table(
          ['device', 'layers', 'holds', 'weights', 'KV cache', 'total', 'free', 'fits'],
          rows.map((r) => [r.device, `${r.start}-${r.end - 1}`, [r.embed && 'embeddings', r.head && 'head'].filter(Boolean).join(' + '), bytes(r.weights), bytes(r.kvCache), bytes(r.total), bytes(r.free), r.fits ? 'yes' : 'NO']),
        ),
      );
    });
}

function parseMap(text: string): Record<string, number[]> {
  try {
    return JSON.parse(text) as Record<string, number[]>;
  } catch {
    throw new Error('--map must be JSON like {"cuda:0":[0,1],"cuda:1":[2,3]}');
  }
}
