// Causal attention for prefill and decode, flash-style: keys are visited in blocks of kBK with an online
// softmax (running max m, running sum l, rescaled output accumulator), so memory stays O(rows * D).
//
// Both ops reduce to one routine, attend(): a few query rows (f32, pre-scaled) against keys [0, nkeys) of
// one KV head, row r seeing keys j <= limit + r. f32 caches are read in place, bf16 blocks converted to
// f32 rows first. Scores are 16-lane dot products and O[r][:] += P[r][j] * V[j][:] is an axpy, loops GCC
// vectorizes per ISA (PL_MULTIVERSION). (A transposed-K outer-product form measured slower: the transpose
// costs more than it saves at decode's few query rows, and no faster at prefill.)
// Prefill tasks are (batch, head, block of kBQ queries); decode tasks are (batch, KV head), whose query
// rows are the Hq/Hkv heads sharing that KV head, so each cache row is read once per group.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

constexpr int kBK = 64;  // keys per block
constexpr int kBQ = 32;  // prefill queries per task

struct AttnScratch {
  std::vector<float> q, kt, v, s, o, m, l;  // kt, v: one block of bf16 keys/values as f32 rows
  void size(int nq, int D) {
    q.resize(size_t(nq) * D);
    kt.resize(size_t(D) * kBK);
    v.resize(size_t(kBK) * D);
    s.resize(kBK);
    o.resize(size_t(nq) * D);
    m.resize(nq);
    l.resize(nq);
  }
};
thread_local AttnScratch t_scratch;

// bf16 keys/values of one block to f32 rows (f32 caches are read in place).
PL_INLINE void convert_rows(const uint16_t* src, int64_t j0, int bk, int64_t tstride, int D, float* dst) {
  for (int jj = 0; jj < bk; jj++) {
    const uint16_t* r = src + (j0 + jj) * tstride;
    for (int d = 0; d < D; d++) dst[jj * D + d] = bf16_load(r[d]);
  }
}

// dot product with 16 independent lanes (vectorizes without reassociation), then a fixed-order sum
PL_INLINE float dot(const float* a, const float* b, int D) {
  float acc[16] = {};
  int d = 0;
  for (; d + 16 <= D; d += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[d + l] * b[d + l];
  for (int l = 0; d < D; d++, l++) acc[l] += a[d] * b[d];
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

// q: nq rows of D (f32, already scaled). k, v: the head's first row, rows tstride apart. out rows
// out_stride apart. Row r attends keys j < nkeys with j <= limit + r.
PL_INLINE void attend_body(DType dt, const float* q, int nq, const void* k, const void* v, int64_t tstride,
                           int64_t nkeys, int64_t limit, int D, void* out, int64_t out_stride, float* kt, float* vb,
                           float* s, float* o, float* m, float* l) {
  for (int r = 0; r < nq; r++) {
    m[r] = -INFINITY;
    l[r] = 0.f;
  }
  for (int64_t i = 0; i < int64_t(nq) * D; i++) o[i] = 0.f;
  const int64_t kend = std::min(nkeys, limit + nq);  // keys any row can see
  for (int64_t j0 = 0; j0 < kend; j0 += kBK) {
    const int bk = int(std::min<int64_t>(kBK, kend - j0));
    // key/value rows of this block as f32: in place for f32, converted for bf16
    const float* kr0;
    const float* vr0;
    int64_t rs;
    if (dt == DType::F32) {
      kr0 = static_cast<const float*>(k) + j0 * tstride;
      vr0 = static_cast<const float*>(v) + j0 * tstride;
      rs = tstride;
    } else {
      convert_rows(static_cast<const uint16_t*>(k), j0, bk, tstride, D, kt);
      convert_rows(static_cast<const uint16_t*>(v), j0, bk, tstride, D, vb);
      kr0 = kt;
      vr0 = vb;
      rs = D;
    }
    for (int r = 0; r < nq; r++) {
      const int vis = int(std::min<int64_t>(bk, limit + r - j0 + 1));
      if (vis <= 0) continue;
      const float* qr = q + int64_t(r) * D;
      for (int jj = 0; jj < vis; jj++) s[jj] = dot(qr, kr0 + jj * rs, D);
      for (int jj = vis; jj < kBK; jj++) s[jj] = -INFINITY;
      float mx[16];
      for (int t = 0; t < 16; t++) mx[t] = s[t];
      for (int c = 16; c < kBK; c += 16)
        for (int t = 0; t < 16; t++) mx[t] = s[c + t] > mx[t] ? s[c + t] : mx[t];
      float bmax = mx[0];
      for (int t = 1; t < 16; t++) bmax = mx[t] > bmax ? mx[t] : bmax;
      const float mnew = bmax > m[r] ? bmax : m[r];
      const float corr = fast_exp(m[r] - mnew);  // 0 on the first block (m = -inf)
      float ps[16] = {};
      for (int c = 0; c < kBK; c += 16)
        for (int t = 0; t < 16; t++) {
          const float p = fast_exp(s[c + t] - mnew);
          s[c + t] = p;
          ps[t] += p;
        }
      float psum = 0.f;
      for (int t = 0; t < 16; t++) psum += ps[t];
      l[r] = l[r] * corr + psum;
      m[r] = mnew;
      float* orow = o + int64_t(r) * D;
      if (corr != 1.0f)
        for (int d = 0; d < D; d++) orow[d] *= corr;
      for (int jj = 0; jj < vis; jj++) {
        const float p = s[jj];
        const float* vr = vr0 + jj * rs;
        for (int d = 0; d < D; d++) orow[d] += p * vr[d];
      }
    }
  }
  for (int r = 0; r < nq; r++) {
    const float inv = l[r] > 0.f ? 1.0f / l[r] : 0.f;
    const float* orow = o + int64_t(r) * D;
    if (dt == DType::F32) {
      float* y = static_cast<float*>(out) + r * out_stride;
      for (int d = 0; d < D; d++) y[d] = orow[d] * inv;
    } else {
      uint16_t* y = static_cast<uint16_t*>(out) + r * out_stride;
      for (int d = 0; d < D; d++) y[d] = bf16_store(orow[d] * inv);
    }
  }
}
PL_MULTIVERSION(void, attend,
                (DType dt, const float* q, int nq, const void* k, const void* v, int64_t tstride, int64_t nkeys,
                 int64_t limit, int D, void* out, int64_t out_stride, float* kt, float* vb, float* s, float* o,
                 float* m, float* l),
                (dt, q, nq, k, v, tstride, nkeys, limit, D, out, out_stride, kt, vb, s, o, m, l))

// nq query rows (rows `stride` apart) to f32, times scale.
void load_q(DType dt, const void* q, int64_t first, int64_t stride, int nq, int D, float scale, float* dst) {
  for (int r = 0; r < nq; r++) {
    const int64_t base = first + r * stride;
    if (dt == DType::F32) {
      const float* src = static_cast<const float*>(q) + base;
      for (int d = 0; d < D; d++) dst[r * D + d] = src[d] * scale;
    } else {
      const uint16_t* src = static_cast<const uint16_t*>(q) + base;
      for (int d = 0; d < D; d++) dst[r * D + d] = bf16_load(src[d]) * scale;
    }
  }
}

void check_common(const char* op, DType dt, int B, int Hq, int Hkv, int D) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail(op, ": dtype ", dtype_name(dt), " is not supported (B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, ")");
  if (Hkv <= 0 || Hq <= 0 || Hq % Hkv != 0)
    fail(op, ": Hq=", Hq, " must be a positive multiple of Hkv=", Hkv, " (B=", B, " D=", D, ")");
  if (D <= 0) fail(op, ": D=", D, " must be positive (B=", B, " Hq=", Hq, ")");
}

}  // namespace

void attention_prefill(const Ctx& ctx, DType dt, const void* q, const void* k, const void* v, void* out, int B, int Tq,
                       int Tk, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                       int64_t kv_tstride, float scale) {
  if (B < 0 || Tq < 0 || Tk < 0 || Hq < 0 || Hkv < 0 || D < 0)
    fail("attention_prefill: negative size B=", B, " Tq=", Tq, " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  if (B == 0 || Tq == 0) return;
  check_common("attention_prefill", dt, B, Hq, Hkv, D);
  if (Tk < Tq) fail("attention_prefill: Tk=", Tk, " must be >= Tq=", Tq, " (B=", B, " Hq=", Hq, " D=", D, ")");
  if (!q || !k || !v || !out) fail("attention_prefill: null pointer (B=", B, " Tq=", Tq, " Tk=", Tk, ")");
  const int G = Hq / Hkv;
  const int64_t off = int64_t(Tk) - Tq;
  const int nqb = (Tq + kBQ - 1) / kBQ;
  // Tasks ordered query-block-major, latest (most keys) first, so the dynamic chunks end with small ones.
  const int64_t tasks = int64_t(nqb) * B * Hq;
  const int64_t work = int64_t(B) * Hq * Tq * (off + (Tq + 1) / 2) * D * 4;
  const size_t es = dtype_size(dt);
  auto run = [&](int64_t t0, int64_t t1) {
    AttnScratch& sc = t_scratch;
    sc.size(kBQ, D);
    for (int64_t t = t0; t < t1; t++) {
      const int qb = nqb - 1 - int(t / (int64_t(B) * Hq));
      const int b = int((t / Hq) % B), h = int(t % Hq), g = h / G;
      const int i0 = qb * kBQ, nq = std::min(kBQ, Tq - i0);
      load_q(dt, q, b * q_bstride + int64_t(i0) * q_tstride + int64_t(h) * D, q_tstride, nq, D, scale, sc.q.data());
      const int64_t kv0 = (b * kv_bstride + int64_t(g) * D) * int64_t(es);
      const char* kp = static_cast<const char*>(k) + kv0;
      const char* vp = static_cast<const char*>(v) + kv0;
      char* op = static_cast<char*>(out) + ((int64_t(b) * Tq + i0) * Hq + h) * D * int64_t(es);
      attend(dt, sc.q.data(), nq, kp, vp, kv_tstride, Tk, off + i0, D, op, int64_t(Hq) * D, sc.kt.data(), sc.v.data(),
             sc.s.data(), sc.o.data(), sc.m.data(), sc.l.data());
    }
  };
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  if (threads <= 1 || tasks == 1 || work < (int64_t(1) << 16)) run(0, tasks);
  else ctx.pool->parallel_for(tasks, run, 1);
}

void attention_decode(const Ctx& ctx, DType dt, const void* q, const void* k, const void* v, const int32_t* lens,
                      void* out, int B, int Hq, int Hkv, int D, int64_t q_bstride, int64_t kv_bstride,
                      int64_t kv_tstride, int max_len, float scale) {
  if (B < 0 || Hq < 0 || Hkv < 0 || D < 0 || max_len < 0)
    fail("attention_decode: negative size B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " max_len=", max_len);
  if (B == 0) return;
  check_common("attention_decode", dt, B, Hq, Hkv, D);
  if (!q || !k || !v || !out || !lens) fail("attention_decode: null pointer (B=", B, " Hq=", Hq, " D=", D, ")");
  int64_t total_len = 0;
  for (int b = 0; b < B; b++) {
    if (lens[b] < 1 || lens[b] > max_len)
      fail("attention_decode: lens[", b, "]=", lens[b], " is outside [1, max_len=", max_len, "] (B=", B, ")");
    total_len += lens[b];
  }
  const int G = Hq / Hkv;
  const size_t es = dtype_size(dt);
  const int64_t tasks = int64_t(B) * Hkv;
  auto run = [&](int64_t t0, int64_t t1) {
    AttnScratch& sc = t_scratch;
    sc.size(G, D);
    for (int64_t t = t0; t < t1; t++) {
      const int b = int(t / Hkv), g = int(t % Hkv);
      load_q(dt, q, b * q_bstride + int64_t(g) * G * D, D, G, D, scale, sc.q.data());
      const int64_t kv0 = (b * kv_bstride + int64_t(g) * D) * int64_t(es);
      const char* kp = static_cast<const char*>(k) + kv0;
      const char* vp = static_cast<const char*>(v) + kv0;
      char* op = static_cast<char*>(out) + (int64_t(b) * Hq + int64_t(g) * G) * D * int64_t(es);
      attend(dt, sc.q.data(), G, kp, vp, kv_tstride, lens[b], int64_t(lens[b]), D, op, D, sc.kt.data(), sc.v.data(),
             sc.s.data(), sc.o.data(), sc.m.data(), sc.l.data());
    }
  };
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  const int64_t work = total_len * Hq * D * 4;
  if (threads <= 1 || tasks == 1 || work < (int64_t(1) << 16)) run(0, tasks);
  else ctx.pool->parallel_for(tasks, run, 1);
}

}  // namespace parallm::cpu
