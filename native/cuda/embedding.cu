// Embedding gather: out[n, :] = table[ids[n], :]; an id outside [0, V) gives a row of zeros.
//
// A copy kernel: tokens along grid y, each row's C elements along x in 16-byte packs when the table,
// the output and C allow it (bf16 and f32 are copied as raw bits; nothing to convert).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "kernels.h"

namespace parallm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;
constexpr int64_t kMaxBlocksY = 65535;

// W is the access word (16 bytes, or the element itself); row holds `words` of them.
template <class W>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const W* __restrict__ table, W* __restrict__ out,
                                 int64_t N, int64_t V, int64_t words) {
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
  embedding_kernel<W><<<grid, dim3(tx, ty), 0, s>>>(ids, static_cast<const W*>(table), static_cast<W*>(out), N, V,
                                                    words);
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

}  // namespace parallm::cuda
