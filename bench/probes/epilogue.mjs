// Probe: the sm90 matmul with C stored through the TMA (default) against the registers' epilogue, on
// the same card in one process, alternating, for the prefill-sized GEMMs. Prints one line per case.
import { runKernelBench } from '../../dist/bench/index.js';
import { native } from '../../dist/native.js';
const filter = ['8192x8192x8192', '4096x4096x4096', '4096x11008x4096', '4096x4096x11008', '16384x3072x768', '16384x768x3072'];
const rows = {};
for (let round = 0; round < 2; round++)
  for (const tma of [false, true]) {
    native.testing.matmulTmaStore(tma);
    for (const r of runKernelBench({ device: 'cuda:0', filter })) (rows[`${r.name} ${r.shape}`] ??= { regs: [], tma: [] })[tma ? 'tma' : 'regs'].push(r.tflops);
  }
native.testing.matmulTmaStore(true);
for (const [k, v] of Object.entries(rows))
  console.log(`PROBE ${k.padEnd(34)} registers ${v.regs.map((x) => x.toFixed(1)).join(' / ')}  TMA ${v.tma.map((x) => x.toFixed(1)).join(' / ')} TFLOP/s`);
