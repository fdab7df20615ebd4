// Row softmax (y = softmax(scale * x) over the last dimension) and row argmax.
//
// Same row layout as the norms: ty rows per block (several only for short rows), tx threads per row,
// 16-byte loads when the row allows, up to kCached loads per thread kept in registers between the
// passes (max, sum, write), the rest re-read from L2. Fixed-order reductions: same result every run.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "kernels.h"
#include "workspace.h"

namespace parallm::cuda {
namespace {

constexpr int kCached = 4;
constexpr int kMaxThreads = 512;
constexpr int64_t kMaxGrid = 1 << 20;

// Combine over the threadIdx.x of one row; all threads of the row get the same result.
template <class V, class Op>
__device__ __forceinline__ V row_reduce(V v, V* sh, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int nw = blockDim.x >> 5;
  if (nw == 1) return v;
  V* row = sh + threadIdx.y * nw;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) row[threadIdx.x >> 5] = v;
  __syncthreads();
  V t = row[0];
  for (int i = 1; i < nw; ++i) t = op(t, row[i]);
  return t;
}
struct Sum { __device__ float operator()(float a, float b) const { return a + b; } };
struct Max { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };

template <class T, int N>
__global__ void __launch_bounds__(kMaxThreads, 2) softmax_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t R,
                                                              int64_t C, float scale) {
  __shared__ float sh[32];
  using P = Pack<T, N>;
  const int64_t nvec = C / N;
  for (int64_t base = int64_t(blockIdx.x) * blockDim.y; base < R; base += int64_t(gridDim.x) * blockDim.y) {
    const int64_t r = base + threadIdx.y;
    const bool live = r < R;
    const T* xr = x + (live ? r : 0) * C;
    T* yr = y + (live ? r : 0) * C;
    auto load = [&](int64_t v, float* z) {
      const P p = *reinterpret_cast<const P*>(xr + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) z[j] = scale * f32(p.v[j]);
    };

    float cache[kCached][N];
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (live && v < nvec) {
        load(v, cache[k]);
#pragma unroll
        for (int j = 0; j < N; ++j) m = fmaxf(m, cache[k][j]);
      }
    }
    for (int64_t v = threadIdx.x + int64_t(kCached) * blockDim.x; live && v < nvec; v += blockDim.x) {
      float z[N];
      load(v, z);
#pragma unroll
      for (int j = 0; j < N; ++j) m = fmaxf(m, z[j]);
    }
    m = row_reduce(m, sh, Max());

    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (live && v < nvec) {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          cache[k][j] = expf(cache[k][j] - m);
          s += cache[k][j];
        }
      }
    }
    for (int64_t v = threadIdx.x + int64_t(kCached) * blockDim.x; live && v < nvec; v += blockDim.x) {
      float z[N];
      load(v, z);
#pragma unroll
      for (int j = 0; j < N; ++j) s += expf(z[j] - m);
    }
    s = row_reduce(s, sh, Sum());
    if (!live) continue;

    const float inv = 1.f / s;
    auto store = [&](int64_t v, const float* e) {
      P o;
#pragma unroll
      for (int j = 0; j < N; ++j) o.v[j] = from_f32<T>(e[j] * inv);
      *reinterpret_cast<P*>(yr + v * N) = o;
    };
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (v < nvec) store(v, cache[k]);
    }
    for (int64_t v = threadIdx.x + int64_t(kCached) * blockDim.x; v < nvec; v += blockDim.x) {
      float z[N];
      load(v, z);
#pragma unroll
      for (int j = 0; j < N; ++j) z[j] = expf(z[j] - m);
      store(v, z);
    }
  }
}

// A candidate for the row maximum. Order: larger value first, then smaller index; NaN after every
// number (so it never wins over one), NaNs among themselves by index. A total order, so the result
// does not depend on the reduction's shape.
struct Best {
  float v;
  int32_t i;
};
__device__ __forceinline__ bool beats(Best a, Best b) {
  const bool an = std::isnan(a.v), bn = std::isnan(b.v);
  if (an != bn) return bn;
  if (!an && a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}
__device__ __forceinline__ Best better(Best a, Best b) { return beats(a, b) ? a : b; }

// Butterfly over a warp on both fields; every lane gets the warp's best.
__device__ __forceinline__ Best warp_best(Best b) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Best t{__shfl_xor_sync(0xffffffffu, b.v, o), __shfl_xor_sync(0xffffffffu, b.i, o)};
    b = better(b, t);
  }
  return b;
}

template <class T, int N>
__global__ void __launch_bounds__(kMaxThreads) argmax_kernel(const T* __restrict__ x, int32_t* __restrict__ out,
                                                             int64_t R, int64_t C) {
  PARALLM_TRACE_SCOPE(Argmax);
  __shared__ Best sh[32];
  using P = Pack<T, N>;
  const int64_t nvec = C / N;
  for (int64_t base = int64_t(blockIdx.x) * blockDim.y; base < R; base += int64_t(gridDim.x) * blockDim.y) {
    const int64_t r = base + threadIdx.y;
    const bool live = r < R;
    const T* xr = x + (live ? r : 0) * C;
    Best b{NAN, INT32_MAX};
    for (int64_t v = threadIdx.x; live && v < nvec; v += blockDim.x) {
      const P p = *reinterpret_cast<const P*>(xr + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) b = better(b, Best{f32(p.v[j]), int32_t(v * N + j)});
    }
    b = warp_best(b);  // then across warps
    const int nw = blockDim.x >> 5;
    if (nw > 1) {
      Best* row = sh + threadIdx.y * nw;
      __syncthreads();
      if ((threadIdx.x & 31) == 0) row[threadIdx.x >> 5] = b;
      __syncthreads();
      b = row[0];
      for (int i = 1; i < nw; ++i) b = better(b, row[i]);
    }
    if (live && threadIdx.x == 0) out[r] = b.i == INT32_MAX ? 0 : b.i;
  }
}

// Long rows (a vocabulary: GPT-2's 50,257 logits took one block 27 µs a decode step, ncu S13-1): each
// row cut into chunks of kArgChunk, a block a chunk keeping kArgPer loads a thread in flight, its best
// candidate written to part [R][chunks]; then a warp a row merges the chunks'. `better` is a total
// order, so any split gives argmax_kernel's answer.
constexpr int kArgThreads = 256, kArgPer = 16, kArgChunk = kArgThreads * kArgPer;
constexpr int64_t kArgSplitMin = 4 * kArgChunk;  // shorter rows: argmax_kernel, a block a row

template <class T>
__global__ void __launch_bounds__(kArgThreads) argmax_chunk_kernel(const T* __restrict__ x, Best* __restrict__ part,
                                                                   int64_t R, int64_t C, int chunks) {
  PARALLM_TRACE_SCOPE(Argmax);
  __shared__ Best sh[kArgThreads / 32];
  const int64_t c0 = int64_t(blockIdx.x) * kArgChunk + threadIdx.x;
  for (int64_t r = blockIdx.y; r < R; r += gridDim.y) {
    const T* xr = x + r * C;
    T v[kArgPer];
#pragma unroll
    for (int k = 0; k < kArgPer; ++k) {  // every load issued before the first comparison
      const int64_t c = c0 + int64_t(k) * kArgThreads;
      if (c < C) v[k] = xr[c];
    }
    Best b{NAN, INT32_MAX};
#pragma unroll
    for (int k = 0; k < kArgPer; ++k) {
      const int64_t c = c0 + int64_t(k) * kArgThreads;
      if (c < C) b = better(b, Best{f32(v[k]), int32_t(c)});
    }
    b = warp_best(b);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = b;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int i = 1; i < kArgThreads / 32; ++i) b = better(b, sh[i]);
      part[r * chunks + blockIdx.x] = b;
    }
    __syncthreads();  // sh is read before the next row writes it
  }
}

// A warp a row (every lane of a warp on the same row, so the butterfly sees the whole warp).
__global__ void argmax_merge_kernel(const Best* __restrict__ part, int32_t* __restrict__ out, int64_t R, int chunks) {
  PARALLM_TRACE_SCOPE(Argmax);
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < R; r += warps) {
    Best b{NAN, INT32_MAX};
    for (int i = int(threadIdx.x & 31); i < chunks; i += 32) b = better(b, part[r * chunks + i]);
    b = warp_best(b);
    if ((threadIdx.x & 31) == 0) out[r] = b.i == INT32_MAX ? 0 : b.i;
  }
}

void check_rows(const char* op, int64_t R, int64_t C) {
  if (R < 0 || C < 0) fail(op, ": negative size R=", R, " C=", C);
  if (C > 0 && R > INT64_MAX / C) fail(op, ": R*C overflows (R=", R, " C=", C, ")");
}

// Block shape for rows of C elements read N at a time: enough threads to hold kCached loads each.
struct RowGrid {
  dim3 grid, block;
};
RowGrid row_grid(int64_t R, int64_t C, int N) {
  const int64_t per_thread = int64_t(N) * kCached;
  const int64_t want = (C + per_thread - 1) / per_thread;
  const int tx = int(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, (want + 31) / 32 * 32)));
  const int ty = std::max(1, 128 / tx);
  return {dim3(unsigned(std::min<int64_t>((R + ty - 1) / ty, kMaxGrid))), dim3(tx, ty)};
}

template <class T>
void softmax_t(cudaStream_t s, const void* x, void* y, int64_t R, int64_t C, float scale) {
  constexpr int V = 16 / sizeof(T);
  auto* xt = static_cast<const T*>(x);
  auto* yt = static_cast<T*>(y);
  if (C % V == 0 && aligned16(x) && aligned16(y)) {
    const RowGrid g = row_grid(R, C, V);
    softmax_kernel<T, V><<<g.grid, g.block, 0, s>>>(xt, yt, R, C, scale);
  } else {
    const RowGrid g = row_grid(R, C, 1);
    softmax_kernel<T, 1><<<g.grid, g.block, 0, s>>>(xt, yt, R, C, scale);
  }
  PARALLM_LAUNCH_CHECK("softmax: launch failed (R=", R, " C=", C, ")");
}

template <class T>
void argmax_t(cudaStream_t s, const void* x, int32_t* out, int64_t R, int64_t C) {
  constexpr int V = 16 / sizeof(T);
  auto* xt = static_cast<const T*>(x);
  if (C >= kArgSplitMin) {
    const int chunks = int((C + kArgChunk - 1) / kArgChunk);
    const size_t bytes = size_t(R) * size_t(chunks) * sizeof(Best);
    const Workspace w = workspace_acquire(s, kWsArgmax, bytes, "argmax (R=", R, " C=", C, ")");
    Best* part = static_cast<Best*>(w.p);
    const dim3 grid(unsigned(chunks), unsigned(std::min<int64_t>(R, 65535)));
    argmax_chunk_kernel<T><<<grid, kArgThreads, 0, s>>>(xt, part, R, C, chunks);
    PARALLM_LAUNCH_CHECK("argmax: launch failed (R=", R, " C=", C, ", ", chunks, " chunks a row)");
    const unsigned merge_blocks = unsigned(std::min<int64_t>((R + 3) / 4, kMaxGrid));  // 4 warps a block
    argmax_merge_kernel<<<merge_blocks, 128, 0, s>>>(part, out, R, chunks);
    PARALLM_LAUNCH_CHECK("argmax: merge launch failed (R=", R, " C=", C, ", ", chunks, " chunks a row)");
    PARALLM_CUDA_CHECK(workspace_release(s, w), "argmax: scratch free (R=", R, " C=", C, ")");
    return;
  }
  // One pass, nothing cached: size the block as if each thread kept kCached loads anyway.
  if (C % V == 0 && aligned16(x)) {
    const RowGrid g = row_grid(R, C, V);
    argmax_kernel<T, V><<<g.grid, g.block, 0, s>>>(xt, out, R, C);
  } else {
    const RowGrid g = row_grid(R, C, 1);
    argmax_kernel<T, 1><<<g.grid, g.block, 0, s>>>(xt, out, R, C);
  }
  PARALLM_LAUNCH_CHECK("argmax: launch failed (R=", R, " C=", C, ")");
}

}  // namespace

void softmax(cudaStream_t s, DType dt, const void* x, void* y, int64_t R, int64_t C, float scale) {
  check_rows("softmax", R, C);
  if (R == 0 || C == 0) return;
  if (dt == DType::F32) softmax_t<float>(s, x, y, R, C, scale);
  else if (dt == DType::BF16) softmax_t<__nv_bfloat16>(s, x, y, R, C, scale);
  else fail("softmax: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " C=", C, ")");
}

void argmax(cudaStream_t s, DType dt, const void* x, int32_t* out, int64_t R, int64_t C) {
  check_rows("argmax", R, C);
  if (R == 0) return;
  if (C == 0) fail("argmax: empty rows (R=", R, " C=0)");
  if (C > INT32_MAX) fail("argmax: C=", C, " does not fit the int32 result (R=", R, ")");
  if (dt == DType::F32) argmax_t<float>(s, x, out, R, C);
  else if (dt == DType::BF16) argmax_t<__nv_bfloat16>(s, x, out, R, C);
  else fail("argmax: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " C=", C, ")");
}

}  // namespace parallm::cuda
