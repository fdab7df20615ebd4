// Element-wise add (with a repeating second operand, e.g. a bias row), dtype casts, and sum_rows (the
// bias gradient: a deterministic column sum, reduce.cuh).
//
// Pure streaming: 16-byte accesses when every pointer and period allow it (checked at run time, else
// one element per access), grid-stride loops so any n fits a capped grid.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "launch.cuh"
#include "kernels.h"
#include "reduce.cuh"

namespace parallm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;  // grid-stride beyond this
constexpr int64_t kMaxBlocksY = 65535;

// y[r, c] = a[r, c] + b[c] over rows of `period` elements (rows == 1: plain same-shape add).
// x covers the row in N-element packs, y covers rows; both loops stride, so any size fits the grid.
template <class T, int N>
__global__ void add_rows_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, int64_t rows,
                                int64_t period) {
  PARALLM_TRACE_SCOPE(Add);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  using P = Pack<T, N>;
  const int64_t nvec = period / N;
  for (int64_t r = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; r < rows; r += int64_t(gridDim.y) * blockDim.y) {
    const P* ar = reinterpret_cast<const P*>(a + r * period);
    P* yr = reinterpret_cast<P*>(y + r * period);
    const P* bp = reinterpret_cast<const P*>(b);
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += int64_t(gridDim.x) * blockDim.x) {
      const P pa = ar[v], pb = bp[v];
      P o;
#pragma unroll
      for (int j = 0; j < N; ++j) o.v[j] = from_f32<T>(f32(pa.v[j]) + f32(pb.v[j]));
      yr[v] = o;
    }
  }
}

// n not a multiple of the period: index b by a modulo (rare; one element per thread).
template <class T>
__global__ void add_mod_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y, int64_t n,
                               int64_t period) {
  PARALLM_TRACE_SCOPE(Add);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = from_f32<T>(f32(a[i]) + f32(b[i % period]));
}

template <class T>
void add_t(cudaStream_t s, const void* a, const void* b, void* y, int64_t n, int64_t period) {
  auto* at = static_cast<const T*>(a);
  auto* bt = static_cast<const T*>(b);
  auto* yt = static_cast<T*>(y);
  if (n % period != 0) {
    PARALLM_CUDA_CHECK(launch_pdl_small(add_mod_kernel<T>, dim3(unsigned(std::min(cdiv(n, kThreads), kMaxBlocks))),
                                        dim3(kThreads), 0, s, at, bt, yt, n, period),
                       "add: launch (n=", n, " period=", period, ")");
    return;
  }
  const int64_t rows = n / period;
  constexpr int V = 16 / sizeof(T);
  const bool vec = period % V == 0 && aligned16(a) && aligned16(b) && aligned16(y);
  const int N = vec ? V : 1;
  const int64_t nvec = period / N;
  // Short rows: several rows per block so that a block still has kThreads threads.
  const int tx = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, cdiv(nvec, 32) * 32)));
  const int ty = kThreads / tx;
  const dim3 grid(unsigned(std::min(cdiv(nvec, tx), kMaxBlocks)), unsigned(std::min(cdiv(rows, ty), kMaxBlocksY)));
  const auto kern = vec ? add_rows_kernel<T, V> : add_rows_kernel<T, 1>;
  PARALLM_CUDA_CHECK(launch_pdl_small(kern, grid, dim3(tx, ty), 0, s, at, bt, yt, rows, period),
                     "add: launch (", rows, " rows of ", period, ")");
}

// Cast n elements, N at a time (the tail that no whole pack covers goes one element per thread).
template <class S, class D, int N>
__global__ void cast_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n) {
  const int64_t nvec = n / N;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const Pack<S, N> p = reinterpret_cast<const Pack<S, N>*>(src)[v];
    Pack<D, N> o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = from_f32<D>(f32(p.v[j]));  // widening to f32 is exact: one rounding
    reinterpret_cast<Pack<D, N>*>(dst)[v] = o;
  }
  const int64_t i = nvec * N + tid;
  if (i < n) dst[i] = from_f32<D>(f32(src[i]));
}

template <class S, class D>
void cast_t(cudaStream_t s, const void* src, void* dst, int64_t n) {
  constexpr int V = 16 / (sizeof(S) > sizeof(D) ? sizeof(S) : sizeof(D));  // the wider side moves 16 bytes
  auto* st = static_cast<const S*>(src);
  auto* dt = static_cast<D*>(dst);
  const bool vec = (reinterpret_cast<uintptr_t>(src) % (sizeof(S) * V)) == 0 &&
                   (reinterpret_cast<uintptr_t>(dst) % (sizeof(D) * V)) == 0;
  const int N = vec ? V : 1;
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min(cdiv(n / N, kThreads), kMaxBlocks)));
  if (vec) cast_kernel<S, D, V><<<blocks, kThreads, 0, s>>>(st, dt, n);
  else cast_kernel<S, D, 1><<<blocks, kThreads, 0, s>>>(st, dt, n);
}

template <class S>
void cast_from(cudaStream_t s, const void* src, DType dst_dt, void* dst, int64_t n) {
  switch (dst_dt) {
    case DType::F32: return cast_t<S, float>(s, src, dst, n);
    case DType::BF16: return cast_t<S, __nv_bfloat16>(s, src, dst, n);
    case DType::F16: return cast_t<S, __half>(s, src, dst, n);
    default: break;
  }
}

bool castable(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

}  // namespace

void add(cudaStream_t s, DType dt, const void* a, const void* b, void* y, int64_t n, int64_t b_period) {
  if (n < 0) fail("add: negative size n=", n);
  if (n == 0) return;
  if (b_period < 1 || b_period > n) fail("add: b_period=", b_period, " outside [1, n=", n, "]");
  if (dt == DType::F32) add_t<float>(s, a, b, y, n, b_period);
  else if (dt == DType::BF16) add_t<__nv_bfloat16>(s, a, b, y, n, b_period);
  else fail("add: dtype ", dtype_name(dt), " not supported (f32, bf16) (n=", n, ")");
  PARALLM_LAUNCH_CHECK("add: launch failed (n=", n, " b_period=", b_period, ")");
}

void cast(cudaStream_t s, DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n) {
  if (n < 0) fail("cast: negative size n=", n);
  if (!castable(src_dt) || !castable(dst_dt))
    fail("cast: ", dtype_name(src_dt), " -> ", dtype_name(dst_dt), " not supported (f32, bf16, f16) (n=", n, ")");
  if (n == 0) return;
  if (n > INT64_MAX / 4) fail("cast: n=", n, " too large");
  if (src_dt == dst_dt) {  // same type: a copy (nothing to do in place)
    if (src != dst)
      PARALLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * dtype_size(src_dt), cudaMemcpyDeviceToDevice, s),
                         "cast: copy of n=", n, " ", dtype_name(src_dt));
    return;
  }
  switch (src_dt) {
    case DType::F32: cast_from<float>(s, src, dst_dt, dst, n); break;
    case DType::BF16: cast_from<__nv_bfloat16>(s, src, dst_dt, dst, n); break;
    default: cast_from<__half>(s, src, dst_dt, dst, n); break;
  }
  PARALLM_LAUNCH_CHECK("cast: launch failed (", dtype_name(src_dt), " -> ", dtype_name(dst_dt), ", n=", n, ")");
}

void sum_rows(cudaStream_t s, DType dt, const void* x, void* out, int64_t R, int64_t C, bool accumulate) {
  if (R < 0 || C < 0) fail("sum_rows: negative size R=", R, " C=", C);
  if (C == 0) return;
  if (R > INT64_MAX / C) fail("sum_rows: R*C overflows (R=", R, " C=", C, ")");
  if (!out || (R > 0 && !x)) fail("sum_rows: null input or output (R=", R, " C=", C, ")");
  if (dt == DType::F32)
    colsum<float, float>(s, "sum_rows", static_cast<const float*>(x), static_cast<float*>(out), R, C, accumulate);
  else if (dt == DType::BF16)
    colsum<__nv_bfloat16, __nv_bfloat16>(s, "sum_rows", static_cast<const __nv_bfloat16*>(x),
                                         static_cast<__nv_bfloat16*>(out), R, C, accumulate);
  else fail("sum_rows: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " C=", C, ")");
}

}  // namespace parallm::cuda
