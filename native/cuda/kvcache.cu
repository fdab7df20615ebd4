// KV-cache write: T new rows of W elements per sequence b land at positions pos[b] .. pos[b]+T-1.
//
// A strided copy: (b, t) rows along grid y, each row's W elements along x in 16-byte packs when the
// pointers and all strides allow it. pos lives in device memory, so a captured graph replays with new
// positions; a sequence whose rows would fall outside [0, max_len) writes nothing.
//
// rope_kv_write: decode's rope of the q and k heads and both cache writes in one launch (three before):
// a warp a head of a sequence, its loads in flight together (see rope_kv_kernel), the rotation rope.cu applies.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

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
  PARALLM_TRACE_SCOPE(KvWrite);
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

// A warp per head of a sequence (kRopeWarps heads a block), each lane keeping kRopeInFlight elements' loads
// in flight before it computes or stores any, so the whole launch is about one memory latency. (A block a
// sequence looping over heads spent ~10 µs a layer in chains of dependent loads and stores; a block a head
// with a thread an element, 9.4 µs at batch 64: 786 K threads, three waves of one load each. ncu,
// bench/RESULTS.md S13-1, S14-1.) A q or k head rotates its pairs (i, i + half), i < half; a k head also
// stores them, and (k) the unrotated tail [rot_dim, D), in the k cache; a v head copies itself to the v
// cache. The cache rows are written only for a position inside [0, max_len).
constexpr int kRopeWarps = 4, kRopeInFlight = 4;

template <class T>
__global__ void __launch_bounds__(kRopeWarps * 32)
    rope_kv_kernel(T* __restrict__ qkv, T* __restrict__ kc, T* __restrict__ vc, const int32_t* __restrict__ pos, int B,
                   int Hq, int Hkv, int D, int64_t qs, int rot_dim, float theta, const float* __restrict__ freqs,
                   int64_t kb, int64_t kt, int64_t max_len) {
  PARALLM_TRACE_SCOPE(RopeKv);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  constexpr int R = kRopeInFlight;
  const int lane = int(threadIdx.x) & 31, h = int(blockIdx.x) * kRopeWarps + (int(threadIdx.x) >> 5);
  if (h >= Hq + 2 * Hkv) return;  // (no barriers below)
  const int half = rot_dim / 2;
  const bool is_k = h >= Hq && h < Hq + Hkv, is_v = h >= Hq + Hkv;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    T* head = qkv + b * qs + int64_t(h) * D;
    const int32_t p = pos[b];
    const bool store = p >= 0 && int64_t(p) + 1 <= max_len;
    const int64_t c = b * kb + int64_t(p) * kt + int64_t(h - Hq - (is_v ? Hkv : 0)) * D;  // the cache row's head
    // Elements [lo, hi) of the head copied to the cache row (v: all; k: the unrotated tail).
    auto copy = [&](T* __restrict__ cache, int lo, int hi) {
      for (int u0 = lo; u0 < hi; u0 += 32 * R) {
        T x[R];
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (const int u = u0 + r * 32 + lane; u < hi) x[r] = head[u];
#pragma unroll
        for (int r = 0; r < R; ++r)
          if (const int u = u0 + r * 32 + lane; u < hi) cache[c + u] = x[r];
      }
    };
    if (is_v) {
      if (store) copy(vc, 0, D);
      continue;
    }
    for (int i0 = 0; i0 < half; i0 += 32 * R) {
      T x1[R], x2[R];
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (const int i = i0 + r * 32 + lane; i < half) x1[r] = head[i], x2[r] = head[i + half];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int i = i0 + r * 32 + lane;
        if (i >= half) continue;
        float sn, cs;
        sincosf(float(p) * rope_freq(freqs, theta, i, rot_dim), &sn, &cs);
        T y1, y2;
        rope_rotate(f32(x1[r]), f32(x2[r]), cs, sn, y1, y2);
        head[i] = y1;
        head[i + half] = y2;
        if (is_k && store) kc[c + i] = y1, kc[c + i + half] = y2;
      }
    }
    if (is_k && store) copy(kc, rot_dim, D);
  }
}

// The qkv product's split-K second pass with rope_kv_write folded in (matmul_rope_kv_write, through matmul.cu's
// reduce_slices): each element of qkv summed over the slices of ws [splits][B][N] in slice order and rounded as
// splitk_reduce stores it (its alpha 1, beta 0: round(sum + bias)), then rotated and written to the caches from
// those rounded values as rope_kv_kernel does: the bits of splitk_reduce then rope_kv_write, one launch where
// there were two (the rope launch cost 7B's batch-16 step ~2.8 µs a layer, S25-6). A thread an element of a row;
// a q or k head's thread d < half rotates the pair (d, d + half), the partner's thread returning at once.
template <class T>
__global__ void splitk_rope_kv_kernel(const float* __restrict__ ws, int splits, const T* __restrict__ bias,
                                      T* __restrict__ qkv, T* __restrict__ kc, T* __restrict__ vc,
                                      const int32_t* __restrict__ pos, int B, int Hq, int Hkv, int D, int rot_dim,
                                      float theta, const float* __restrict__ freqs, int64_t kb, int64_t kt,
                                      int64_t max_len) {
  PARALLM_TRACE_SCOPE(ReduceRopeKv);
  pdl_begin();  // launched as splitk_reduce is, after the product: the partials are read after the wait
  const int64_t N = int64_t(Hq + 2 * Hkv) * D, plane = int64_t(B) * N;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= plane) return;
  const int64_t b = i / N, col = i - b * N;
  const int h = int(col / D), d = int(col - int64_t(h) * D), half = rot_dim / 2;
  const bool is_v = h >= Hq + Hkv, is_k = h >= Hq && !is_v, rotated = !is_v && d < rot_dim;
  if (rotated && d >= half) return;
  // Column c's value as splitk_reduce stores it: the slices added in order from 0 (splitk_sum2's order).
  auto stored = [&](int64_t c) {
    const float* p = ws + b * N + c;
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += p[s * plane];
    return from_f32<T>(bias ? v + f32(bias[c]) : v);
  };
  const int32_t p = pos[b];
  const bool store = p >= 0 && int64_t(p) + 1 <= max_len;
  T* row = qkv + b * N;
  const int64_t c = b * kb + int64_t(p) * kt + int64_t(h - Hq - (is_v ? Hkv : 0)) * D;  // the cache row's head
  if (!rotated) {
    const T y = stored(col);
    row[col] = y;
    if (store && is_v) vc[c + d] = y;
    if (store && is_k) kc[c + d] = y;
    return;
  }
  const T x1 = stored(col), x2 = stored(col + half);
  float sn, cs;
  sincosf(float(p) * rope_freq(freqs, theta, d, rot_dim), &sn, &cs);
  T y1, y2;
  rope_rotate(f32(x1), f32(x2), cs, sn, y1, y2);
  row[col] = y1;
  row[col + half] = y2;
  if (is_k && store) kc[c + d] = y1, kc[c + d + half] = y2;
}

template <class T>
void rope_kv_launch(cudaStream_t s, void* qkv, void* kc, void* vc, const int32_t* pos, int B, int Hq, int Hkv, int D,
                    int64_t qs, int rot_dim, float theta, const float* freqs, int64_t kb, int64_t kt, int64_t max_len) {
  const dim3 grid(unsigned(cdiv(int64_t(Hq) + 2 * Hkv, kRopeWarps)), unsigned(std::min<int64_t>(B, kMaxBlocksY)));
  PARALLM_CUDA_CHECK(launch_pdl_small(rope_kv_kernel<T>, grid, dim3(kRopeWarps * 32), 0, s, static_cast<T*>(qkv),
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

// splitk_rope_kv_kernel's launch, for matmul.cu's reduce_slices (declared there): qkv [B][(Hq + 2 Hkv) D] dense, ws
// its product's f32 partials; sizes checked by matmul_rope_kv_write before the product ran. pdl: as the product.
void splitk_rope_kv_write(cudaStream_t s, DType dt, const float* ws, int splits, const void* bias, void* qkv, void* kc,
                          void* vc, const int32_t* pos, int B, int Hq, int Hkv, int D, int rot_dim, float theta,
                          const float* freqs, int64_t kv_bstride, int64_t kv_tstride, int64_t max_len, bool pdl) {
  const int64_t n = int64_t(B) * (Hq + 2 * Hkv) * D;
  const dim3 grid(unsigned(cdiv(n, kThreads)));
  auto go = [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return launch_maybe_pdl(pdl, splitk_rope_kv_kernel<T>, grid, dim3(kThreads), 0, s, ws, splits,
                            static_cast<const T*>(bias), static_cast<T*>(qkv), static_cast<T*>(kc), static_cast<T*>(vc),
                            pos, B, Hq, Hkv, D, rot_dim, theta, freqs, kv_bstride, kv_tstride, max_len);
  };
  if (dt != DType::F32 && dt != DType::BF16) fail("matmul_rope_kv_write: dtype ", dtype_name(dt), " not supported (f32, bf16)");
  PARALLM_CUDA_CHECK(dt == DType::F32 ? go(static_cast<float*>(nullptr)) : go(static_cast<__nv_bfloat16*>(nullptr)),
                     "matmul_rope_kv_write: split-K reduce with the rope (B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D,
                     " splits=", splits, ")");
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
