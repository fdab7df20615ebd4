// One rotary pair as rope (rope.cu) and rope_kv_write (kvcache.cu) both apply it: one definition, so the
// fused decode kernel gives the bits the separate rope launch gives.
#pragma once
#include "common.cuh"

namespace parallm::cuda {

// Inverse frequency of pair i: the caller's table, else theta^(-2i/rot_dim) computed in double and
// rounded to f32 (as a precomputed f32 inv_freq table would hold it).
__device__ __forceinline__ float rope_freq(const float* __restrict__ freqs, float theta, int i, int rot_dim) {
  return freqs ? freqs[i] : float(pow(double(theta), -2.0 * i / rot_dim));
}

// (x[i], x[i + half]) <- (x1 cos a - x2 sin a, x2 cos a + x1 sin a) for one head.
template <class T>
__device__ __forceinline__ void rope_pair(T* head, int i, int half, float cs, float sn) {
  const float x1 = f32(head[i]), x2 = f32(head[i + half]);
  head[i] = from_f32<T>(x1 * cs - x2 * sn);
  head[i + half] = from_f32<T>(x2 * cs + x1 * sn);
}

}  // namespace parallm::cuda
