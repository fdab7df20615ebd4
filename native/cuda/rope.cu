// Rotary position embedding, in place, Hugging Face "rotate_half" layout, on the first rot_dim
// elements of each head: for i < rot_dim/2, with f = theta^(-2i/rot_dim) and a = pos[r] * f,
//   (x[i], x[i + rot_dim/2]) <- (x1 cos a - x2 sin a, x2 cos a + x1 sin a).
//
// A block takes a row (token) at a time: threadIdx.x runs over i, threadIdx.y over heads, so each
// angle's sincos is computed once per token and reused by every head. The frequency is computed in
// double and rounded to f32 (as a precomputed f32 inv_freq table would hold it), the angle in f32 as
// Hugging Face does, the sine and cosine with the accurate sincosf. rope_backward is the same kernel
// rotating by -a (the transpose of the rotation). A caller's frequency table (freqs, f32[rot_dim/2] on
// the device) replaces the theta formula, for scaled RoPE.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "kernels.h"
#include "rope_common.cuh"

namespace parallm::cuda {
namespace {

constexpr int64_t kMaxBlocks = 1 << 16;

template <class T, bool INV>
__global__ void rope_kernel(T* __restrict__ x, const int32_t* __restrict__ pos, int64_t R, int H, int D,
                            int64_t tstride, int rot_dim, float theta, const float* __restrict__ freqs) {
  PARALLM_TRACE_SCOPE(Rope);
  const int half = rot_dim / 2;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const float p = float(pos[r]);
    T* row = x + r * tstride;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      const float f = rope_freq(freqs, theta, i, rot_dim);
      float sn, cs;
      sincosf(p * f, &sn, &cs);
      if (INV) sn = -sn;
      for (int h = threadIdx.y; h < H; h += blockDim.y) rope_pair(row + int64_t(h) * D, i, half, cs, sn);
    }
  }
}

template <class T, bool INV>
void rope_t(cudaStream_t s, void* x, const int32_t* pos, int64_t R, int H, int D, int64_t tstride, int rot_dim,
            float theta, const float* freqs) {
  const int half = rot_dim / 2;
  const int tx = std::min(128, (half + 31) / 32 * 32);
  const int ty = std::max(1, std::min(H, 256 / tx));
  const unsigned blocks = unsigned(std::min<int64_t>(R, kMaxBlocks));
  rope_kernel<T, INV>
      <<<blocks, dim3(tx, ty), 0, s>>>(static_cast<T*>(x), pos, R, H, D, tstride, rot_dim, theta, freqs);
}

template <bool INV>
void rope_any(cudaStream_t s, const char* op, DType dt, void* x, const int32_t* pos, int64_t R, int H, int D,
              int64_t tstride, int rot_dim, float theta, const float* freqs) {
  if (R < 0 || H < 0 || D < 0 || tstride < 0)
    fail(op, ": negative size R=", R, " H=", H, " D=", D, " tstride=", tstride);
  if (R == 0 || H == 0 || rot_dim == 0) return;
  if (rot_dim < 0 || rot_dim % 2 != 0 || rot_dim > D)
    fail(op, ": rot_dim=", rot_dim, " must be even and in [0, D=", D, "]");
  if (R > 1 && tstride < int64_t(H) * D) fail(op, ": tstride=", tstride, " < H*D=", int64_t(H) * D, " (R=", R, ")");
  if (R > INT64_MAX / std::max<int64_t>(tstride, int64_t(H) * D))
    fail(op, ": R*tstride overflows (R=", R, " tstride=", tstride, ")");
  if (!freqs && !(theta > 0.f)) fail(op, ": theta=", theta, " must be positive");
  if (dt == DType::F32) rope_t<float, INV>(s, x, pos, R, H, D, tstride, rot_dim, theta, freqs);
  else if (dt == DType::BF16) rope_t<__nv_bfloat16, INV>(s, x, pos, R, H, D, tstride, rot_dim, theta, freqs);
  else fail(op, ": dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " H=", H, " D=", D, ")");
  PARALLM_LAUNCH_CHECK(op, ": launch failed (R=", R, " H=", H, " D=", D, " rot_dim=", rot_dim, ")");
}

}  // namespace

void rope(cudaStream_t s, DType dt, void* x, const int32_t* pos, int64_t R, int H, int D, int64_t tstride,
          int rot_dim, float theta, const float* freqs) {
  rope_any<false>(s, "rope", dt, x, pos, R, H, D, tstride, rot_dim, theta, freqs);
}

void rope_backward(cudaStream_t s, DType dt, void* dx, const int32_t* pos, int64_t R, int H, int D, int64_t tstride,
                   int rot_dim, float theta, const float* freqs) {
  rope_any<true>(s, "rope_backward", dt, dx, pos, R, H, D, tstride, rot_dim, theta, freqs);
}

}  // namespace parallm::cuda
