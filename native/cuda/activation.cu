// Activations: GELU (tanh form, as GPT-2) over n elements, and the SwiGLU gate y = silu(gate) * up, with
// their backward kernels (same launch shapes; element-wise, so in place is safe: every pack is read
// whole before it is written).
//
// Streaming kernels: 16-byte accesses where pointers (and, for silu_gate, the row stride) allow, f32
// math with the accurate expf (the CPU backend and the f32 tests hold these to ~1e-6).
#include <cuda_bf16.h>
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
constexpr int64_t kMaxBlocks = 1 << 16;
constexpr int64_t kMaxBlocksY = 65535;

// x / (1 + e^-x); for x -> -inf e^-x overflows to inf and the quotient is -0, as it should be.
__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

// n elements, N per access; the tail (< N elements) goes one per thread to the first threads.
template <class T, int N>
__global__ void gelu_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  PARALLM_TRACE_SCOPE(Activation);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  using P = Pack<T, N>;
  const int64_t nvec = n / N;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const P p = reinterpret_cast<const P*>(x)[v];
    P o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = from_f32<T>(gelu_tanh(f32(p.v[j])));
    reinterpret_cast<P*>(y)[v] = o;
  }
  const int64_t i = nvec * N + tid;
  if (i < n) y[i] = from_f32<T>(gelu_tanh(f32(x[i])));
}

// Rows along grid y, packs of a row along grid x.
template <class T, int N>
__global__ void silu_gate_kernel(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ y, int64_t R,
                                 int64_t F, int64_t in_stride) {
  PARALLM_TRACE_SCOPE(Activation);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  using P = Pack<T, N>;
  const int64_t nvec = F / N;
  for (int64_t r = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; r < R; r += int64_t(gridDim.y) * blockDim.y) {
    const P* g = reinterpret_cast<const P*>(gate + r * in_stride);
    const P* u = reinterpret_cast<const P*>(up + r * in_stride);
    P* o = reinterpret_cast<P*>(y + r * F);
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += int64_t(gridDim.x) * blockDim.x) {
      const P pg = g[v], pu = u[v];
      P po;
#pragma unroll
      for (int j = 0; j < N; ++j) po.v[j] = from_f32<T>(silu(f32(pg.v[j])) * f32(pu.v[j]));
      o[v] = po;
    }
  }
}

// d/dx gelu: with s = sigmoid(2u) = 0.5 (1 + tanh u), u = k (x + 0.044715 x^3),
//   gelu' = s + x s (1 - s) 2k (1 + 3 * 0.044715 x^2)   (0.5 x (1 - tanh^2 u) = 2 x s (1 - s))
// written through the sigmoid for the same reason as gelu_tanh.
__device__ __forceinline__ float gelu_grad(float x) {
  const float k = 0.7978845608028654f;
  const float u = k * (x + 0.044715f * x * x * x);
  const float s = 1.f / (1.f + expf(-2.f * u));
  return s + 2.f * x * s * (1.f - s) * k * (1.f + 3.f * 0.044715f * x * x);
}

// dx may be dy: no __restrict__ between them.
template <class T, int N>
__global__ void gelu_bwd_kernel(const T* __restrict__ x, const T* dy, T* dx, int64_t n) {
  using P = Pack<T, N>;
  const int64_t nvec = n / N;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const P px = reinterpret_cast<const P*>(x)[v], pd = reinterpret_cast<const P*>(dy)[v];
    P o;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = from_f32<T>(f32(pd.v[j]) * gelu_grad(f32(px.v[j])));
    reinterpret_cast<P*>(dx)[v] = o;
  }
  const int64_t i = nvec * N + tid;
  if (i < n) dx[i] = from_f32<T>(f32(dy[i]) * gelu_grad(f32(x[i])));
}

// gelu_backward over [R, C] with the first pass of the bias gradient's column sum (sum_rows of dx), so dx
// is not read again: the blocks tile [R, C] as reduce.cuh's colsum_kernel does (kColX column packs x 8 row
// lanes, a chunk of rows_per rows a block row), store each dx pack, and add it as stored into their f32
// partial row; colsum_n then sums the partial rows in chunk order. Two rows a lane in flight.
template <class T, int N>
__global__ void __launch_bounds__(kColX * 8) gelu_bwd_colsum_kernel(const T* __restrict__ x, const T* dy, T* dx,
                                                                    float* __restrict__ part, int64_t R, int64_t C,
                                                                    int64_t rows_per) {
  __shared__ float sh[8][kColX * N];
  using P = Pack<T, N>;
  const int64_t nvec = C / N;
  const int64_t v = int64_t(blockIdx.x) * kColX + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per, r1 = R < r0 + rows_per ? R : r0 + rows_per;
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = 0.f;
  if (v < nvec)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 16) {
      const bool two = r + 8 < r1;
      const int64_t o0 = r * C + v * N, o1 = two ? o0 + 8 * C : o0;
      const P x0 = *reinterpret_cast<const P*>(x + o0), d0 = *reinterpret_cast<const P*>(dy + o0);
      const P x1 = *reinterpret_cast<const P*>(x + o1), d1 = *reinterpret_cast<const P*>(dy + o1);
      P q0, q1;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        q0.v[j] = from_f32<T>(f32(d0.v[j]) * gelu_grad(f32(x0.v[j])));
        q1.v[j] = from_f32<T>(f32(d1.v[j]) * gelu_grad(f32(x1.v[j])));
        acc[j] += f32(q0.v[j]);
      }
      *reinterpret_cast<P*>(dx + o0) = q0;
      if (two) {
#pragma unroll
        for (int j = 0; j < N; ++j) acc[j] += f32(q1.v[j]);
        *reinterpret_cast<P*>(dx + o1) = q1;
      }
    }
  float t[N];
  if (!combine_lanes<N, 8>(acc, sh, v < nvec, t)) return;
#pragma unroll
  for (int j = 0; j < N; ++j) part[int64_t(blockIdx.y) * C + v * N + j] = t[j];
}

// dgate = dy up s (1 + gate (1 - s)), dup = dy gate s; dgate/dup may alias gate/up (same element).
template <class T, int N>
__global__ void silu_gate_bwd_kernel(const T* gate, const T* up, const T* __restrict__ dy, T* dgate, T* dup, int64_t R,
                                     int64_t F, int64_t in_stride) {
  using P = Pack<T, N>;
  const int64_t nvec = F / N;
  for (int64_t r = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; r < R; r += int64_t(gridDim.y) * blockDim.y) {
    const P* g = reinterpret_cast<const P*>(gate + r * in_stride);
    const P* u = reinterpret_cast<const P*>(up + r * in_stride);
    const P* d = reinterpret_cast<const P*>(dy + r * F);
    P* og = reinterpret_cast<P*>(dgate + r * in_stride);
    P* ou = reinterpret_cast<P*>(dup + r * in_stride);
    for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += int64_t(gridDim.x) * blockDim.x) {
      const P pg = g[v], pu = u[v], pd = d[v];
      P rg, ru;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float a = f32(pg.v[j]), b = f32(pu.v[j]), e = f32(pd.v[j]);
        const float s = 1.f / (1.f + expf(-a));
        rg.v[j] = from_f32<T>(e * b * s * (1.f + a * (1.f - s)));
        ru.v[j] = from_f32<T>(e * a * s);
      }
      og[v] = rg;
      ou[v] = ru;
    }
  }
}

template <class T>
void gelu_bwd_t(cudaStream_t s, const void* x, const void* dy, void* dx, int64_t n) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = aligned16(x) && aligned16(dy) && aligned16(dx);
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min(cdiv(n / (vec ? V : 1), kThreads), kMaxBlocks)));
  auto* xt = static_cast<const T*>(x);
  auto* dyt = static_cast<const T*>(dy);
  auto* dxt = static_cast<T*>(dx);
  if (vec) gelu_bwd_kernel<T, V><<<blocks, kThreads, 0, s>>>(xt, dyt, dxt, n);
  else gelu_bwd_kernel<T, 1><<<blocks, kThreads, 0, s>>>(xt, dyt, dxt, n);
}

// About 1024 blocks: chunks of at least 16 rows; their partial rows (chunks x C floats) summed by colsum_n.
template <class T>
void gelu_bwd_bias_t(cudaStream_t s, const void* x, const void* dy, void* dx, void* dbias, int64_t R, int64_t C,
                     bool accumulate) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = C % V == 0 && aligned16(x) && aligned16(dy) && aligned16(dx);
  const int64_t col_blocks = cdiv(C / (vec ? V : 1), kColX);
  int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, 1024 / col_blocks), cdiv(R, 16));
  chunks = std::min<int64_t>(chunks, kMaxBlocksY);
  const int64_t rows_per = cdiv(R, chunks);
  chunks = cdiv(R, rows_per);
  Scratch part(s, chunks * C, "gelu_backward");
  const dim3 grid{unsigned(col_blocks), unsigned(chunks)}, block{kColX, 8};
  auto* xt = static_cast<const T*>(x);
  auto* dyt = static_cast<const T*>(dy);
  auto* dxt = static_cast<T*>(dx);
  if (vec) gelu_bwd_colsum_kernel<T, V><<<grid, block, 0, s>>>(xt, dyt, dxt, part.p, R, C, rows_per);
  else gelu_bwd_colsum_kernel<T, 1><<<grid, block, 0, s>>>(xt, dyt, dxt, part.p, R, C, rows_per);
  PARALLM_LAUNCH_CHECK("gelu_backward: launch with the bias gradient failed (R=", R, " C=", C, " chunks=", chunks, ")");
  T* db = static_cast<T*>(dbias);
  colsum_n<float, T>(s, "gelu_backward (bias gradient)", part.p, 0, ColOut<T>{{db, db, db}, accumulate ? 1u : 0u}, 1, chunks, C);
}

template <class T>
void silu_gate_bwd_t(cudaStream_t s, const void* gate, const void* up, const void* dy, void* dgate, void* dup,
                     int64_t R, int64_t F, int64_t in_stride) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = F % V == 0 && in_stride % V == 0 && aligned16(gate) && aligned16(up) && aligned16(dy) &&
                   aligned16(dgate) && aligned16(dup);
  const int64_t nvec = F / (vec ? V : 1);
  const int tx = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, cdiv(nvec, 32) * 32)));
  const int ty = kThreads / tx;
  const dim3 grid(unsigned(std::min(cdiv(nvec, tx), kMaxBlocks)), unsigned(std::min(cdiv(R, ty), kMaxBlocksY)));
  auto* gt = static_cast<const T*>(gate);
  auto* ut = static_cast<const T*>(up);
  auto* dyt = static_cast<const T*>(dy);
  auto* dgt = static_cast<T*>(dgate);
  auto* dut = static_cast<T*>(dup);
  if (vec) silu_gate_bwd_kernel<T, V><<<grid, dim3(tx, ty), 0, s>>>(gt, ut, dyt, dgt, dut, R, F, in_stride);
  else silu_gate_bwd_kernel<T, 1><<<grid, dim3(tx, ty), 0, s>>>(gt, ut, dyt, dgt, dut, R, F, in_stride);
}

template <class T>
void gelu_t(cudaStream_t s, const void* x, void* y, int64_t n) {
  constexpr int V = 16 / sizeof(T);
  auto* xt = static_cast<const T*>(x);
  auto* yt = static_cast<T*>(y);
  const bool vec = aligned16(x) && aligned16(y);
  const unsigned blocks = unsigned(std::max<int64_t>(1, std::min(cdiv(n / (vec ? V : 1), kThreads), kMaxBlocks)));
  const auto kern = vec ? gelu_kernel<T, V> : gelu_kernel<T, 1>;
  PARALLM_CUDA_CHECK(launch_pdl_small(kern, dim3(blocks), dim3(kThreads), 0, s, xt, yt, n), "gelu: launch (n=", n, ")");
}

template <class T>
void silu_gate_t(cudaStream_t s, const void* gate, const void* up, void* y, int64_t R, int64_t F, int64_t in_stride) {
  constexpr int V = 16 / sizeof(T);
  auto* gt = static_cast<const T*>(gate);
  auto* ut = static_cast<const T*>(up);
  auto* yt = static_cast<T*>(y);
  const bool vec = F % V == 0 && in_stride % V == 0 && aligned16(gate) && aligned16(up) && aligned16(y);
  const int64_t nvec = F / (vec ? V : 1);
  const int tx = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, cdiv(nvec, 32) * 32)));
  const int ty = kThreads / tx;  // short rows: several per block
  const dim3 grid(unsigned(std::min(cdiv(nvec, tx), kMaxBlocks)), unsigned(std::min(cdiv(R, ty), kMaxBlocksY)));
  const auto kern = vec ? silu_gate_kernel<T, V> : silu_gate_kernel<T, 1>;
  PARALLM_CUDA_CHECK(launch_pdl_small(kern, grid, dim3(tx, ty), 0, s, gt, ut, yt, R, F, in_stride),
                     "silu_gate: launch (R=", R, " F=", F, ")");
}

}  // namespace

void gelu(cudaStream_t s, DType dt, const void* x, void* y, int64_t n) {
  if (n < 0) fail("gelu: negative size n=", n);
  if (n == 0) return;
  if (dt == DType::F32) gelu_t<float>(s, x, y, n);
  else if (dt == DType::BF16) gelu_t<__nv_bfloat16>(s, x, y, n);
  else fail("gelu: dtype ", dtype_name(dt), " not supported (f32, bf16) (n=", n, ")");
  PARALLM_LAUNCH_CHECK("gelu: launch failed (n=", n, ")");
}

void silu_gate(cudaStream_t s, DType dt, const void* gate, const void* up, void* y, int64_t R, int64_t F,
               int64_t in_stride) {
  if (R < 0 || F < 0 || in_stride < 0)
    fail("silu_gate: negative size R=", R, " F=", F, " in_stride=", in_stride);
  if (R == 0 || F == 0) return;
  if (R > 1 && in_stride < F) fail("silu_gate: in_stride=", in_stride, " < F=", F, " (R=", R, ")");
  if (R > INT64_MAX / std::max(F, in_stride)) fail("silu_gate: R*F overflows (R=", R, " F=", F, ")");
  if (dt == DType::F32) silu_gate_t<float>(s, gate, up, y, R, F, in_stride);
  else if (dt == DType::BF16) silu_gate_t<__nv_bfloat16>(s, gate, up, y, R, F, in_stride);
  else fail("silu_gate: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " F=", F, ")");
  PARALLM_LAUNCH_CHECK("silu_gate: launch failed (R=", R, " F=", F, " in_stride=", in_stride, ")");
}

void gelu_backward(cudaStream_t s, DType dt, const void* x, const void* dy, void* dx, int64_t n) {
  if (n < 0) fail("gelu_backward: negative size n=", n);
  if (n == 0) return;
  if (!x || !dy || !dx) fail("gelu_backward: null pointer (n=", n, ")");
  if (dt == DType::F32) gelu_bwd_t<float>(s, x, dy, dx, n);
  else if (dt == DType::BF16) gelu_bwd_t<__nv_bfloat16>(s, x, dy, dx, n);
  else fail("gelu_backward: dtype ", dtype_name(dt), " not supported (f32, bf16) (n=", n, ")");
  PARALLM_LAUNCH_CHECK("gelu_backward: launch failed (n=", n, ")");
}

void gelu_backward_bias(cudaStream_t s, DType dt, const void* x, const void* dy, void* dx, void* dbias, int64_t R,
                        int64_t C, bool accumulate) {
  if (R < 0 || C < 1) fail("gelu_backward: bad sizes R=", R, " C=", C, " (with the bias gradient)");
  if (R > INT64_MAX / C) fail("gelu_backward: R*C overflows (R=", R, " C=", C, ")");
  if (!dbias || (R > 0 && (!x || !dy || !dx))) fail("gelu_backward: null pointer (R=", R, " C=", C, ")");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("gelu_backward: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " C=", C, ")");
  if (R == 0) {  // an empty sum: the bias gradient is zero (or unchanged)
    if (!accumulate)
      PARALLM_CUDA_CHECK(cudaMemsetAsync(dbias, 0, size_t(C) * dtype_size(dt), s), "gelu_backward: zero fill (C=", C, ")");
    return;
  }
  if (dt == DType::F32) gelu_bwd_bias_t<float>(s, x, dy, dx, dbias, R, C, accumulate);
  else gelu_bwd_bias_t<__nv_bfloat16>(s, x, dy, dx, dbias, R, C, accumulate);
}

void silu_gate_backward(cudaStream_t s, DType dt, const void* gate, const void* up, const void* dy, void* dgate,
                        void* dup, int64_t R, int64_t F, int64_t in_stride) {
  if (R < 0 || F < 0 || in_stride < 0)
    fail("silu_gate_backward: negative size R=", R, " F=", F, " in_stride=", in_stride);
  if (R == 0 || F == 0) return;
  if (R > 1 && in_stride < F) fail("silu_gate_backward: in_stride=", in_stride, " < F=", F, " (R=", R, ")");
  if (R > INT64_MAX / std::max(F, in_stride))
    fail("silu_gate_backward: R*F overflows (R=", R, " F=", F, ")");
  if (!gate || !up || !dy || !dgate || !dup) fail("silu_gate_backward: null pointer (R=", R, " F=", F, ")");
  if (dt == DType::F32) silu_gate_bwd_t<float>(s, gate, up, dy, dgate, dup, R, F, in_stride);
  else if (dt == DType::BF16) silu_gate_bwd_t<__nv_bfloat16>(s, gate, up, dy, dgate, dup, R, F, in_stride);
  else fail("silu_gate_backward: dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " F=", F, ")");
  PARALLM_LAUNCH_CHECK("silu_gate_backward: launch failed (R=", R, " F=", F, " in_stride=", in_stride, ")");
}

}  // namespace parallm::cuda
