// Emulated forms of the prefill attention's wgmmas (attention_prefill_sm90.cuh's wgmma_ss_n128, wgmma_rs_n128,
// wgmma_rs_n64 and their fence / commit / wait / pin), spliced in by run.sh in place of the PTX ones. Each runs at
// once: a thread computes its own accumulators from the shared-memory descriptors (matmul_wgmma_op.cuh here) and,
// for the register-A forms, from the warpgroup's A fragments gathered through a buffer (a thread's a[r] is row
// 16w + lane/4 + 8(r & 1), k 8(r >> 1) + 2(lane % 4) and + 1, as mma.sync's), then the warpgroup meets at a barrier
// (the instructions are .sync.aligned).
// (Spliced inside namespace parallm::cuda::attn_detail: what it uses is included first, by attn90_emu.cc.)
#pragma once

inline uint32_t emu_rs_a[4][128][4];  // the register-A fragments of each warpgroup

// d (m64n128) = A B (+ d when accumulate), A and B K-major in shared memory.
inline void wgmma_ss_n128(float (&d)[64], uint64_t da, uint64_t db, int accumulate) {
  if (!accumulate)
    for (float& x : d) x = 0.f;
  ::parallm::cuda::mm::emu_wgmma<__nv_bfloat16, 128, 0, 0>(d, da, db);
}

template <int N>
inline void emu_wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db) {
  const int t = int(threadIdx.x % 128), wgi = int(threadIdx.x / 128) % 4, w = t / 32, l = t % 32;
  for (int r = 0; r < 4; ++r) emu_rs_a[wgi][t][r] = a[r];
  auto& bar = ::parallm::cuda::mm::emu_wgmma_bar[wgi];
  bar.arrive_and_wait();
  // A[m][k] of the warpgroup's 64 x 16 from the thread that holds it.
  auto A = [&](int m, int k) {
    const int ww = m / 16, g = m % 16 % 8, hi = m % 16 / 8, kh = k / 8, tt = (k % 8) / 2, c = k % 2;
    const uint32_t v = emu_rs_a[wgi][32 * ww + 4 * g + tt][2 * kh + hi];
    const uint16_t h16 = uint16_t(c ? v >> 16 : v & 0xffffu);
    __nv_bfloat16 b;
    std::memcpy(&b, &h16, 2);
    return __bfloat162float(b);
  };
  for (int j = 0; j < N / 8; ++j)
    for (int h = 0; h < 2; ++h)
      for (int c = 0; c < 2; ++c) {
        const int m = 16 * w + l / 4 + 8 * h, n = 8 * j + 2 * (l % 4) + c;
        float s = 0.f;
        for (int k = 0; k < 16; ++k) s += A(m, k) * ::parallm::cuda::mm::emu_wgmma_operand<__nv_bfloat16>(db, 1, n, k);
        d[4 * j + 2 * h + c] += s;
      }
  bar.arrive_and_wait();  // (every thread has read the fragments before any writes the next ones)
}
// d (m64n128 / m64n64) += A B: A (bf16) in registers, B N-major in shared memory.
inline void wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db) { emu_wgmma_rs<128>(d, a, db); }
inline void wgmma_rs_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t db) { emu_wgmma_rs<64>(d, a, db); }

inline void wgmma_fence() {}
inline void wgmma_commit() {}
template <int N>
inline void wgmma_wait() {}
template <int N>
inline void pin(float (&)[N]) {}
template <int N>
inline void pin(uint32_t (&)[N][4]) {}
