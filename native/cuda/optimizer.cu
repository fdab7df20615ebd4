// The optimizer step: fused AdamW over one flat parameter buffer, and sum_squares (the gradient's squared
// norm, for clipping). Semantics: native/core/kernels.h.
//
// adamw: one grid-stride kernel; each thread moves 4 elements per access (16 bytes of master, m and v,
// 4 gradient/parameter elements) when the pointers allow, the bias corrections come from the host (in
// double, rounded once). sum_squares: a grid fixed by n alone (not by the device) writes one partial per
// block, summed in a fixed tree, then one block adds the partials in index order: the same bits every run.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "kernels.h"
#include "reduce.cuh"

namespace parallm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

struct AdamHyper {
  float lr, b1, b2, eps, wd, gs, bc1, bc2;  // bc: 1 - beta^step
};

__device__ __forceinline__ void adam_one(float& w, float& m, float& v, float g, bool decay, const AdamHyper& h) {
  g *= h.gs;
  m = h.b1 * m + (1.f - h.b1) * g;
  v = h.b2 * v + (1.f - h.b2) * g * g;
  const float mh = m / h.bc1, vh = v / h.bc2;
  w -= h.lr * (mh / (sqrtf(vh) + h.eps) + (decay ? h.wd * w : 0.f));
}

template <class T, int N>
__global__ void adamw_kernel(float* __restrict__ master, T* __restrict__ param, const T* __restrict__ grad,
                             float* __restrict__ mom, float* __restrict__ var, int64_t n, int64_t n_decay,
                             AdamHyper h) {
  const int64_t nvec = n / N;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = tid; q < nvec; q += stride) {
    Pack<float, N> w = reinterpret_cast<const Pack<float, N>*>(master)[q];
    Pack<float, N> m = reinterpret_cast<const Pack<float, N>*>(mom)[q];
    Pack<float, N> v = reinterpret_cast<const Pack<float, N>*>(var)[q];
    const Pack<T, N> g = reinterpret_cast<const Pack<T, N>*>(grad)[q];
    Pack<T, N> p;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      adam_one(w.v[j], m.v[j], v.v[j], f32(g.v[j]), q * N + j < n_decay, h);
      p.v[j] = from_f32<T>(w.v[j]);
    }
    reinterpret_cast<Pack<float, N>*>(master)[q] = w;
    reinterpret_cast<Pack<float, N>*>(mom)[q] = m;
    reinterpret_cast<Pack<float, N>*>(var)[q] = v;
    if (param) reinterpret_cast<Pack<T, N>*>(param)[q] = p;
  }
  const int64_t i = nvec * N + tid;  // the tail (< N elements)
  if (i < n) {
    adam_one(master[i], mom[i], var[i], f32(grad[i]), i < n_decay, h);
    if (param) param[i] = from_f32<T>(master[i]);
  }
}

template <class T>
void adamw_t(cudaStream_t s, float* master, void* param, const void* grad, float* m, float* v, int64_t n,
             int64_t n_decay, const AdamHyper& h) {
  constexpr int N = 4;
  const bool vec = aligned16(master) && aligned16(m) && aligned16(v) && aligned_to(grad, sizeof(T) * N) &&
                   (!param || aligned_to(param, sizeof(T) * N));
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min(cdiv(n / (vec ? N : 1), kThreads), kMaxBlocks)));
  auto* pt = static_cast<T*>(param);
  auto* gt = static_cast<const T*>(grad);
  if (vec) adamw_kernel<T, N><<<blocks, kThreads, 0, s>>>(master, pt, gt, m, v, n, n_decay, h);
  else adamw_kernel<T, 1><<<blocks, kThreads, 0, s>>>(master, pt, gt, m, v, n, n_decay, h);
}

// Sum of a block's values (fixed order: warp butterfly, then warps in index order); valid in thread 0.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float sh[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.f;
  if (threadIdx.x == 0)
    for (int i = 0; i < int(blockDim.x >> 5); ++i) t += sh[i];
  return t;
}

// out[blockIdx.x] = sum of squares over this block's grid-stride share (N elements per access). U loads a
// thread in flight before their squares are added (one chain of dependent loads read the gradient at a
// third of the copy rate, S10-7), each into its own accumulator; the accumulators are then added in a
// fixed order, so the result is still a function of n alone.
template <class T, int N, int U>
__global__ void __launch_bounds__(kThreads) sumsq_kernel(const T* __restrict__ x, float* __restrict__ out, int64_t n) {
  const int64_t nvec = n / N;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  float acc[U] = {};
  int64_t q = tid;
  for (; q + (U - 1) * stride < nvec; q += U * stride) {
    Pack<T, N> p[U];
#pragma unroll
    for (int u = 0; u < U; ++u) p[u] = reinterpret_cast<const Pack<T, N>*>(x)[q + u * stride];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int j = 0; j < N; ++j) acc[u] = fmaf(f32(p[u].v[j]), f32(p[u].v[j]), acc[u]);
  }
  for (; q < nvec; q += stride) {
    const Pack<T, N> p = reinterpret_cast<const Pack<T, N>*>(x)[q];
#pragma unroll
    for (int j = 0; j < N; ++j) acc[0] = fmaf(f32(p.v[j]), f32(p.v[j]), acc[0]);
  }
  const int64_t i = nvec * N + tid;
  if (i < n) acc[0] = fmaf(f32(x[i]), f32(x[i]), acc[0]);
  float a = acc[0];
#pragma unroll
  for (int u = 1; u < U; ++u) a += acc[u];
  const float t = block_sum(a);
  if (threadIdx.x == 0) out[blockIdx.x] = t;
}

constexpr int64_t kSumBlocks = 1024;  // partials at most (a function of n only)

template <class T>
void sum_squares_t(cudaStream_t s, const void* x, float* out, int64_t n) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = aligned16(x);
  const int N = vec ? V : 1;
  // At least 8 accesses a thread before a block is added, at most kSumBlocks partials.
  const int64_t blocks = std::max<int64_t>(1, std::min(cdiv(n / N, int64_t(kThreads) * 8), kSumBlocks));
  auto* xt = static_cast<const T*>(x);
  if (blocks == 1) {
    if (vec) sumsq_kernel<T, V, 4><<<1, kThreads, 0, s>>>(xt, out, n);
    else sumsq_kernel<T, 1, 4><<<1, kThreads, 0, s>>>(xt, out, n);
    PARALLM_LAUNCH_CHECK("sum_squares: launch failed (n=", n, ")");
    return;
  }
  Scratch part(s, blocks, "sum_squares");
  if (vec) sumsq_kernel<T, V, 4><<<unsigned(blocks), kThreads, 0, s>>>(xt, part.p, n);
  else sumsq_kernel<T, 1, 4><<<unsigned(blocks), kThreads, 0, s>>>(xt, part.p, n);
  PARALLM_LAUNCH_CHECK("sum_squares: launch failed (n=", n, " blocks=", blocks, ")");
  // The partials, added in index order (reduce.cuh's column sum of a [blocks, 1] matrix).
  colsum<float, float>(s, "sum_squares", part.p, out, blocks, 1, false);
}

}  // namespace

void adamw(cudaStream_t s, DType dt, float* master, void* param, const void* grad, float* m, float* v, int64_t n,
           int64_t n_decay, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
           int step) {
  if (n < 0 || n_decay < 0 || n_decay > n) fail("adamw: bad sizes n=", n, " n_decay=", n_decay);
  if (step < 1) fail("adamw: step=", step, " must be >= 1 (n=", n, ")");
  if (n == 0) return;
  if (!master || !grad || !m || !v) fail("adamw: null master, grad, m or v (n=", n, ")");
  AdamHyper h{lr, beta1, beta2, eps, weight_decay, grad_scale,
              float(1.0 - std::pow(double(beta1), double(step))), float(1.0 - std::pow(double(beta2), double(step)))};
  if (dt == DType::F32) adamw_t<float>(s, master, param, grad, m, v, n, n_decay, h);
  else if (dt == DType::BF16) adamw_t<__nv_bfloat16>(s, master, param, grad, m, v, n, n_decay, h);
  else fail("adamw: dtype ", dtype_name(dt), " not supported (f32, bf16) (n=", n, ")");
  PARALLM_LAUNCH_CHECK("adamw: launch failed (n=", n, " n_decay=", n_decay, ")");
}

void sum_squares(cudaStream_t s, DType dt, const void* x, float* out, int64_t n) {
  if (n < 0) fail("sum_squares: negative size n=", n);
  if (!out) fail("sum_squares: null output (n=", n, ")");
  if (n == 0) {
    PARALLM_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), s), "sum_squares: zero fill (n=0)");
    return;
  }
  if (!x) fail("sum_squares: null input (n=", n, ")");
  if (dt == DType::F32) sum_squares_t<float>(s, x, out, n);
  else if (dt == DType::BF16) sum_squares_t<__nv_bfloat16>(s, x, out, n);
  else fail("sum_squares: dtype ", dtype_name(dt), " not supported (f32, bf16) (n=", n, ")");
}

}  // namespace parallm::cuda
