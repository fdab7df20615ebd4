// KV-cache write: T new rows of W elements per sequence b land at positions pos[b] .. pos[b]+T-1.
//
// A strided copy: (b, t) rows along grid y, each row's W elements along x in 16-byte packs when the
// pointers and all strides allow it. pos lives in device memory, so a captured graph replays with new
// positions; a sequence whose rows would fall outside [0, max_len) writes nothing.
//
// rope_kv_write: decode's rope of the q and k heads and both cache writes in one launch (three before):
// a block a sequence, its threads first rotating the pairs (rope.cu's arrangement: x over pairs, y over
// heads, one sincos per pair), then, after a barrier, copying the rotated k heads and the v heads.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "launch.cuh"
#include "kernels.h"
#include "rope_common.cuh"

namespace parallm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;
constexpr int64_t kMaxBlocksY = 65535;

// Strides and W are in units of W_ (the access word).
template <class W_>
__global__ void kv_write_kernel(const W_* __restrict__ src, W_* __restrict__ dst, const int32_t* __restrict__ pos,
                                int B, int T, int64_t W, int64_t sb, int64_t st, int64_t db, int64_t dts,
                                int64_t max_len) {
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  const int64_t rows = int64_t(B) * T;
  for (int64_t bt = int64_t(blockIdx.y) * blockDim.y + threadIdx.y; bt < rows; bt += int64_t(gridDim.y) * blockDim.y) {
    const int64_t b = bt / T, t = bt % T;
    const int64_t p = pos[b];
    if (p < 0 || p + T > max_len) continue;
    const W_* s = src + b * sb + t * st;
    W_* d = dst + b * db + (p + t) * dts;
    for (int64_t w = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; w < W; w += int64_t(gridDim.x) * blockDim.x)
      d[w] = s[w];
  }
}

template <class W_>
void launch(cudaStream_t s, const void* src, void* dst, const int32_t* pos, int B, int T, int64_t W, int64_t sb,
            int64_t st, int64_t db, int64_t dts, int64_t max_len) {
  const int tx = int(std::min<int64_t>(kThreads, std::max<int64_t>(32, cdiv(W, 32) * 32)));
  const int ty = kThreads / tx;
  const dim3 grid(unsigned(std::min(cdiv(W, tx), kMaxBlocks)),
                  unsigned(std::min(cdiv(int64_t(B) * T, ty), kMaxBlocksY)));
  PARALLM_CUDA_CHECK(launch_pdl_small(kv_write_kernel<W_>, grid, dim3(tx, ty), 0, s, static_cast<const W_*>(src),
                                      static_cast<W_*>(dst), pos, B, T, W, sb, st, db, dts, max_len),
                     "kv_write: launch (B=", B, " T=", T, " row of ", W, " words)");
}

template <class T>
__global__ void rope_kv_kernel(T* __restrict__ qkv, T* __restrict__ kc, T* __restrict__ vc,
                               const int32_t* __restrict__ pos, int B, int Hq, int Hkv, int D, int64_t qs,
                               int rot_dim, float theta, const float* __restrict__ freqs, int64_t kb, int64_t kt,
                               int64_t max_len) {
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  const int half = rot_dim / 2, H = Hq + Hkv;
  const int tid = int(threadIdx.y * blockDim.x + threadIdx.x), nt = int(blockDim.x * blockDim.y);
  const int64_t W = int64_t(Hkv) * D;
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {  // (the same trip count for every thread of a block)
    T* row = qkv + b * qs;
    const int32_t p = pos[b];
    if (half > 0) {
      for (int i = int(threadIdx.x); i < half; i += int(blockDim.x)) {
        float sn, cs;
        sincosf(float(p) * rope_freq(freqs, theta, i, rot_dim), &sn, &cs);
        for (int h = int(threadIdx.y); h < H; h += int(blockDim.y)) rope_pair(row + int64_t(h) * D, i, half, cs, sn);
      }
      __syncthreads();  // the k heads other threads rotated are copied below
    }
    if (p >= 0 && int64_t(p) + 1 <= max_len) {
      const T* ks = row + int64_t(Hq) * D;
      T* kd = kc + b * kb + int64_t(p) * kt;
      T* vd = vc + b * kb + int64_t(p) * kt;
      for (int64_t w = tid; w < W; w += nt) {
        kd[w] = ks[w];
        vd[w] = ks[W + w];
      }
    }
    __syncthreads();  // this row's reads are done before the block's threads move on (no reuse; kept simple)
  }
}

template <class T>
void rope_kv_launch(cudaStream_t s, void* qkv, void* kc, void* vc, const int32_t* pos, int B, int Hq, int Hkv, int D,
                    int64_t qs, int rot_dim, float theta, const float* freqs, int64_t kb, int64_t kt, int64_t max_len) {
  const int half = rot_dim / 2, H = Hq + Hkv;
  // rope.cu's block shape for the rotation; at least 128 threads for the copy.
  const int tx = half > 0 ? std::min(128, (half + 31) / 32 * 32) : 128;
  const int ty = half > 0 ? std::max(1, std::min(H, 256 / tx)) : 1;
  const dim3 grid(unsigned(std::min<int64_t>(B, kMaxBlocks)));
  PARALLM_CUDA_CHECK(launch_pdl_small(rope_kv_kernel<T>, grid, dim3(tx, ty), 0, s, static_cast<T*>(qkv),
                                      static_cast<T*>(kc), static_cast<T*>(vc), pos, B, Hq, Hkv, D, qs, rot_dim, theta,
                                      freqs, kb, kt, max_len),
                     "rope_kv_write: launch (B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, ")");
}

}  // namespace

void rope_kv_write(cudaStream_t s, DType dt, void* qkv, void* kc, void* vc, const int32_t* pos, int B, int Hq, int Hkv,
                   int D, int64_t qkv_stride, int rot_dim, float theta, const float* freqs, int64_t kv_bstride,
                   int64_t kv_tstride, int64_t max_len) {
  if (B < 0 || Hq < 1 || Hkv < 1 || D < 1 || qkv_stride < int64_t(Hq + 2 * Hkv) * D || kv_bstride < 0 ||
      kv_tstride < 0 || max_len < 1)
    fail("rope_kv_write: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " qkv_stride=", qkv_stride,
         " kv strides ", kv_bstride, "/", kv_tstride, " max_len=", max_len);
  if (rot_dim < 0 || rot_dim % 2 != 0 || rot_dim > D)
    fail("rope_kv_write: rot_dim=", rot_dim, " must be even and in [0, D=", D, "]");
  if (rot_dim > 0 && !freqs && !(theta > 0.f)) fail("rope_kv_write: theta=", theta, " must be positive");
  if (B == 0) return;
  if (!qkv || !kc || !vc || !pos) fail("rope_kv_write: null pointer (B=", B, " Hq=", Hq, " Hkv=", Hkv, ")");
  if (dt == DType::F32)
    rope_kv_launch<float>(s, qkv, kc, vc, pos, B, Hq, Hkv, D, qkv_stride, rot_dim, theta, freqs, kv_bstride,
                          kv_tstride, max_len);
  else if (dt == DType::BF16)
    rope_kv_launch<__nv_bfloat16>(s, qkv, kc, vc, pos, B, Hq, Hkv, D, qkv_stride, rot_dim, theta, freqs, kv_bstride,
                                  kv_tstride, max_len);
  else
    fail("rope_kv_write: dtype ", dtype_name(dt), " not supported (f32, bf16) (B=", B, " Hq=", Hq, ")");
  PARALLM_LAUNCH_CHECK("rope_kv_write: launch failed (B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rot_dim=",
                       rot_dim, ")");
}

void kv_write(cudaStream_t s, DType dt, const void* src, void* dst, const int32_t* pos, int B, int T, int64_t W,
              int64_t src_bstride, int64_t src_tstride, int64_t dst_bstride, int64_t dst_tstride, int64_t max_len) {
  if (B < 0 || T < 0 || W < 0 || src_bstride < 0 || src_tstride < 0 || dst_bstride < 0 || dst_tstride < 0)
    fail("kv_write: negative size B=", B, " T=", T, " W=", W, " strides src ", src_bstride, "/", src_tstride, " dst ",
         dst_bstride, "/", dst_tstride);
  if (dt != DType::F32 && dt != DType::BF16)
    fail("kv_write: dtype ", dtype_name(dt), " not supported (f32, bf16) (B=", B, " T=", T, " W=", W, ")");
  if (B == 0 || T == 0 || W == 0) return;
  const int64_t es = int64_t(dtype_size(dt));
  if (W > INT64_MAX / 4 / es) fail("kv_write: W=", W, " too large");
  // Packs of 16 bytes when W, every stride and both base pointers are multiples of 16 bytes.
  const int64_t per = 16 / es;
  const bool vec = W % per == 0 && src_bstride % per == 0 && src_tstride % per == 0 && dst_bstride % per == 0 &&
                   dst_tstride % per == 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(dst) & 15) == 0;
  if (vec)
    launch<int4>(s, src, dst, pos, B, T, W / per, src_bstride / per, src_tstride / per, dst_bstride / per,
                 dst_tstride / per, max_len);
  else if (dt == DType::F32)
    launch<float>(s, src, dst, pos, B, T, W, src_bstride, src_tstride, dst_bstride, dst_tstride, max_len);
  else
    launch<uint16_t>(s, src, dst, pos, B, T, W, src_bstride, src_tstride, dst_bstride, dst_tstride, max_len);
  PARALLM_LAUNCH_CHECK("kv_write: launch failed (B=", B, " T=", T, " W=", W, ")");
}

}  // namespace parallm::cuda
