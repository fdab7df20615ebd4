// fill_uniform: counter-based uniform values (native/core/rng.h), the same as the CPU backend's.
#include "../core/rng.h"
#include "check.h"
#include "common.cuh"
#include "kernels.h"

namespace parallm::cuda {
namespace {

template <class T>
__global__ void fill_uniform_kernel(T* __restrict__ out, int64_t n, uint64_t seed, float low, float w) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_f32<T>(__fadd_rn(low, __fmul_rn(w, uniform01(seed, 0, uint64_t(i)))));  // no FMA: as the CPU rounds
}

template <class T>
void launch(cudaStream_t s, void* out, int64_t n, uint64_t seed, float low, float high) {
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(cdiv(n, threads), 1 << 16);
  fill_uniform_kernel<T><<<unsigned(blocks), threads, 0, s>>>(static_cast<T*>(out), n, seed, low, high - low);
}

}  // namespace

void fill_uniform(cudaStream_t s, DType dt, void* out, int64_t n, uint64_t seed, float low, float high) {
  if (n < 0) fail("fill_uniform: negative size n=", n);
  if (n == 0) return;
  // Zeros (a training step's gradient, every step): low + 0 * u is +0 for low = +-0, all bits zero in
  // every float type, so a memset writes the kernel's bits at the copy rate instead of hashing a counter
  // for each element (0.34 ms a step for GPT-2's 124M gradients, bench/RESULTS.md S6 profile).
  if (low == 0.f && high == 0.f && (dt == DType::F32 || dt == DType::BF16 || dt == DType::F16)) {
    PARALLM_CUDA_CHECK(cudaMemsetAsync(out, 0, size_t(n) * dtype_size(dt), s), "fill_uniform: zeroing n=", n, " (",
                       dtype_name(dt), ")");
    return;
  }
  if (dt == DType::F32) launch<float>(s, out, n, seed, low, high);
  else if (dt == DType::BF16) launch<__nv_bfloat16>(s, out, n, seed, low, high);
  else if (dt == DType::F16) launch<__half>(s, out, n, seed, low, high);
  else fail("fill_uniform: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  PARALLM_LAUNCH_CHECK("fill_uniform: launch failed (n=", n, ")");
}

}  // namespace parallm::cuda
