// GELU (tanh form, as GPT-2) and the SiLU gate of LLaMA's MLP.
// gelu(x) = 0.5 x (1 + tanh(u)) is evaluated as x / (1 + exp(-2u)), the same value without tanh's
// cancellation for negative x; silu(g) = g / (1 + exp(-g)). fast_exp keeps the loops vectorized.
// Backward: with s = sigmoid(2u) = 0.5 (1 + tanh u), gelu'(x) = s + x 2 s (1 - s) u'(x) (1 - tanh^2 u
// = 4 s (1 - s), again free of cancellation).
#include <algorithm>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

PL_INLINE float gelu1(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + fast_exp(-2.0f * u));
}
PL_INLINE float silu1(float g) { return g / (1.0f + fast_exp(-g)); }

template <class E>
PL_INLINE void gelu_t(const void* xv, void* yv, int64_t i0, int64_t i1) {
  const typename E::T* x = static_cast<const typename E::T*>(xv);
  typename E::T* y = static_cast<typename E::T*>(yv);
  for (int64_t i = i0; i < i1; i++) E::store(y, i, gelu1(E::load(x, i)));
}
PL_INLINE void gelu_range_body(DType dt, const void* x, void* y, int64_t i0, int64_t i1) {
  if (dt == DType::F32) gelu_t<F32T>(x, y, i0, i1);
  else gelu_t<BF16T>(x, y, i0, i1);
}
PL_MULTIVERSION(void, gelu_range, (DType dt, const void* x, void* y, int64_t i0, int64_t i1), (dt, x, y, i0, i1))

template <class E>
PL_INLINE void silu_gate_t(const void* gv, const void* uv, void* yv, int64_t r0, int64_t r1, int64_t F, int64_t s) {
  for (int64_t r = r0; r < r1; r++) {
    const typename E::T* g = static_cast<const typename E::T*>(gv) + r * s;
    const typename E::T* u = static_cast<const typename E::T*>(uv) + r * s;
    typename E::T* y = static_cast<typename E::T*>(yv) + r * F;
    for (int64_t f = 0; f < F; f++) E::store(y, f, silu1(E::load(g, f)) * E::load(u, f));
  }
}
PL_INLINE void silu_gate_rows_body(DType dt, const void* g, const void* u, void* y, int64_t r0, int64_t r1, int64_t F,
                                   int64_t s) {
  if (dt == DType::F32) silu_gate_t<F32T>(g, u, y, r0, r1, F, s);
  else silu_gate_t<BF16T>(g, u, y, r0, r1, F, s);
}
PL_MULTIVERSION(void, silu_gate_rows,
                (DType dt, const void* g, const void* u, void* y, int64_t r0, int64_t r1, int64_t F, int64_t s),
                (dt, g, u, y, r0, r1, F, s))

PL_INLINE float gelu_grad1(float x) {
  const float k = 0.7978845608028654f;
  const float u = k * (x + 0.044715f * x * x * x);
  const float s = 1.0f / (1.0f + fast_exp(-2.0f * u));
  return s + x * 2.0f * s * (1.0f - s) * k * (1.0f + 3.0f * 0.044715f * x * x);
}

template <class E>
PL_INLINE void gelu_bwd_t(const void* xv, const void* dyv, void* dxv, int64_t i0, int64_t i1) {
  const typename E::T* x = static_cast<const typename E::T*>(xv);
  const typename E::T* dy = static_cast<const typename E::T*>(dyv);
  typename E::T* dx = static_cast<typename E::T*>(dxv);
  for (int64_t i = i0; i < i1; i++) E::store(dx, i, E::load(dy, i) * gelu_grad1(E::load(x, i)));
}
PL_INLINE void gelu_bwd_range_body(DType dt, const void* x, const void* dy, void* dx, int64_t i0, int64_t i1) {
  if (dt == DType::F32) gelu_bwd_t<F32T>(x, dy, dx, i0, i1);
  else gelu_bwd_t<BF16T>(x, dy, dx, i0, i1);
}
PL_MULTIVERSION(void, gelu_bwd_range, (DType dt, const void* x, const void* dy, void* dx, int64_t i0, int64_t i1),
                (dt, x, dy, dx, i0, i1))

// Both inputs are read before either output is written, so dgate/dup may be gate/up themselves.
template <class E>
PL_INLINE void silu_gate_bwd_t(const void* gv, const void* uv, const void* dyv, void* dgv, void* duv, int64_t r0,
                               int64_t r1, int64_t F, int64_t st) {
  using T = typename E::T;
  for (int64_t r = r0; r < r1; r++) {
    const T* g = static_cast<const T*>(gv) + r * st;
    const T* u = static_cast<const T*>(uv) + r * st;
    const T* dy = static_cast<const T*>(dyv) + r * F;
    T* dg = static_cast<T*>(dgv) + r * st;
    T* du = static_cast<T*>(duv) + r * st;
    for (int64_t f = 0; f < F; f++) {
      const float gg = E::load(g, f), uu = E::load(u, f), d = E::load(dy, f);
      const float s = 1.0f / (1.0f + fast_exp(-gg));
      E::store(dg, f, d * uu * s * (1.0f + gg * (1.0f - s)));
      E::store(du, f, d * gg * s);
    }
  }
}
PL_INLINE void silu_gate_bwd_rows_body(DType dt, const void* g, const void* u, const void* dy, void* dg, void* du,
                                       int64_t r0, int64_t r1, int64_t F, int64_t s) {
  if (dt == DType::F32) silu_gate_bwd_t<F32T>(g, u, dy, dg, du, r0, r1, F, s);
  else silu_gate_bwd_t<BF16T>(g, u, dy, dg, du, r0, r1, F, s);
}
PL_MULTIVERSION(void, silu_gate_bwd_rows,
                (DType dt, const void* g, const void* u, const void* dy, void* dg, void* du, int64_t r0, int64_t r1,
                 int64_t F, int64_t s),
                (dt, g, u, dy, dg, du, r0, r1, F, s))

}  // namespace

void gelu(const Ctx& ctx, DType dt, const void* x, void* y, int64_t n) {
  if (n < 0) fail("gelu: negative size n=", n);
  if (n == 0) return;
  if (dt != DType::F32 && dt != DType::BF16) fail("gelu: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  if (!x || !y) fail("gelu: null pointer (n=", n, ")");
  const int64_t blocks = (n + 2047) / 2048;
  parallel_rows(ctx, blocks, n * 8, [&](int64_t b0, int64_t b1) {
    gelu_range(dt, x, y, b0 * 2048, std::min(n, b1 * 2048));
  });
}

void silu_gate(const Ctx& ctx, DType dt, const void* gate, const void* up, void* y, int64_t R, int64_t F,
               int64_t in_stride) {
  if (R < 0 || F < 0 || in_stride < 0)
    fail("silu_gate: negative size R=", R, " F=", F, " in_stride=", in_stride);
  if (R == 0 || F == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("silu_gate: dtype ", dtype_name(dt), " is not supported (R=", R, " F=", F, ")");
  if (!gate || !up || !y) fail("silu_gate: null pointer (R=", R, " F=", F, ")");
  parallel_rows(ctx, R, R * F * 8, [&](int64_t r0, int64_t r1) {
    silu_gate_rows(dt, gate, up, y, r0, r1, F, in_stride);
  });
}

void gelu_backward(const Ctx& ctx, DType dt, const void* x, const void* dy, void* dx, int64_t n) {
  if (n < 0) fail("gelu_backward: negative size n=", n);
  if (n == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("gelu_backward: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  if (!x || !dy || !dx) fail("gelu_backward: null pointer (n=", n, ")");
  const int64_t blocks = (n + 2047) / 2048;
  parallel_rows(ctx, blocks, n * 10, [&](int64_t b0, int64_t b1) {
    gelu_bwd_range(dt, x, dy, dx, b0 * 2048, std::min(n, b1 * 2048));
  });
}

// The two ops in turn: the same bits as gelu_backward, then sum_rows of dx.
void gelu_backward_bias(const Ctx& ctx, DType dt, const void* x, const void* dy, void* dx, void* dbias, int64_t R,
                        int64_t C, bool accumulate) {
  if (R < 0 || C < 1) fail("gelu_backward: bad sizes R=", R, " C=", C, " (with the bias gradient)");
  if (R > INT64_MAX / C) fail("gelu_backward: R*C overflows (R=", R, " C=", C, ")");
  if (!dbias) fail("gelu_backward: null bias gradient (R=", R, " C=", C, ")");
  gelu_backward(ctx, dt, x, dy, dx, R * C);
  sum_rows(ctx, dt, dx, dbias, R, C, accumulate);
}

void silu_gate_backward(const Ctx& ctx, DType dt, const void* gate, const void* up, const void* dy, void* dgate,
                        void* dup, int64_t R, int64_t F, int64_t in_stride) {
  if (R < 0 || F < 0 || in_stride < F)
    fail("silu_gate_backward: bad size R=", R, " F=", F, " in_stride=", in_stride);
  if (R == 0 || F == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("silu_gate_backward: dtype ", dtype_name(dt), " is not supported (R=", R, " F=", F, ")");
  if (!gate || !up || !dy || !dgate || !dup) fail("silu_gate_backward: null pointer (R=", R, " F=", F, ")");
  parallel_rows(ctx, R, R * F * 12, [&](int64_t r0, int64_t r1) {
    silu_gate_bwd_rows(dt, gate, up, dy, dgate, dup, r0, r1, F, in_stride);
  });
}

}  // namespace parallm::cpu
