// decode_layer_gpt2: one GPT-2 decode layer as the ops apart, in order (native/core/kernels.h); the CUDA
// backend runs it as one persistent kernel (native/cuda/decode_layer.cu).
#include <cmath>
#include <vector>

#include "../core/errors.h"
#include "kernels.h"

namespace parallm::cpu {

void decode_layer_gpt2(const Ctx& ctx, DType dt, void* x, const void* g1, const void* b1, const void* wqkv,
                       const void* bqkv, const void* wout, const void* bout, const void* g2, const void* b2,
                       const void* wup, const void* bup, const void* wdown, const void* bdown, void* kc, void* vc,
                       const int32_t* pos, const int32_t* lens, uint32_t* counter, int B, int C, int H, int D,
                       int64_t kv_bstride, int64_t kv_tstride, int max_len, float eps) {
  (void)counter;  // (the CUDA kernel's grid barrier)
  if (dt != DType::F32 && dt != DType::BF16)
    fail("decode_layer_gpt2: dtype ", dtype_name(dt), " is not supported (f32, bf16) (B=", B, " C=", C, ")");
  if (B < 1 || H < 1 || D < 1 || int64_t(H) * D != C || max_len < 1 || kv_tstride < C)
    fail("decode_layer_gpt2: bad sizes B=", B, " C=", C, " H=", H, " D=", D, " max_len=", max_len,
         " cache token stride=", kv_tstride, " (need C = H x D, token stride >= C)");
  if (!x || !g1 || !b1 || !wqkv || !wout || !g2 || !b2 || !wup || !wdown || !kc || !vc || !pos || !lens)
    fail("decode_layer_gpt2: null pointer (B=", B, " C=", C, ")");
  const int64_t C3 = 3 * int64_t(C), C4 = 4 * int64_t(C);
  // Scratch as f32 words: room for either dtype.
  std::vector<float> qkv(size_t(B) * C3), att(size_t(B) * C), a(size_t(B) * C4);
  layernorm_matmul(ctx, dt, x, g1, b1, wqkv, bqkv, qkv.data(), B, C3, C, eps, false);
  rope_kv_write(ctx, dt, qkv.data(), kc, vc, pos, B, H, H, D, C3, 0, 10000.f, nullptr, kv_bstride, kv_tstride,
                max_len);
  attention_decode(ctx, dt, qkv.data(), kc, vc, lens, att.data(), B, H, H, D, C3, kv_bstride, kv_tstride, max_len,
                   float(1.0 / std::sqrt(double(D))));
  matmul(ctx, dt, att.data(), wout, bout, x, B, C, C, false, true, 1.f, 1.f);
  layernorm_matmul(ctx, dt, x, g2, b2, wup, bup, a.data(), B, C4, C, eps, true);
  matmul(ctx, dt, a.data(), wdown, bdown, x, B, C, C4, false, true, 1.f, 1.f);
}

}  // namespace parallm::cpu
