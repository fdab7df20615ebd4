// fill_uniform: counter-based uniform values (native/core/rng.h), so the CPU and the GPU fill the same.
#include "../core/rng.h"
#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {

void fill_uniform(const Ctx& ctx, DType dt, void* out, int64_t n, uint64_t seed, float low, float high) {
  if (n < 0) fail("fill_uniform: negative size n=", n);
  if (n == 0) return;
  if (dt != DType::F32 && dt != DType::BF16 && dt != DType::F16)
    fail("fill_uniform: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  const float w = high - low;
  parallel_rows(ctx, n, n * 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      const float v = low + w * uniform01(seed, 0, uint64_t(i));
      if (dt == DType::F32) static_cast<float*>(out)[i] = v;
      else if (dt == DType::BF16) static_cast<uint16_t*>(out)[i] = f32_to_bf16(v);
      else static_cast<uint16_t*>(out)[i] = f32_to_f16(v);
    }
  });
}

}  // namespace parallm::cpu
