// LayerNorm and RMSNorm over rows of C, statistics in f32.
// Sums use 16 independent lanes so GCC vectorizes them without reassociating (no -ffast-math); LayerNorm
// takes the variance as the mean of squared deviations (two passes) rather than E[x^2] - mean^2.
// The backward ops are below the forward ones (see "backward").
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

// ---- backward --------------------------------------------------------------------------------------------
// dx is per row (rows in parallel); dgamma/dbeta/dw are column sums over all rows, taken in a second pass
// over column blocks with rows in order, so the result does not depend on how rows were split.

constexpr int64_t kColBlock = 64;

template <class E>
PL_INLINE void layernorm_bwd_dx_t(const void* dyv, const void* xv, const void* gv, const float* mean,
                                  const float* rstd, void* dxv, int64_t r0, int64_t r1, int64_t C) {
  using T = typename E::T;
  const T* g = static_cast<const T*>(gv);
  for (int64_t r = r0; r < r1; r++) {
    const T* dy = static_cast<const T*>(dyv) + r * C;
    const T* x = static_cast<const T*>(xv) + r * C;
    T* dx = static_cast<T*>(dxv) + r * C;
    const float mu = mean[r], rs = rstd[r];
    float s1[16] = {}, s2[16] = {};
    int64_t c = 0;
    for (; c + 16 <= C; c += 16)
      for (int l = 0; l < 16; l++) {
        const float gg = E::load(dy, c + l) * E::load(g, c + l);
        s1[l] += gg;
        s2[l] += gg * ((E::load(x, c + l) - mu) * rs);
      }
    float t1 = lanes_total(s1), t2 = lanes_total(s2);
    for (; c < C; c++) {
      const float gg = E::load(dy, c) * E::load(g, c);
      t1 += gg;
      t2 += gg * ((E::load(x, c) - mu) * rs);
    }
    const float mg = t1 / float(C), mgx = t2 / float(C);
    for (c = 0; c < C; c++) {
      const float xh = (E::load(x, c) - mu) * rs;
      const float gg = E::load(dy, c) * E::load(g, c);
      E::store(dx, c, E::load(dx, c) + rs * (gg - mg - xh * mgx));
    }
  }
}
PL_INLINE void layernorm_bwd_dx_body(DType dt, const void* dy, const void* x, const void* g, const float* mean,
                                     const float* rstd, void* dx, int64_t r0, int64_t r1, int64_t C) {
  if (dt == DType::F32) layernorm_bwd_dx_t<F32T>(dy, x, g, mean, rstd, dx, r0, r1, C);
  else layernorm_bwd_dx_t<BF16T>(dy, x, g, mean, rstd, dx, r0, r1, C);
}
PL_MULTIVERSION(void, layernorm_bwd_dx,
                (DType dt, const void* dy, const void* x, const void* g, const float* mean, const float* rstd,
                 void* dx, int64_t r0, int64_t r1, int64_t C),
                (dt, dy, x, g, mean, rstd, dx, r0, r1, C))

// Column blocks [b0, b1) of kColBlock: dw[c] += sum_r dy xhat, and db[c] += sum_r dy when db is non-null.
// mean null: xhat = x * rstd (RMSNorm).
template <class E>
PL_INLINE void norm_bwd_cols_t(const void* dyv, const void* xv, const float* mean, const float* rstd, void* dwv,
                               void* dbv, int64_t b0, int64_t b1, int64_t R, int64_t C) {
  using T = typename E::T;
  const T* dy = static_cast<const T*>(dyv);
  const T* x = static_cast<const T*>(xv);
  for (int64_t blk = b0; blk < b1; blk++) {
    const int64_t c0 = blk * kColBlock, n = std::min(kColBlock, C - c0);
    float aw[kColBlock] = {}, ab[kColBlock] = {};
    for (int64_t r = 0; r < R; r++) {
      const T* dyr = dy + r * C + c0;
      const T* xr = x + r * C + c0;
      const float mu = mean ? mean[r] : 0.f, rs = rstd[r];
      for (int64_t j = 0; j < n; j++) {
        const float d = E::load(dyr, j);
        aw[j] += d * ((E::load(xr, j) - mu) * rs);
        ab[j] += d;
      }
    }
    T* dw = static_cast<T*>(dwv) + c0;
    for (int64_t j = 0; j < n; j++) E::store(dw, j, E::load(dw, j) + aw[j]);
    if (dbv) {
      T* db = static_cast<T*>(dbv) + c0;
      for (int64_t j = 0; j < n; j++) E::store(db, j, E::load(db, j) + ab[j]);
    }
  }
}
PL_INLINE void norm_bwd_cols_body(DType dt, const void* dy, const void* x, const float* mean, const float* rstd,
                                  void* dw, void* db, int64_t b0, int64_t b1, int64_t R, int64_t C) {
  if (dt == DType::F32) norm_bwd_cols_t<F32T>(dy, x, mean, rstd, dw, db, b0, b1, R, C);
  else norm_bwd_cols_t<BF16T>(dy, x, mean, rstd, dw, db, b0, b1, R, C);
}
PL_MULTIVERSION(void, norm_bwd_cols,
                (DType dt, const void* dy, const void* x, const float* mean, const float* rstd, void* dw, void* db,
                 int64_t b0, int64_t b1, int64_t R, int64_t C),
                (dt, dy, x, mean, rstd, dw, db, b0, b1, R, C))

template <class E>
PL_INLINE void rmsnorm_bwd_dx_t(const void* dyv, const void* xv, const void* wv, const float* rstd, void* dxv,
                                int64_t r0, int64_t r1, int64_t C) {
  using T = typename E::T;
  const T* w = static_cast<const T*>(wv);
  for (int64_t r = r0; r < r1; r++) {
    const T* dy = static_cast<const T*>(dyv) + r * C;
    const T* x = static_cast<const T*>(xv) + r * C;
    T* dx = static_cast<T*>(dxv) + r * C;
    const float rs = rstd[r];
    float s[16] = {};
    int64_t c = 0;
    for (; c + 16 <= C; c += 16)
      for (int l = 0; l < 16; l++) s[l] += E::load(dy, c + l) * E::load(w, c + l) * (E::load(x, c + l) * rs);
    float t = lanes_total(s);
    for (; c < C; c++) t += E::load(dy, c) * E::load(w, c) * (E::load(x, c) * rs);
    const float mgx = t / float(C);
    for (c = 0; c < C; c++) {
      const float xh = E::load(x, c) * rs;
      E::store(dx, c, E::load(dx, c) + rs * (E::load(dy, c) * E::load(w, c) - xh * mgx));
    }
  }
}
PL_INLINE void rmsnorm_bwd_dx_body(DType dt, const void* dy, const void* x, const void* w, const float* rstd, void* dx,
                                   int64_t r0, int64_t r1, int64_t C) {
  if (dt == DType::F32) rmsnorm_bwd_dx_t<F32T>(dy, x, w, rstd, dx, r0, r1, C);
  else rmsnorm_bwd_dx_t<BF16T>(dy, x, w, rstd, dx, r0, r1, C);
}
PL_MULTIVERSION(void, rmsnorm_bwd_dx,
                (DType dt, const void* dy, const void* x, const void* w, const float* rstd, void* dx, int64_t r0,
                 int64_t r1, int64_t C),
                (dt, dy, x, w, rstd, dx, r0, r1, C))

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

namespace parallm::cpu {

void layernorm_backward(const Ctx& ctx, DType dt, const void* dy, const void* x, const void* gamma, const float* mean,
                        const float* rstd, void* dx, void* dgamma, void* dbeta, int64_t R, int64_t C) {
  if (R < 0 || C < 0) fail("layernorm_backward: negative size R=", R, " C=", C);
  if (R == 0 || C == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("layernorm_backward: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if (!dy || !x || !gamma || !mean || !rstd || !dx || !dgamma || !dbeta)
    fail("layernorm_backward: null pointer (R=", R, " C=", C, ")");
  parallel_rows(ctx, R, R * C * 6, [&](int64_t r0, int64_t r1) {
    layernorm_bwd_dx(dt, dy, x, gamma, mean, rstd, dx, r0, r1, C);
  });
  const int64_t blocks = (C + kColBlock - 1) / kColBlock;
  parallel_rows(ctx, blocks, R * C * 3, [&](int64_t b0, int64_t b1) {
    norm_bwd_cols(dt, dy, x, mean, rstd, dgamma, dbeta, b0, b1, R, C);
  });
}

// The two ops in turn: layernorm_backward's bits, then sum_rows of the dx it left.
void layernorm_backward_dsum(const Ctx& ctx, DType dt, const void* dy, const void* x, const void* gamma,
                             const float* mean, const float* rstd, void* dx, void* dgamma, void* dbeta, void* dsum,
                             bool dsum_accumulate, int64_t R, int64_t C) {
  layernorm_backward(ctx, dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, R, C);
  if (dsum && C > 0) sum_rows(ctx, dt, dx, dsum, R, C, dsum_accumulate);
}

void rmsnorm_backward(const Ctx& ctx, DType dt, const void* dy, const void* x, const void* w, const float* rstd,
                      void* dx, void* dw, int64_t R, int64_t C) {
  if (R < 0 || C < 0) fail("rmsnorm_backward: negative size R=", R, " C=", C);
  if (R == 0 || C == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rmsnorm_backward: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if (!dy || !x || !w || !rstd || !dx || !dw) fail("rmsnorm_backward: null pointer (R=", R, " C=", C, ")");
  parallel_rows(ctx, R, R * C * 5, [&](int64_t r0, int64_t r1) {
    rmsnorm_bwd_dx(dt, dy, x, w, rstd, dx, r0, r1, C);
  });
  const int64_t blocks = (C + kColBlock - 1) / kColBlock;
  parallel_rows(ctx, blocks, R * C * 3, [&](int64_t b0, int64_t b1) {
    norm_bwd_cols(dt, dy, x, nullptr, rstd, dw, nullptr, b0, b1, R, C);
  });
}

}  // namespace parallm::cpu
