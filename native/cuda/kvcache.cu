// KV-cache write: T new rows of W elements per sequence b land at positions pos[b] .. pos[b]+T-1.
//
// A strided copy: (b, t) rows along grid y, each row's W elements along x in 16-byte packs when the
// pointers and all strides allow it. pos lives in device memory, so a captured graph replays with new
// positions; a sequence whose rows would fall outside [0, max_len) writes nothing.
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

// Strides and W are in units of W_ (the access word).
template <class W_>
__global__ void kv_write_kernel(const W_* __restrict__ src, W_* __restrict__ dst, const int32_t* __restrict__ pos,
                                int B, int T, int64_t W, int64_t sb, int64_t st, int64_t db, int64_t dts,
                                int64_t max_len) {
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
  kv_write_kernel<W_><<<grid, dim3(tx, ty), 0, s>>>(static_cast<const W_*>(src), static_cast<W_*>(dst), pos, B, T, W,
                                                    sb, st, db, dts, max_len);
}

}  // namespace

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
