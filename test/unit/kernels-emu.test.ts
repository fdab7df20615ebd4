// The CUDA kernels of native/cuda's op files (norms, activations, rope and the KV cache, embeddings, the
// classifier, the optimizer, softmax, decode attention with its fused rope + cache-write and split-K forms) run on the CPU
// through the host emulation of native/cuda/emu (run.sh's `training` stage: the .cu files rewritten by
// rewrite.py, kernels_emu.cc), against float64 and, where the CUDA code promises it, bit for bit against the
// launches they replace. Needs g++, python3 and the CUDA headers (the development machine and CI have them);
// skipped, and says so, where they are missing. The GPU runs the same kernels in test/gpu.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cuda = process.env.CUDA_HOME ?? '/usr/local/cuda';
const have = (cmd: string) => spawnSync(cmd, ['--version']).status === 0;
const tools = have('g++') && have('python3') && existsSync(join(cuda, 'include', 'cuda_bf16.h'));
if (!tools) console.warn('kernels-emu: skipped (needs g++, python3 and the CUDA headers)');

describe.skipIf(!tools)('the op kernels on the host emulation', () => {
  it('every kernel against float64; the fused decode attention bit for bit against rope_kv_write + attention_decode', () => {
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'cuda', 'emu', 'run.sh');
    const run = spawnSync('bash', [script, 'training'], { encoding: 'utf8' });
    const out = `${run.stdout}${run.stderr}`;
    expect(out, out).toContain('all passed');
    expect(run.status, out).toBe(0);
    expect(out.match(/ FAIL/g), out).toBeNull();
    // f32 and bf16 of each fused case: the new token mid-context / last / past lens / outside the cache,
    // GQA, two head blocks a kv head (the copy), partial and odd rotations, no rotation
    expect(out.match(/rope_kv_attention_decode .* ok \(= rope_kv_write \+ attention_decode(; PRE too)?\)/g)?.length ?? 0, out).toBe(24);
    // decode_split's PRE form (first keys, and the rotation's angles, before the PDL wait), bf16 at up to four q
    // heads a kv head, on the fused kernel's shapes: four without rotation, three with it
    expect(out.match(/rope_kv_attention_decode .* bf16 ok \(= rope_kv_write \+ attention_decode; PRE too\)/g)?.length ?? 0, out).toBe(7);
    expect(out.match(/rope_kv_attention_decode .* rot(?!0 )\d+ .* bf16 ok \(= rope_kv_write \+ attention_decode; PRE too\)/g)?.length ?? 0, out).toBe(3);
    // matmul_rope_kv_write's split-K reduce with the rope: the bits of splitk_reduce then rope_kv_write (f32, bf16)
    expect(out.match(/splitk_rope_kv_write .* ok \(= splitk_reduce \+ rope_kv_write\)/g)?.length ?? 0, out).toBe(6);
    // decode attention's key chunks as its launch chooses them (attention.cu's decode_chunks): one from three
    // (sequence, head group) blocks an SM or from a group's cache of 64 KiB or less, the fill target below, a
    // forced count, at decode's shapes
    expect(out.match(/decode_chunks .* ok$/gm)?.length ?? 0, out).toBe(12);
    // decode attention summing the qkv product's K slices itself (splitk_rope_kv_attention_decode, PRE only): the
    // bits of splitk_rope_kv_write then attention_decode in four shapes, not taken where pairs cross packs
    expect(out.match(/splitk_rope_kv_attention_decode .* ok \(PRE: = splitk_rope_kv_write \+ attention_decode; else not taken\)/g)?.length ?? 0, out).toBe(4);
    expect(out.match(/splitk_rope_kv_attention_decode .* ok \(does not apply: nothing launched\)/g)?.length ?? 0, out).toBe(1);
  }, 600_000);
});
