// The fused classifier: per row, the cross-entropy loss against its target and, optionally, the logits'
// gradient, written over the logits themselves when asked (llm.c's trick: no probability buffer).
// Rows are independent tasks; each row's max and sum of exponentials use 16 lanes in a fixed order.
#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

template <class E>
PL_INLINE void cross_entropy_t(const void* xv, const int32_t* targets, float* losses, void* dv, int64_t r0, int64_t r1,
                               int64_t V, int64_t ld, int ignore_index, float dscale) {
  using T = typename E::T;
  for (int64_t r = r0; r < r1; r++) {
    const T* x = static_cast<const T*>(xv) + r * ld;
    T* d = dv ? static_cast<T*>(dv) + r * ld : nullptr;
    if (d)
      for (int64_t v = V; v < ld; v++) E::store(d, v, 0.f);  // the row's padding
    const int32_t t = targets[r];
    if (t == ignore_index || t < 0 || t >= V) {
      if (losses) losses[r] = 0.f;
      if (d)
        for (int64_t v = 0; v < V; v++) E::store(d, v, 0.f);
      continue;
    }
    float m[16];
    for (int l = 0; l < 16; l++) m[l] = -INFINITY;
    int64_t v = 0;
    for (; v + 16 <= V; v += 16)
      for (int l = 0; l < 16; l++) {
        const float a = E::load(x, v + l);
        m[l] = a > m[l] ? a : m[l];
      }
    float mx = -INFINITY;
    for (int l = 0; l < 16; l++) mx = m[l] > mx ? m[l] : mx;
    for (; v < V; v++) {
      const float a = E::load(x, v);
      mx = a > mx ? a : mx;
    }
    float s[16] = {};
    for (v = 0; v + 16 <= V; v += 16)
      for (int l = 0; l < 16; l++) s[l] += fast_exp(E::load(x, v + l) - mx);
    float sum = 0.f;
    for (int l = 0; l < 16; l++) sum += s[l];
    for (; v < V; v++) sum += fast_exp(E::load(x, v) - mx);
    const float lse = mx + std::log(sum);
    const float xt = E::load(x, t);  // read before an in-place gradient overwrites it
    if (losses) losses[r] = lse - xt;
    if (d) {
      for (v = 0; v < V; v++) E::store(d, v, dscale * fast_exp(E::load(x, v) - lse));
      E::store(d, t, dscale * (fast_exp(xt - lse) - 1.0f));
    }
  }
}
PL_INLINE void cross_entropy_rows_body(DType dt, const void* x, const int32_t* t, float* losses, void* d, int64_t r0,
                                       int64_t r1, int64_t V, int64_t ld, int ignore_index, float dscale) {
  if (dt == DType::F32) cross_entropy_t<F32T>(x, t, losses, d, r0, r1, V, ld, ignore_index, dscale);
  else cross_entropy_t<BF16T>(x, t, losses, d, r0, r1, V, ld, ignore_index, dscale);
}
PL_MULTIVERSION(void, cross_entropy_rows,
                (DType dt, const void* x, const int32_t* t, float* losses, void* d, int64_t r0, int64_t r1, int64_t V,
                 int64_t ld, int ignore_index, float dscale),
                (dt, x, t, losses, d, r0, r1, V, ld, ignore_index, dscale))

}  // namespace

void cross_entropy(const Ctx& ctx, DType dt, const void* logits, const int32_t* targets, float* losses, void* dlogits,
                   int64_t R, int64_t V, int64_t ld, int ignore_index, float dscale) {
  if (R < 0 || V < 0) fail("cross_entropy: negative size R=", R, " V=", V);
  if (R == 0) return;
  if (V == 0) fail("cross_entropy: empty rows (R=", R, " V=0)");
  if (ld < V) fail("cross_entropy: row stride ", ld, " is shorter than the ", V, " logits of a row (R=", R, ")");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("cross_entropy: dtype ", dtype_name(dt), " is not supported (R=", R, " V=", V, ")");
  if (!logits || !targets) fail("cross_entropy: null pointer (R=", R, " V=", V, ")");
  parallel_rows(ctx, R, R * V * 12, [&](int64_t r0, int64_t r1) {
    cross_entropy_rows(dt, logits, targets, losses, dlogits, r0, r1, V, ld, ignore_index, dscale);
  });
}

}  // namespace parallm::cpu
