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

// (x1, x2) <- (x1 cos a - x2 sin a, x2 cos a + x1 sin a), each rounded to T: the one rotation both
// kernels apply (rope_pair in place; rope_kv_write also stores the k pair in the cache).
// The roundings are spelled out (a product, then an fma): left to nvcc, the contraction into fmas differed
// between the two kernels' contexts and f32 results differed in the last bit.
template <class T>
__device__ __forceinline__ void rope_rotate(float x1, float x2, float cs, float sn, T& y1, T& y2) {
  y1 = from_f32<T>(__fmaf_rn(x1, cs, -__fmul_rn(x2, sn)));
  y2 = from_f32<T>(__fmaf_rn(x2, cs, __fmul_rn(x1, sn)));
}

// (x[i], x[i + half]) rotated in place for one head.
template <class T>
__device__ __forceinline__ void rope_pair(T* head, int i, int half, float cs, float sn) {
  rope_rotate(f32(head[i]), f32(head[i + half]), cs, sn, head[i], head[i + half]);
}

}  // namespace parallm::cuda
