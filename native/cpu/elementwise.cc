// Elementwise ops: residual/bias add with a repeating second operand, dtype casts, and sum_rows (the bias
// gradient: column blocks in parallel, rows summed in order, so the bits do not depend on the split).
// Plain loops over typed loads/stores; PL_MULTIVERSION builds AVX-512/AVX2/baseline copies that GCC
// vectorizes (bf16 rounding is written branch-free in simd.h for that reason).
#include <algorithm>
#include <cstring>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

// y[i] = a[i] + b[i % period] for i in [i0, i1).
template <class E>
PL_INLINE void add_range(const typename E::T* a, const typename E::T* b, typename E::T* y, int64_t i0, int64_t i1,
                         int64_t period) {
  int64_t i = i0, j = i0 % period;
  while (i < i1) {
    const int64_t len = std::min(i1 - i, period - j);  // one run of b without wrapping
    const typename E::T* ai = a + i;
    const typename E::T* bj = b + j;
    typename E::T* yi = y + i;
    for (int64_t t = 0; t < len; t++) E::store(yi, t, E::load(ai, t) + E::load(bj, t));
    i += len;
    j = 0;
  }
}
PL_INLINE void add_rows_body(DType dt, const void* a, const void* b, void* y, int64_t i0, int64_t i1, int64_t period) {
  if (dt == DType::F32)
    add_range<F32T>(static_cast<const float*>(a), static_cast<const float*>(b), static_cast<float*>(y), i0, i1, period);
  else
    add_range<BF16T>(static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b), static_cast<uint16_t*>(y), i0,
                     i1, period);
}
PL_MULTIVERSION(void, add_rows, (DType dt, const void* a, const void* b, void* y, int64_t i0, int64_t i1, int64_t p),
                (dt, a, b, y, i0, i1, p))

template <class S, class D>
PL_INLINE void cast_range(const void* src, void* dst, int64_t i0, int64_t i1) {
  const typename S::T* s = static_cast<const typename S::T*>(src);
  typename D::T* d = static_cast<typename D::T*>(dst);
  for (int64_t i = i0; i < i1; i++) D::store(d, i, S::load(s, i));
}
template <class S>
PL_INLINE void cast_from(DType dst_dt, const void* src, void* dst, int64_t i0, int64_t i1) {
  switch (dst_dt) {
    case DType::F32: return cast_range<S, F32T>(src, dst, i0, i1);
    case DType::BF16: return cast_range<S, BF16T>(src, dst, i0, i1);
    default: return cast_range<S, F16T>(src, dst, i0, i1);
  }
}
PL_INLINE void cast_rows_body(DType src_dt, const void* src, DType dst_dt, void* dst, int64_t i0, int64_t i1) {
  switch (src_dt) {
    case DType::F32: return cast_from<F32T>(dst_dt, src, dst, i0, i1);
    case DType::BF16: return cast_from<BF16T>(dst_dt, src, dst, i0, i1);
    default: return cast_from<F16T>(dst_dt, src, dst, i0, i1);
  }
}
PL_MULTIVERSION(void, cast_rows, (DType sd, const void* s, DType dd, void* d, int64_t i0, int64_t i1),
                (sd, s, dd, d, i0, i1))

bool castable(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }

constexpr int64_t kSumCols = 256;

template <class E>
PL_INLINE void sum_rows_t(const void* xv, void* outv, int64_t b0, int64_t b1, int64_t R, int64_t C, bool accumulate) {
  using T = typename E::T;
  const T* x = static_cast<const T*>(xv);
  T* out = static_cast<T*>(outv);
  for (int64_t blk = b0; blk < b1; blk++) {
    const int64_t c0 = blk * kSumCols, n = std::min(kSumCols, C - c0);
    float acc[kSumCols] = {};
    for (int64_t r = 0; r < R; r++) {
      const T* row = x + r * C + c0;
      for (int64_t j = 0; j < n; j++) acc[j] += E::load(row, j);
    }
    for (int64_t j = 0; j < n; j++) E::store(out, c0 + j, accumulate ? E::load(out, c0 + j) + acc[j] : acc[j]);
  }
}
PL_INLINE void sum_rows_blocks_body(DType dt, const void* x, void* out, int64_t b0, int64_t b1, int64_t R, int64_t C,
                                    bool accumulate) {
  if (dt == DType::F32) sum_rows_t<F32T>(x, out, b0, b1, R, C, accumulate);
  else sum_rows_t<BF16T>(x, out, b0, b1, R, C, accumulate);
}
PL_MULTIVERSION(void, sum_rows_blocks,
                (DType dt, const void* x, void* out, int64_t b0, int64_t b1, int64_t R, int64_t C, bool acc),
                (dt, x, out, b0, b1, R, C, acc))

}  // namespace

void add(const Ctx& ctx, DType dt, const void* a, const void* b, void* y, int64_t n, int64_t b_period) {
  if (n < 0) fail("add: negative size n=", n);
  if (n == 0) return;
  if (dt != DType::F32 && dt != DType::BF16) fail("add: dtype ", dtype_name(dt), " is not supported (n=", n, ")");
  if (b_period <= 0 || b_period > n) fail("add: b_period=", b_period, " must be in [1, n=", n, "]");
  if (!a || !b || !y) fail("add: null pointer (n=", n, ")");
  // Chunks of 4096 elements: large enough to amortize, small enough to balance.
  const int64_t blocks = (n + 4095) / 4096;
  parallel_rows(ctx, blocks, n, [&](int64_t b0, int64_t b1) {
    add_rows(dt, a, b, y, b0 * 4096, std::min(n, b1 * 4096), b_period);
  });
}

void cast(const Ctx& ctx, DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n) {
  if (n < 0) fail("cast: negative size n=", n);
  if (n == 0) return;
  if (!castable(src_dt) || !castable(dst_dt))
    fail("cast: ", dtype_name(src_dt), " -> ", dtype_name(dst_dt), " is not supported (n=", n, ")");
  if (!src || !dst) fail("cast: null pointer (n=", n, ")");
  if (src_dt == dst_dt) {
    if (src != dst) std::memmove(dst, src, size_t(n) * dtype_size(src_dt));
    return;
  }
  const int64_t blocks = (n + 4095) / 4096;
  parallel_rows(ctx, blocks, n, [&](int64_t b0, int64_t b1) {
    cast_rows(src_dt, src, dst_dt, dst, b0 * 4096, std::min(n, b1 * 4096));
  });
}

void sum_rows(const Ctx& ctx, DType dt, const void* x, void* out, int64_t R, int64_t C, bool accumulate) {
  if (R < 0 || C < 0) fail("sum_rows: negative size R=", R, " C=", C);
  if (C == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("sum_rows: dtype ", dtype_name(dt), " is not supported (R=", R, " C=", C, ")");
  if ((R > 0 && !x) || !out) fail("sum_rows: null pointer (R=", R, " C=", C, ")");
  const int64_t blocks = (C + kSumCols - 1) / kSumCols;
  parallel_rows(ctx, blocks, R * C + C, [&](int64_t b0, int64_t b1) {
    sum_rows_blocks(dt, x, out, b0, b1, R, C, accumulate);
  });
}

}  // namespace parallm::cpu
