// Shared pieces of the matmul kernels: element conversions and the epilogue that applies
// C = alpha*acc + beta*C + bias and rounds to the output type.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"
#include "pdl.cuh"

namespace parallm::cuda::mm {

// f32 <-> storage conversions (f32, from_f32) are the element-wise kernels' ones, from common.cuh.

// Two adjacent 16-bit outputs as one 4-byte store (halves the store instructions of the epilogues).
template <typename T> struct Pair2;
template <> struct Pair2<__nv_bfloat16> {
  using type = __nv_bfloat162;
  __device__ static type make(float a, float b) { return __floats2bfloat162_rn(a, b); }
  __device__ static float2 split(type v) { return __bfloat1622float2(v); }
};
template <> struct Pair2<__half> {
  using type = __half2;
  __device__ static type make(float a, float b) { return __floats2half2_rn(a, b); }
  __device__ static float2 split(type v) { return __half22float2(v); }
};

// One output element. beta == 0 never reads C (it may hold garbage or NaN).
// Both return what they stored (as f32; callers other than splitk_reduce_norm drop it).
template <typename T>
__device__ __forceinline__ float store1(T* C, const T* bias, int64_t N, int64_t row, int64_t col, float v,
                                        float alpha, float beta) {
  float r = alpha * v;
  T* c = C + row * N + col;
  if (beta != 0.f) r += beta * f32(*c);
  if (bias) r += f32(bias[col]);
  const T o = from_f32<T>(r);
  *c = o;
  return f32(o);
}

// Outputs (row, col) and (row, col+1). pair_ok: N even and C 4-byte aligned, so with col even the
// pair is one aligned 4-byte word.
template <typename T>
__device__ __forceinline__ float2 store2(T* C, const T* bias, int64_t M, int64_t N, int64_t row, int64_t col,
                                         float v0, float v1, float alpha, float beta, bool pair_ok) {
  if (row >= M || col >= N) return make_float2(0.f, 0.f);
  if constexpr (sizeof(T) == 2) {
    if (pair_ok) {
      using P = Pair2<T>;
      typename P::type* c = reinterpret_cast<typename P::type*>(C + row * N + col);
      float r0 = alpha * v0, r1 = alpha * v1;
      if (beta != 0.f) {
        float2 o = P::split(*c);
        r0 += beta * o.x;
        r1 += beta * o.y;
      }
      if (bias) {
        r0 += f32(bias[col]);
        r1 += f32(bias[col + 1]);
      }
      const typename P::type o = P::make(r0, r1);
      *c = o;
      return P::split(o);
    }
  }
  const float y0 = store1(C, bias, N, row, col, v0, alpha, beta);
  return make_float2(y0, col + 1 < N ? store1(C, bias, N, row, col + 1, v1, alpha, beta) : 0.f);
}

// Split K: f32 partial sums (row, col) and (row, col+1) of one K slice, into w [M][N].
__device__ __forceinline__ void store_partial(float* w, int64_t M, int64_t N, int64_t row, int64_t col, float v0,
                                              float v1) {
  if (row >= M || col >= N) return;
  float* p = w + row * N + col;
  if ((N & 1) == 0) {  // col is even, so the pair is one aligned 8-byte word
    *reinterpret_cast<float2*>(p) = make_float2(v0, v1);
    return;
  }
  p[0] = v0;
  if (col + 1 < N) p[1] = v1;
}

// Split K, second pass, for (row, col) and (row, col+1): the slices' partial sums of ws [splits][M][N] added
// in slice order from 0, then stored through store2 (C = alpha * sum + beta * C + bias). Four slices' loads
// are issued before any is added (in order): a loop of load-then-add waited a memory latency a slice. A last
// group of fewer than four is loaded at once too (guarded, not padded with zeros: -0 + 0 would change a bit);
// the W-as-A tile cuts 7B's gate+up product in three slices, which the loop that followed the groups of four
// loaded one latency at a time (S27-3: with splitk_reduce_swiglu8, +0.25%).
// splitk_reduce_norm (matmul_gemv.cuh) sums 8 columns at once in the same order (splitk_sum8) and stores
// through store2 too: the same bits.
// The sums themselves (splitk_sum2): of ws [s][row][col] and, when two, [s][row][col + 1] over the slices s.
__device__ __forceinline__ void splitk_sum2(const float* __restrict__ ws, int splits, int M, int N, int64_t row,
                                            int64_t col, bool two, float& v0, float& v1) {
  constexpr int F = 4;
  const int64_t plane = int64_t(M) * N;
  const float* p = ws + row * N + col;
  v0 = 0.f, v1 = 0.f;
  for (int s = 0; s < splits; s += F, p += F * plane) {
    float a0[F], a1[F];
#pragma unroll
    for (int j = 0; j < F; ++j)
      if (s + j < splits) a0[j] = p[j * plane], a1[j] = two ? p[j * plane + 1] : 0.f;
#pragma unroll
    for (int j = 0; j < F; ++j) {
      if (s + j >= splits) break;
      v0 += a0[j];
      if (two) v1 += a1[j];
    }
  }
}
template <typename T>
__device__ __forceinline__ void splitk_store2(const float* __restrict__ ws, int splits, const T* __restrict__ bias,
                                                T* __restrict__ C, int M, int N, int64_t row, int64_t col,
                                                float alpha, float beta, int pair_ok) {
  float v0, v1;
  splitk_sum2(ws, splits, M, N, row, col, col + 1 < N, v0, v1);
  store2(C, bias, M, N, row, col, v0, v1, alpha, beta, pair_ok);
}

// The slices' sums of 8 columns from ws + off (off % 4 == 0, plane % 4 == 0: 16-byte loads), each added in
// slice order from 0 as splitk_store2 adds them (the same bits), four slices' loads in flight at a time (a last
// group of fewer too, as splitk_sum2's).
__device__ __forceinline__ void splitk_sum8(const float* __restrict__ ws, int splits, int64_t plane, int64_t off,
                                            float (&v)[8]) {
  constexpr int F = 4;
#pragma unroll
  for (int e = 0; e < 8; ++e) v[e] = 0.f;
  const float* p = ws + off;
  auto add = [&](const float4& a, const float4& b) {
    v[0] += a.x, v[1] += a.y, v[2] += a.z, v[3] += a.w, v[4] += b.x, v[5] += b.y, v[6] += b.z, v[7] += b.w;
  };
  for (int s = 0; s < splits; s += F, p += F * plane) {
    float4 a[F][2];
#pragma unroll
    for (int j = 0; j < F; ++j)
      if (s + j < splits)
        a[j][0] = *reinterpret_cast<const float4*>(p + j * plane), a[j][1] = *reinterpret_cast<const float4*>(p + j * plane + 4);
#pragma unroll
    for (int j = 0; j < F; ++j) {
      if (s + j >= splits) break;
      add(a[j][0], a[j][1]);
    }
  }
}

// Split K, second pass: C = alpha * (sum of the slices) + beta * C + bias, a pair of columns a thread.
template <typename T>
__global__ void splitk_reduce(const float* __restrict__ ws, int splits, const T* __restrict__ bias, T* __restrict__ C,
                              int M, int N, float alpha, float beta, int pair_ok) {
  PARALLM_TRACE_SCOPE(Reduce);
  pdl_begin();  // launched with PDL after the 64-row tile (launch_sm90_t): the partials are read after the wait
  const int64_t half = (int64_t(N) + 1) / 2;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(M) * half) return;
  splitk_store2(ws, splits, bias, C, M, N, i / half, 2 * (i % half), alpha, beta, pair_ok);
}

// silu_gate's arithmetic (activation.cu): the same expression, so the fused epilogues (the GEMV's, the
// sm90 64-row tile's) give its bits.
__device__ __forceinline__ float gemvp_silu(float x) { return x / (1.f + expf(-x)); }

// Split K, second pass of a gate+up product (ws [splits][M][2F]: the gate's F columns, then the up's) with SwiGLU:
// y [M][F] = silu(gate) * up, gate and up each summed as splitk_store2 sums them (splitk_sum2) and rounded to T as
// splitk_reduce stores them (alpha 1, beta 0, no bias: the host's condition), then silu_gate's arithmetic on the
// rounded values (gemvp_silu): the bits of splitk_reduce then silu_gate, in one launch and without the [M][2F]
// store. A pair of columns a thread.
template <typename T>
__global__ void splitk_reduce_swiglu(const float* __restrict__ ws, int splits, T* __restrict__ y, int M, int F) {
  PARALLM_TRACE_SCOPE(ReduceSwiGLU);
  pdl_begin();  // launched as splitk_reduce is: the partials are read after the wait
  const int64_t half = (int64_t(F) + 1) / 2;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(M) * half) return;
  const int64_t row = i / half, col = 2 * (i % half);
  const bool two = col + 1 < F;
  float g0, g1, u0, u1;
  splitk_sum2(ws, splits, M, 2 * F, row, col, two, g0, g1);
  splitk_sum2(ws, splits, M, 2 * F, row, F + col, two, u0, u1);
  T* o = y + row * F + col;
  o[0] = from_f32<T>(gemvp_silu(f32(from_f32<T>(g0))) * f32(from_f32<T>(u0)));
  if (two) o[1] = from_f32<T>(gemvp_silu(f32(from_f32<T>(g1))) * f32(from_f32<T>(u1)));
}

// splitk_reduce_swiglu on 8 columns a thread (F % 8 == 0, y 16-byte aligned; ws is cudaMallocAsync's): 16-byte loads
// of the slices (splitk_sum8: the same sums) and one 16-byte store, a quarter of the threads. At 7B's batch 16 (16 x
// 11008, three slices) that is 86 blocks where the pair form launched 344; with the three slices' loads at once,
// +0.25% (S27-3, bench/RESULTS.md: the reduce's cost is mostly the launch between two tiles). The same bits as
// splitk_reduce_swiglu.
template <typename T>
__global__ void splitk_reduce_swiglu8(const float* __restrict__ ws, int splits, T* __restrict__ y, int M, int F) {
  PARALLM_TRACE_SCOPE(ReduceSwiGLU);
  pdl_begin();  // launched as splitk_reduce is: the partials are read after the wait
  const int64_t per = F / 8;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(M) * per) return;
  const int64_t row = i / per, col = 8 * (i % per), plane = int64_t(M) * 2 * F;
  float g[8], u[8];
  splitk_sum8(ws, splits, plane, row * 2 * F + col, g);
  splitk_sum8(ws, splits, plane, row * 2 * F + F + col, u);
  Pack<T, 8> o;
#pragma unroll
  for (int e = 0; e < 8; ++e) o.v[e] = from_f32<T>(gemvp_silu(f32(from_f32<T>(g[e]))) * f32(from_f32<T>(u[e])));
  *reinterpret_cast<Pack<T, 8>*>(y + row * F + col) = o;
}

// Block index -> (tile_m, tile_n), walking GROUP tile-rows at a time so blocks running together share
// A and B tiles in L2.
template <int GROUP>
__device__ __forceinline__ void tile_coords(int pid, int tiles_m, int tiles_n, int& tm, int& tn) {
  int width = GROUP * tiles_n;
  int g = pid / width;
  int first = g * GROUP;
  int gs = min(tiles_m - first, GROUP);
  int r = pid - g * width;
  tm = first + r % gs;
  tn = r / gs;
}

}  // namespace parallm::cuda::mm
