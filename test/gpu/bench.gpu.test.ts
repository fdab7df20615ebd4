// `parallm bench` on GPUs: the run's metadata names the GPUs, the driver and NCCL; a quick strategy run
// on two GPUs draws its charts. Skipped without a GPU (the metadata) or without two and NCCL (the run).
import { Resvg } from '@resvg/resvg-js';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { benchMeta, ncclVersionString } from '../../src/bench/meta.js';
import { runStrategyBench } from '../../src/bench/strategies.js';
import { cudaDeviceCount, devices } from '../../src/device.js';
import { ncclStatus } from '../../src/parallel/comm.js';

const gpus = cudaDeviceCount();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'parallm-bench-gpu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(gpus < 1)('bench metadata on a GPU', () => {
  it('names every GPU, the driver and the NCCL version', () => {
    const m = benchMeta(['cuda:0']);
    expect(m.gpus).toEqual(devices().filter((d) => d.kind === 'cuda').map((d) => d.name));
    expect(m.devices[0]).toEqual({ id: 'cuda:0', name: m.gpus[0] });
    expect(m.cuda).toMatchObject({ compiled: true, status: 'ok', runtime: expect.stringMatching(/^1\d\.\d+$/), driverSupports: expect.stringMatching(/^1\d\.\d+$/) });
    expect(m.driver).toMatch(/^\d+\.\d+/);
    const n = ncclStatus();
    if (n.ok) expect(m.nccl.version).toBe(ncclVersionString(n.version!));
    else expect(m.nccl.error).toBe(n.error);
  });
});

describe.skipIf(gpus < 1)('bench train --rehearse-dp on one GPU', () => {
  it('GPT-2 at 16 x 128: the rehearsal (its buckets\' kernels in the step\'s graph) leaves the losses bit for bit', async () => {
    const { runTrainBench } = await import('../../src/bench/train.js');
    const o = { model: 'gpt2', device: 'cuda:0', dtype: 'bf16' as const, shapes: [[16, 128]] as [number, number][], steps: 3 };
    const [plain] = await runTrainBench(o);
    const [r] = await runTrainBench({ ...o, rehearseDp: { sms: 16, gbps: 330, bucketMiB: 25 } });
    expect(r!.graph).toBe(true);
    expect(r!.rehearsal).toMatchObject({ sms: 16, gbps: 330, bucketMiB: 25 });
    expect(r!.rehearsal!.buckets).toBeGreaterThan(5); // GPT-2's 124 M bf16 gradients in 25 MiB
    expect([r!.lossFirst, r!.lossLast]).toEqual([plain!.lossFirst, plain!.lossLast]);
    // at 5 GB/s the buckets' kernels (one after another on their stream, waited for by the step) take at least
    // 2 bytes a parameter / 5 GB/s a step: they are in the graph and held for their time
    const [slow] = await runTrainBench({ ...o, rehearseDp: { sms: 16, gbps: 5, bucketMiB: 25 } });
    expect(slow!.msPerStep).toBeGreaterThan((0.95 * 2 * slow!.parameters) / 5e6);
    expect([slow!.lossFirst, slow!.lossLast]).toEqual([plain!.lossFirst, plain!.lossLast]);
  });
});

describe.skipIf(gpus < 2 || !ncclStatus().ok)('bench strategies on two GPUs', () => {
  it('runs mp and pp with min/median/max and draws their charts', async () => {
    const out = path.join(tmp, 'charts');
    const results = await runStrategyBench({ model: 'tiny-llama', devices: ['cuda:0', 'cuda:1'], strategies: ['mp', 'pp'], batch: 4, promptTokens: 16, newTokens: 4, outDir: out });
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(r).toMatchObject({ model: 'tiny-llama', dtype: 'bf16', repeats: 3 });
      expect(r.tokensPerSRuns.min).toBeLessThanOrEqual(r.tokensPerS);
      expect(r.tokensPerSRuns.max).toBeGreaterThanOrEqual(r.tokensPerS);
    }
    expect(readdirSync(out).sort()).toEqual(['throughput.svg', 'timeline-mp.svg', 'timeline-pp.svg']);
    for (const f of readdirSync(out)) {
      const svg = readFileSync(path.join(out, f), 'utf8');
      if (f.startsWith('timeline')) expect(svg).toMatch(/ideal bubble of one pass/);
      const png = new Resvg(svg, { font: { loadSystemFonts: true } }).render();
      expect(png.width * png.height).toBeGreaterThan(0);
    }
  });
});
