// Plain FMA matmul: the f32 path (f32 must stay exact to ~1e-5, so no tf32) and the catch-all for any
// dtype (K == 0, shapes the tensor-core paths refuse). 64x64 tile, 256 threads, 4x4 outputs each;
// element loads with bounds checks, so any size, alignment and transposition works.
#pragma once
#include "matmul_common.cuh"

namespace parallm::cuda::mm {

constexpr int SIMT_BM = 64, SIMT_BN = 64, SIMT_BK = 16;

template <typename T, bool TA, bool TB>
__global__ void __launch_bounds__(256) simt_kernel(const T* __restrict__ A, const T* __restrict__ B,
                                                   const T* __restrict__ bias, T* __restrict__ C, int M, int N,
                                                   int K, float alpha, float beta, int tiles_m, int tiles_n) {
  // Stored k-major so the inner loop reads a row of 64 consecutive floats; +4 pad against conflicts.
  __shared__ float As[SIMT_BK][SIMT_BM + 4];
  __shared__ float Bs[SIMT_BK][SIMT_BN + 4];
  int tm, tn;
  tile_coords<8>(blockIdx.x, tiles_m, tiles_n, tm, tn);
  const int m0 = tm * SIMT_BM, n0 = tn * SIMT_BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += SIMT_BK) {
#pragma unroll
    for (int e = threadIdx.x; e < SIMT_BM * SIMT_BK; e += 256) {
      // Consecutive threads walk the contiguous dimension of each operand (coalesced loads).
      int mm, kk;
      if (!TA) { mm = e / SIMT_BK; kk = e % SIMT_BK; } else { kk = e / SIMT_BM; mm = e % SIMT_BM; }
      int gm = m0 + mm, gk = k0 + kk;
      float a = 0.f;
      if (gm < M && gk < K) a = f32(TA ? A[(int64_t)gk * M + gm] : A[(int64_t)gm * K + gk]);
      As[kk][mm] = a;
      int nn;
      if (TB) { nn = e / SIMT_BK; kk = e % SIMT_BK; } else { kk = e / SIMT_BN; nn = e % SIMT_BN; }
      int gn = n0 + nn;
      gk = k0 + kk;
      float b = 0.f;
      if (gn < N && gk < K) b = f32(TB ? B[(int64_t)gn * K + gk] : B[(int64_t)gk * N + gn]);
      Bs[kk][nn] = b;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < SIMT_BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    int row = m0 + ty + 16 * i;
    if (row >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int col = n0 + tx + 16 * j;
      if (col < N) store1(C, bias, N, row, col, acc[i][j], alpha, beta);
    }
  }
}

}  // namespace parallm::cuda::mm
