// Row softmax with a scale, and argmax (first index of the largest value; NaN never wins over a number).
// Max and sum use 16 independent lanes so the loops vectorize without -ffast-math; exp is fast_exp.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

// Largest non-NaN value of x[0, C), -inf when there is none. `v > m ? v : m` skips NaN.
template <class E>
PL_INLINE float row_max(const typename E::T* x, int64_t C, float scale) {
  float m[16];
  for (int l = 0; l < 16; l++) m[l] = -INFINITY;
  int64_t c = 0;
  for (; c + 16 <= C; c += 16)
    for (int l = 0; l < 16; l++) {
      const float v = scale * E::load(x, c + l);
      m[l] = v > m[l] ? v : m[l];
    }
  float t = -INFINITY;
  for (int l = 0; l < 16; l++) t = m[l] > t ? m[l] : t;
  for (; c < C; c++) {
    const float v = scale * E::load(x, c);
    t = v > t ? v : t;
  }
  return t;
}

template <class E>
PL_INLINE void softmax_t(const void* xv, void* yv, int64_t r0, int64_t r1, int64_t C, float scale) {
  for (int64_t r = r0; r < r1; r++) {
    const typename E::T* x = static_cast<const typename E::T*>(xv) + r * C;
    typename E::T* y = static_cast<typename E::T*>(yv) + r * C;
    const float mx = row_max<E>(x, C, scale);
    // e = exp(s - max) is written to y as f32 when y is f32 (then scaled in place); for bf16 it is
    // recomputed in the second pass rather than rounded twice.
    float s[16] = {};
    int64_t c = 0;
    for (; c + 16 <= C; c += 16)
      for (int l = 0; l < 16; l++) s[l] += fast_exp(scale * E::load(x, c + l) - mx);
    float sum = 0.f;
    for (int l = 0; l < 16; l++) sum += s[l];
    for (; c < C; c++) sum += fast_exp(scale * E::load(x, c) - mx);
    const float inv = 1.0f / sum;
    for (c = 0; c < C; c++) E::store(y, c, fast_exp(scale * E::load(x, c) - mx) * inv);
  }
}
PL_INLINE void softmax_rows_body(DType dt, const void* x, void* y, int64_t r0, int64_t r1, int64_t C, float scale) {
  if (dt == DType::F32) softmax_t<F32T>(x, y, r0, r1, C, scale);
  else softmax_t<BF16T>(x, y, r0, r1, C, scale);
}
PL_MULTIVERSION(void, softmax_rows, (DType dt, const void* x, void* y, int64_t r0, int64_t r1, int64_t C, float scale),
                (dt, x, y, r0, r1, C, scale))

template <class E>
PL_INLINE void argmax_t(const void* xv, int32_t* out, int64_t r0, int64_t r1, int64_t C) {
  for (int64_t r = r0; r < r1; r++) {
    const typename E::T* x = static_cast<const typename E::T*>(xv) + r * C;
    const float mx = row_max<E>(x, C, 1.0f);  // vectorized pass; then the first index holding it
    int64_t best = 0;
    if (mx == mx) {  // some non-NaN value exists (-inf included)
      for (int64_t c = 0; c < C; c++)
        if (E::load(x, c) == mx) {
          best = c;
          break;
        }
    }
    out[r] = int32_t(best);
  }
}
PL_INLINE void argmax_rows_body(DType dt, const void* x, int32_t* out, int64_t r0, int64_t r1, int64_t C) {
  if (dt == DType::F32) argmax_t<F32T>(x, out, r0, r1, C);
  else argmax_t<BF16T>(x, out, r0, r1, C);
}
PL_MULTIVERSION(void, argmax_rows, (DType dt, const void* x, int32_t* out, int64_t r0, int64_t r1, int64_t C),
                (dt, x, out, r0, r1, C))

}  // namespace

void softmax(const Ctx& ctx, DType dt, const void* x, void* y, int64_t R, int64_t C, float scale) {
  if (R < 0 || C < 0) fail("softmax: negative size R=", R, " C=", C);
  if (R == 0 || C == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("softmax: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if (!x || !y) fail("softmax: null pointer (R=", R, " C=", C, ")");
  parallel_rows(ctx, R, R * C * 12, [&](int64_t r0, int64_t r1) { softmax_rows(dt, x, y, r0, r1, C, scale); });
}

void argmax(const Ctx& ctx, DType dt, const void* x, int32_t* out, int64_t R, int64_t C) {
  if (R < 0 || C < 0) fail("argmax: negative size R=", R, " C=", C);
  if (R == 0) return;
  if (C == 0) fail("argmax: empty rows (R=", R, " C=0)");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("argmax: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if (!x || !out) fail("argmax: null pointer (R=", R, " C=", C, ")");
  parallel_rows(ctx, R, R * C * 2, [&](int64_t r0, int64_t r1) { argmax_rows(dt, x, out, r0, r1, C); });
}

}  // namespace parallm::cpu
