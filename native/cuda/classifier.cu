// The fused classifier: cross-entropy loss per row and, optionally, its gradient written over the logits
// (llm.c's trick: the probabilities are never stored apart). Semantics: native/core/kernels.h.
//
// One block per row of V logits (grid-stride over rows). Pass 1: each thread keeps an online (max, sum
// of exp) over its 16-byte packs (and the row's few unaligned ends); the block combines them in a fixed
// order (warp butterfly, then warps in index order), so every run gives the same bits. Pass 2 re-reads
// the row (mostly from L2) and writes dscale * (softmax - onehot). The target logit is read before
// pass 2, so in place is safe.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "kernels.h"

namespace parallm::cuda {
namespace {

constexpr int64_t kMaxGrid = 1 << 20;

// Merge two online softmax states (max m, sum s of exp(x - m)); an empty state is (-inf, 0).
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // both empty
  s = s * expf(m - M) + s2 * expf(m2 - M);
  m = M;
}

// Block-wide merge; every thread gets the result. sh: 2 * 32 floats.
__device__ __forceinline__ void block_merge(float& m, float& s, float* sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge(m, s, m2, s2);
  }
  const int nw = blockDim.x >> 5;
  if (nw == 1) return;
  __syncthreads();  // the previous row's readers are done with sh
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = m, sh[32 + (threadIdx.x >> 5)] = s;
  __syncthreads();
  m = sh[0];
  s = sh[32];
  for (int i = 1; i < nw; ++i) merge(m, s, sh[i], sh[32 + i]);
}

// logits and dlogits may be the same buffer (no __restrict__ between them). A row need not start on 16
// bytes (GPT-2's V = 50257): its packs start at the first aligned element; the < N elements before them
// and after the last whole pack go one per thread. dlogits rows have the logits rows' alignment (the
// caller checks), so one split serves both.
template <class T, int N>
__global__ void __launch_bounds__(512) cross_entropy_kernel(const T* logits, const int32_t* __restrict__ targets,
                                                            float* __restrict__ losses, T* dlogits, int64_t R,
                                                            int64_t V, int64_t ld, int ignore_index, float dscale) {
  __shared__ float sh[64];
  using P = Pack<T, N>;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const int t = targets[r];
    const bool ignored = t == ignore_index || t < 0 || int64_t(t) >= V;  // uniform over the block
    const T* x = logits + r * ld;
    T* dx = dlogits ? dlogits + r * ld : nullptr;
    if (dx)  // the row's padding (its logits are never read)
      for (int64_t e = V + threadIdx.x; e < ld; e += blockDim.x) dx[e] = from_f32<T>(0.f);
    const int64_t head =
        N == 1 ? 0 : min(V, int64_t(((16 - (reinterpret_cast<uintptr_t>(x) & 15)) & 15) / sizeof(T)));
    const int64_t nvec = (V - head) / N, tail0 = head + nvec * N, nscalar = head + (V - tail0);
    const P* xp = reinterpret_cast<const P*>(x + head);
    P* dp = dx ? reinterpret_cast<P*>(dx + head) : nullptr;
    auto sidx = [&](int64_t e) { return e < head ? e : tail0 + (e - head); };  // e-th loose element
    if (ignored) {
      if (threadIdx.x == 0 && losses) losses[r] = 0.f;
      if (dx) {
        P z;
#pragma unroll
        for (int j = 0; j < N; ++j) z.v[j] = from_f32<T>(0.f);
        for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) dp[v] = z;
        for (int64_t e = threadIdx.x; e < nscalar; e += blockDim.x) dx[sidx(e)] = from_f32<T>(0.f);
      }
      continue;
    }
    float m = -INFINITY, s = 0.f;
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      const P p = xp[v];
      float pm = f32(p.v[0]);
#pragma unroll
      for (int j = 1; j < N; ++j) pm = fmaxf(pm, f32(p.v[j]));
      float ps = 0.f;
#pragma unroll
      for (int j = 0; j < N; ++j) ps += expf(f32(p.v[j]) - pm);
      merge(m, s, pm, ps);
    }
    for (int64_t e = threadIdx.x; e < nscalar; e += blockDim.x) merge(m, s, f32(x[sidx(e)]), 1.f);
    const float xt = f32(x[t]);  // before any write of this row (in place)
    block_merge(m, s, sh);
    const float lse = m + logf(s);
    if (threadIdx.x == 0 && losses) losses[r] = lse - xt;
    if (!dx) continue;
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
      const P p = xp[v];
      P o;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float pr = expf(f32(p.v[j]) - lse);
        o.v[j] = from_f32<T>(dscale * (head + v * N + j == t ? pr - 1.f : pr));
      }
      dp[v] = o;
    }
    for (int64_t e = threadIdx.x; e < nscalar; e += blockDim.x) {
      const int64_t i = sidx(e);
      const float pr = expf(f32(x[i]) - lse);
      dx[i] = from_f32<T>(dscale * (i == t ? pr - 1.f : pr));
    }
  }
}

template <class T>
void cross_entropy_t(cudaStream_t s, const void* logits, const int32_t* targets, float* losses, void* dlogits,
                     int64_t R, int64_t V, int64_t ld, int ignore_index, float dscale) {
  constexpr int W = 16 / sizeof(T);
  // Packs need element-aligned rows whose gradient rows sit at the same offset within 16 bytes.
  const auto a = reinterpret_cast<uintptr_t>(logits), d = reinterpret_cast<uintptr_t>(dlogits);
  const bool vec = a % sizeof(T) == 0 && (!dlogits || (d - a) % 16 == 0);
  const int64_t nvec = V / (vec ? W : 1);
  const int threads = nvec >= 4096 ? 512 : nvec >= 1024 ? 256 : 128;
  const unsigned blocks = unsigned(std::min(R, kMaxGrid));
  auto* lt = static_cast<const T*>(logits);
  auto* dt = static_cast<T*>(dlogits);
  if (vec) cross_entropy_kernel<T, W><<<blocks, threads, 0, s>>>(lt, targets, losses, dt, R, V, ld, ignore_index, dscale);
  else cross_entropy_kernel<T, 1><<<blocks, threads, 0, s>>>(lt, targets, losses, dt, R, V, ld, ignore_index, dscale);
}

}  // namespace

void cross_entropy(cudaStream_t s, DType dt, const void* logits, const int32_t* targets, float* losses,
                   void* dlogits, int64_t R, int64_t V, int64_t ld, int ignore_index, float dscale) {
  if (R < 0 || V <= 0) fail("cross_entropy: bad size R=", R, " V=", V, " (need R >= 0, V > 0)");
  if (ld < V) fail("cross_entropy: row stride ", ld, " is shorter than the ", V, " logits of a row (R=", R, ")");
  if (R == 0) return;
  if (R > INT64_MAX / ld) fail("cross_entropy: R*ld overflows (R=", R, " ld=", ld, ")");
  if (!logits || !targets) fail("cross_entropy: null logits or targets (R=", R, " V=", V, ")");
  if (dt == DType::F32) cross_entropy_t<float>(s, logits, targets, losses, dlogits, R, V, ld, ignore_index, dscale);
  else if (dt == DType::BF16)
    cross_entropy_t<__nv_bfloat16>(s, logits, targets, losses, dlogits, R, V, ld, ignore_index, dscale);
  else fail("cross_entropy: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " V=", V, ")");
  PARALLM_LAUNCH_CHECK("cross_entropy: launch failed (R=", R, " V=", V, ")");
}

}  // namespace parallm::cuda
