// The mma.sync attention kernels (native/cuda/attention_prefill_mma.cuh: the prefill with its logsumexp;
// attention_backward_mma.cuh: the backward as three kernels, and as one a head for T <= 128 (bwd_short_mma)) and the
// CUDA-core backward (attention_backward.cuh), run on the CPU through the host emulation of native/cuda/emu (run.sh's
// `attention` stage: attention_emu.cc beside the stand-in mma_ptx.cuh), against float64 with the outputs poisoned
// first: grouped-query heads, ragged tiles, one chunk. Needs g++, perl and the CUDA headers; skipped, and says so,
// where they are missing. The GPU runs the same kernels in test/gpu/grad-kernels.gpu.test.ts.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cuda = process.env.CUDA_HOME ?? '/usr/local/cuda';
const have = (cmd: string) => spawnSync(cmd, ['--version']).status === 0;
const tools = have('g++') && have('perl') && existsSync(join(cuda, 'include', 'cuda.h'));
if (!tools) console.warn('attention-emu: skipped (needs g++, perl and the CUDA headers)');

describe.skipIf(!tools)('the attention kernels on the host emulation', () => {
  it('the prefill, the three-kernel and one-kernel backward on tensor cores, and the CUDA-core backward, against float64', () => {
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'cuda', 'emu', 'run.sh');
    const run = spawnSync('bash', [script, 'attention'], { encoding: 'utf8' });
    const out = `${run.stdout}${run.stderr}`;
    expect(out, out).toContain('all passed');
    expect(run.status, out).toBe(0);
    expect(out.match(/ FAIL/g), out).toBeNull();
    // the one-kernel backward at T 128 (every warp), 70 (a ragged chunk) and 16 (one chunk): dq, dk and dv each
    expect(out.match(/bwd_short_mma d[qkv] .* ok$/gm)?.length ?? 0, out).toBe(9);
    expect(out.match(/bwd_dkdv_mma dk .* ok$/gm)?.length ?? 0, out).toBeGreaterThan(0);
    expect(out.match(/bwd_dq dq .* ok$/gm)?.length ?? 0, out).toBeGreaterThan(0);
  }, 300_000);
});
