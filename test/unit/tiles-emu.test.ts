// The Hopper matmul tiles themselves (native/cuda/matmul_sm90.cuh: the 64- and 128-row tiles, the latter 256 and 192
// columns wide, with every transpose and the TMA store of C; matmul_sm90_wtile.cuh: the W-as-A tile decode takes at 9-64 rows), and the
// Hopper prefill attention (attention_prefill_sm90.cuh, with its register-A wgmmas and ping-pong barriers), run on the
// CPU through the host emulation of native/cuda/emu (run.sh's `tiles` stage: tiles_emu.cc beside the stand-ins
// sm90_common.cuh, for mbarriers and the TMA with its 128-byte swizzle, and matmul_wgmma_op.cuh, for the wgmmas'
// shared-memory descriptors), against float64 with C poisoned first: tile edges, K tails, K slices through
// splitk_reduce, grids smaller than the work. Needs g++, perl, python3 and the CUDA headers (the development machine and
// CI have them); skipped, and says so, where they are missing. The GPU runs the same kernels in
// test/gpu/kernels.gpu.test.ts and decode.gpu.test.ts.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cuda = process.env.CUDA_HOME ?? '/usr/local/cuda';
const have = (cmd: string) => spawnSync(cmd, ['--version']).status === 0;
const tools = have('g++') && have('perl') && have('python3') && existsSync(join(cuda, 'include', 'cuda.h'));
if (!tools) console.warn('tiles-emu: skipped (needs g++, perl, python3 and the CUDA headers)');

describe.skipIf(!tools)('the sm90 matmul tiles and prefill attention on the host emulation', () => {
  it('the W-as-A, 64-row and 128-row (256 and 192 wide) tiles and the prefill attention against float64', () => {
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'cuda', 'emu', 'run.sh');
    const run = spawnSync('bash', [script, 'tiles'], { encoding: 'utf8' });
    const out = `${run.stdout}${run.stderr}`;
    expect(out, out).toContain('all passed');
    expect(run.status, out).toBe(0);
    expect(out.match(/ FAIL/g), out).toBeNull();
    expect(out.match(/W-as-A tile .* ok$/gm)?.length ?? 0, out).toBe(8);
    // every transpose of the 64- and 128-row tiles and of the 128 x 192 one (12 cases), five of them storing C through
    // the TMA; the 8 of 128 rows also with their units drawn from a counter, and drawn after each block's own first
    expect(out.match(/\d+ x 256 tile, .* ok$/gm)?.length ?? 0, out).toBe(16);
    expect(out.match(/128 x 192 tile, .* ok$/gm)?.length ?? 0, out).toBe(12);
    expect(out.match(/C by the TMA.* ok$/gm)?.length ?? 0, out).toBe(11);
    expect(out.match(/units strided .* ok$/gm)?.length ?? 0, out).toBe(12);
    expect(out.match(/units drawn M.* ok$/gm)?.length ?? 0, out).toBe(8);
    expect(out.match(/units drawn after its own .* ok$/gm)?.length ?? 0, out).toBe(8);
    // the Hopper prefill attention: plain, overlapped, with the ping-pong, and at D 64, against float64 (out and lse)
    expect(out.match(/prefill_sm90 .* ok$/gm)?.length ?? 0, out).toBe(4);
  }, 300_000);
});
