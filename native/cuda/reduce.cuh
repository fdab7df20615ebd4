// Deterministic column sums for the training kernels (sum_rows, the norms' dgamma/dbeta/dw): a [R, C]
// matrix is summed over R in two launches, never with float atomics. Launch 1 gives each block a slice
// of columns and a chunk of rows and writes one f32 partial row per chunk; launch 2 sums the partial rows
// in chunk order. The chunking depends on R and C only, so every run adds in the same order.
//
// Also: a stream-ordered scratch buffer (cudaMallocAsync, so a captured graph gets its own allocation
// node), as attention_decode takes its split partials.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "common.cuh"

namespace parallm::cuda {
namespace {

inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// f32 scratch of n elements on stream s, freed (stream-ordered) when the object goes out of scope.
struct Scratch {
  float* p = nullptr;
  cudaStream_t s;
  Scratch(cudaStream_t st, int64_t n, const char* op) : s(st) {
    if (n > 0)
      PARALLM_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p), size_t(n) * sizeof(float), st), op,
                         ": scratch of ", n * int64_t(sizeof(float)), " bytes");
  }
  ~Scratch() {
    if (p) cudaFreeAsync(p, s);  // (a destructor must not throw; a failed free leaks, it does not crash)
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

constexpr int kColX = 32, kColY = 8;  // block: 32 column packs x 8 row lanes

// out[chunk * C + c] (+)= sum over rows [chunk*rows_per, min(R, ..)) of in[r*C + c], N columns per pack.
// With FINAL, out has type To and the chunk index is 0 (one chunk); ACC adds what out holds.
// The 8 row lanes of a column are combined through shared memory in lane order.
template <class Ti, class To, int N, bool ACC>
__global__ void __launch_bounds__(kColX* kColY) colsum_kernel(const Ti* __restrict__ in, To* __restrict__ out,
                                                              int64_t R, int64_t C, int64_t rows_per) {
  __shared__ float sh[kColY][kColX * N];
  const int64_t nvec = C / N;
  const int64_t v = int64_t(blockIdx.x) * kColX + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per, r1 = R < r0 + rows_per ? R : r0 + rows_per;
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = 0.f;
  if (v < nvec) {
    // Four independent rows in flight per lane before their adds.
    int64_t r = r0 + threadIdx.y;
    for (; r + 3 * kColY < r1; r += 4 * kColY) {
      Pack<Ti, N> p[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) p[u] = *reinterpret_cast<const Pack<Ti, N>*>(in + (r + u * kColY) * C + v * N);
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int j = 0; j < N; ++j) acc[j] += f32(p[u].v[j]);
    }
    for (; r < r1; r += kColY) {
      const Pack<Ti, N> p = *reinterpret_cast<const Pack<Ti, N>*>(in + r * C + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) acc[j] += f32(p.v[j]);
    }
  }
#pragma unroll
  for (int j = 0; j < N; ++j) sh[threadIdx.y][threadIdx.x * N + j] = acc[j];
  __syncthreads();
  if (threadIdx.y != 0 || v >= nvec) return;
  float t[N];
#pragma unroll
  for (int j = 0; j < N; ++j) {
    t[j] = sh[0][threadIdx.x * N + j];
    for (int y = 1; y < kColY; ++y) t[j] += sh[y][threadIdx.x * N + j];
  }
  Pack<To, N>* dst = reinterpret_cast<Pack<To, N>*>(out + int64_t(blockIdx.y) * C) + v;
  Pack<To, N> o;
  if (ACC) o = *dst;
#pragma unroll
  for (int j = 0; j < N; ++j) o.v[j] = from_f32<To>(ACC ? f32(o.v[j]) + t[j] : t[j]);
  *dst = o;
}

template <class Ti, class To, bool ACC>
void colsum_launch(cudaStream_t s, const Ti* in, To* out, int64_t R, int64_t C, int64_t chunks, int64_t rows_per) {
  constexpr int V = 16 / sizeof(Ti) < 16 / sizeof(To) ? 16 / sizeof(Ti) : 16 / sizeof(To);
  const bool vec = C % V == 0 && aligned_to(in, 16) && aligned_to(out, sizeof(To) * V);
  const int64_t nvec = C / (vec ? V : 1);
  const dim3 grid(unsigned(cdiv(nvec, kColX)), unsigned(chunks));
  if (vec) colsum_kernel<Ti, To, V, ACC><<<grid, dim3(kColX, kColY), 0, s>>>(in, out, R, C, rows_per);
  else colsum_kernel<Ti, To, 1, ACC><<<grid, dim3(kColX, kColY), 0, s>>>(in, out, R, C, rows_per);
}

// out[c] (+)= sum_r in[r*C + c] (out: To, C elements), deterministic. Short sums take one launch; long
// ones split R into chunks of at least 64 rows so that about 512 blocks share the work, then sum the
// chunks' f32 partials (in `scratch` of chunks * C floats, or allocated here when null).
template <class Ti, class To>
void colsum(cudaStream_t s, const char* op, const Ti* in, To* out, int64_t R, int64_t C, bool accumulate) {
  if (R == 0) {  // an empty sum: zeros (all-zero bits are 0.0 in f32 and bf16)
    if (!accumulate)
      PARALLM_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(C) * sizeof(To), s), op, ": zero fill (C=", C, ")");
    return;
  }
  const int64_t col_blocks = cdiv(C, kColX * 4);
  int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, 512 / col_blocks), cdiv(R, 64));
  chunks = std::min<int64_t>(std::max<int64_t>(chunks, 1), 65535);
  const int64_t rows_per = cdiv(R, chunks);
  chunks = cdiv(R, rows_per);
  if (chunks <= 1) {
    if (accumulate) colsum_launch<Ti, To, true>(s, in, out, R, C, 1, std::max<int64_t>(R, 1));
    else colsum_launch<Ti, To, false>(s, in, out, R, C, 1, std::max<int64_t>(R, 1));
    PARALLM_LAUNCH_CHECK(op, ": column sum launch failed (R=", R, " C=", C, ")");
    return;
  }
  Scratch part(s, chunks * C, op);
  colsum_launch<Ti, float, false>(s, in, part.p, R, C, chunks, rows_per);
  PARALLM_LAUNCH_CHECK(op, ": column partials launch failed (R=", R, " C=", C, " chunks=", chunks, ")");
  if (accumulate) colsum_launch<float, To, true>(s, part.p, out, chunks, C, 1, chunks);
  else colsum_launch<float, To, false>(s, part.p, out, chunks, C, 1, chunks);
  PARALLM_LAUNCH_CHECK(op, ": column partials sum launch failed (R=", R, " C=", C, " chunks=", chunks, ")");
}

}  // namespace
}  // namespace parallm::cuda
