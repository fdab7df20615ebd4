// Small device helpers shared by the element-wise CUDA kernels: f32 <-> storage-type conversion, a
// 16-byte pack of elements, and host-side launch arithmetic.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "pdl.cuh"

namespace parallm::cuda {

__device__ __forceinline__ float f32(float v) { return v; }
__device__ __forceinline__ float f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float f32(__half v) { return __half2float(v); }
template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }

// GPT-2's GELU (tanh form): 0.5 x (1 + tanh(u)) written as x / (1 + e^(-2u)), the same function without
// the cancellation of 1 + tanh(u) for negative u (which costs f32 the relative accuracy of gelu's small
// negative tail). Shared by gelu_kernel (activation.cu) and the GEMV's fused epilogue (matmul_gemv.cuh).
__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;  // sqrt(2 / pi)
  const float u = k * (x + 0.044715f * x * x * x);
  return x / (1.f + expf(-2.f * u));
}

// N elements moved as one access (16 bytes when N * sizeof(T) == 16).
template <class T, int N> struct alignas(sizeof(T) * N) Pack { T v[N]; };

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace parallm::cuda
