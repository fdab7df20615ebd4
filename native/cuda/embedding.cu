// Embedding gather: out[n, :] = table[ids[n], :]; an id outside [0, V) gives a row of zeros.
// Embedding backward: dtable[ids[n], :] += dout[n, :], deterministic (below).
//
// A copy kernel: tokens along grid y, each row's C elements along x in 16-byte packs when the table,
// the output and C allow it (bf16 and f32 are copied as raw bits; nothing to convert).
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

// W is the access word (16 bytes, or the element itself); row holds `words` of them.
template <class W>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const W* __restrict__ table, W* __restrict__ out,
                                 int64_t N, int64_t V, int64_t words) {
  PARALLM_TRACE_SCOPE(Embedding);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  for (int64_t n = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; n < N; n += int64_t(gridDim.y) * blockDim.y) {
    const int64_t id = ids[n];
    const bool ok = id >= 0 && id < V;
    const W* src = table + (ok ? id : 0) * words;
    W* dst = out + n * words;
    for (int64_t w = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; w < words; w += int64_t(gridDim.x) * blockDim.x)
      dst[w] = ok ? src[w] : W{};
  }
}

template <class W>
void launch(cudaStream_t s, const int32_t* ids, const void* table, void* out, int64_t N, int64_t V, int64_t words) {
  const int tx = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, cdiv(words, 32) * 32)));
  const int ty = kThreads / tx;  // short rows: several tokens per block
  const dim3 grid(unsigned(std::min(cdiv(words, tx), kMaxBlocks)), unsigned(std::min(cdiv(N, ty), kMaxBlocksY)));
  PARALLM_CUDA_CHECK(launch_pdl_small(embedding_kernel<W>, grid, dim3(tx, ty), 0, s, ids, static_cast<const W*>(table),
                                      static_cast<W*>(out), N, V, words),
                     "embedding: launch (N=", N, " V=", V, ")");
}

// ------------------------------------------------------------------------------------------- backward
// Rows with the same id must be summed in n order (kernels.h), without float atomics. So the pairs
// (id, n) are sorted as 64-bit keys id << 32 | n (unique, so the sort's result is fixed): a bitonic sort,
// stages within 2048 keys in shared memory, longer ones through device memory. Then each run of equal ids
// is summed in f32 in n order by the threads of its first position, one column pack each, and added to
// its table row once. Ids outside [0, V) take the id 0xffffffff and are skipped; padding keys are ~0.
constexpr int kSortThreads = 1024, kSortTile = 2 * kSortThreads;
constexpr uint32_t kBadId = 0xffffffffu;

__global__ void emb_keys_kernel(const int32_t* __restrict__ ids, uint64_t* __restrict__ keys, int64_t N, int64_t Np,
                                int64_t V) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < Np; i += int64_t(gridDim.x) * blockDim.x) {
    if (i >= N) {
      keys[i] = ~uint64_t(0);
      continue;
    }
    const int32_t id = ids[i];
    const uint32_t u = (id >= 0 && int64_t(id) < V) ? uint32_t(id) : kBadId;
    keys[i] = (uint64_t(u) << 32) | uint64_t(i);
  }
}

__device__ __forceinline__ void cmp_swap(uint64_t& a, uint64_t& b, bool asc) {
  if ((a > b) == asc) {
    const uint64_t t = a;
    a = b;
    b = t;
  }
}

// Stages (k, j) with j < kSortTile inside one tile of 2048 keys. FULL: every k up to 2048 (the first
// pass); else the single k given, j from 1024 down.
template <bool FULL>
__global__ void __launch_bounds__(kSortThreads) emb_sort_local(uint64_t* __restrict__ keys, int64_t k_given) {
  __shared__ uint64_t sk[kSortTile];
  const int64_t base = int64_t(blockIdx.x) * kSortTile;
  sk[threadIdx.x] = keys[base + threadIdx.x];
  sk[threadIdx.x + kSortThreads] = keys[base + threadIdx.x + kSortThreads];
  __syncthreads();
  const int64_t k0 = FULL ? 2 : k_given, k1 = FULL ? kSortTile : k_given;
  for (int64_t k = k0; k <= k1; k <<= 1) {
    for (int j = int(FULL ? k / 2 : kSortTile / 2); j > 0; j >>= 1) {
      const int t = threadIdx.x, i = 2 * j * (t / j) + (t % j);
      cmp_swap(sk[i], sk[i + j], ((base + i) & k) == 0);
      __syncthreads();
    }
  }
  keys[base + threadIdx.x] = sk[threadIdx.x];
  keys[base + threadIdx.x + kSortThreads] = sk[threadIdx.x + kSortThreads];
}

// One (k, j) stage with j >= kSortTile, through device memory.
__global__ void emb_sort_global(uint64_t* __restrict__ keys, int64_t half, int64_t k, int64_t j) {
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < half; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = 2 * j * (t / j) + (t % j);
    uint64_t a = keys[i], b = keys[i + j];
    const uint64_t a0 = a;
    cmp_swap(a, b, (i & k) == 0);
    if (a != a0) keys[i] = a, keys[i + j] = b;
  }
}

// Positions along grid y (strided), packs of the row along x. A position that starts a run of equal
// valid ids sums the run's dout rows in n order and adds the sum into dtable once.
template <class T, int N>
__global__ void emb_scatter_kernel(const uint64_t* __restrict__ keys, const T* __restrict__ dout,
                                   T* __restrict__ dtable, int64_t Nrows, int64_t C, float scale) {
  using P = Pack<T, N>;
  const int64_t nvec = C / N;
  const int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= nvec) return;
  for (int64_t p = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; p < Nrows; p += int64_t(gridDim.y) * blockDim.y) {
    const uint32_t id = uint32_t(keys[p] >> 32);
    if (id == kBadId || (p > 0 && uint32_t(keys[p - 1] >> 32) == id)) continue;
    float acc[N];
#pragma unroll
    for (int j = 0; j < N; ++j) acc[j] = 0.f;
    // kRun keys, then their rows, are loaded before any add (a frequent token's run is long; one load at
    // a time would wait on memory for each row). The adds stay in n order.
    constexpr int kRun = 8;
    for (int64_t q = p; q < Nrows; q += kRun) {
      uint64_t key[kRun];
#pragma unroll
      for (int u = 0; u < kRun; ++u) key[u] = q + u < Nrows ? keys[q + u] : ~uint64_t(0);
      P d[kRun];
#pragma unroll
      for (int u = 0; u < kRun; ++u)
        if (uint32_t(key[u] >> 32) == id) d[u] = reinterpret_cast<const P*>(dout + int64_t(uint32_t(key[u])) * C)[v];
      bool more = true;
#pragma unroll
      for (int u = 0; u < kRun; ++u) {
        if (uint32_t(key[u] >> 32) != id) {
          more = false;
          break;
        }
#pragma unroll
        for (int j = 0; j < N; ++j) acc[j] += f32(d[u].v[j]);
      }
      if (!more) break;
    }
    P* dst = reinterpret_cast<P*>(dtable + int64_t(id) * C) + v;
    P o = *dst;
#pragma unroll
    for (int j = 0; j < N; ++j) o.v[j] = from_f32<T>(f32(o.v[j]) + scale * acc[j]);
    *dst = o;
  }
}

template <class T>
void emb_scatter(cudaStream_t s, const uint64_t* keys, const void* dout, void* dtable, int64_t N, int64_t C,
                 float scale) {
  constexpr int W = 16 / sizeof(T);
  const bool vec = C % W == 0 && aligned16(dout) && aligned16(dtable);
  const int64_t nvec = C / (vec ? W : 1);
  const int tx = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, cdiv(nvec, 32) * 32)));
  const int ty = kThreads / tx;
  const dim3 grid(unsigned(std::min(cdiv(nvec, tx), kMaxBlocks)), unsigned(std::min(cdiv(N, ty), kMaxBlocksY)));
  // (grid x capped: a row longer than kMaxBlocks * tx packs is not expected; checked by the caller)
  auto* dt = static_cast<const T*>(dout);
  auto* tt = static_cast<T*>(dtable);
  if (vec) emb_scatter_kernel<T, W><<<grid, dim3(tx, ty), 0, s>>>(keys, dt, tt, N, C, scale);
  else emb_scatter_kernel<T, 1><<<grid, dim3(tx, ty), 0, s>>>(keys, dt, tt, N, C, scale);
}

}  // namespace

void embedding(cudaStream_t s, DType dt, const int32_t* ids, const void* table, void* out, int64_t N, int64_t V,
               int64_t C) {
  if (N < 0 || V < 0 || C < 0) fail("embedding: negative size N=", N, " V=", V, " C=", C);
  if (dt != DType::F32 && dt != DType::BF16)
    fail("embedding: dtype ", dtype_name(dt), " not supported (f32, bf16) (N=", N, " C=", C, ")");
  if (N == 0 || C == 0) return;
  if (N > INT64_MAX / C || (V > 0 && V > INT64_MAX / C))
    fail("embedding: sizes overflow (N=", N, " V=", V, " C=", C, ")");
  const int64_t bytes = C * int64_t(dtype_size(dt));
  const bool vec = bytes % 16 == 0 && (reinterpret_cast<uintptr_t>(table) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(out) & 15) == 0;
  if (vec) launch<int4>(s, ids, table, out, N, V, bytes / 16);
  else if (dt == DType::F32) launch<float>(s, ids, table, out, N, V, C);
  else launch<uint16_t>(s, ids, table, out, N, V, C);
  PARALLM_LAUNCH_CHECK("embedding: launch failed (N=", N, " V=", V, " C=", C, ")");
}

void embedding_backward(cudaStream_t s, DType dt, const int32_t* ids, const void* dout, void* dtable, int64_t N,
                        int64_t V, int64_t C, float scale) {
  if (N < 0 || V < 0 || C < 0) fail("embedding_backward: negative size N=", N, " V=", V, " C=", C);
  if (dt != DType::F32 && dt != DType::BF16)
    fail("embedding_backward: dtype ", dtype_name(dt), " not supported (f32, bf16) (N=", N, " C=", C, ")");
  if (N == 0 || C == 0 || V == 0) return;
  if (N > INT32_MAX || V > INT32_MAX) fail("embedding_backward: N=", N, " or V=", V, " beyond int32");
  if (N > INT64_MAX / C || V > INT64_MAX / C) fail("embedding_backward: sizes overflow (N=", N, " V=", V, " C=", C, ")");
  if (cdiv(C, int64_t(kThreads)) > kMaxBlocks) fail("embedding_backward: C=", C, " too wide");
  if (!ids || !dout || !dtable) fail("embedding_backward: null pointer (N=", N, " V=", V, " C=", C, ")");
  int64_t Np = kSortTile;
  while (Np < N) Np <<= 1;
  // The keys live in a scratch of 2*Np f32 words (8 bytes a key).
  Scratch scratch(s, 2 * Np, "embedding_backward");
  auto* keys = reinterpret_cast<uint64_t*>(scratch.p);
  emb_keys_kernel<<<unsigned(std::min(cdiv(Np, kThreads), kMaxBlocks)), kThreads, 0, s>>>(ids, keys, N, Np, V);
  PARALLM_LAUNCH_CHECK("embedding_backward: keys launch failed (N=", N, ")");
  const unsigned tiles = unsigned(Np / kSortTile);
  emb_sort_local<true><<<tiles, kSortThreads, 0, s>>>(keys, 0);
  PARALLM_LAUNCH_CHECK("embedding_backward: sort launch failed (N=", N, ")");
  for (int64_t k = 2 * kSortTile; k <= Np; k <<= 1) {
    for (int64_t j = k / 2; j >= kSortTile; j >>= 1) {
      emb_sort_global<<<unsigned(std::min(cdiv(Np / 2, kThreads), kMaxBlocks)), kThreads, 0, s>>>(keys, Np / 2, k, j);
      PARALLM_LAUNCH_CHECK("embedding_backward: sort launch failed (N=", N, " k=", k, " j=", j, ")");
    }
    emb_sort_local<false><<<tiles, kSortThreads, 0, s>>>(keys, k);
    PARALLM_LAUNCH_CHECK("embedding_backward: sort launch failed (N=", N, " k=", k, ")");
  }
  if (dt == DType::F32) emb_scatter<float>(s, keys, dout, dtable, N, C, scale);
  else emb_scatter<__nv_bfloat16>(s, keys, dout, dtable, N, C, scale);
  PARALLM_LAUNCH_CHECK("embedding_backward: scatter launch failed (N=", N, " V=", V, " C=", C, ")");
}

}  // namespace parallm::cuda
