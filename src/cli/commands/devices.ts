// `parallm devices`: what this machine offers.
import type { Command } from 'commander';
import { buildInfo, devices } from '../../device.js';
import { bytes, table } from '../format.js';

export function register(program: Command): void {
  program
    .command('devices')
    .description('list the CPU and CUDA devices parallm can use')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const list = devices();
      const info = buildInfo();
      if (opts.json) {
        console.log(JSON.stringify({ build: info, devices: list }, null, 2));
        return;
      }
      const rows = list.map((d) => [
        d.id,
        d.name,
        bytes(d.memoryTotal),
        bytes(d.memoryFree),
        d.computeCapability ? d.computeCapability.join('.') : '',
        d.peers?.length ? d.peers.map((p) => `cuda:${p}`).join(',') : '',
      ]);
      console.log(table(['device', 'name', 'memory', 'free', 'cc', 'peers'], rows));
      if (info.cudaDevices === 0)
        console.log(`\nNo GPU: ${info.cuda ? info.cudaStatus : 'this binary has no CUDA backend'}. Work runs on the CPU.`);
    });
}
