// Emulated stand-in for ../matmul_wgmma_op.cuh (found first on the emulator's include path): the wgmmas the
// sm90 tiles issue, m64nNk16 with f32 accumulators and both operands in shared memory, each thread of the
// warpgroup computing its own accumulators (no exchange: the operands are shared memory, which the ring keeps
// still until the consumers release the stage). The descriptor is decoded as the GPU reads it
// with the 128-byte swizzle (sm90_common.cuh here: start, LBO, SBO):
//   K-major (imm-trans 0): element (r, k) at start + (r / 8) SBO + (r % 8) 128 + 2k;
//   M/N-major (imm-trans 1): element (r, k) at start + (r / 64) LBO + (k / 8) SBO + (k % 8) 128 + 2 (r % 64);
// then swizzled. Accumulator 4j + 2h + c of thread t (warp w, lane l) is row 16w + l/4 + 8h, column
// 8j + 2(l % 4) + c. The 16 products of an element are added in k order, then to the accumulator: the GPU's
// order inside a k16 step is its own, so the emulation checks indexing, not bits against a GPU.
#pragma once
#include <barrier>
#include <cstdint>
#include <cstring>

#include "common.cuh"
#include "sm90_common.cuh"

namespace parallm::cuda::mm {

template <typename T>
inline float emu_wgmma_operand(uint64_t d, int mn_major, int r, int k) {
  const uint32_t start = uint32_t(d & 0x3FFF) << 4, lbo = uint32_t((d >> 16) & 0x3FFF) << 4,
                 sbo = uint32_t((d >> 32) & 0x3FFF) << 4;
  const uint32_t a = mn_major ? start + uint32_t(r / 64) * lbo + uint32_t(k / 8) * sbo + uint32_t(k % 8) * 128 + uint32_t(r % 64) * 2
                              : start + uint32_t(r / 8) * sbo + uint32_t(r % 8) * 128 + uint32_t(k) * 2;
  T v;
  std::memcpy(&v, sm90::emu_s90() + sm90::emu_swz128(a), sizeof v);
  return f32(v);
}

// A wgmma is .sync.aligned: the warpgroup's 128 threads issue it together. Here each thread computes alone, so
// the warpgroup meets at a barrier after each one: no lane (lane 0 releases the stage to the producer) runs on
// while another still reads the stage.
inline std::barrier<> emu_wgmma_bar[4]{std::barrier<>(128), std::barrier<>(128), std::barrier<>(128), std::barrier<>(128)};

template <typename T, int N, int TA, int TB>
inline void emu_wgmma(float* d, uint64_t da, uint64_t db) {
  const int t = int(threadIdx.x % 128), w = t / 32, l = t % 32;
  for (int j = 0; j < N / 8; ++j)
    for (int h = 0; h < 2; ++h)
      for (int c = 0; c < 2; ++c) {
        const int m = 16 * w + l / 4 + 8 * h, n = 8 * j + 2 * (l % 4) + c;
        float s = 0.f;
        for (int k = 0; k < 16; ++k) s += emu_wgmma_operand<T>(da, TA, m, k) * emu_wgmma_operand<T>(db, TB, n, k);
        d[4 * j + 2 * h + c] += s;
      }
  emu_wgmma_bar[(threadIdx.x / 128) % 4].arrive_and_wait();
}

template <typename T, int TA, int TB>
struct Wgmma256 {
  static void run(float (&d)[128], uint64_t da, uint64_t db) { emu_wgmma<T, 256, TA, TB>(d, da, db); }
};

template <typename T, int TA, int TB>
struct Wgmma192 {
  static void run(float (&d)[96], uint64_t da, uint64_t db) { emu_wgmma<T, 192, TA, TB>(d, da, db); }
};

template <typename T, int N>
struct WgmmaK {
  static_assert(N == 8 || N == 16 || N == 32 || N == 64, "m64nNk16: N of 8, 16, 32 or 64");
  static void run(float (&d)[N / 2], uint64_t da, uint64_t db) { emu_wgmma<T, N, 0, 0>(d, da, db); }
};

}  // namespace parallm::cuda::mm
