// LayerNorm and RMSNorm over rows of C, statistics in f32.
// Sums use 16 independent lanes so GCC vectorizes them without reassociating (no -ffast-math); LayerNorm
// takes the variance as the mean of squared deviations (two passes) rather than E[x^2] - mean^2.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

PL_INLINE float lanes_total(const float* s) {
  float t = 0.f;
  for (int l = 0; l < 16; l++) t += s[l];
  return t;
}

template <class E>
PL_INLINE float row_sum(const typename E::T* x, int64_t C) {
  float s[16] = {};
  int64_t c = 0;
  for (; c + 16 <= C; c += 16)
    for (int l = 0; l < 16; l++) s[l] += E::load(x, c + l);
  float t = lanes_total(s);
  for (; c < C; c++) t += E::load(x, c);
  return t;
}

// sum of (x - center)^2
template <class E>
PL_INLINE float row_sqdev(const typename E::T* x, int64_t C, float center) {
  float s[16] = {};
  int64_t c = 0;
  for (; c + 16 <= C; c += 16)
    for (int l = 0; l < 16; l++) {
      float d = E::load(x, c + l) - center;
      s[l] += d * d;
    }
  float t = lanes_total(s);
  for (; c < C; c++) {
    float d = E::load(x, c) - center;
    t += d * d;
  }
  return t;
}

template <class E>
PL_INLINE void layernorm_t(const void* xv, const void* gv, const void* bv, void* yv, float* mean, float* rstd,
                           int64_t r0, int64_t r1, int64_t C, float eps) {
  using T = typename E::T;
  const T* g = static_cast<const T*>(gv);
  const T* bt = static_cast<const T*>(bv);
  for (int64_t r = r0; r < r1; r++) {
    const T* x = static_cast<const T*>(xv) + r * C;
    T* y = static_cast<T*>(yv) + r * C;
    const float mu = row_sum<E>(x, C) / float(C);
    const float rs = 1.0f / std::sqrt(row_sqdev<E>(x, C, mu) / float(C) + eps);
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
    if (g && bt)
      for (int64_t c = 0; c < C; c++) E::store(y, c, (E::load(x, c) - mu) * rs * E::load(g, c) + E::load(bt, c));
    else  // gamma/beta left out: 1 and 0
      for (int64_t c = 0; c < C; c++)
        E::store(y, c, (E::load(x, c) - mu) * rs * (g ? E::load(g, c) : 1.f) + (bt ? E::load(bt, c) : 0.f));
  }
}
PL_INLINE void layernorm_rows_body(DType dt, const void* x, const void* g, const void* b, void* y, float* mean,
                                   float* rstd, int64_t r0, int64_t r1, int64_t C, float eps) {
  if (dt == DType::F32) layernorm_t<F32T>(x, g, b, y, mean, rstd, r0, r1, C, eps);
  else layernorm_t<BF16T>(x, g, b, y, mean, rstd, r0, r1, C, eps);
}
PL_MULTIVERSION(void, layernorm_rows,
                (DType dt, const void* x, const void* g, const void* b, void* y, float* mean, float* rstd, int64_t r0,
                 int64_t r1, int64_t C, float eps),
                (dt, x, g, b, y, mean, rstd, r0, r1, C, eps))

template <class E>
PL_INLINE void rmsnorm_t(const void* xv, const void* wv, void* yv, float* rstd, int64_t r0, int64_t r1, int64_t C,
                         float eps) {
  using T = typename E::T;
  const T* w = static_cast<const T*>(wv);
  for (int64_t r = r0; r < r1; r++) {
    const T* x = static_cast<const T*>(xv) + r * C;
    T* y = static_cast<T*>(yv) + r * C;
    const float rs = 1.0f / std::sqrt(row_sqdev<E>(x, C, 0.f) / float(C) + eps);
    if (rstd) rstd[r] = rs;
    if (w)
      for (int64_t c = 0; c < C; c++) E::store(y, c, E::load(x, c) * rs * E::load(w, c));
    else
      for (int64_t c = 0; c < C; c++) E::store(y, c, E::load(x, c) * rs);
  }
}
PL_INLINE void rmsnorm_rows_body(DType dt, const void* x, const void* w, void* y, float* rstd, int64_t r0, int64_t r1,
                                 int64_t C, float eps) {
  if (dt == DType::F32) rmsnorm_t<F32T>(x, w, y, rstd, r0, r1, C, eps);
  else rmsnorm_t<BF16T>(x, w, y, rstd, r0, r1, C, eps);
}
PL_MULTIVERSION(void, rmsnorm_rows,
                (DType dt, const void* x, const void* w, void* y, float* rstd, int64_t r0, int64_t r1, int64_t C,
                 float eps),
                (dt, x, w, y, rstd, r0, r1, C, eps))

}  // namespace

void layernorm(const Ctx& ctx, DType dt, const void* x, const void* gamma, const void* beta, void* y, float* mean,
               float* rstd, int64_t R, int64_t C, float eps) {
  if (R < 0 || C < 0) fail("layernorm: negative size R=", R, " C=", C);
  if (R == 0) return;
  if (C == 0) fail("layernorm: empty rows (R=", R, " C=0)");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("layernorm: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if (!x || !y) fail("layernorm: null pointer (R=", R, " C=", C, ")");
  parallel_rows(ctx, R, R * C * 3, [&](int64_t r0, int64_t r1) {
    layernorm_rows(dt, x, gamma, beta, y, mean, rstd, r0, r1, C, eps);
  });
}

void rmsnorm(const Ctx& ctx, DType dt, const void* x, const void* w, void* y, float* rstd, int64_t R, int64_t C,
             float eps) {
  if (R < 0 || C < 0) fail("rmsnorm: negative size R=", R, " C=", C);
  if (R == 0) return;
  if (C == 0) fail("rmsnorm: empty rows (R=", R, " C=0)");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rmsnorm: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if (!x || !y) fail("rmsnorm: null pointer (R=", R, " C=", C, ")");
  parallel_rows(ctx, R, R * C * 2, [&](int64_t r0, int64_t r1) { rmsnorm_rows(dt, x, w, y, rstd, r0, r1, C, eps); });
}

}  // namespace parallm::cpu
