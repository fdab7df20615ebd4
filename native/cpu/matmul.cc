// matmul: C = alpha * op(A) op(B) + beta * C + bias, f32 accumulation, inputs f32/bf16/f16.
//
// Large shapes: Goto/BLIS-style GEMM. The output is cut into work units (row range x column range) that
// the pool runs independently; inside a unit, for each K block of KC, the unit's columns of B are packed
// into NR-wide k-major panels (kept in L2) and its rows of A into MR-tall panels (one stays in L1 while it
// sweeps the B panels), and a register-blocked micro-kernel computes each MR x NR tile. Packing does the
// transposes and the bf16/f16 -> f32 conversion, so the micro-kernels only ever see f32.
// Micro-kernels: AVX-512 12x32, AVX2+FMA 6x16, portable 4x16; chosen at run time.
//
// Few rows with a [N, K] weight (transB, M <= 16, the decode case): a GEMV path that streams each weight
// row once, converting it in registers, with the rows of N split over the pool.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

constexpr int64_t kKC = 384;  // K block: an A micro-panel (12 x 384 f32 = 18 KiB) fits L1
constexpr int64_t kNC = 512;  // columns per unit: a packed B block (384 x 512 f32 = 768 KiB) fits L2
constexpr int64_t kMC = 384;  // rows per unit (A is streamed, so this only sets the unit count)

// ---- buffers ------------------------------------------------------------------------------------------

// A growable 64-byte-aligned scratch buffer, one per thread, reused across calls.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  ~Scratch() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) fail("matmul: out of memory allocating ", bytes, " bytes of CPU scratch");
      cap = n;
    }
    return p;
  }
};
thread_local Scratch t_apack, t_bpack, t_cacc;

// ---- micro-kernels: tile[MR][NR] = sum_k a[k][0..MR) (x) b[k][0..NR) --------------------------------------

using UkrFn = void (*)(int64_t kc, const float* a, const float* b, float* tile);

struct Ukr {
  int mr, nr;
  UkrFn fn;
};

template <int MR, int NR>
static void ukr_portable(int64_t kc, const float* a, const float* b, float* tile) {
  float acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; k++, a += MR, b += NR)
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NR; j++) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) tile[i * NR + j] = acc[i][j];
}

#if defined(__x86_64__)
template <int MR>
PL_TARGET_AVX512 static void ukr_avx512(int64_t kc, const float* a, const float* b, float* tile) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++, a += MR, b += 32) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + 32 * 8), _MM_HINT_T0);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      __m512 av = _mm512_set1_ps(a[i]);
      c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    _mm512_store_ps(tile + i * 32, c0[i]);
    _mm512_store_ps(tile + i * 32 + 16, c1[i]);
  }
}

template <int MR>
PL_TARGET_AVX2 static void ukr_avx2(int64_t kc, const float* a, const float* b, float* tile) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++, a += MR, b += 16) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      __m256 av = _mm256_broadcast_ss(a + i);
      c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++) {
    _mm256_store_ps(tile + i * 16, c0[i]);
    _mm256_store_ps(tile + i * 16 + 8, c1[i]);
  }
}
#endif

Ukr pick_ukr() {
#if defined(__x86_64__)
  switch (isa()) {
    case Isa::Avx512: return {12, 32, ukr_avx512<12>};
    case Isa::Avx2: return {6, 16, ukr_avx2<6>};
    default: break;
  }
#endif
  return {4, 16, ukr_portable<4, 16>};
}

// ---- packing (transposes and conversion to f32 happen here) -----------------------------------------------

template <class E>
struct Src {
  const typename E::T* p;
  int64_t rows, cols;  // logical op(X) is [rows, cols]
  bool trans;          // stored transposed: element (r, c) at p[c * rows + r]
  int64_t ld() const { return trans ? rows : cols; }
};

// dst[k * MR + r] = op(A)[i0 + r, p0 + k], rows past m zero-filled.
template <class E>
static void pack_a(const Src<E>& A, int64_t i0, int64_t m, int64_t p0, int64_t kc, int MR, float* dst) {
  if (!A.trans) {
    for (int r = 0; r < MR; r++) {
      if (r < m) {
        const typename E::T* s = A.p + (i0 + r) * A.cols + p0;
        for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = E::load(s, k);
      } else {
        for (int64_t k = 0; k < kc; k++) dst[k * MR + r] = 0.f;
      }
    }
  } else {
    for (int64_t k = 0; k < kc; k++) {
      const typename E::T* s = A.p + (p0 + k) * A.rows + i0;
      int r = 0;
      for (; r < m; r++) dst[k * MR + r] = E::load(s, r);
      for (; r < MR; r++) dst[k * MR + r] = 0.f;
    }
  }
}

// dst[k * NR + c] = op(B)[p0 + k, j0 + c], columns past n zero-filled.
template <class E, int NR>
static void pack_b(const Src<E>& B, int64_t p0, int64_t kc, int64_t j0, int64_t n, float* dst) {
  if (!B.trans) {
    for (int64_t k = 0; k < kc; k++) {
      const typename E::T* s = B.p + (p0 + k) * B.cols + j0;
      float* d = dst + k * NR;
      if (n == NR) {
        for (int c = 0; c < NR; c++) d[c] = E::load(s, c);
      } else {
        int c = 0;
        for (; c < n; c++) d[c] = E::load(s, c);
        for (; c < NR; c++) d[c] = 0.f;
      }
    }
  } else {
    // Stored [N, K]: read each weight row along k, 8 k at a time so the writes stay within 8 lines.
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      for (int c = 0; c < NR; c++) {
        float* d = dst + k * NR + c;
        if (c < n) {
          const typename E::T* s = B.p + (j0 + c) * B.rows + p0 + k;
          for (int kk = 0; kk < 8; kk++) d[kk * NR] = E::load(s, kk);
        } else {
          for (int kk = 0; kk < 8; kk++) d[kk * NR] = 0.f;
        }
      }
    }
    for (; k < kc; k++)
      for (int c = 0; c < NR; c++) dst[k * NR + c] = c < n ? E::load(B.p + (j0 + c) * B.rows + p0 + k, 0) : 0.f;
  }
}

// ---- tile epilogue ------------------------------------------------------------------------------------------

enum class Store { Out, AddF32, AccSet, AccAdd, OutFromAcc };

// Out:        C = alpha * t + beta * C + bias (beta == 0 never reads C)
// AddF32:     C += alpha * t                       (later K blocks, f32 output)
// AccSet/Add: acc = t / acc += t                    (K blocks of a bf16/f16 output, kept in f32)
// OutFromAcc: C = alpha * (acc + t) + beta * C + bias
template <class E>
static void store_tile(Store mode, const float* t, int ldt, int64_t m, int64_t n, typename E::T* C, int64_t ldc,
                       float* acc, int64_t lda, float alpha, float beta, const float* bias) {
  for (int64_t i = 0; i < m; i++) {
    const float* tr = t + i * ldt;
    typename E::T* cr = C + i * ldc;
    float* ar = acc ? acc + i * lda : nullptr;
    switch (mode) {
      case Store::AccSet:
        for (int64_t j = 0; j < n; j++) ar[j] = tr[j];
        break;
      case Store::AccAdd:
        for (int64_t j = 0; j < n; j++) ar[j] += tr[j];
        break;
      case Store::AddF32:
        for (int64_t j = 0; j < n; j++) E::store(cr, j, E::load(cr, j) + alpha * tr[j]);
        break;
      case Store::Out:
      case Store::OutFromAcc: {
        float row[32];
        for (int64_t j = 0; j < n; j++) row[j] = alpha * (mode == Store::OutFromAcc ? ar[j] + tr[j] : tr[j]);
        if (beta != 0.f)
          for (int64_t j = 0; j < n; j++) row[j] += beta * E::load(cr, j);
        if (bias)
          for (int64_t j = 0; j < n; j++) row[j] += bias[j];
        for (int64_t j = 0; j < n; j++) E::store(cr, j, row[j]);
        break;
      }
    }
  }
}

// ---- blocked GEMM -------------------------------------------------------------------------------------------

template <class E>
static void gemm(const Ctx& ctx, const Src<E>& A, const Src<E>& B, const float* bias, typename E::T* C,
                 int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  const Ukr uk = pick_ukr();
  const int MR = uk.mr, NR = uk.nr;
  const int threads = ctx.pool ? ctx.pool->size() : 1;

  // Even K blocks of at most kKC.
  const int64_t kblocks = (K + kKC - 1) / kKC;
  const int64_t kc_max = (K + kblocks - 1) / kblocks;

  // Units: at most kMC x kNC, at least one per thread when the panels allow it, and a multiple of the
  // thread count when possible so no thread idles at the end.
  const int64_t mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;
  int64_t ms = std::min(mp, (M + kMC - 1) / kMC), ns = std::min(np, (N + kNC - 1) / kNC);
  if (int64_t(2) * M * N * K < int64_t(1) << 21) ms = ns = 1;  // tiny: not worth waking threads
  else {
    if (ms * ns < threads) ms = std::min(mp, (threads + ns - 1) / ns);
    if (ms * ns < threads) ns = std::min(np, (threads + ms - 1) / ms);
    int64_t total = ms * ns;
    if (total % threads) {
      int64_t want = (total + threads - 1) / threads * threads;
      int64_t ms2 = (want + ns - 1) / ns;
      if (ms2 <= mp && ms2 * ns % threads == 0) ms = ms2;
    }
  }
  const bool f32_out = std::is_same<E, F32T>::value;

  auto run_unit = [&](int64_t u) {
    const int64_t um = u / ns, un = u % ns;
    const int64_t i0 = (mp * um / ms) * MR, i1 = std::min(M, (mp * (um + 1) / ms) * MR);
    const int64_t j0 = (np * un / ns) * NR, j1 = std::min(N, (np * (un + 1) / ns) * NR);
    if (i0 >= i1 || j0 >= j1) return;
    const int64_t m = i1 - i0, n = j1 - j0;
    const int64_t mpan = (m + MR - 1) / MR, npan = (n + NR - 1) / NR;
    float* ap = t_apack.get(size_t(mpan * MR * kc_max));
    float* bp = t_bpack.get(size_t(npan * NR * kc_max));
    float* acc = (!f32_out && kblocks > 1) ? t_cacc.get(size_t(m * n)) : nullptr;
    alignas(64) float tile[16 * 32];

    for (int64_t kb = 0; kb < kblocks; kb++) {
      const int64_t p0 = K * kb / kblocks, kc = K * (kb + 1) / kblocks - p0;
      for (int64_t jp = 0; jp < npan; jp++) {
        const int64_t jj = j0 + jp * NR;
        if (NR == 32) pack_b<E, 32>(B, p0, kc, jj, std::min<int64_t>(NR, j1 - jj), bp + jp * NR * kc);
        else pack_b<E, 16>(B, p0, kc, jj, std::min<int64_t>(NR, j1 - jj), bp + jp * NR * kc);
      }
      for (int64_t ip = 0; ip < mpan; ip++) {
        const int64_t ii = i0 + ip * MR;
        pack_a<E>(A, ii, std::min<int64_t>(MR, i1 - ii), p0, kc, MR, ap + ip * MR * kc);
      }
      Store mode;
      if (f32_out) mode = kb == 0 ? Store::Out : Store::AddF32;
      else if (kblocks == 1) mode = Store::Out;
      else mode = kb == 0 ? Store::AccSet : (kb + 1 < kblocks ? Store::AccAdd : Store::OutFromAcc);

      for (int64_t ip = 0; ip < mpan; ip++) {
        const int64_t ii = i0 + ip * MR, mm = std::min<int64_t>(MR, i1 - ii);
        for (int64_t jp = 0; jp < npan; jp++) {
          const int64_t jj = j0 + jp * NR, nn = std::min<int64_t>(NR, j1 - jj);
          uk.fn(kc, ap + ip * MR * kc, bp + jp * NR * kc, tile);
          store_tile<E>(mode, tile, NR, mm, nn, C + ii * N + jj, N, acc ? acc + (ii - i0) * n + (jj - j0) : nullptr,
                        n, alpha, beta, bias ? bias + jj : nullptr);
        }
      }
    }
  };

  const int64_t units = ms * ns;
  if (units == 1 || threads <= 1) {
    for (int64_t u = 0; u < units; u++) run_unit(u);
  } else {
    ctx.pool->parallel_for(units, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; u++) run_unit(u);
    });
  }
}

// ---- GEMV path: M <= 16 rows of A against a [N, K] weight --------------------------------------------------

// out[m * ldo + (r - r0)] = dot(a[m, :K], w[r, :K]) for r in [r0, r1).
using GemvFn = void (*)(const float* a, int64_t M, const void* w, int64_t K, int64_t r0, int64_t r1, float* out,
                        int64_t ldo);

template <class E>
static void gemv_portable(const float* a, int64_t M, const void* wv, int64_t K, int64_t r0, int64_t r1, float* out,
                          int64_t ldo) {
  const typename E::T* w = static_cast<const typename E::T*>(wv);
  for (int64_t r = r0; r < r1; r++) {
    const typename E::T* wr = w + r * K;
    for (int64_t m = 0; m < M; m++) {
      const float* am = a + m * K;
      float s[8] = {};  // 8 partial sums: vectorizes without reassociating a single sum
      int64_t k = 0;
      for (; k + 8 <= K; k += 8)
        for (int l = 0; l < 8; l++) s[l] += am[k + l] * E::load(wr, k + l);
      float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
      for (; k < K; k++) t += am[k] * E::load(wr, k);
      out[m * ldo + (r - r0)] = t;
    }
  }
}

#if defined(__x86_64__)
template <class E>
PL_TARGET_AVX512 static inline __m512 load16(const typename E::T* p, __mmask16 mask) {
  if constexpr (std::is_same<E, F32T>::value) return _mm512_maskz_loadu_ps(mask, p);
  else if constexpr (std::is_same<E, BF16T>::value)
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
  else return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, p));
}

// One pass over 4 weight rows for MB activation rows (MB <= 4: at most 16 accumulators).
template <class E, int MB>
PL_TARGET_AVX512 static inline void gemv_block_avx512(const float* a, int64_t m0, const typename E::T* const* wr,
                                                      int rn, int64_t K, float* out, int64_t ldo) {
  constexpr int RB = 4;
  __m512 acc[MB][RB];
  for (int i = 0; i < MB; i++)
    for (int j = 0; j < RB; j++) acc[i][j] = _mm512_setzero_ps();
  const float* am = a + m0 * K;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 mask = K - k >= 16 ? __mmask16(0xffff) : __mmask16((1u << (K - k)) - 1);
    __m512 wv4[RB];
    for (int j = 0; j < RB; j++) wv4[j] = load16<E>(wr[j] + k, mask);
    for (int i = 0; i < MB; i++) {
      __m512 av = _mm512_maskz_loadu_ps(mask, am + i * K + k);
      for (int j = 0; j < RB; j++) acc[i][j] = _mm512_fmadd_ps(av, wv4[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; i++)
    for (int j = 0; j < rn; j++) out[(m0 + i) * ldo + j] = _mm512_reduce_add_ps(acc[i][j]);
}

template <class E>
PL_TARGET_AVX512 static void gemv_avx512(const float* a, int64_t M, const void* wv, int64_t K, int64_t r0, int64_t r1,
                                         float* out, int64_t ldo) {
  const typename E::T* w = static_cast<const typename E::T*>(wv);
  constexpr int RB = 4;
  for (int64_t r = r0; r < r1; r += RB) {
    const int rn = int(std::min<int64_t>(RB, r1 - r));
    const typename E::T* wr[RB];
    for (int i = 0; i < RB; i++) wr[i] = w + (r + (i < rn ? i : 0)) * K;
    float* o = out + (r - r0);
    int64_t m0 = 0;
    for (; m0 + 4 <= M; m0 += 4) gemv_block_avx512<E, 4>(a, m0, wr, rn, K, o, ldo);
    switch (M - m0) {
      case 3: gemv_block_avx512<E, 3>(a, m0, wr, rn, K, o, ldo); break;
      case 2: gemv_block_avx512<E, 2>(a, m0, wr, rn, K, o, ldo); break;
      case 1: gemv_block_avx512<E, 1>(a, m0, wr, rn, K, o, ldo); break;
      default: break;
    }
  }
}

template <class E>
PL_TARGET_AVX2 static inline __m256 load8(const typename E::T* p) {
  if constexpr (std::is_same<E, F32T>::value) return _mm256_loadu_ps(p);
  else if constexpr (std::is_same<E, BF16T>::value)
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  else return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

PL_TARGET_AVX2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class E, int MB>
PL_TARGET_AVX2 static inline void gemv_block_avx2(const float* a, int64_t m0, const typename E::T* const* wr, int rn,
                                                  int64_t K, float* out, int64_t ldo) {
  constexpr int RB = 4;  // MB <= 2: 8 accumulators of 16 registers
  const int64_t K8 = K / 8 * 8;
  const float* am = a + m0 * K;
  __m256 acc[MB][RB];
  for (int i = 0; i < MB; i++)
    for (int j = 0; j < RB; j++) acc[i][j] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 wv4[RB];
    for (int j = 0; j < RB; j++) wv4[j] = load8<E>(wr[j] + k);
    for (int i = 0; i < MB; i++) {
      __m256 av = _mm256_loadu_ps(am + i * K + k);
      for (int j = 0; j < RB; j++) acc[i][j] = _mm256_fmadd_ps(av, wv4[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MB; i++)
    for (int j = 0; j < rn; j++) {
      float s = hsum8(acc[i][j]);
      for (int64_t k = K8; k < K; k++) s += am[i * K + k] * E::load(wr[j], k);
      out[(m0 + i) * ldo + j] = s;
    }
}

template <class E>
PL_TARGET_AVX2 static void gemv_avx2(const float* a, int64_t M, const void* wv, int64_t K, int64_t r0, int64_t r1,
                                     float* out, int64_t ldo) {
  const typename E::T* w = static_cast<const typename E::T*>(wv);
  constexpr int RB = 4;
  for (int64_t r = r0; r < r1; r += RB) {
    const int rn = int(std::min<int64_t>(RB, r1 - r));
    const typename E::T* wr[RB];
    for (int i = 0; i < RB; i++) wr[i] = w + (r + (i < rn ? i : 0)) * K;
    float* o = out + (r - r0);
    int64_t m0 = 0;
    for (; m0 + 2 <= M; m0 += 2) gemv_block_avx2<E, 2>(a, m0, wr, rn, K, o, ldo);
    if (m0 < M) gemv_block_avx2<E, 1>(a, m0, wr, rn, K, o, ldo);
  }
}
#endif

template <class E>
GemvFn pick_gemv() {
#if defined(__x86_64__)
  switch (isa()) {
    case Isa::Avx512: return gemv_avx512<E>;
    case Isa::Avx2: return gemv_avx2<E>;
    default: break;
  }
#endif
  return gemv_portable<E>;
}

template <class E>
static void gemv(const Ctx& ctx, const Src<E>& A, const typename E::T* W, const float* bias, typename E::T* C,
                 int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  // Activations to f32 [M, K] (tiny next to the weight).
  std::vector<float> abuf;
  const float* a;
  if (std::is_same<E, F32T>::value && !A.trans) {
    a = reinterpret_cast<const float*>(A.p);
  } else {
    abuf.resize(size_t(M * K));
    for (int64_t m = 0; m < M; m++)
      for (int64_t k = 0; k < K; k++)
        abuf[m * K + k] = E::load(A.p, A.trans ? k * M + m : m * K + k);
    a = abuf.data();
  }
  const GemvFn fn = pick_gemv<E>();
  auto rows = [&](int64_t r0, int64_t r1) {
    constexpr int64_t kStrip = 64;  // output columns per pass, so `out` stays on the stack
    float out[16 * kStrip];
    for (int64_t s0 = r0; s0 < r1; s0 += kStrip) {
      const int64_t s1 = std::min(r1, s0 + kStrip);
      fn(a, M, W, K, s0, s1, out, kStrip);
      for (int64_t m = 0; m < M; m++) {
        typename E::T* cr = C + m * N;
        for (int64_t j = s0; j < s1; j++) {
          float v = alpha * out[m * kStrip + (j - s0)];
          if (beta != 0.f) v += beta * E::load(cr, j);
          if (bias) v += bias[j];
          E::store(cr, j, v);
        }
      }
    }
  };
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  const int64_t work = M * N * K;
  if (threads <= 1 || work < (int64_t(1) << 16)) {
    rows(0, N);
  } else {
    // Chunks of whole 4-row groups, at least ~32K multiply-adds each.
    int64_t grain = std::max<int64_t>(4, ((int64_t(1) << 15) / std::max<int64_t>(1, M * K) + 3) / 4 * 4);
    const int64_t groups = (N + 3) / 4;
    ctx.pool->parallel_for(groups, [&](int64_t g0, int64_t g1) { rows(g0 * 4, std::min(N, g1 * 4)); },
                           std::max<int64_t>(1, grain / 4));
  }
}

template <class E>
static void matmul_typed(const Ctx& ctx, const void* A, const void* B, const void* bias, void* C, int64_t M,
                         int64_t N, int64_t K, bool transA, bool transB, float alpha, float beta) {
  using T = typename E::T;
  std::vector<float> biasf;
  if (bias) {
    biasf.resize(size_t(N));
    for (int64_t j = 0; j < N; j++) biasf[j] = E::load(static_cast<const T*>(bias), j);
  }
  const float* bf = bias ? biasf.data() : nullptr;
  T* c = static_cast<T*>(C);
  if (K == 0) {  // no products: C = beta * C + bias
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        float v = (beta != 0.f ? beta * E::load(c, i * N + j) : 0.f) + (bf ? bf[j] : 0.f);
        E::store(c, i * N + j, v);
      }
    return;
  }
  Src<E> a{static_cast<const T*>(A), M, K, transA};
  Src<E> b{static_cast<const T*>(B), K, N, transB};
  if (transB && M <= 16) gemv<E>(ctx, a, static_cast<const T*>(B), bf, c, M, N, K, alpha, beta);
  else gemm<E>(ctx, a, b, bf, c, M, N, K, alpha, beta);
}

}  // namespace

void matmul(const Ctx& ctx, DType dt, const void* A, const void* B, const void* bias, void* C, int64_t M, int64_t N,
            int64_t K, bool transA, bool transB, float alpha, float beta) {
  if (M < 0 || N < 0 || K < 0) fail("matmul: negative size M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  if ((K > 0 && (!A || !B)) || !C)
    fail("matmul: null pointer (M=", M, " N=", N, " K=", K, ")");
  switch (dt) {
    case DType::F32: return matmul_typed<F32T>(ctx, A, B, bias, C, M, N, K, transA, transB, alpha, beta);
    case DType::BF16: return matmul_typed<BF16T>(ctx, A, B, bias, C, M, N, K, transA, transB, alpha, beta);
    case DType::F16: return matmul_typed<F16T>(ctx, A, B, bias, C, M, N, K, transA, transB, alpha, beta);
    default: fail("matmul: dtype ", dtype_name(dt), " is not supported (M=", M, " N=", N, " K=", K, ")");
  }
}

// rmsnorm then matmul through a scratch block of rows (the CUDA backend fuses the two for decode).
void rmsnorm_matmul(const Ctx& ctx, DType dt, const void* X, const void* norm_w, const void* B, const void* bias,
                    void* C, int64_t M, int64_t N, int64_t K, float eps, float alpha, float beta) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rmsnorm_matmul: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " N=", N, " K=", K, ")");
  if (M < 0 || N < 0 || K < 1) fail("rmsnorm_matmul: bad sizes M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  if (!X || !norm_w || !B || !C) fail("rmsnorm_matmul: null pointer (M=", M, " N=", N, " K=", K, ")");
  std::vector<float> h(size_t(M) * size_t(K));  // f32 words: room for either dtype, aligned for both
  rmsnorm(ctx, dt, X, norm_w, h.data(), nullptr, M, K, eps);
  matmul(ctx, dt, h.data(), B, bias, C, M, N, K, false, true, alpha, beta);
}

// layernorm then matmul (then gelu, in place) through a scratch block of rows (the CUDA backend can fuse
// them for GPT-2's decode).
void layernorm_matmul(const Ctx& ctx, DType dt, const void* X, const void* gamma, const void* beta, const void* B,
                      const void* bias, void* C, int64_t M, int64_t N, int64_t K, float eps, bool gelu_after) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("layernorm_matmul: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " N=", N, " K=", K, ")");
  if (M < 0 || N < 0 || K < 1) fail("layernorm_matmul: bad sizes M=", M, " N=", N, " K=", K);
  if (M == 0 || N == 0) return;
  if (!X || !B || !C || !gamma != !beta) fail("layernorm_matmul: null pointer (M=", M, " N=", N, " K=", K, ")");
  if (!gamma) {  // X is normalized already
    matmul(ctx, dt, X, B, bias, C, M, N, K, false, true, 1.f, 0.f);
  } else {
    std::vector<float> h(size_t(M) * size_t(K));  // f32 words: room for either dtype, aligned for both
    layernorm(ctx, dt, X, gamma, beta, h.data(), nullptr, nullptr, M, K, eps);
    matmul(ctx, dt, h.data(), B, bias, C, M, N, K, false, true, 1.f, 0.f);
  }
  if (gelu_after) gelu(ctx, dt, C, C, M * N);
}

// matmul with beta = 1 into the residual, then its norm (the CUDA backend fuses them for decode).
void matmul_residual_norm(const Ctx& ctx, DType dt, const void* A, const void* B, const void* bias, void* R,
                          const void* norm_w, const void* norm_b, void* H, uint32_t* counter, int64_t M, int64_t N,
                          int64_t K, float eps) {
  (void)counter;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("matmul_residual_norm: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " N=", N, " K=", K, ")");
  if (M < 0 || N < 1 || K < 1) fail("matmul_residual_norm: bad sizes M=", M, " N=", N, " K=", K);
  if (M == 0) return;
  if (!A || !B || !R || !norm_w || !H) fail("matmul_residual_norm: null pointer (M=", M, " N=", N, " K=", K, ")");
  matmul(ctx, dt, A, B, bias, R, M, N, K, false, true, 1.f, 1.f);
  if (norm_b) layernorm(ctx, dt, R, norm_w, norm_b, H, nullptr, nullptr, M, N, eps);
  else rmsnorm(ctx, dt, R, norm_w, H, nullptr, M, N, eps);
}

// rmsnorm_matmul into a scratch gate+up block, then silu_gate.
void rmsnorm_matmul_swiglu(const Ctx& ctx, DType dt, const void* X, const void* norm_w, const void* Wgu, void* C,
                           int64_t M, int64_t F, int64_t K, float eps) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rmsnorm_matmul_swiglu: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " F=", F, " K=", K,
         ")");
  if (M < 0 || F < 0 || K < 1) fail("rmsnorm_matmul_swiglu: bad sizes M=", M, " F=", F, " K=", K);
  if (M == 0 || F == 0) return;
  if (!X || !Wgu || !C) fail("rmsnorm_matmul_swiglu: null pointer (M=", M, " F=", F, " K=", K, ")");
  std::vector<float> gu(size_t(M) * size_t(2 * F));  // f32 words: room for either dtype
  if (norm_w) rmsnorm_matmul(ctx, dt, X, norm_w, Wgu, nullptr, gu.data(), M, 2 * F, K, eps, 1.f, 0.f);
  else matmul(ctx, dt, X, Wgu, nullptr, gu.data(), M, 2 * F, K, false, true, 1.f, 0.f);  // X is normalized already
  const size_t es = dtype_size(dt);
  silu_gate(ctx, dt, gu.data(), reinterpret_cast<const char*>(gu.data()) + size_t(F) * es, C, M, F, 2 * F);
}

}  // namespace parallm::cpu
