// Hopper (sm_90a) matmul for a few rows of X against a weight, C[M,N] = alpha X W^T + beta C + bias with
// M <= 64 (decode's projections): the weight is the wgmma's A operand (64 of its rows an m64 block) and
// X's rows, padded to NX = 8, 16, 32 or 64, the B operand (m64nNXk16), so no product row is padding. The
// 64-row tile (matmul_sm90.cuh) puts X in A: at M = 16 three quarters of its m64n256 wgmmas multiply zeros,
// and an SM streamed a weight at ~65 GB/s, so the 16-86 column strips of LLaMA-7B's projections read it at
// 54-88% of the copy rate (bench/DECODE-NOTES.md, S11-S17). Here a stage's tensor work is NX / 64 of that.
//
// Shape: one producer warpgroup (one thread issues the TMA: a 64 k x 128 W box and a 64 k x NX X box a
// stage, both K-major with the 128-byte swizzle, the weight's edge rows, X's rows past M and the K tail
// zero-filled) and two consumer warpgroups, each on 64 of the tile's 128 weight rows, over a ring of ~200 KB.
// Blocks stride over the units (a tile's K slice) as the 64-row tile's do. A thread's accumulators are
// weight rows 16w + lane/4 (+8) and X rows 8j + 2(lane%4) (+1) of its warpgroup's block, so the epilogue
// stores single elements of C (rows of C are X's): the product is tiny, the weight read is the cost.
// Split K writes f32 partials ws[slice][M][N], which matmul.cu's reduce kernels (splitk_reduce,
// splitk_reduce_norm) add in slice order as they do the 64-row tile's.
#pragma once
#include <cuda.h>
#include "matmul_common.cuh"
#include "matmul_wgmma_op.cuh"
#include "pdl.cuh"
#include "sm90_common.cuh"

namespace parallm::cuda::mm {

template <int NX>
struct WShape {
  static_assert(NX == 8 || NX == 16 || NX == 32 || NX == 64, "X rows padded to 8, 16, 32 or 64");
  static constexpr int CW = 2;                   // consumer warpgroups, 64 weight rows each
  static constexpr int BW = 64 * CW;             // weight rows a tile
  static constexpr int THREADS = 128 * (CW + 1);
  static constexpr int W_BYTES = BW * S90_BK * 2, X_BYTES = NX * S90_BK * 2;  // both multiples of 1024
  static constexpr int STAGE_BYTES = W_BYTES + X_BYTES;
  static constexpr int STAGES = (200 * 1024) / STAGE_BYTES;  // 11, 11, 10, 8
  static constexpr int ACC = NX / 2;
  static constexpr size_t SMEM = size_t(STAGES) * STAGE_BYTES + 1024 + 2 * STAGES * 8;
};

// PROBE (timing only, instantiated where matmul.cu is built with PARALLM_PROBES): 1 the consumers skip the
// wgmmas (the ring's streaming alone), 2 the producer loads no weight box (the consumers' work alone); the
// results are then wrong. S19-1: at 16 rows the first runs at 70-86% of the copy rate (the kernel 68-84%), the
// second at 121-174%: the weight stream, not the wgmmas, bounds it.
template <typename T, int NX, int PROBE = 0>
__global__ void __launch_bounds__(WShape<NX>::THREADS, 1)
    s90w_kernel(const __grid_constant__ CUtensorMap tmW, const __grid_constant__ CUtensorMap tmX,
                const T* __restrict__ bias, T* __restrict__ C, int M, int N, int K, float alpha, float beta,
                int tiles, int splits, float* __restrict__ ws) {
#ifdef PARALLM_SM90A
  PARALLM_TRACE_SCOPE(TileW);
  using Sh = WShape<NX>;
  constexpr int STAGES = Sh::STAGES, STAGE_BYTES = Sh::STAGE_BYTES, W_BYTES = Sh::W_BYTES, BW = Sh::BW;
  constexpr int ACC = Sh::ACC;
  extern __shared__ uint8_t s90_raw[];
  const uint32_t raw_s = sm90::s90_smem(s90_raw);
  uint8_t* ring = s90_raw + ((1024 - (raw_s & 1023)) & 1023);
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + STAGES * STAGE_BYTES);
  uint64_t* empty = full + STAGES;
  const uint32_t ring_s = sm90::s90_smem(ring);

  const int nk = (K + S90_BK - 1) / S90_BK;
  const int wg = threadIdx.x / 128;
  const int units = tiles * splits;  // slices of a tile differ by at most one k-tile; none is empty

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      sm90::mbar_init(sm90::s90_smem(&full[s]), 1);
      sm90::mbar_init(sm90::s90_smem(&empty[s]), 4 * Sh::CW);  // lane 0 of each consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    if (threadIdx.x == 0) {
      pdl_wait();  // X is the kernel before's output (without PDL: a no-op)
      pdl_trigger();
      int s = 0;
      uint32_t ph = 0;
      for (int u = blockIdx.x; u < units; u += gridDim.x) {
        const int n0 = (u / splits) * BW, sp = u % splits;
        const int kb = int(int64_t(sp) * nk / splits), ke = int(int64_t(sp + 1) * nk / splits);
        for (int kt = kb; kt < ke; ++kt) {
          sm90::mbar_wait(sm90::s90_smem(&empty[s]), ph ^ 1);  // the first lap passes at once
          const uint32_t fb = sm90::s90_smem(&full[s]);
          sm90::mbar_expect_tx(fb, PROBE == 2 ? STAGE_BYTES - W_BYTES : STAGE_BYTES);  // a box counts in full
          const uint32_t sw = ring_s + s * STAGE_BYTES;                                   // even where zero-filled
          if (PROBE != 2) sm90::tma_load_2d(sw, &tmW, fb, kt * S90_BK, n0);
          sm90::tma_load_2d(sw + W_BYTES, &tmX, fb, kt * S90_BK, 0);
          if (++s == STAGES) s = 0, ph ^= 1;
        }
      }
    }
  } else {
    pdl_wait();  // the epilogue reads C (beta) and writes C or the partials
    const int cw = wg - 1;
    const int lane = threadIdx.x % 32, w = (threadIdx.x % 128) / 32;
    int s = 0;
    uint32_t ph = 0;
    // Four accumulator sets, one for each k16 step of a stage: the four wgmmas of a stage, and each with the
    // next stage's, do not wait on one another. On one set (as the 64-row tile runs: its 128 accumulators leave
    // no room for more) a stage took ~600 ns, the latency of four dependent wgmmas, whatever its bytes (S18-1:
    // ~30 GB/s a block). The sets are added at the end in a fixed order: (0 + 1) + (2 + 3).
    float acc[4][ACC];
    for (int u = blockIdx.x; u < units; u += gridDim.x) {
      const int n0 = (u / splits) * BW, sp = u % splits;
      const int kb = int(int64_t(sp) * nk / splits), ke = int(int64_t(sp + 1) * nk / splits);
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int i = 0; i < ACC; ++i) acc[q][i] = 0.f;
      int prev = 0;
      for (int kt = kb; kt < ke; ++kt) {
        sm90::mbar_wait(sm90::s90_smem(&full[s]), ph);
        const uint32_t sw = ring_s + s * STAGE_BYTES + cw * (64 * 128);  // this warpgroup's 64 weight rows
        const uint32_t sx = ring_s + s * STAGE_BYTES + W_BYTES;
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int i = 0; i < ACC; ++i) asm volatile("" : "+f"(acc[q][i])::"memory");
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < S90_BK / 16; ++kk)
          if (PROBE != 1)
            WgmmaK<T, NX>::run(acc[kk], sm90::s90_desc(sw + kk * 32, 16, 1024), sm90::s90_desc(sx + kk * 32, 16, 1024));
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");  // the previous stage's are done
        if (kt > kb && lane == 0) sm90::mbar_arrive(sm90::s90_smem(&empty[prev]));
        prev = s;
        if (++s == STAGES) s = 0, ph ^= 1;
      }
      asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
#pragma unroll
      for (int q = 0; q < 4; ++q)
#pragma unroll
        for (int i = 0; i < ACC; ++i) asm volatile("" : "+f"(acc[q][i])::"memory");
      if (ke > kb && lane == 0) sm90::mbar_arrive(sm90::s90_smem(&empty[prev]));
#pragma unroll
      for (int i = 0; i < ACC; ++i) acc[0][i] = (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]);

      // acc[0][4j + 2h + c]: weight row (column of C) n0 + 64cw + 16w + lane/4 + 8h, X row 8j + 2(lane%4) + c.
      const int nb = n0 + cw * 64 + w * 16 + lane / 4;
      float* part = splits > 1 ? ws + int64_t(sp) * M * N : nullptr;
#pragma unroll
      for (int j = 0; j < NX / 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int m = 8 * j + 2 * (lane % 4) + c, n = nb + 8 * h;
            if (m >= M || n >= N) continue;
            if (part) part[int64_t(m) * N + n] = acc[0][4 * j + 2 * h + c];
            else store1(C, bias, N, m, n, acc[0][4 * j + 2 * h + c], alpha, beta);
          }
    }
  }
#endif
}

}  // namespace parallm::cuda::mm
