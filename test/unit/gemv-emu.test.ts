// The decode GEMV kernels themselves (native/cuda/matmul_gemv.cuh: the register kernel and the pipelined
// one, plain, with rmsnorm in the prologue and with SwiGLU in the epilogue) and the split-K reduces with a norm
// or SwiGLU in them (matmul_common.cuh, matmul_gemv.cuh) run on the CPU through the host emulation of
// native/cuda/emu (gemv_emu.cc), against float64 and the register kernel bit for bit against the pipelined
// one (also in its form that loads its first pass before the PDL wait), the reduces bit for bit against splitk_reduce (then silu_gate's arithmetic). Needs g++ and the CUDA headers (the development machine and CI have nvcc);
// skipped, and says so, where they are missing. The GPU runs them in test/gpu/decode.gpu.test.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cuda = process.env.CUDA_HOME ?? '/usr/local/cuda';
const gxx = spawnSync('g++', ['--version']).status === 0;
const headers = existsSync(join(cuda, 'include', 'cuda_bf16.h'));
if (!gxx || !headers) console.warn(`gemv-emu: skipped (${!gxx ? 'no g++' : `no CUDA headers under ${cuda}/include`})`);

describe.skipIf(!gxx || !headers)('the GEMV kernels on the host emulation', () => {
  it('every form against float64, the register kernel bit for bit against the pipelined one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallm-gemv-emu-'));
    try {
      const src = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'cuda');
      for (const f of ['matmul_gemv.cuh', 'matmul_common.cuh', 'common.cuh', 'pdl.cuh'])
        copyFileSync(join(src, f), join(dir, f));
      // The emulator's stand-ins (mma_ptx.cuh among them) are found first on the include path.
      for (const f of ['gemv_emu.cc', 'emu.h', 'mma_ptx.cuh']) copyFileSync(join(src, 'emu', f), join(dir, f));
      const exe = join(dir, 'gemv_emu');
      execFileSync('g++', ['-std=c++20', '-O2', '-pthread', `-I${cuda}/include`, `-I${dir}`, join(dir, 'gemv_emu.cc'), '-o', exe], { stdio: 'pipe' });
      const run = spawnSync(exe, [], { encoding: 'utf8' });
      const out = `${run.stdout}${run.stderr}`;
      expect(out, out).toContain('all passed');
      expect(run.status, out).toBe(0);
      expect(out.match(/ ok$/gm)?.length ?? 0, out).toBeGreaterThanOrEqual(60);
      // The register kernel with its first pass loaded before the PDL wait (decode's frozen weights): every shape.
      expect(out.match(/first pass before the wait.* ok$/gm)?.length ?? 0, out).toBeGreaterThanOrEqual(11);
      // The register kernel on 32 W rows a block (matmul.cu's launch_wide_gemv): the bits of 8, every element.
      expect(out.match(/rows a block.* 0 differ .* 0 unwritten ok$/gm)?.length ?? 0, out).toBe(4);
      expect(out.match(/sets a block, unroll 2, swiglu.* 0 differ .* 0 unwritten ok$/gm)?.length ?? 0, out).toBe(2);
      // The gate+up reduce with SwiGLU on 8 columns a thread (splitk_reduce_swiglu8): splitk_reduce's bits then silu_gate's.
      expect(out.match(/8 a thread = ok$/gm)?.length ?? 0, out).toBe(3);
      // The plain and post-norm products in one pass of 12 chunks a warp (matmul.cu's gemv_one_pass): the same bits.
      expect(out.match(/one pass of 12.* ok$/gm)?.length ?? 0, out).toBeGreaterThanOrEqual(20);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 600_000); // (as kernels-emu: compiling and running it shares the cores with the other files; 174-184 s seen under CI load)
});
