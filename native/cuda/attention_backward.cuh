// Causal attention backward on CUDA cores (included by attention.cu), FlashAttention-2 order, deterministic:
// no float atomics, every sum taken in a fixed order by one block.
//
//   bwd_delta    delta[(b*Hq + h)*T + i] = sum_d dout . out (one warp per row), into the workspace.
//   bwd_dkdv     one block per (key tile of 32, kv head, sequence): dK and dV of its 32 keys stay in
//                registers while the block walks every query head of the group and every query tile at or
//                after the key tile (causal), recomputing P = exp(scale q.k - lse) and dS = P (dP - delta).
//                dk and dv are written once (=), so the group's heads are summed in head order.
//   bwd_dq       one block per (query tile of 32, q head, sequence): walks the key tiles up to its own,
//                recomputing P and dS, dQ += dS K in registers; written once.
// Tiles are staged in shared memory as f32 (rows padded to an odd stride: conflict-free column reads),
// 256 threads; thread t owns row t/8 of a 32-row tile and columns t%8 + 8u. D <= 128.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common.cuh"

namespace parallm::cuda::attn_detail {

constexpr int kBwdTile = 32, kBwdThreads = 256;

template <int DM>
struct BwdSimt {
  static constexpr int LD = DM + 1;                 // f32 row stride of the D-wide tiles
  static constexpr int LP = kBwdTile + 1;           // of the 32x32 score tiles
  static constexpr int U = DM / 8;                  // columns per thread
  // sQ, sdO, sK, sV [32][LD]; sP, sdS [32][LP]; lse, delta [32]
  static constexpr size_t SMEM = sizeof(float) * (4 * kBwdTile * LD + 2 * kBwdTile * LP + 2 * kBwdTile);
};

// delta for B*T*Hq rows of out/dout ([B, T, Hq, D] contiguous), one warp a row.
template <typename T>
__global__ void __launch_bounds__(256) bwd_delta(const T* __restrict__ out, const T* __restrict__ dout,
                                                 float* __restrict__ delta, int64_t rows, int T_, int Hq, int D) {
  const int64_t row = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const T* o = out + row * D;
  const T* g = dout + row * D;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s = fmaf(f32(o[d]), f32(g[d]), s);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) {
    const int64_t bi = row / Hq;  // b*T + i
    const int h = int(row - bi * Hq);
    const int64_t b = bi / T_, i = bi - b * T_;
    delta[(b * Hq + h) * T_ + i] = s;
  }
}

// Stage rows [r0, r0 + 32) of a [.., D] view (row r at base + r*rstride) as f32; rows >= limit are zeros.
template <typename T, int LD>
__device__ __forceinline__ void stage(float* dst, const T* base, int64_t rstride, int r0, int limit, int D) {
  for (int idx = threadIdx.x; idx < kBwdTile * D; idx += kBwdThreads) {
    const int r = idx / D, d = idx - r * D;
    dst[r * LD + d] = r0 + r < limit ? f32(base[int64_t(r0 + r) * rstride + d]) : 0.f;
  }
}

// Scores of the tile: thread (qi = t/8) computes keys kj = t%8 + 8u, u < 4, writing P and dS
// (zero where masked: key after query, or query past T).
template <int LD, int LP>
__device__ __forceinline__ void tile_scores(const float* sQ, const float* sdO, const float* sK, const float* sV,
                                            const float* sL, const float* sDelta, float* sP, float* sdS, int q0,
                                            int k0, int T_, int D, float scale) {
  const int qi = threadIdx.x >> 3, c = threadIdx.x & 7;
  float s[4] = {0.f, 0.f, 0.f, 0.f}, dp[4] = {0.f, 0.f, 0.f, 0.f};
  const float* qr = sQ + qi * LD;
  const float* gr = sdO + qi * LD;
  for (int d = 0; d < D; ++d) {
    const float a = qr[d], g = gr[d];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      s[u] = fmaf(a, sK[(c + 8 * u) * LD + d], s[u]);
      dp[u] = fmaf(g, sV[(c + 8 * u) * LD + d], dp[u]);
    }
  }
  const int i = q0 + qi;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int kj = c + 8 * u, j = k0 + kj;
    const float p = (i < T_ && j <= i) ? expf(s[u] * scale - sL[qi]) : 0.f;
    if (sP) sP[qi * LP + kj] = p;
    sdS[qi * LP + kj] = p * (dp[u] - sDelta[qi]);
  }
}

template <typename T, int DM>
__global__ void __launch_bounds__(kBwdThreads)
bwd_dkdv(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ dout,
         const float* __restrict__ lse, const float* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv,
         int B, int T_, int Hq, int Hkv, int D, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale,
         int ntile) {
  using K = BwdSimt<DM>;
  constexpr int LD = K::LD, LP = K::LP, U = K::U;
  extern __shared__ float sm[];
  float* sQ = sm;
  float* sdO = sQ + kBwdTile * LD;
  float* sK = sdO + kBwdTile * LD;
  float* sV = sK + kBwdTile * LD;
  float* sP = sV + kBwdTile * LD;
  float* sdS = sP + kBwdTile * LP;
  float* sL = sdS + kBwdTile * LP;
  float* sDelta = sL + kBwdTile;

  const int kt = int(blockIdx.x % ntile);  // key tile 0 (the most query tiles) first
  const int bg = int(blockIdx.x / ntile), b = bg / Hkv, g = bg % Hkv;
  const int G = Hq / Hkv, k0 = kt * kBwdTile;
  const int64_t orow = int64_t(Hq) * D;  // dout row stride ([B, T, Hq, D])
  stage<T, LD>(sK, k + b * kvbs + int64_t(g) * D, kvts, k0, T_, D);
  stage<T, LD>(sV, v + b * kvbs + int64_t(g) * D, kvts, k0, T_, D);

  const int kr = threadIdx.x >> 3, c = threadIdx.x & 7;
  float ak[U], av[U];
#pragma unroll
  for (int u = 0; u < U; ++u) ak[u] = av[u] = 0.f;

  for (int hh = 0; hh < G; ++hh) {
    const int h = g * G + hh;
    const float* L = lse + (int64_t(b) * Hq + h) * T_;
    const float* Dl = delta + (int64_t(b) * Hq + h) * T_;
    for (int qt = kt; qt < ntile; ++qt) {
      const int q0 = qt * kBwdTile;
      __syncthreads();  // the previous tile's readers are done
      stage<T, LD>(sQ, q + b * qbs + int64_t(h) * D, qts, q0, T_, D);
      stage<T, LD>(sdO, dout + int64_t(b) * T_ * orow + int64_t(h) * D, orow, q0, T_, D);
      if (threadIdx.x < kBwdTile) {
        const int i = q0 + threadIdx.x;
        sL[threadIdx.x] = i < T_ ? L[i] : 0.f;
        sDelta[threadIdx.x] = i < T_ ? Dl[i] : 0.f;
      }
      __syncthreads();
      tile_scores<LD, LP>(sQ, sdO, sK, sV, sL, sDelta, sP, sdS, q0, k0, T_, D, scale);
      __syncthreads();
      // dV[kr] += sum_i P[i][kr] dO[i];  dK[kr] += sum_i dS[i][kr] Q[i]  (scale applied at the end)
      for (int i = 0; i < kBwdTile; ++i) {
        const float p = sP[i * LP + kr], ds = sdS[i * LP + kr];
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int d = c + 8 * u;
          if (d < D) {
            av[u] = fmaf(p, sdO[i * LD + d], av[u]);
            ak[u] = fmaf(ds, sQ[i * LD + d], ak[u]);
          }
        }
      }
    }
  }
  const int j = k0 + kr;
  if (j >= T_) return;
  T* dkr = dk + b * kvbs + int64_t(j) * kvts + int64_t(g) * D;
  T* dvr = dv + b * kvbs + int64_t(j) * kvts + int64_t(g) * D;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int d = c + 8 * u;
    if (d < D) {
      dkr[d] = from_f32<T>(ak[u] * scale);
      dvr[d] = from_f32<T>(av[u]);
    }
  }
}

template <typename T, int DM>
__global__ void __launch_bounds__(kBwdThreads)
bwd_dq(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ dout,
       const float* __restrict__ lse, const float* __restrict__ delta, T* __restrict__ dq, int B, int T_, int Hq,
       int Hkv, int D, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale, int ntile) {
  using K = BwdSimt<DM>;
  constexpr int LD = K::LD, LP = K::LP, U = K::U;
  extern __shared__ float sm[];
  float* sQ = sm;
  float* sdO = sQ + kBwdTile * LD;
  float* sK = sdO + kBwdTile * LD;
  float* sV = sK + kBwdTile * LD;
  float* sdS = sV + kBwdTile * LD + kBwdTile * LP;  // (the sP slot is unused here)
  float* sL = sdS + kBwdTile * LP;
  float* sDelta = sL + kBwdTile;

  const int qt = ntile - 1 - int(blockIdx.x % ntile);  // the latest query tile (the most key tiles) first
  const int bh = int(blockIdx.x / ntile), b = bh / Hq, h = bh % Hq, g = h / (Hq / Hkv);
  const int q0 = qt * kBwdTile;
  const int64_t orow = int64_t(Hq) * D;
  stage<T, LD>(sQ, q + b * qbs + int64_t(h) * D, qts, q0, T_, D);
  stage<T, LD>(sdO, dout + int64_t(b) * T_ * orow + int64_t(h) * D, orow, q0, T_, D);
  if (threadIdx.x < kBwdTile) {
    const int i = q0 + threadIdx.x;
    sL[threadIdx.x] = i < T_ ? lse[(int64_t(b) * Hq + h) * T_ + i] : 0.f;
    sDelta[threadIdx.x] = i < T_ ? delta[(int64_t(b) * Hq + h) * T_ + i] : 0.f;
  }
  const int qi = threadIdx.x >> 3, c = threadIdx.x & 7;
  float aq[U];
#pragma unroll
  for (int u = 0; u < U; ++u) aq[u] = 0.f;

  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kBwdTile;
    __syncthreads();  // previous tile consumed (and sQ, sdO, sL, sDelta staged on the first pass)
    stage<T, LD>(sK, k + b * kvbs + int64_t(g) * D, kvts, k0, T_, D);
    stage<T, LD>(sV, v + b * kvbs + int64_t(g) * D, kvts, k0, T_, D);
    __syncthreads();
    tile_scores<LD, LP>(sQ, sdO, sK, sV, sL, sDelta, nullptr, sdS, q0, k0, T_, D, scale);
    __syncthreads();
    for (int j = 0; j < kBwdTile; ++j) {
      const float ds = sdS[qi * LP + j];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int d = c + 8 * u;
        if (d < D) aq[u] = fmaf(ds, sK[j * LD + d], aq[u]);
      }
    }
  }
  const int i = q0 + qi;
  if (i >= T_) return;
  T* dqr = dq + b * qbs + int64_t(i) * qts + int64_t(h) * D;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int d = c + 8 * u;
    if (d < D) dqr[d] = from_f32<T>(aq[u] * scale);
  }
}

}  // namespace parallm::cuda::attn_detail
