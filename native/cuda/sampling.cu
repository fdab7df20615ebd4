// Seeded top-k / top-p sampling, one token per row of V logits, following native/core/kernels.h step by
// step so that the CPU backend draws the same token for the same seed:
//   p = softmax(x / temperature) in f32; top-k keeps x >= the k-th largest x (ties kept); top-p then
//   keeps p >= tau, tau the largest value whose kept mass reaches top_p * (top-k mass);
//   u = uniform01(seed, r, offset), target = u * kept mass, and the token is the first kept one, in
//   index order, where the running sum of p exceeds target (the last kept one if none does).
//
// One block of 1024 threads per row, no sorting: both thresholds are found by bisection over the
// float's bit pattern (keys ordered like the floats), each step one block-wide count or sum, and the
// walk is a block-wide prefix sum over tiles in index order. Every reduction has a fixed order, so a
// row's token depends only on its inputs. When the row fits in shared memory (V * 4 bytes, up to
// ~56k tokens on H100) the logits are read from device memory once and every later pass reads shared
// memory; longer rows (e.g. 128k vocabularies) re-read the logits from L2 and recompute exp per pass.
// NaN logits count as -inf. temperature <= 0 is argmax (native/cuda/softmax.cu).
//
// Sums (the softmax denominator, the masses, the running sum of the walk) are accumulated in f64:
// an f32 running sum over ~1e5 probabilities drifts by ~1e-5, the size of one token's p, so two
// backends summing in different orders would often pick neighbouring tokens; in f64 the order no
// longer matters (p itself is f32: e = expf(x / temperature - max), p = e / float(S)). The CPU
// backend must accumulate in f64 too for the two to agree.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../core/rng.h"
#include "check.h"
#include "common.cuh"
#include "kernels.h"

namespace parallm::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kItems = 8;  // consecutive tokens per thread in the index-ordered walk
constexpr int64_t kMaxBlocks = 1 << 16;

// Order-preserving map of non-NaN floats to unsigned keys, and back.
__device__ __forceinline__ uint32_t key_of(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float float_of(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Block-wide combine in a fixed order (warp butterfly, then warp results in warp order); every thread
// gets the result. `sh` holds kWarps values.
template <class V, class Op>
__device__ __forceinline__ V block_reduce(V v, V* sh, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  V t = sh[0];
#pragma unroll
  for (int i = 1; i < kWarps; ++i) t = op(t, sh[i]);
  return t;
}
struct Sum {
  template <class V> __device__ V operator()(V a, V b) const { return a + b; }
};
struct Min {
  template <class V> __device__ V operator()(V a, V b) const { return a < b ? a : b; }
};
struct Max {
  template <class V> __device__ V operator()(V a, V b) const { return a > b ? a : b; }
};

// Exclusive prefix sum over the block in thread order; *total gets the block's sum.
__device__ __forceinline__ double block_exclusive_scan(double v, double* sh, double* total) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  double inc = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  __syncthreads();
  if (lane == 31) sh[w] = inc;
  __syncthreads();
  if (w == 0) {  // scan the warp totals
    double t = sh[lane];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double n = __shfl_up_sync(0xffffffffu, t, o);
      if (lane >= o) t += n;
    }
    sh[lane] = t;
  }
  __syncthreads();
  *total = sh[kWarps - 1];
  return (w ? sh[w - 1] : 0.0) + (inc - v);
}

template <class T, bool CACHED>
__global__ void __launch_bounds__(kThreads)
    sample_kernel(const T* __restrict__ logits, int32_t* __restrict__ out, int64_t R, int V, float temperature,
                  int top_k, float top_p, uint64_t seed, const int32_t* __restrict__ offsets,
                  const int32_t* __restrict__ rows) {
  PARALLM_TRACE_SCOPE(Sample);
  extern __shared__ float cache[];  // CACHED: x, then p (or -1 for tokens outside the top-k set)
  __shared__ float shf[kWarps];
  __shared__ double shd[kWarps];
  __shared__ int shi[kWarps];
  const int tid = threadIdx.x;
  const bool use_k = top_k > 0 && top_k < V;
  const bool use_p = top_p < 1.f;

  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const T* row = logits + r * V;
    auto logit = [&](int i) {
      const float v = f32(row[i]);
      return isnan(v) ? -INFINITY : v;
    };
    auto x_at = [&](int i) { return CACHED ? cache[i] : logit(i); };

    // Pass 1: range of the logits (and the first maximum, for rows whose softmax is not finite).
    float mx = -INFINITY, mn = INFINITY;
    for (int i = tid; i < V; i += kThreads) {
      const float v = logit(i);
      if (CACHED) cache[i] = v;
      mx = fmaxf(mx, v);
      mn = fminf(mn, v);
    }
    mx = block_reduce(mx, shf, Max());
    mn = block_reduce(mn, shf, Min());

    // Top-k threshold: the largest key t with count(x >= t) >= k is the k-th largest logit.
    float kth = -INFINITY;
    if (use_k) {
      uint32_t lo = key_of(mn), hi = key_of(mx);  // count(x >= mn) = V >= k
      while (lo < hi) {
        const uint32_t mid = lo + (hi - lo + 1) / 2;
        const float t = float_of(mid);
        int c = 0;
        for (int i = tid; i < V; i += kThreads) c += x_at(i) >= t;
        c = block_reduce(c, shi, Sum());
        if (c >= top_k) lo = mid;
        else hi = mid - 1;
      }
      kth = float_of(lo);
    }

    // Softmax over all V: m = max of x / temperature (division is monotone, so it is mx / temperature).
    const float m = mx / temperature;
    double s = 0.0;
    for (int i = tid; i < V; i += kThreads) {
      const float x = x_at(i);
      const float e = expf(x / temperature - m);
      s += e;
      if (CACHED) cache[i] = (!use_k || x >= kth) ? e : -1.f;
    }
    const float S = float(block_reduce(s, shd, Sum()));  // summed in f64: see the note on top
    if (!isfinite(m) || !(S > 0.f) || !isfinite(S)) {
      // x / temperature overflowed or the row is all -inf: the softmax is undefined. Take the first
      // maximum (what the limit temperature -> 0 gives) rather than an arbitrary token.
      int first = INT32_MAX;
      for (int i = tid; i < V; i += kThreads)
        if (logit(i) == mx) { first = i; break; }  // (the cache no longer holds x here)
      first = block_reduce(first, shi, Min());
      if (tid == 0) out[r] = first == INT32_MAX ? 0 : first;
      __syncthreads();  // cache is rewritten by the next row
      continue;
    }
    // p of token i, or -1 outside the top-k set.
    auto p_at = [&](int i) -> float {
      if (CACHED) return cache[i];
      const float x = logit(i);
      if (use_k && !(x >= kth)) return -1.f;
      return expf(x / temperature - m) / S;
    };
    double ks = 0.0;
    for (int i = tid; i < V; i += kThreads) {
      float p;
      if (CACHED) {
        p = cache[i] >= 0.f ? cache[i] / S : -1.f;
        cache[i] = p;
      } else {
        p = p_at(i);
      }
      if (p >= 0.f) ks += p;
    }
    const double kmass = block_reduce(ks, shd, Sum());

    // Top-p threshold: the largest tau with mass(kept p >= tau) >= top_p * kmass. p >= 0, so the
    // bit pattern orders it; the answer lies in [0, p of the maximum] = [0, 1 / S].
    float tau = 0.f;
    double mass = kmass;
    if (use_p) {
      const double want = double(top_p) * kmass;
      uint32_t lo = 0, hi = __float_as_uint(1.f / S);
      while (lo < hi) {
        const uint32_t mid = lo + (hi - lo + 1) / 2;
        const float t = __uint_as_float(mid);
        double a = 0.0;
        for (int i = tid; i < V; i += kThreads) {
          const float p = p_at(i);
          if (p >= t) a += p;
        }
        a = block_reduce(a, shd, Sum());
        if (a >= want) {
          lo = mid;
          mass = a;
        } else {
          hi = mid - 1;
        }
      }
      tau = __uint_as_float(lo);
    }

    // Draw: walk the kept tokens in index order, kItems consecutive ones per thread per tile.
    const uint64_t key = rows ? uint64_t(int64_t(rows[r])) : uint64_t(r);
    const double target = double(uniform01(seed, key, offsets ? offsets[r] : 0)) * mass;
    double carry = 0.0;
    int found = INT32_MAX, last = -1;
    for (int base = 0; base < V; base += kThreads * kItems) {
      float p[kItems];
      double part = 0.0;
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        const int i = base + tid * kItems + j;
        p[j] = i < V ? p_at(i) : -1.f;
        if (p[j] >= tau && p[j] >= 0.f) {
          part += p[j];
          last = i;
        } else {
          p[j] = -1.f;
        }
      }
      double total;
      double run = carry + block_exclusive_scan(part, shd, &total);
      int hit = INT32_MAX;
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        if (p[j] >= 0.f && hit == INT32_MAX) {
          run += p[j];
          if (run > target) hit = base + tid * kItems + j;
        }
      }
      found = block_reduce(hit, shi, Min());
      if (found != INT32_MAX) break;
      carry += total;
    }
    if (found == INT32_MAX) {  // rounding left the target past the end: the last kept token
      found = block_reduce(last, shi, Max());
      if (found < 0) found = 0;
    }
    if (tid == 0) out[r] = found;
    __syncthreads();  // cache is rewritten by the next row
  }
}

template <class T>
void sample_t(cudaStream_t s, const void* logits, int32_t* out, int64_t R, int64_t V, float temperature, int top_k,
              float top_p, uint64_t seed, const int32_t* offsets, const int32_t* rows) {
  const auto* x = static_cast<const T*>(logits);
  const unsigned blocks = unsigned(std::min<int64_t>(R, kMaxBlocks));
  int dev = 0, optin = 0;
  PARALLM_CUDA_CHECK(cudaGetDevice(&dev), "sample: cudaGetDevice");
  PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                     "sample: shared memory limit of device ", dev);
  const int64_t bytes = V * int64_t(sizeof(float));
  const int64_t static_bytes = kWarps * (4 + 4 + 8);
  if (bytes + static_bytes <= optin) {
    auto* k = sample_kernel<T, true>;
    if (bytes > 48 * 1024)
      PARALLM_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
                         "sample: shared memory of ", bytes, " bytes (V=", V, ")");
    k<<<blocks, kThreads, size_t(bytes), s>>>(x, out, R, int(V), temperature, top_k, top_p, seed, offsets, rows);
  } else {
    sample_kernel<T, false><<<blocks, kThreads, 0, s>>>(x, out, R, int(V), temperature, top_k, top_p, seed, offsets, rows);
  }
}

}  // namespace

void sample(cudaStream_t s, DType dt, const void* logits, int32_t* out, int64_t R, int64_t V, float temperature,
            int top_k, float top_p, uint64_t seed, const int32_t* offsets, const int32_t* rows) {
  if (R < 0 || V < 0) fail("sample: negative size R=", R, " V=", V);
  if (R == 0) return;
  if (V == 0) fail("sample: empty rows (R=", R, " V=0)");
  if (V > INT32_MAX - kThreads * kItems) fail("sample: V=", V, " does not fit the int32 result (R=", R, ")");
  if (R > INT64_MAX / V) fail("sample: R*V overflows (R=", R, " V=", V, ")");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("sample: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " V=", V, ")");
  if (!(temperature > 0.f)) return argmax(s, dt, logits, out, R, V);  // greedy (NaN temperature too)
  if (dt == DType::F32) sample_t<float>(s, logits, out, R, V, temperature, top_k, top_p, seed, offsets, rows);
  else sample_t<__nv_bfloat16>(s, logits, out, R, V, temperature, top_k, top_p, seed, offsets, rows);
  PARALLM_LAUNCH_CHECK("sample: launch failed (R=", R, " V=", V, " top_k=", top_k, " top_p=", top_p, ")");
}

}  // namespace parallm::cuda
