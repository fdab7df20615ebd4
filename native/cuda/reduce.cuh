// Deterministic column sums for the training kernels (sum_rows, the norms' dgamma/dbeta/dw): a [R, C]
// matrix is summed over R, never with float atomics: a short one (<= kColShortRows rows) in one launch,
// a long one in two. Launch 1 gives each block a slice of columns and a chunk of rows and writes one f32
// partial row per chunk; launch 2 sums the partial rows in chunk order. The chunking depends on R and C
// only, so every run adds in the same order. Up to three sums of one shape (a layernorm's dgamma, dbeta and
// dx sums) share each launch (colsum_n).
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

constexpr int kColX = 32;  // block: 32 column packs x KY row lanes (8, or 32 for a short sum in one launch)

// The KY row lanes' sums of a block's column packs (acc, N columns a thread), added in lane order through
// shared memory sh [KY][kColX * N]; true in lane 0 of a live pack, whose t then holds the block's sums.
template <int N, int KY>
__device__ __forceinline__ bool combine_lanes(const float (&acc)[N], float (*sh)[kColX * N], bool live, float (&t)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) sh[threadIdx.y][threadIdx.x * N + j] = acc[j];
  __syncthreads();
  if (threadIdx.y != 0 || !live) return false;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    t[j] = sh[0][threadIdx.x * N + j];
    for (int y = 1; y < KY; ++y) t[j] += sh[y][threadIdx.x * N + j];
  }
  return true;
}

// Up to three sums in one launch (blockIdx.z): matrix z is in + z * in_z, its sum goes to p[z], added to what
// p[z] holds where bit z of acc is set.
template <class To>
struct ColOut {
  To* p[3];
  unsigned acc;
};

// out[z][chunk * C + c] (+)= sum over rows [chunk*rows_per, min(R, ..)) of in_z[r*C + c], N columns per pack.
// In the final launch out has type To and the chunk index is 0 (one chunk).
// The KY row lanes of a column are combined through shared memory in lane order.
template <class Ti, class To, int N, int KY>
__global__ void __launch_bounds__(kColX* KY) colsum_kernel(const Ti* __restrict__ in, int64_t in_z, ColOut<To> outs,
                                                           int64_t R, int64_t C, int64_t rows_per) {
  __shared__ float sh[KY][kColX * N];
  in += int64_t(blockIdx.z) * in_z;
  To* out = outs.p[blockIdx.z];
  const bool add = (outs.acc >> blockIdx.z) & 1u;
  const int64_t nvec = C / N;
  const int64_t v = int64_t(blockIdx.x) * kColX + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per, r1 = R < r0 + rows_per ? R : r0 + rows_per;
  float acc[N];
#pragma unroll
  for (int j = 0; j < N; ++j) acc[j] = 0.f;
  if (v < nvec) {
    // Four independent rows in flight per lane before their adds.
    int64_t r = r0 + threadIdx.y;
    for (; r + 3 * KY < r1; r += 4 * KY) {
      Pack<Ti, N> p[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) p[u] = *reinterpret_cast<const Pack<Ti, N>*>(in + (r + u * KY) * C + v * N);
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int j = 0; j < N; ++j) acc[j] += f32(p[u].v[j]);
    }
    for (; r < r1; r += KY) {
      const Pack<Ti, N> p = *reinterpret_cast<const Pack<Ti, N>*>(in + r * C + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) acc[j] += f32(p.v[j]);
    }
  }
  float t[N];
  if (!combine_lanes<N, KY>(acc, sh, v < nvec, t)) return;
  Pack<To, N>* dst = reinterpret_cast<Pack<To, N>*>(out + int64_t(blockIdx.y) * C) + v;
  Pack<To, N> o;
  if (add) o = *dst;
#pragma unroll
  for (int j = 0; j < N; ++j) o.v[j] = from_f32<To>(add ? f32(o.v[j]) + t[j] : t[j]);
  *dst = o;
}

template <class Ti, class To, int KY>
void colsum_launch(cudaStream_t s, const Ti* in, int64_t in_z, ColOut<To> out, int nz, int64_t R, int64_t C,
                   int64_t chunks, int64_t rows_per) {
  constexpr int V = 16 / sizeof(Ti) < 16 / sizeof(To) ? 16 / sizeof(Ti) : 16 / sizeof(To);
  bool vec = C % V == 0 && aligned_to(in, 16) && (nz == 1 || in_z % V == 0);
  for (int z = 0; z < nz; ++z) vec = vec && aligned_to(out.p[z], sizeof(To) * V);
  const int64_t nvec = C / (vec ? V : 1);
  const dim3 grid(unsigned(cdiv(nvec, kColX)), unsigned(chunks), unsigned(nz));
  if (vec) colsum_kernel<Ti, To, V, KY><<<grid, dim3(kColX, KY), 0, s>>>(in, in_z, out, R, C, rows_per);
  else colsum_kernel<Ti, To, 1, KY><<<grid, dim3(kColX, KY), 0, s>>>(in, in_z, out, R, C, rows_per);
}

// Rows at most for a sum in one launch of 32 row lanes (32 rows a lane, four in flight): the norms' and the
// squared norm's per-block partials (<= 512 rows), which two launches took ~3 µs each to sum (S32-5).
constexpr int64_t kColShortRows = 1024;

// out.p[z][c] (+)= sum_r in[z * in_z + r*C + c] for z < nz (1 to 3; out.p[z]: To, C elements; += where bit z
// of out.acc is set), deterministic. Short sums take one launch; long ones split R into chunks of at least
// 64 rows so that about 512 blocks share the work, then sum the chunks' f32 partials.
template <class Ti, class To>
void colsum_n(cudaStream_t s, const char* op, const Ti* in, int64_t in_z, ColOut<To> out, int nz, int64_t R,
              int64_t C) {
  if (R == 0) {  // an empty sum: zeros (all-zero bits are 0.0 in f32 and bf16)
    for (int z = 0; z < nz; ++z)
      if (!((out.acc >> z) & 1u))
        PARALLM_CUDA_CHECK(cudaMemsetAsync(out.p[z], 0, size_t(C) * sizeof(To), s), op, ": zero fill (C=", C, ")");
    return;
  }
  const int64_t col_blocks = cdiv(C, kColX * 4);
  int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, 512 / col_blocks), cdiv(R, 64));
  chunks = std::min<int64_t>(std::max<int64_t>(chunks, 1), 65535);
  const int64_t rows_per = cdiv(R, chunks);
  chunks = cdiv(R, rows_per);
  if (chunks <= 1 || R <= kColShortRows) {
    if (chunks <= 1) colsum_launch<Ti, To, 8>(s, in, in_z, out, nz, R, C, 1, R);
    else colsum_launch<Ti, To, 32>(s, in, in_z, out, nz, R, C, 1, R);
    PARALLM_LAUNCH_CHECK(op, ": column sum launch failed (R=", R, " C=", C, " sums=", nz, ")");
    return;
  }
  Scratch part(s, nz * chunks * C, op);
  const ColOut<float> po{{part.p, part.p + chunks * C, part.p + 2 * chunks * C}, 0u};
  colsum_launch<Ti, float, 8>(s, in, in_z, po, nz, R, C, chunks, rows_per);
  PARALLM_LAUNCH_CHECK(op, ": column partials launch failed (R=", R, " C=", C, " chunks=", chunks, " sums=", nz, ")");
  colsum_launch<float, To, 8>(s, part.p, chunks * C, out, nz, chunks, C, 1, chunks);
  PARALLM_LAUNCH_CHECK(op, ": column partials sum launch failed (R=", R, " C=", C, " chunks=", chunks, " sums=", nz, ")");
}

// out[c] (+)= sum_r in[r*C + c].
template <class Ti, class To>
void colsum(cudaStream_t s, const char* op, const Ti* in, To* out, int64_t R, int64_t C, bool accumulate) {
  colsum_n<Ti, To>(s, op, in, 0, ColOut<To>{{out, out, out}, accumulate ? 1u : 0u}, 1, R, C);
}

}  // namespace
}  // namespace parallm::cuda
