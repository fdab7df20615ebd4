// Hopper (sm_90a) matmul: TMA loads into a shared-memory ring, one producer warpgroup and CW consumer
// warpgroups issuing wgmma m64n256k16 (block tile 64·CW x 256 x 64; or m64n192k16, 128 x 192 x 64: S90Shape).
// CW = 2 (128-row tiles, 4 stages) serves every GEMM of more than 64 rows; CW = 1 (64-row tiles, 5 stages)
// serves decode batches of at most 64 rows, where half of a 128-row tile would be padding: its one consumer
// issues half the wgmmas a stage, so an SM streams the weights up to twice as fast before the tensor core binds. Both operands use the
// 128-byte swizzle the TMA writes, K-major or M/N-major as they lie in global memory; wgmma's
// transpose bits take either, so no transposition pass is needed. Tile edges and the K tail come
// from the TMA's zero fill. The host launches one block per SM and the blocks go over the tiles, so
// the producer fills the ring for the next tile while the consumers store the last one (1-6% over one
// block per tile on an H100). Block b takes tiles b, b + grid, ...; or (DRAWN, the 128-row tile only, when asked:
// matmul.cu's tile_counter) each block's producer draws the next one from a counter, so a block that starts late
// (its SM held by another stream's kernel, as NCCL's all-reduce beside data-parallel training's backward holds
// 16-32 SMs) takes fewer tiles instead of running its fixed share after everyone else.
// Device code exists only in the sm_90a image; other targets get empty bodies (the host launches this kernel
// only on compute capability 9.0).
#pragma once
#include <cuda.h>
#include "matmul_common.cuh"
#include "matmul_wgmma_op.cuh"
#include "pdl.cuh"
#include "sm90_common.cuh"

namespace parallm::cuda::mm {

constexpr int S90_BN = 256, S90_BK = 64;
constexpr int S90_BOX = 8192;  // one 64 x 64 box of 16-bit elements with 128-byte rows
// The epilogue's staging: per consumer warpgroup, 128 columns of its 64-row output at a time (two 64 x 64
// boxes).
constexpr int S90_EPI_BYTES = 2 * S90_BOX;

// The block's shape for CW consumer warpgroups and BN columns. The 64-row tile's stage is 40 KB, so its ring
// holds a fifth stage in the 227 KB an SM gives a block. (A 64 x 128 variant, twice the tiles for a decode GEMM's
// few column strips, and SwiGLU in the 64-row tile's epilogue were measured slower and removed: S12-1,
// S12-2.) The 128-row tile also comes 192 columns wide (m64n192k16, four stages still: a fifth does not fit beside
// the epilogue's staging): matmul.cu's sm90_width takes it where its tiles fill the SMs' last round better, e.g.
// N = 768 at 8,192 rows, 256 tiles of 192 in two rounds where 192 tiles of 256 also took two.
template <int CW, int BN_ = S90_BN>
struct S90Shape {
  static_assert(CW == 1 || CW == 2, "one or two consumer warpgroups");
  static_assert(BN_ == 256 || (BN_ == 192 && CW == 2), "256 columns, or 192 for the 128-row tile");
  static constexpr int BN = BN_;
  static constexpr int BM = 64 * CW, THREADS = 128 * (CW + 1), ACC = BN / 2;  // accumulators a thread
  static constexpr int A_BYTES = BM * S90_BK * 2, B_BYTES = BN * S90_BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr int STAGES = CW == 2 ? 4 : 5;
  // Ring + epilogue staging + room to align both to 1024 bytes (the swizzle atom) + the mbarriers; drawn units,
  // also each stage's unit index (the first stage of a unit tells the consumers which unit it is).
  static constexpr size_t SMEM = size_t(STAGES) * STAGE_BYTES + CW * S90_EPI_BYTES + 1024 + 2 * STAGES * 8;
  static constexpr size_t SMEM_DRAWN = SMEM + STAGES * 4;
};

#ifdef PARALLM_SM90A
using sm90::bulk_commit;
using sm90::bulk_wait_all;
using sm90::bulk_wait_read;
using sm90::mbar_arrive;
using sm90::mbar_expect_tx;
using sm90::mbar_init;
using sm90::mbar_wait;
using sm90::s90_desc;
using sm90::s90_smem;
using sm90::tma_load_2d;
using sm90::tma_store_2d;
using sm90::wg_sync;
#endif

// The tile's wgmma: m64n256k16 or m64n192k16.
template <typename T, int BN, int TA, int TB> struct S90Mma;
template <typename T, int TA, int TB> struct S90Mma<T, 256, TA, TB> : Wgmma256<T, TA, TB> {};
template <typename T, int TA, int TB> struct S90Mma<T, 192, TA, TB> : Wgmma192<T, TA, TB> {};

// DRAWN: the blocks draw their units from `sched` (two counters: the next unit, the blocks done), which the last
// block rearms; first_own: each block's first unit its own (b) and the counter deals out the rest from grid on.
template <typename T, bool TA, bool TB, int CW, int BN_ = S90_BN, bool DRAWN = false>
__global__ void __launch_bounds__(S90Shape<CW, BN_>::THREADS, 1)
    s90_kernel(const __grid_constant__ CUtensorMap tmA, const __grid_constant__ CUtensorMap tmB,
               const __grid_constant__ CUtensorMap tmC, int store_tma, const T* __restrict__ bias,
               T* __restrict__ C, int M, int N, int K, float alpha, float beta, int tiles_m, int tiles_n,
               int pair_ok, int splits, float* __restrict__ ws, unsigned* __restrict__ sched, int first_own) {
#ifdef PARALLM_SM90A
  PARALLM_TRACE_SCOPE(Tile64);
  using Sh = S90Shape<CW, BN_>;
  constexpr int STAGES = Sh::STAGES, STAGE_BYTES = Sh::STAGE_BYTES, A_BYTES = Sh::A_BYTES, BM = Sh::BM, BN = Sh::BN;
  constexpr int ACC = Sh::ACC;
  extern __shared__ uint8_t s90_raw[];
  // Align in the shared address space (the swizzle pattern follows shared addresses).
  const uint32_t raw_s = s90_smem(s90_raw);
  uint8_t* ring = s90_raw + ((1024 - (raw_s & 1023)) & 1023);
  uint8_t* epi = ring + STAGES * STAGE_BYTES;  // 1024-aligned, as the ring's size is
  uint64_t* full = reinterpret_cast<uint64_t*>(epi + CW * S90_EPI_BYTES);
  uint64_t* empty = full + STAGES;
  int* unit_of = reinterpret_cast<int*>(empty + STAGES);  // DRAWN: the unit whose first k-tile stage s holds
  const uint32_t ring_s = s90_smem(ring);

  const int nk = (K + S90_BK - 1) / S90_BK;
  const int wg = threadIdx.x / 128;
  const int tiles = tiles_m * tiles_n;
  // A work unit is one K slice of one tile (splits == 1: the whole K). Slices of a tile differ by at
  // most one k-tile and none is empty (the host keeps splits <= nk).
  const int units = tiles * splits;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(s90_smem(&full[s]), 1);        // the producer's expect_tx arrival (+ the TMA bytes)
      mbar_init(s90_smem(&empty[s]), 4 * CW);  // lane 0 of each consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  // Blocks go over the units (grid = tile count: one each; grid = SM count: persistent, and the producer then
  // fills the ring for the next unit while the consumers store the last one). DRAWN: the producer writes each
  // unit's index beside its first stage; after the last, a stage holding `units` and no data ends the consumers'
  // loop.
  if (wg == 0) {
    // Producer: one thread issues every TMA; the warpgroup gives its registers to the consumers (two
    // consumers need them; one has a whole SM's registers already).
    if (CW == 2) asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
    if (threadIdx.x == 0) {
      pdl_wait();     // A (the activations) is the kernel before's output
      pdl_trigger();  // after the wait: at most one kernel parked behind this one
      // DRAWN: the first draw after the wait (the stream's kernel before, which drew from the same counter, has
      // then rearmed it), then each next one a unit ahead, so the atomic's latency hides behind a unit's loads.
      const unsigned base = DRAWN && first_own ? gridDim.x : 0u;
      unsigned next = DRAWN && !first_own ? atomicAdd(sched, 1u) : blockIdx.x;
      int s = 0;
      uint32_t ph = 0;
      for (;;) {
        const int u = next < unsigned(units) ? int(next) : units;
        if (u == units) {
          if constexpr (DRAWN) {
            mbar_wait(s90_smem(&empty[s]), ph ^ 1);
            unit_of[s] = units;
            mbar_arrive(s90_smem(&full[s]));  // no bytes: the phase completes on this arrival
          }
          break;
        }
        next = DRAWN ? base + atomicAdd(sched, 1u) : next + gridDim.x;
        int tm, tn;
        tile_coords<16>(u / splits, tiles_m, tiles_n, tm, tn);
        const int m0 = tm * BM, n0 = tn * BN;
        const int sp = u % splits, kb = int(int64_t(sp) * nk / splits), ke = int(int64_t(sp + 1) * nk / splits);
        for (int kt = kb; kt < ke; ++kt) {
          mbar_wait(s90_smem(&empty[s]), ph ^ 1);  // first lap passes at once (fresh barrier)
          if (DRAWN && kt == kb) unit_of[s] = u;   // published by the arrival below (release), read after the wait
          const uint32_t fb = s90_smem(&full[s]);
          mbar_expect_tx(fb, STAGE_BYTES);          // a box counts in full even where it is zero-filled
          const uint32_t sa = ring_s + s * STAGE_BYTES, sb = sa + A_BYTES;
          const int k0 = kt * S90_BK;
          if (!TA) {
            tma_load_2d(sa, &tmA, fb, k0, m0);
          } else {
#pragma unroll
            for (int j = 0; j < CW; ++j) tma_load_2d(sa + j * S90_BOX, &tmA, fb, m0 + 64 * j, k0);
          }
          if (TB) {
            tma_load_2d(sb, &tmB, fb, k0, n0);
          } else {
#pragma unroll
            for (int j = 0; j < BN / 64; ++j) tma_load_2d(sb + j * S90_BOX, &tmB, fb, n0 + 64 * j, k0);
          }
          if (++s == STAGES) { s = 0; ph ^= 1; }
        }
      }
      // Every block draws past the end once: the last to do so rearms the counter for the stream's next launch
      // (every draw of this launch is done by then).
      if (DRAWN && atomicAdd(sched + 1, 1u) == gridDim.x - 1) {
        atomicExch(sched, 0u);
        atomicExch(sched + 1, 0u);
      }
    }
  } else {
    if (CW == 2) asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
    pdl_wait();  // the epilogue reads C (beta) and writes C or the partials: after the kernel before completes
    const int cw = wg - 1;  // consumer cw owns rows [64 cw, 64 cw + 64) of the block tile
    const int lane = threadIdx.x % 32;
    int s = 0;
    uint32_t ph = 0;
    float acc[ACC];
    for (int v = blockIdx.x;; v += gridDim.x) {
      int u = v;
      if constexpr (DRAWN) {
        mbar_wait(s90_smem(&full[s]), ph);  // the unit's first stage, or the end
        u = unit_of[s];
      }
      if (u >= units) break;
      int tm, tn;
      tile_coords<16>(u / splits, tiles_m, tiles_n, tm, tn);
      const int m0 = tm * BM, n0 = tn * BN;
      const int sp = u % splits, kb = int(int64_t(sp) * nk / splits), ke = int(int64_t(sp + 1) * nk / splits);
#pragma unroll
      for (int i = 0; i < ACC; ++i) acc[i] = 0.f;
      int prev = 0;
      for (int kt = kb; kt < ke; ++kt) {
        if (!DRAWN || kt > kb) mbar_wait(s90_smem(&full[s]), ph);
        const uint32_t sa = ring_s + s * STAGE_BYTES + cw * S90_BOX;
        const uint32_t sb = ring_s + s * STAGE_BYTES + A_BYTES;
#pragma unroll
        for (int i = 0; i < ACC; ++i) asm volatile("" : "+f"(acc[i])::"memory");  // order vs the fence
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < S90_BK / 16; ++kk) {
          // k step of 16: 32 bytes along a K-major row, or 16 rows (2048 bytes) of an M/N-major box.
          uint64_t da = TA ? s90_desc(sa + kk * 2048, S90_BOX, 1024) : s90_desc(sa + kk * 32, 16, 1024);
          uint64_t db = TB ? s90_desc(sb + kk * 32, 16, 1024) : s90_desc(sb + kk * 2048, S90_BOX, 1024);
          // imm-trans: 1 = M/N-major. A is M-major when transposed; B is N-major when NOT transposed
          // (transB means B is stored [N][K], i.e. K-major).
          S90Mma<T, BN, TA ? 1 : 0, TB ? 0 : 1>::run(acc, da, db);
        }
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        // Keep this stage's wgmmas in flight; the previous stage's are done, so hand its slot back.
        asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
        if (kt > kb && lane == 0) mbar_arrive(s90_smem(&empty[prev]));
        prev = s;
        if (++s == STAGES) { s = 0; ph ^= 1; }
      }
      asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
      // The wgmma writes land asynchronously: pin every accumulator after the wait so the compiler
      // cannot hoist an epilogue read above it.
#pragma unroll
      for (int i = 0; i < ACC; ++i) asm volatile("" : "+f"(acc[i])::"memory");
      if (ke > kb && lane == 0) mbar_arrive(s90_smem(&empty[prev]));  // last stage: the producer may go on

      // Accumulator layout: warp w of the warpgroup holds rows 16w + lane/4 (+8); value 4j + 2h + c is
      // column 8j + 2(lane%4) + c of row +8h.
      const int w = (threadIdx.x % 128) / 32;
      const int row = m0 + cw * 64 + w * 16 + lane / 4;
      const int colb = n0 + 2 * (lane % 4);
      if (splits == 1 && store_tma) {
        // Through shared memory and the TMA (beta == 0, N % 8 == 0): each 128 columns of the warpgroup's
        // 64 x BN are written into two swizzled 64 x 64 boxes and stored by one thread, asynchronously, so the
        // warpgroup goes on to its next tile's wgmmas while the TMA writes this one (the TMA also clips
        // the tile's edges). Storing straight from registers kept the tensor cores idle for the whole
        // epilogue: 13% of a 4096^3 GEMM.
        using P = Pair2<T>;
        uint8_t* eb = epi + cw * S90_EPI_BYTES;
        const bool leader = threadIdx.x % 128 == 0;
        const int r0 = w * 16 + lane / 4;  // rows r0 and r0 + 8 of the warpgroup's 64
#pragma unroll
        for (int half = 0; half < (BN + 127) / 128; ++half) {
          const int cols = BN - 128 * half < 128 ? 64 : 128;  // (192 columns: 128, then one box of 64)
          if (leader) bulk_wait_read();  // the previous stores from this buffer have read it
          wg_sync(cw);
#pragma unroll
          for (int jj = 0; jj < cols / 8; ++jj) {
            const int j = half * 16 + jj;
            const int col = colb + 8 * j;
            float b0 = 0.f, b1 = 0.f;
            if (bias && col < N) b0 = f32(bias[col]), b1 = f32(bias[col + 1]);  // N % 8 == 0: col + 1 < N too
            // Box jj / 8, 16-byte chunk jj % 8 of a 128-byte row, XOR the row (the 128-byte swizzle),
            // which also spreads a warp's 8 rows over all 32 banks.
            uint8_t* box = eb + (jj / 8) * S90_BOX + 4 * (lane % 4);
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int r = r0 + 8 * h;
              *reinterpret_cast<typename P::type*>(box + r * 128 + (((jj % 8) ^ (r % 8)) * 16)) =
                  P::make(alpha * acc[4 * j + 2 * h] + b0, alpha * acc[4 * j + 2 * h + 1] + b1);
            }
          }
          asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // visible to the TMA
          wg_sync(cw);
          if (leader) {
            const int c0 = n0 + half * 128, r = m0 + cw * 64;
            tma_store_2d(&tmC, s90_smem(eb), c0, r);
            if (cols == 128) tma_store_2d(&tmC, s90_smem(eb + S90_BOX), c0 + 64, r);
            bulk_commit();
          }
        }
      } else if (splits == 1) {
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          store2(C, bias, M, N, row, colb + 8 * j, acc[4 * j], acc[4 * j + 1], alpha, beta, pair_ok);
          store2(C, bias, M, N, row + 8, colb + 8 * j, acc[4 * j + 2], acc[4 * j + 3], alpha, beta, pair_ok);
        }
      } else {
        // Split K: this slice's f32 partial sums go to ws[sp][M][N]; splitk_reduce adds the slices
        // and applies the epilogue (the partials of a decode-sized GEMM stay in L2).
        float* w = ws + int64_t(sp) * M * N;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
          store_partial(w, M, N, row, colb + 8 * j, acc[4 * j], acc[4 * j + 1]);
          store_partial(w, M, N, row + 8, colb + 8 * j, acc[4 * j + 2], acc[4 * j + 3]);
        }
      }
    }
    // The TMA stores must finish reading shared memory (and writing C) before the block exits.
    if (store_tma && threadIdx.x % 128 == 0) bulk_wait_all();
  }
#endif
}

}  // namespace parallm::cuda::mm
