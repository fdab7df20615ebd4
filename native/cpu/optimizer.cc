// The optimizer's kernels: sum_squares (the gradient norm for clipping) and the fused AdamW step.
// sum_squares splits the buffer into fixed chunks (not per thread), sums each with 16 lanes, then adds
// the chunk sums in index order: the same bits for any thread count.
// AdamW: one pass per element, the "write param?" choice taken outside the loop. (Its loop stays scalar:
// without -fno-math-errno GCC keeps a branch to libm's sqrtf for errno; matmuls dominate a CPU step.)
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

constexpr int64_t kChunk = 16384;

template <class E>
PL_INLINE float sumsq_t(const void* xv, int64_t i0, int64_t i1) {
  const typename E::T* x = static_cast<const typename E::T*>(xv);
  float s[16] = {};
  int64_t i = i0;
  for (; i + 16 <= i1; i += 16)
    for (int l = 0; l < 16; l++) {
      const float a = E::load(x, i + l);
      s[l] += a * a;
    }
  for (int l = 0; i < i1; i++, l++) {
    const float a = E::load(x, i);
    s[l] += a * a;
  }
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) s[l] += s[l + w];
  return s[0];
}
PL_INLINE float sumsq_range_body(DType dt, const void* x, int64_t i0, int64_t i1) {
  return dt == DType::F32 ? sumsq_t<F32T>(x, i0, i1) : sumsq_t<BF16T>(x, i0, i1);
}
PL_MULTIVERSION(float, sumsq_range, (DType dt, const void* x, int64_t i0, int64_t i1), (dt, x, i0, i1))

template <class E, bool kParam>
PL_INLINE void adamw_t(float* master, void* paramv, const void* gradv, float* m, float* v, int64_t i0, int64_t i1,
                       int64_t n_decay, float lr, float b1, float b2, float eps, float wd, float gs, float bc1,
                       float bc2) {
  using T = typename E::T;
  const T* grad = static_cast<const T*>(gradv);
  T* param = static_cast<T*>(paramv);
  for (int64_t i = i0; i < i1; i++) {
    const float g = E::load(grad, i) * gs;
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mh = mi / bc1, vh = vi / bc2;
    const float w = master[i];
    const float nw = w - lr * (mh / (std::sqrt(vh) + eps) + (i < n_decay ? wd * w : 0.0f));
    master[i] = nw;
    if (kParam) E::store(param, i, nw);
  }
}
PL_INLINE void adamw_range_body(DType dt, float* master, void* param, const void* grad, float* m, float* v, int64_t i0,
                                int64_t i1, int64_t n_decay, float lr, float b1, float b2, float eps, float wd,
                                float gs, float bc1, float bc2) {
  if (dt == DType::F32) {
    if (param) adamw_t<F32T, true>(master, param, grad, m, v, i0, i1, n_decay, lr, b1, b2, eps, wd, gs, bc1, bc2);
    else adamw_t<F32T, false>(master, param, grad, m, v, i0, i1, n_decay, lr, b1, b2, eps, wd, gs, bc1, bc2);
  } else {
    if (param) adamw_t<BF16T, true>(master, param, grad, m, v, i0, i1, n_decay, lr, b1, b2, eps, wd, gs, bc1, bc2);
    else adamw_t<BF16T, false>(master, param, grad, m, v, i0, i1, n_decay, lr, b1, b2, eps, wd, gs, bc1, bc2);
  }
}
PL_MULTIVERSION(void, adamw_range,
                (DType dt, float* master, void* param, const void* grad, float* m, float* v, int64_t i0, int64_t i1,
                 int64_t n_decay, float lr, float b1, float b2, float eps, float wd, float gs, float bc1, float bc2),
                (dt, master, param, grad, m, v, i0, i1, n_decay, lr, b1, b2, eps, wd, gs, bc1, bc2))

}  // namespace

void sum_squares(const Ctx& ctx, DType dt, const void* x, float* out, int64_t n) {
  if (n < 0) fail("sum_squares: negative size n=", n);
  if (dt != DType::F32 && dt != DType::BF16)
    fail("sum_squares: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  if (!out || (n > 0 && !x)) fail("sum_squares: null pointer (n=", n, ")");
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<float> part(size_t(chunks), 0.f);
  parallel_rows(ctx, chunks, n * 2, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) part[size_t(c)] = sumsq_range(dt, x, c * kChunk, std::min(n, (c + 1) * kChunk));
  });
  float total = 0.f;
  for (float p : part) total += p;
  out[0] = total;
}

void adamw(const Ctx& ctx, DType dt, float* master, void* param, const void* grad, float* m, float* v, int64_t n,
           int64_t n_decay, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
           int step) {
  if (n < 0 || n_decay < 0 || n_decay > n) fail("adamw: bad size n=", n, " n_decay=", n_decay);
  if (step < 1) fail("adamw: step=", step, " must be >= 1 (n=", n, ")");
  if (n == 0) return;
  if (dt != DType::F32 && dt != DType::BF16) fail("adamw: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  if (!master || !grad || !m || !v) fail("adamw: null pointer (n=", n, ")");
  // Bias corrections in double: b^step for large steps would lose digits in f32 powers.
  const float bc1 = float(1.0 - std::pow(double(beta1), double(step)));
  const float bc2 = float(1.0 - std::pow(double(beta2), double(step)));
  const int64_t blocks = (n + 4095) / 4096;
  parallel_rows(ctx, blocks, n * 12, [&](int64_t b0, int64_t b1) {
    adamw_range(dt, master, param, grad, m, v, b0 * 4096, std::min(n, b1 * 4096), n_decay, lr, beta1, beta2, eps,
                weight_decay, grad_scale, bc1, bc2);
  });
}

}  // namespace parallm::cpu
