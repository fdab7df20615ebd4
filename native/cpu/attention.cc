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
// attention_forward is prefill that also stores each row's log-sum-exp; attention_backward is at the end.
#include <algorithm>
#include <cmath>
#include <functional>
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
                           float* s, float* o, float* m, float* l, float* lse) {
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
    if (lse) lse[r] = m[r] + std::log(l[r]);  // m, l: of the scaled scores (q comes pre-scaled)
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
                 float* m, float* l, float* lse),
                (dt, q, nq, k, v, tstride, nkeys, limit, D, out, out_stride, kt, vb, s, o, m, l, lse))

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

namespace {

// attention_prefill, and attention_forward when lse (f32 [B, Hq, Tq]) is given; `opname` names the caller.
void prefill_impl(const Ctx& ctx, const char* opname, DType dt, const void* q, const void* k, const void* v, void* out,
                  float* lse, int B, int Tq, int Tk, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride,
                  int64_t kv_bstride, int64_t kv_tstride, float scale) {
  if (B < 0 || Tq < 0 || Tk < 0 || Hq < 0 || Hkv < 0 || D < 0)
    fail(opname, ": negative size B=", B, " Tq=", Tq, " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  if (B == 0 || Tq == 0) return;
  check_common(opname, dt, B, Hq, Hkv, D);
  if (Tk < Tq) fail(opname, ": Tk=", Tk, " must be >= Tq=", Tq, " (B=", B, " Hq=", Hq, " D=", D, ")");
  if (!q || !k || !v || !out) fail(opname, ": null pointer (B=", B, " Tq=", Tq, " Tk=", Tk, ")");
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
             sc.s.data(), sc.o.data(), sc.m.data(), sc.l.data(),
             lse ? lse + (int64_t(b) * Hq + h) * Tq + i0 : nullptr);
    }
  };
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  if (threads <= 1 || tasks == 1 || work < (int64_t(1) << 16)) run(0, tasks);
  else ctx.pool->parallel_for(tasks, run, 1);
}

}  // namespace

void attention_prefill(const Ctx& ctx, DType dt, const void* q, const void* k, const void* v, void* out, int B, int Tq,
                       int Tk, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                       int64_t kv_tstride, float scale) {
  prefill_impl(ctx, "attention_prefill", dt, q, k, v, out, nullptr, B, Tq, Tk, Hq, Hkv, D, q_bstride, q_tstride,
               kv_bstride, kv_tstride, scale);
}

void attention_forward(const Ctx& ctx, DType dt, const void* q, const void* k, const void* v, void* out, float* lse,
                       int B, int T, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                       int64_t kv_tstride, float scale) {
  if (!lse && B > 0 && T > 0) fail("attention_forward: null lse (B=", B, " T=", T, " Hq=", Hq, ")");
  prefill_impl(ctx, "attention_forward", dt, q, k, v, out, lse, B, T, T, Hq, Hkv, D, q_bstride, q_tstride, kv_bstride,
               kv_tstride, scale);
}

void attention_decode(const Ctx& ctx, DType dt, const void* q, const void* k, const void* v, const int32_t* lens,
                      void* out, int B, int Hq, int Hkv, int D, int64_t q_bstride, int64_t kv_bstride,
                      int64_t kv_tstride, int max_len, float scale, uint32_t*) {
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
             sc.s.data(), sc.o.data(), sc.m.data(), sc.l.data(), nullptr);
    }
  };
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  const int64_t work = total_len * Hq * D * 4;
  if (threads <= 1 || tasks == 1 || work < (int64_t(1) << 16)) run(0, tasks);
  else ctx.pool->parallel_for(tasks, run, 1);
}

// ---- attention backward ------------------------------------------------------------------------------------
// Two passes, each of independent tasks, so no sum crosses threads and the bits never depend on the split:
//   dq: tasks (batch, q head, block of kBQ queries); each query row walks its keys in order.
//   dk, dv: tasks (batch, kv head, block of kBQ keys); each key row sums over the group's q heads in order,
//   then over queries i >= j in order.
// Both recompute P = exp(q.k scale - lse) exactly as the forward formed the score (q pre-scaled in f32, the
// same dot), and both read D_i = rowsum(dout * out), computed first into the workspace.
namespace {

// Rows [0, n) of one head as f32 rows D apart: in place for f32 (rows `tstride` apart), converted for bf16.
struct RowsF32 {
  const float* p;
  int64_t stride;
};
PL_INLINE RowsF32 rows_f32(DType dt, const void* base, int64_t first, int64_t tstride, int64_t n, int D,
                           std::vector<float>& buf) {
  if (dt == DType::F32) return {static_cast<const float*>(base) + first, tstride};
  buf.resize(size_t(n) * D);
  const uint16_t* src = static_cast<const uint16_t*>(base) + first;
  for (int64_t j = 0; j < n; j++)
    for (int d = 0; d < D; d++) buf[size_t(j) * D + d] = bf16_load(src[j * tstride + d]);
  return {buf.data(), D};
}

PL_INLINE void store_row(DType dt, void* base, int64_t first, const float* src, int D, float mul) {
  if (dt == DType::F32) {
    float* y = static_cast<float*>(base) + first;
    for (int d = 0; d < D; d++) y[d] = src[d] * mul;
  } else {
    uint16_t* y = static_cast<uint16_t*>(base) + first;
    for (int d = 0; d < D; d++) y[d] = bf16_store(src[d] * mul);
  }
}

// dq rows i0 .. i0+nq-1 of one (b, h): qs, dO are nq f32 rows of D (qs pre-scaled); K, V the head's keys.
PL_INLINE void attn_bwd_dq_body(const float* qs, const float* dO, const float* lse, const float* Di, RowsF32 K,
                                RowsF32 V, int i0, int nq, int D, float* acc, float* dq_out, int64_t dq_stride,
                                float scale) {
  for (int r = 0; r < nq; r++) {
    const int i = i0 + r;
    const float* qr = qs + int64_t(r) * D;
    const float* dr = dO + int64_t(r) * D;
    for (int d = 0; d < D; d++) acc[d] = 0.f;
    for (int j = 0; j <= i; j++) {
      const float* kj = K.p + j * K.stride;
      const float p = fast_exp(dot(qr, kj, D) - lse[r]);
      const float ds = p * (dot(dr, V.p + j * V.stride, D) - Di[r]);
      for (int d = 0; d < D; d++) acc[d] += ds * kj[d];
    }
    for (int d = 0; d < D; d++) dq_out[r * dq_stride + d] = acc[d] * scale;
  }
}
PL_MULTIVERSION(void, attn_bwd_dq,
                (const float* qs, const float* dO, const float* lse, const float* Di, RowsF32 K, RowsF32 V, int i0,
                 int nq, int D, float* acc, float* dq_out, int64_t dq_stride, float scale),
                (qs, dO, lse, Di, K, V, i0, nq, D, acc, dq_out, dq_stride, scale))

// dk, dv of keys j0 .. j0+nk-1 from one q head's queries i >= j0: Q (pre-scaled) and dO its rows [0, T).
PL_INLINE void attn_bwd_dkv_body(RowsF32 Q, RowsF32 dO, const float* lse, const float* Di, const float* kb,
                                 const float* vb, int j0, int nk, int T, int D, float* dk, float* dv) {
  for (int i = j0; i < T; i++) {
    const float* qi = Q.p + int64_t(i) * Q.stride;
    const float* di = dO.p + int64_t(i) * dO.stride;
    const int jend = std::min(nk, i - j0 + 1);
    for (int jj = 0; jj < jend; jj++) {
      const float p = fast_exp(dot(qi, kb + int64_t(jj) * D, D) - lse[i]);
      const float ds = p * (dot(di, vb + int64_t(jj) * D, D) - Di[i]);
      float* dkr = dk + int64_t(jj) * D;
      float* dvr = dv + int64_t(jj) * D;
      for (int d = 0; d < D; d++) {
        dkr[d] += ds * qi[d];
        dvr[d] += p * di[d];
      }
    }
  }
}
PL_MULTIVERSION(void, attn_bwd_dkv,
                (RowsF32 Q, RowsF32 dO, const float* lse, const float* Di, const float* kb, const float* vb, int j0,
                 int nk, int T, int D, float* dk, float* dv),
                (Q, dO, lse, Di, kb, vb, j0, nk, T, D, dk, dv))

}  // namespace

void attention_backward(const Ctx& ctx, DType dt, const void* q, const void* k, const void* v, const void* out,
                        const void* dout, const float* lse, void* dq, void* dk, void* dv, float* workspace, int B,
                        int T, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                        int64_t kv_tstride, float scale) {
  if (B < 0 || T < 0 || Hq < 0 || Hkv < 0 || D < 0)
    fail("attention_backward: negative size B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  if (B == 0 || T == 0) return;
  check_common("attention_backward", dt, B, Hq, Hkv, D);
  if (!q || !k || !v || !out || !dout || !lse || !dq || !dk || !dv || !workspace)
    fail("attention_backward: null pointer (B=", B, " T=", T, " Hq=", Hq, " D=", D, ")");
  const int G = Hq / Hkv;
  const int64_t rows = int64_t(B) * Hq * T;  // (b, h, i), the layout of lse
  float* Di = workspace;
  const int64_t work = int64_t(B) * Hq * (int64_t(T) * (T + 1) / 2) * D * 6;
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  auto run = [&](int64_t tasks, const std::function<void(int64_t, int64_t)>& fn) {
    if (threads <= 1 || tasks == 1 || work < (int64_t(1) << 16)) fn(0, tasks);
    else ctx.pool->parallel_for(tasks, fn, 1);
  };
  // D_i = rowsum(dout * out) per (b, h, i); out, dout contiguous [B, T, Hq, D].
  parallel_rows(ctx, rows, rows * D * 2, [&](int64_t r0, int64_t r1) {
    std::vector<float> a(static_cast<size_t>(D)), c(static_cast<size_t>(D));
    for (int64_t r = r0; r < r1; r++) {
      const int64_t b = r / (int64_t(Hq) * T), h = (r / T) % Hq, i = r % T;
      const int64_t at = ((b * T + i) * Hq + h) * D;
      load_q(dt, out, at, 0, 1, D, 1.0f, a.data());
      load_q(dt, dout, at, 0, 1, D, 1.0f, c.data());
      Di[r] = dot(a.data(), c.data(), D);
    }
  });
  // dq
  const int nqb = (T + kBQ - 1) / kBQ;
  run(int64_t(nqb) * B * Hq, [&](int64_t t0, int64_t t1) {
    std::vector<float> qs(static_cast<size_t>(kBQ) * D), dO(static_cast<size_t>(kBQ) * D), acc(static_cast<size_t>(D)), kbuf,
        vbuf, tmp;
    for (int64_t t = t0; t < t1; t++) {
      const int qb = nqb - 1 - int(t / (int64_t(B) * Hq));  // most keys first
      const int b = int((t / Hq) % B), h = int(t % Hq), g = h / G;
      const int i0 = qb * kBQ, nq = std::min(kBQ, T - i0);
      load_q(dt, q, b * q_bstride + int64_t(i0) * q_tstride + int64_t(h) * D, q_tstride, nq, D, scale, qs.data());
      load_q(dt, dout, ((int64_t(b) * T + i0) * Hq + h) * D, int64_t(Hq) * D, nq, D, 1.0f, dO.data());
      const int64_t kv0 = b * kv_bstride + int64_t(g) * D;
      const int64_t nk = i0 + nq;
      RowsF32 K = rows_f32(dt, k, kv0, kv_tstride, nk, D, kbuf);
      RowsF32 V = rows_f32(dt, v, kv0, kv_tstride, nk, D, vbuf);
      const int64_t r0 = (int64_t(b) * Hq + h) * T + i0;
      float* dst;
      int64_t dst_stride;
      if (dt == DType::F32) {
        dst = static_cast<float*>(dq) + b * q_bstride + int64_t(i0) * q_tstride + int64_t(h) * D;
        dst_stride = q_tstride;
      } else {
        tmp.resize(size_t(nq) * D);
        dst = tmp.data();
        dst_stride = D;
      }
      attn_bwd_dq(qs.data(), dO.data(), lse + r0, Di + r0, K, V, i0, nq, D, acc.data(), dst, dst_stride, scale);
      if (dt != DType::F32)
        for (int r = 0; r < nq; r++)
          store_row(dt, dq, b * q_bstride + int64_t(i0 + r) * q_tstride + int64_t(h) * D, tmp.data() + r * D, D, 1.f);
    }
  });
  // dk, dv
  run(int64_t(nqb) * B * Hkv, [&](int64_t t0, int64_t t1) {
    std::vector<float> dkacc(static_cast<size_t>(kBQ) * D), dvacc(static_cast<size_t>(kBQ) * D), kb, vb, qbuf, dbuf;
    for (int64_t t = t0; t < t1; t++) {
      const int jb = int(t / (int64_t(B) * Hkv));  // fewest queries last
      const int b = int((t / Hkv) % B), g = int(t % Hkv);
      const int j0 = jb * kBQ, nk = std::min(kBQ, T - j0);
      const int64_t kv0 = b * kv_bstride + int64_t(j0) * kv_tstride + int64_t(g) * D;
      kb.resize(size_t(nk) * D);
      vb.resize(size_t(nk) * D);
      load_q(dt, k, kv0, kv_tstride, nk, D, 1.0f, kb.data());
      load_q(dt, v, kv0, kv_tstride, nk, D, 1.0f, vb.data());
      std::fill(dkacc.begin(), dkacc.end(), 0.f);
      std::fill(dvacc.begin(), dvacc.end(), 0.f);
      for (int hh = 0; hh < G; hh++) {
        const int h = g * G + hh;
        // the queries that see these keys, i in [j0, T), pre-scaled as in the forward
        qbuf.resize(size_t(T) * D);
        dbuf.resize(size_t(T) * D);
        load_q(dt, q, b * q_bstride + int64_t(j0) * q_tstride + int64_t(h) * D, q_tstride, T - j0, D, scale,
               qbuf.data() + size_t(j0) * D);
        load_q(dt, dout, ((int64_t(b) * T + j0) * Hq + h) * D, int64_t(Hq) * D, T - j0, D, 1.0f,
               dbuf.data() + size_t(j0) * D);
        const int64_t r0 = (int64_t(b) * Hq + h) * T;
        attn_bwd_dkv(RowsF32{qbuf.data(), D}, RowsF32{dbuf.data(), D}, lse + r0, Di + r0, kb.data(), vb.data(), j0,
                     nk, T, D, dkacc.data(), dvacc.data());
      }
      for (int jj = 0; jj < nk; jj++) {
        const int64_t at = kv0 + int64_t(jj) * kv_tstride;
        store_row(dt, dk, at, dkacc.data() + size_t(jj) * D, D, 1.f);
        store_row(dt, dv, at, dvacc.data() + size_t(jj) * D, D, 1.f);
      }
    }
  });
}

}  // namespace parallm::cpu
