// The persistent GPT-2 decode-layer kernel itself (native/cuda/decode_layer.cu) runs on the CPU through
// the host emulation of native/cuda/emu, its blocks all at once (a cooperative launch: the kernel waits at
// grid barriers), against a float64 reference with the ops apart's bf16 rounding points
// (emu/decode_layer_emu.cc). Needs g++ and the CUDA headers (the development machine and CI have nvcc);
// skipped, and says so, where they are missing. The GPU runs it in test/gpu/decode-layer.gpu.test.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cuda = process.env.CUDA_HOME ?? '/usr/local/cuda';
const gxx = spawnSync('g++', ['--version']).status === 0;
const headers = existsSync(join(cuda, 'include', 'cuda_bf16.h'));
if (!gxx || !headers) console.warn(`decode-layer-emu: skipped (${!gxx ? 'no g++' : `no CUDA headers under ${cuda}/include`})`);

describe.skipIf(!gxx || !headers)('the persistent decode-layer kernel on the host emulation', () => {
  it('matches float64 with the ops apart\'s roundings: B 1..4, D 64 and 128, several lens and grids', () => {
    const dir = mkdtempSync(join(tmpdir(), 'parallm-decode-layer-emu-'));
    try {
      const native = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native');
      const src = join(native, 'cuda');
      // cuda/ holds the kernel (as a .cc) and the headers it includes, the emulator's launch.cuh found
      // first; ../core is the repository's.
      const k = join(dir, 'cuda');
      mkdirSync(k);
      symlinkSync(join(native, 'core'), join(dir, 'core'));
      for (const f of ['check.h', 'common.cuh', 'pdl.cuh', 'kernels.h', 'workspace.h']) copyFileSync(join(src, f), join(k, f));
      for (const f of ['launch.cuh', 'emu.h', 'decode_layer_emu.cc', 'cuda_stubs.cc']) copyFileSync(join(src, 'emu', f), join(k, f));
      copyFileSync(join(src, 'decode_layer.cu'), join(k, 'decode_layer.cc'));
      const exe = join(dir, 'decode_layer_emu');
      execFileSync('g++', ['-std=c++20', '-O2', '-fno-strict-aliasing', '-pthread', '-w', `-I${cuda}/include`, '-include', join(k, 'emu.h'), `-I${k}`,
        join(k, 'decode_layer.cc'), join(k, 'decode_layer_emu.cc'), join(k, 'cuda_stubs.cc'), '-o', exe], { stdio: 'pipe' });
      const run = spawnSync(exe, [], { encoding: 'utf8' });
      const out = `${run.stdout}${run.stderr}`;
      expect(out, out).toContain('all passed');
      expect(run.status, out).toBe(0);
      expect(out.match(/ ok$/gm)?.length ?? 0, out).toBeGreaterThanOrEqual(8);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
