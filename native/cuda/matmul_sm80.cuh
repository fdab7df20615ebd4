// Tensor-core matmul for sm_80+ (mma.sync m16n8k16 fed by ldmatrix) and the few-row GEMV path.
// Shared memory keeps each operand in its global orientation: K-major tiles are read with ldmatrix,
// M/N-major tiles with ldmatrix.trans, so all four transpose combinations need no transposing copy.
#pragma once
#include "matmul_common.cuh"
#include "mma_ptx.cuh"

namespace parallm::cuda::mm {

using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldsm_x4;
using ptx::ldsm_x4_t;
using ptx::MmaOp;
using ptx::smem_addr;

constexpr int S80_BM = 128, S80_BN = 128, S80_BK = 32, S80_STAGES = 3;
constexpr int S80_KPAD = S80_BK + 8;   // K-major rows: 80 bytes, ldmatrix rows hit distinct banks
constexpr int S80_MNPAD = S80_BM + 8;  // M/N-major rows: 272 bytes, likewise
constexpr int S80_TILE_ELEMS = S80_BM * S80_KPAD > S80_BK * S80_MNPAD ? S80_BM * S80_KPAD : S80_BK * S80_MNPAD;
constexpr size_t S80_SMEM = size_t(S80_STAGES) * 2 * S80_TILE_ELEMS * 2;

// Fill one stage's tile of one operand. KMAJ: stored [rows][K] (rows = M or N); else stored [K][rows].
// ALIGNED (leading dimension % 8 == 0, 16-byte base): 16-byte cp.async, each chunk wholly in or out.
// Otherwise element loads with per-element bounds checks (slow, any layout).
template <typename T, bool KMAJ, bool ALIGNED>
__device__ __forceinline__ void s80_load_tile(T* dst, const T* __restrict__ src, int rows, int K, int r0, int k0) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    int chunk = tid + c * 256;
    int r, k;
    T* d;
    const T* s;
    bool inb;
    int64_t ld = KMAJ ? K : rows;
    if (KMAJ) {
      int rr = chunk / 4, kc = (chunk % 4) * 8;
      r = r0 + rr;
      k = k0 + kc;
      d = dst + rr * S80_KPAD + kc;
      s = src + (int64_t)r * ld + k;
      inb = r < rows && k < K;
    } else {
      int kk = chunk / 16, rc = (chunk % 16) * 8;
      r = r0 + rc;
      k = k0 + kk;
      d = dst + kk * S80_MNPAD + rc;
      s = src + (int64_t)k * ld + r;
      inb = k < K && r < rows;
    }
    if (ALIGNED) {
      cp_async16(smem_addr(d), inb ? s : src, inb ? 16 : 0);
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        bool ok = KMAJ ? (r < rows && k + e < K) : (k < K && r + e < rows);
        d[e] = ok ? s[e] : from_f32<T>(0.f);
      }
    }
  }
}

template <typename T, bool TA, bool TB, bool ALIGNED>
__global__ void __launch_bounds__(256) s80_kernel(const T* __restrict__ A, const T* __restrict__ B,
                                                  const T* __restrict__ bias, T* __restrict__ C, int M, int N,
                                                  int K, float alpha, float beta, int tiles_m, int tiles_n,
                                                  int pair_ok) {
  extern __shared__ __align__(16) uint8_t s80_smem[];
  T* sA = reinterpret_cast<T*>(s80_smem);
  T* sB = sA + S80_STAGES * S80_TILE_ELEMS;
  int tm, tn;
  tile_coords<8>(blockIdx.x, tiles_m, tiles_n, tm, tn);
  const int m0 = tm * S80_BM, n0 = tn * S80_BN;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int wm = warp / 4, wn = warp % 4;  // warp tile 64 (M) x 32 (N)
  const int nk = (K + S80_BK - 1) / S80_BK;

  float acc[4][4][4] = {};

  auto load_stage = [&](int st, int kt) {
    s80_load_tile<T, !TA, ALIGNED>(sA + st * S80_TILE_ELEMS, A, M, K, m0, kt * S80_BK);
    s80_load_tile<T, TB, ALIGNED>(sB + st * S80_TILE_ELEMS, B, N, K, n0, kt * S80_BK);
  };

#pragma unroll
  for (int s = 0; s < S80_STAGES - 1; ++s) {
    if (s < nk) load_stage(s, s);
    cp_async_commit();
  }

  for (int kt = 0; kt < nk; ++kt) {
    cp_async_wait<S80_STAGES - 2>();
    __syncthreads();  // stage kt landed for all threads; stage kt-1 is no longer read by anyone
    {
      int nt = kt + S80_STAGES - 1;
      if (nt < nk) load_stage(nt % S80_STAGES, nt);
      cp_async_commit();
    }
    const T* tA = sA + (kt % S80_STAGES) * S80_TILE_ELEMS;
    const T* tB = sB + (kt % S80_STAGES) * S80_TILE_ELEMS;
#pragma unroll
    for (int kk = 0; kk < S80_BK; kk += 16) {
      uint32_t af[4][4], bf[2][4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        int mb = wm * 64 + i * 16;
        if (!TA) {
          // matrices: (m 0-7,k 0-7), (m 8-15,k 0-7), (m 0-7,k 8-15), (m 8-15,k 8-15)
          ldsm_x4(af[i], smem_addr(tA + (mb + lane % 16) * S80_KPAD + kk + (lane / 16) * 8));
        } else {
          int q = lane / 8, r = lane % 8;
          ldsm_x4_t(af[i], smem_addr(tA + (kk + (q / 2) * 8 + r) * S80_MNPAD + mb + (q % 2) * 8));
        }
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        int nb = wn * 32 + j * 16;
        if (TB) {
          // matrices: (n 0-7,k 0-7), (n 0-7,k 8-15), (n 8-15,k 0-7), (n 8-15,k 8-15)
          ldsm_x4(bf[j], smem_addr(tB + (nb + lane % 8 + (lane / 16) * 8) * S80_KPAD + kk + ((lane / 8) % 2) * 8));
        } else {
          int q = lane / 8, r = lane % 8;
          ldsm_x4_t(bf[j], smem_addr(tB + (kk + (q % 2) * 8 + r) * S80_MNPAD + nb + (q / 2) * 8));
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) MmaOp<T>::run(acc[i][j], af[i], bf[j / 2][(j % 2) * 2], bf[j / 2][(j % 2) * 2 + 1]);
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    int row = m0 + wm * 64 + i * 16 + lane / 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int col = n0 + wn * 32 + j * 8 + (lane % 4) * 2;
      store2(C, bias, M, N, row, col, acc[i][j][0], acc[i][j][1], alpha, beta, pair_ok);
      store2(C, bias, M, N, row + 8, col, acc[i][j][2], acc[i][j][3], alpha, beta, pair_ok);
    }
  }
}

}  // namespace parallm::cuda::mm
