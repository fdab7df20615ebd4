// kv_write: copy T new rows per sequence into a cache at that sequence's position (row memcpy).
// rope_kv_write: decode's rope and the two cache writes, as those three calls (the CUDA backend fuses them).
// rope_kv_attention_decode: rope_kv_write on a copy of the rows, then attention_decode (CUDA: one launch).
// matmul_rope_kv_write: matmul, then rope_kv_write (CUDA: the product's split-K reduce does the rope).
// matmul_rope_kv_attention_decode: matmul_rope_kv_write, then attention_decode (CUDA: the attention sums the slices).
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {

void kv_write(const Ctx& ctx, DType dt, const void* src, void* dst, const int32_t* pos, int B, int T, int64_t W,
              int64_t src_bstride, int64_t src_tstride, int64_t dst_bstride, int64_t dst_tstride, int64_t max_len) {
  if (B < 0 || T < 0 || W < 0 || src_bstride < 0 || src_tstride < 0 || dst_bstride < 0 || dst_tstride < 0)
    fail("kv_write: negative size B=", B, " T=", T, " W=", W, " src strides=", src_bstride, ",", src_tstride,
         " dst strides=", dst_bstride, ",", dst_tstride);
  if (B == 0 || T == 0 || W == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("kv_write: dtype ", dtype_name(dt), " is not supported (B=", B, " T=", T, " W=", W, ")");
  if (!src || !dst || !pos) fail("kv_write: null pointer (B=", B, " T=", T, " W=", W, ")");
  const size_t es = dtype_size(dt), row = size_t(W) * es;
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  const int64_t rows = int64_t(B) * T;
  parallel_rows(ctx, rows, rows * W / 4, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const int64_t b = i / T, t = i % T;
      if (pos[b] < 0 || int64_t(pos[b]) + T > max_len) continue;  // outside the cache: write nothing
      std::memcpy(d + (b * dst_bstride + (pos[b] + t) * dst_tstride) * es, s + (b * src_bstride + t * src_tstride) * es,
                  row);
    }
  });
}

void matmul_rope_kv_write(const Ctx& ctx, DType dt, const void* X, const void* W, const void* bias, void* qkv, void* kc,
                          void* vc, const int32_t* pos, int64_t M, int64_t K, int Hq, int Hkv, int D, int rot_dim,
                          float theta, const float* freqs, int64_t kv_bstride, int64_t kv_tstride, int64_t max_len) {
  if (M < 0 || M > INT32_MAX || K < 1 || Hq < 1 || Hkv < 1 || D < 1)
    fail("matmul_rope_kv_write: bad sizes M=", M, " K=", K, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  const int64_t N = int64_t(Hq + 2 * Hkv) * D;
  matmul(ctx, dt, X, W, bias, qkv, M, N, K, false, true, 1.f, 0.f);
  rope_kv_write(ctx, dt, qkv, kc, vc, pos, int(M), Hq, Hkv, D, N, rot_dim, theta, freqs, kv_bstride, kv_tstride, max_len);
}

void matmul_rope_kv_attention_decode(const Ctx& ctx, DType dt, const void* X, const void* W, const void* bias, void* qkv,
                                     void* kc, void* vc, const int32_t* pos, const int32_t* lens, void* out, int64_t M,
                                     int64_t K, int Hq, int Hkv, int D, int rot_dim, float theta, const float* freqs,
                                     int64_t kv_bstride, int64_t kv_tstride, int max_len, float scale, uint32_t* counter) {
  if (M < 0 || M > INT32_MAX || K < 1 || Hq < 1 || Hkv < 1 || D < 1)
    fail("matmul_rope_kv_attention_decode: bad sizes M=", M, " K=", K, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  const int64_t N = int64_t(Hq + 2 * Hkv) * D;
  matmul_rope_kv_write(ctx, dt, X, W, bias, qkv, kc, vc, pos, M, K, Hq, Hkv, D, rot_dim, theta, freqs, kv_bstride,
                       kv_tstride, max_len);
  attention_decode(ctx, dt, qkv, kc, vc, lens, out, int(M), Hq, Hkv, D, N, kv_bstride, kv_tstride, max_len, scale,
                   counter);
}

void rope_kv_write(const Ctx& ctx, DType dt, void* qkv, void* kc, void* vc, const int32_t* pos, int B, int Hq, int Hkv,
                   int D, int64_t qkv_stride, int rot_dim, float theta, const float* freqs, int64_t kv_bstride,
                   int64_t kv_tstride, int64_t max_len) {
  if (B < 0 || Hq < 1 || Hkv < 1 || D < 1 || rot_dim < 0 || qkv_stride < int64_t(Hq + 2 * Hkv) * D)
    fail("rope_kv_write: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rot_dim=", rot_dim,
         " qkv_stride=", qkv_stride);
  if (B == 0) return;
  if (!qkv) fail("rope_kv_write: null qkv (B=", B, ")");
  if (rot_dim > 0) rope(ctx, dt, qkv, pos, B, Hq + Hkv, D, qkv_stride, rot_dim, theta, freqs);
  char* row = static_cast<char*>(qkv);
  const int64_t W = int64_t(Hkv) * D, es = int64_t(dtype_size(dt));
  kv_write(ctx, dt, row + int64_t(Hq) * D * es, kc, pos, B, 1, W, qkv_stride, qkv_stride, kv_bstride, kv_tstride,
           max_len);
  kv_write(ctx, dt, row + (int64_t(Hq) * D + W) * es, vc, pos, B, 1, W, qkv_stride, qkv_stride, kv_bstride,
           kv_tstride, max_len);
}

void rope_kv_attention_decode(const Ctx& ctx, DType dt, const void* qkv, void* kc, void* vc, const int32_t* pos,
                              const int32_t* lens, void* out, int B, int Hq, int Hkv, int D, int64_t qkv_stride,
                              int rot_dim, float theta, const float* freqs, int64_t kv_bstride, int64_t kv_tstride,
                              int max_len, float scale, uint32_t* counter) {
  if (B < 0 || Hq < 1 || Hkv < 1 || D < 1 || rot_dim < 0 || qkv_stride < int64_t(Hq + 2 * Hkv) * D)
    fail("rope_kv_attention_decode: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rot_dim=", rot_dim,
         " qkv_stride=", qkv_stride);
  if (B == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rope_kv_attention_decode: dtype ", dtype_name(dt), " is not supported (B=", B, " D=", D, ")");
  if (!qkv) fail("rope_kv_attention_decode: null qkv (B=", B, ")");
  // The rows copied contiguously (qkv is only read), rotated and written to the caches there.
  const int64_t W3 = int64_t(Hq + 2 * Hkv) * D, es = int64_t(dtype_size(dt));
  std::vector<char> rows(size_t(B * W3 * es));
  for (int b = 0; b < B; ++b)
    std::memcpy(rows.data() + b * W3 * es, static_cast<const char*>(qkv) + b * qkv_stride * es, size_t(W3 * es));
  rope_kv_write(ctx, dt, rows.data(), kc, vc, pos, B, Hq, Hkv, D, W3, rot_dim, theta, freqs, kv_bstride, kv_tstride,
                max_len);
  attention_decode(ctx, dt, rows.data(), kc, vc, lens, out, B, Hq, Hkv, D, W3, kv_bstride, kv_tstride, max_len, scale,
                   counter);
}

}  // namespace parallm::cpu
