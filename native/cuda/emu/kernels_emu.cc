// The training kernels of native/cuda (the .cu files rewritten by rewrite.py, run through emu.h) against
// float64 references on random inputs, outputs poisoned first where they are "=", f32 and bf16, sizes that
// reach the kernels' several paths (multi-chunk column sums, several rows a block, the sort's global
// stages, ignored rows, in place). Built and run by run.sh; exits non-zero on a failure.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include <cuda_bf16.h>

#include "attention_ref.h"
#include "kernels.h"

using parallm::DType;
namespace pc = parallm::cuda;
using bf16 = __nv_bfloat16;

static std::mt19937 rng(12345);
static bool all_ok = true;

// A buffer of n elements of dt holding values (rounded to dt), read back as float.
struct Buf {
  DType dt;
  std::vector<float> f;
  std::vector<bf16> h;
  Buf(DType d, size_t n, float lo = -1, float hi = 1) : dt(d), f(n), h(n) {
    std::uniform_real_distribution<float> U(lo, hi);
    for (size_t i = 0; i < n; ++i) set(i, U(rng));
  }
  void set(size_t i, float v) {
    if (dt == DType::BF16) h[i] = __float2bfloat16_rn(v), f[i] = __bfloat162float(h[i]);
    else f[i] = v;
  }
  void poison() { for (size_t i = 0; i < f.size(); ++i) set(i, NAN); }
  void* p() { return dt == DType::BF16 ? static_cast<void*>(h.data()) : static_cast<void*>(f.data()); }
  std::vector<float> get() const {
    if (dt != DType::BF16) return f;
    std::vector<float> o(h.size());
    for (size_t i = 0; i < h.size(); ++i) o[i] = __bfloat162float(h[i]);
    return o;
  }
  double operator[](size_t i) const { return f[i]; }  // the stored input value
};

static void check(const char* what, DType dt, const std::vector<float>& o, const std::vector<double>& r, double tol_f32 = 1e-5) {
  double n = 0, d = 0;
  bool finite = true;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!std::isfinite(o[i])) finite = false;
    n += (o[i] - r[i]) * (o[i] - r[i]);
    d += r[i] * r[i];
  }
  const double e = finite ? std::sqrt(d > 0 ? n / d : n) : INFINITY;
  const double tol = dt == DType::BF16 ? 1e-2 : tol_f32;
  const bool ok = e <= tol;
  all_ok &= ok;
  std::printf("  %-52s %-4s rel. error %.2e (bound %.0e) %s\n", what, dt == DType::BF16 ? "bf16" : "f32", e, tol, ok ? "ok" : "FAIL");
}

static void sum_rows(DType dt, int64_t R, int64_t C, bool acc) {
  Buf x(dt, R * C), out(dt, C);
  std::vector<double> ref(C);
  for (int64_t c = 0; c < C; ++c) {
    double s = acc ? out[c] : 0;
    for (int64_t r = 0; r < R; ++r) s += x[r * C + c];
    ref[c] = s;
  }
  if (!acc) out.poison();
  pc::sum_rows(nullptr, dt, x.p(), out.p(), R, C, acc);
  char w[96];
  std::snprintf(w, sizeof w, "sum_rows %ldx%ld%s", long(R), long(C), acc ? " accumulate" : "");
  check(w, dt, out.get(), ref);
}

// dsum: 0 none, 1 layernorm_backward_dsum storing the dx sums, 2 adding them.
static void norm_bwd(DType dt, int64_t R, int64_t C, bool rms, int dsum = 0) {
  Buf x(dt, R * C, -2, 3), dy(dt, R * C), g(dt, C, 0.5, 1.5), dx(dt, R * C), dg(dt, C), db(dt, C);
  std::vector<float> mean(R), rstd(R);
  for (int64_t r = 0; r < R; ++r) {
    double m = 0, q = 0;
    for (int64_t c = 0; c < C; ++c) m += x[r * C + c];
    m = rms ? 0 : m / C;
    for (int64_t c = 0; c < C; ++c) q += (x[r * C + c] - m) * (x[r * C + c] - m);
    mean[r] = float(m), rstd[r] = float(1 / std::sqrt(q / C + 1e-5));
  }
  std::vector<double> rdx(R * C), rdg(C), rdb(C);
  for (int64_t c = 0; c < C; ++c) rdg[c] = dg[c], rdb[c] = db[c];
  for (int64_t r = 0; r < R; ++r) {
    double m1 = 0, m2 = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (x[r * C + c] - mean[r]) * rstd[r], gg = dy[r * C + c] * g[c];
      m1 += gg, m2 += gg * xh;
      rdg[c] += dy[r * C + c] * xh, rdb[c] += dy[r * C + c];
    }
    m1 = rms ? 0 : m1 / C, m2 /= C;
    for (int64_t c = 0; c < C; ++c) {
      const double xh = (x[r * C + c] - mean[r]) * rstd[r], gg = dy[r * C + c] * g[c];
      rdx[r * C + c] = dx[r * C + c] + rstd[r] * (gg - m1 - xh * m2);
    }
  }
  char w[96];
  std::snprintf(w, sizeof w, "%s_backward %ldx%ld%s", rms ? "rmsnorm" : "layernorm", long(R), long(C),
                dsum == 0 ? "" : dsum == 1 ? " + dx sums" : " + dx sums added");
  Buf ds(dt, C);
  std::vector<double> rds(C);
  for (int64_t c = 0; c < C; ++c) rds[c] = dsum == 2 ? ds[c] : 0;
  if (dsum == 1) ds.poison();
  if (rms) pc::rmsnorm_backward(nullptr, dt, dy.p(), x.p(), g.p(), rstd.data(), dx.p(), dg.p(), R, C);
  else if (dsum) pc::layernorm_backward_dsum(nullptr, dt, dy.p(), x.p(), g.p(), mean.data(), rstd.data(), dx.p(), dg.p(), db.p(), ds.p(), dsum == 2, R, C);
  else pc::layernorm_backward(nullptr, dt, dy.p(), x.p(), g.p(), mean.data(), rstd.data(), dx.p(), dg.p(), db.p(), R, C);
  check((std::string(w) + " dx").c_str(), dt, dx.get(), rdx);
  check((std::string(w) + (rms ? " dw" : " dgamma")).c_str(), dt, dg.get(), rdg);
  if (!rms) check((std::string(w) + " dbeta").c_str(), dt, db.get(), rdb);
  if (dsum) {  // the sums of the dx left, as stored
    const std::vector<float> got = dx.get();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) rds[c] += got[r * C + c];
    check((std::string(w) + " dsum").c_str(), dt, ds.get(), rds);
  }
}

static void gelu_silu(DType dt, int64_t n, int64_t R, int64_t F) {
  Buf x(dt, n, -6, 6), dy(dt, n);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) {
    const double k = std::sqrt(2 / M_PI), a = x[i], u = k * (a + 0.044715 * a * a * a), t = std::tanh(u);
    ref[i] = dy[i] * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * k * (1 + 3 * 0.044715 * a * a));
  }
  pc::gelu_backward(nullptr, dt, x.p(), dy.p(), dy.p(), n);  // in place
  check("gelu_backward (in place)", dt, dy.get(), ref);
  // silu_gate_backward on the two halves of one [R, 2F] buffer
  Buf gu(dt, R * 2 * F, -8, 8), d(dt, R * F), grad(dt, R * 2 * F);
  grad.poison();
  std::vector<double> rg(R * 2 * F);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t f = 0; f < F; ++f) {
      const double a = gu[r * 2 * F + f], b = gu[r * 2 * F + F + f], e = d[r * F + f], s = 1 / (1 + std::exp(-a));
      rg[r * 2 * F + f] = e * b * s * (1 + a * (1 - s));
      rg[r * 2 * F + F + f] = e * a * s;
    }
  const size_t es = dt == DType::BF16 ? 2 : 4;
  char* gp = static_cast<char*>(gu.p());
  char* dp = static_cast<char*>(grad.p());
  pc::silu_gate_backward(nullptr, dt, gp, gp + F * es, d.p(), dp, dp + F * es, R, F, 2 * F);
  check("silu_gate_backward (halves of [R, 2F])", dt, grad.get(), rg);
}

// gelu_backward with the bias gradient: dx against float64, dbias against the sum of dx as stored.
static void gelu_bias(DType dt, int64_t R, int64_t C, bool acc) {
  Buf x(dt, R * C, -6, 6), dy(dt, R * C), db(dt, C);
  std::vector<double> ref(R * C), rdb(C);
  for (int64_t i = 0; i < R * C; ++i) {
    const double k = std::sqrt(2 / M_PI), a = x[i], u = k * (a + 0.044715 * a * a * a), t = std::tanh(u);
    ref[i] = dy[i] * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * k * (1 + 3 * 0.044715 * a * a));
  }
  for (int64_t c = 0; c < C; ++c) rdb[c] = acc ? db[c] : 0;
  if (!acc) db.poison();
  pc::gelu_backward_bias(nullptr, dt, x.p(), dy.p(), dy.p(), db.p(), R, C, acc);  // in place
  const std::vector<float> dx = dy.get();
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) rdb[c] += dx[r * C + c];
  char w[96];
  std::snprintf(w, sizeof w, "gelu_backward %ldx%ld + bias%s: dx", long(R), long(C), acc ? " (accumulate)" : "");
  check(w, dt, dx, ref);
  std::snprintf(w, sizeof w, "gelu_backward %ldx%ld + bias%s: dbias", long(R), long(C), acc ? " (accumulate)" : "");
  check(w, dt, db.get(), rdb);
}

static void rope_bwd(DType dt, int64_t R, int H, int D, int rot) {
  const int64_t st = int64_t(H) * D + 8;  // strided rows
  Buf x(dt, (R - 1) * st + int64_t(H) * D);
  std::vector<int32_t> pos(R);
  for (int64_t r = 0; r < R; ++r) pos[r] = int32_t((r * 37 + 5) % 2048);
  std::vector<double> ref(x.f.size());
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = x[i];
  for (int64_t r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < rot / 2; ++i) {
        const float f = float(std::pow(10000.0, -2.0 * i / rot));
        const double a = double(float(float(pos[r]) * f));
        const size_t o = r * st + int64_t(h) * D;
        const double x1 = x[o + i], x2 = x[o + i + rot / 2];
        ref[o + i] = x1 * std::cos(a) + x2 * std::sin(a);
        ref[o + i + rot / 2] = x2 * std::cos(a) - x1 * std::sin(a);
      }
  pc::rope_backward(nullptr, dt, x.p(), pos.data(), R, H, D, st, rot, 10000.f);
  check("rope_backward (strided, partial rotary)", dt, x.get(), ref);
}

// rope_kv_write (kvcache.cu) against float64, and bit for bit against rope + two kv_writes (the emulated
// launches it replaces); sequences at -1 and past the cache write nothing there.
static void rope_kv(DType dt, int B, int Hq, int Hkv, int D, int rot, int L) {
  const int64_t st = int64_t(Hq + 2 * Hkv) * D + 8, W = int64_t(Hkv) * D;
  Buf qkv(dt, B * st), kc(dt, B * L * W), vc(dt, B * L * W);
  Buf qkv2 = qkv, kc2 = kc, vc2 = vc;
  std::vector<int32_t> pos(B);
  for (int b = 0; b < B; ++b) pos[b] = b == 0 && B > 2 ? -1 : b == B - 1 && B > 1 ? L : int32_t((b * 7 + 3) % L);
  std::vector<double> rq(qkv.f.size()), rk(kc.f.size()), rv(vc.f.size());
  for (size_t i = 0; i < rq.size(); ++i) rq[i] = qkv[i];
  for (size_t i = 0; i < rk.size(); ++i) rk[i] = kc[i], rv[i] = vc[i];
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < Hq + Hkv; ++h)
      for (int i = 0; i < rot / 2; ++i) {
        const float f = float(std::pow(10000.0, -2.0 * i / rot));
        const double a = double(float(float(pos[b]) * f));
        const size_t o = b * st + int64_t(h) * D;
        const double x1 = qkv[o + i], x2 = qkv[o + i + rot / 2];
        rq[o + i] = x1 * std::cos(a) - x2 * std::sin(a);
        rq[o + i + rot / 2] = x2 * std::cos(a) + x1 * std::sin(a);
      }
    if (pos[b] >= 0 && pos[b] < L)
      for (int64_t w = 0; w < W; ++w) {
        rk[(int64_t(b) * L + pos[b]) * W + w] = rq[b * st + int64_t(Hq) * D + w];
        rv[(int64_t(b) * L + pos[b]) * W + w] = rq[b * st + int64_t(Hq) * D + W + w];
      }
  }
  pc::rope_kv_write(nullptr, dt, qkv.p(), kc.p(), vc.p(), pos.data(), B, Hq, Hkv, D, st, rot, 10000.f, nullptr, L * W, W, L);
  if (rot) pc::rope(nullptr, dt, qkv2.p(), pos.data(), B, Hq + Hkv, D, st, rot, 10000.f);
  const size_t es = dt == DType::BF16 ? 2 : 4;
  char* base = static_cast<char*>(qkv2.p());
  pc::kv_write(nullptr, dt, base + size_t(Hq) * D * es, kc2.p(), pos.data(), B, 1, W, st, st, L * W, W, L);
  pc::kv_write(nullptr, dt, base + (size_t(Hq) * D + W) * es, vc2.p(), pos.data(), B, 1, W, st, st, L * W, W, L);
  char w[96];
  std::snprintf(w, sizeof w, "rope_kv_write B%d Hq%d Hkv%d D%d rot%d", B, Hq, Hkv, D, rot);
  check((std::string(w) + " qkv").c_str(), dt, qkv.get(), rq);
  check((std::string(w) + " k cache").c_str(), dt, kc.get(), rk);
  check((std::string(w) + " v cache").c_str(), dt, vc.get(), rv);
  const bool same = qkv.get() == qkv2.get() && kc.get() == kc2.get() && vc.get() == vc2.get();
  all_ok &= same;
  std::printf("  %-52s %-4s %s\n", (std::string(w) + ": = rope + kv_write x2").c_str(), dt == DType::BF16 ? "bf16" : "f32",
              same ? "ok" : "FAIL (bits differ)");
}

namespace parallm::cuda {  // matmul_rope_kv_write's split-K reduce with the rope (kvcache.cu)
void splitk_rope_kv_write(cudaStream_t s, DType dt, const float* ws, int splits, const void* bias, void* qkv, void* kc,
                          void* vc, const int32_t* pos, int B, int Hq, int Hkv, int D, int rot_dim, float theta,
                          const float* freqs, int64_t kv_bstride, int64_t kv_tstride, int64_t max_len, bool pdl);
}

// splitk_rope_kv_write against splitk_reduce's values (the slices added in order, + bias, rounded: computed here)
// then rope_kv_write: the same bits for qkv and both caches.
static void splitk_rope_kv(DType dt, int B, int Hq, int Hkv, int D, int rot, int L, int splits, bool bias) {
  const int64_t N = int64_t(Hq + 2 * Hkv) * D, W = int64_t(Hkv) * D;
  std::vector<float> ws(size_t(splits) * B * N);
  std::uniform_real_distribution<float> U(-2, 2);
  for (float& x : ws) x = U(rng);
  Buf bv(dt, N), qkv(dt, B * N), kc(dt, B * L * W), vc(dt, B * L * W);
  Buf qkv2 = qkv, kc2 = kc, vc2 = vc;
  qkv.poison();
  std::vector<int32_t> pos(B);
  for (int b = 0; b < B; ++b) pos[b] = b == 0 && B > 2 ? -1 : b == B - 1 && B > 1 ? L : int32_t((b * 5 + 2) % L);
  for (int64_t i = 0; i < int64_t(B) * N; ++i) {
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += ws[size_t(s) * B * N + i];
    qkv2.set(size_t(i), bias ? v + float(bv[size_t(i % N)]) : v);
  }
  pc::rope_kv_write(nullptr, dt, qkv2.p(), kc2.p(), vc2.p(), pos.data(), B, Hq, Hkv, D, N, rot, 10000.f, nullptr, L * W, W, L);
  pc::splitk_rope_kv_write(nullptr, dt, ws.data(), splits, bias ? bv.p() : nullptr, qkv.p(), kc.p(), vc.p(), pos.data(), B,
                           Hq, Hkv, D, rot, 10000.f, nullptr, L * W, W, L, false);
  const bool same = qkv.get() == qkv2.get() && kc.get() == kc2.get() && vc.get() == vc2.get();
  all_ok &= same;
  char w[112];
  std::snprintf(w, sizeof w, "splitk_rope_kv_write B%d Hq%d Hkv%d D%d rot%d splits %d%s", B, Hq, Hkv, D, rot, splits,
                bias ? " bias" : "");
  std::printf("  %-52s %-4s %s\n", w, dt == DType::BF16 ? "bf16" : "f32",
              same ? "ok (= splitk_reduce + rope_kv_write)" : "FAIL (bits differ)");
}

static void embedding_bwd(DType dt, int64_t N, int64_t V, int64_t C) {
  Buf dout(dt, N * C), table(dt, V * C);
  std::vector<int32_t> ids(N);
  std::uniform_real_distribution<double> U(0, 1);
  for (int64_t n = 0; n < N; ++n) { const double u = U(rng); ids[n] = n % 97 == 5 ? (n % 2 ? -1 : int32_t(V)) : int32_t(u * u * V); }
  std::vector<double> ref(V * C);
  for (int64_t i = 0; i < V * C; ++i) ref[i] = table[i];
  for (int64_t n = 0; n < N; ++n)
    if (ids[n] >= 0 && ids[n] < V)
      for (int64_t c = 0; c < C; ++c) ref[ids[n] * C + c] += dout[n * C + c];
  pc::embedding_backward(nullptr, dt, ids.data(), dout.p(), table.p(), N, V, C);
  char w[96];
  std::snprintf(w, sizeof w, "embedding_backward N%ld V%ld C%ld", long(N), long(V), long(C));
  check(w, dt, table.get(), ref);
}

// shift: dlogits that many elements into its buffer (another offset within 16 bytes than the logits').
// ld > V: rows padded to ld elements (the padding of dlogits must come back zero).
static void cross_entropy(DType dt, int64_t R, int64_t V, bool inplace, int shift = 0, int64_t ld = 0) {
  if (ld == 0) ld = V;
  Buf logits(dt, R * ld, -8, 8), gradbuf(dt, R * ld + shift);
  std::vector<int32_t> t(R);
  for (int64_t r = 0; r < R; ++r) t[r] = r % 5 == 3 ? -100 : r % 7 == 6 ? int32_t(V + 2) : int32_t((r * 7919) % V);
  std::vector<double> rl(R), rg(R * ld, 0.0);
  const double dscale = 0.5;
  for (int64_t r = 0; r < R; ++r) {
    const bool ign = t[r] < 0 || t[r] >= V;
    double m = -1e300, s = 0;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, logits[r * ld + v]);
    for (int64_t v = 0; v < V; ++v) s += std::exp(logits[r * ld + v] - m);
    const double lse = m + std::log(s);
    rl[r] = ign ? 0 : lse - logits[r * ld + t[r]];
    for (int64_t v = 0; v < V; ++v) rg[r * ld + v] = ign ? 0 : dscale * (std::exp(logits[r * ld + v] - lse) - (v == t[r]));
  }
  std::vector<float> losses(R, NAN);
  gradbuf.poison();
  char* gp = static_cast<char*>(gradbuf.p()) + shift * (dt == DType::BF16 ? 2 : 4);
  pc::cross_entropy(nullptr, dt, logits.p(), t.data(), losses.data(), inplace ? logits.p() : gp, R, V, ld, -100, float(dscale));
  char w[96];
  std::snprintf(w, sizeof w, "cross_entropy %ldx%ld (ld %ld)%s%s", long(R), long(V), long(ld), inplace ? " in place" : "", shift ? " shifted" : "");
  check((std::string(w) + " losses").c_str(), DType::F32, losses, rl);
  std::vector<float> g = inplace ? logits.get() : gradbuf.get();
  if (!inplace) g.erase(g.begin(), g.begin() + shift);
  check((std::string(w) + " dlogits").c_str(), dt, g, rg);
}

static void optimizer(DType dt, int64_t n, int64_t n_decay) {
  Buf x(dt, n, -3, 3);
  double r = 0;
  for (int64_t i = 0; i < n; ++i) r += x[i] * x[i];
  float out = NAN;
  pc::sum_squares(nullptr, dt, x.p(), &out, n);
  check("sum_squares", DType::F32, {out}, {r});
  Buf master(DType::F32, n), m(DType::F32, n, -1e-2, 1e-2), v(DType::F32, n, 0, 1e-3), param(dt, n);
  std::vector<double> rw(master.f.begin(), master.f.end()), rm(m.f.begin(), m.f.end()), rv(v.f.begin(), v.f.end());
  param.poison();
  for (int step = 1; step <= 3; ++step) {
    Buf g(dt, n, -2, 2);
    const double lr = 1e-3 * step, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5;
    for (int64_t i = 0; i < n; ++i) {
      const double gg = g[i] * gs;
      rm[i] = b1 * rm[i] + (1 - b1) * gg;
      rv[i] = b2 * rv[i] + (1 - b2) * gg * gg;
      const double mh = rm[i] / (1 - std::pow(b1, step)), vh = rv[i] / (1 - std::pow(b2, step));
      rw[i] -= lr * (mh / (std::sqrt(vh) + eps) + (i < n_decay ? wd * rw[i] : 0));
    }
    pc::adamw(nullptr, dt, master.f.data(), param.p(), g.p(), m.f.data(), v.f.data(), n, n_decay, float(lr), 0.9f, 0.95f,
              1e-8f, 0.1f, 0.5f, step);
  }
  check("adamw 3 steps: master", DType::F32, master.f, rw);
  check("adamw 3 steps: m", DType::F32, m.f, rm);
  check("adamw 3 steps: v", DType::F32, v.f, rv);
  check("adamw 3 steps: param", dt, param.get(), rw, 1e-6);
}

// attention_forward and attention_backward through their public functions (dispatch, the delta kernel,
// the workspace), f32 and bf16; with `simt`, PARALLM_ATTN_BWD=simt forces the CUDA-core backward.
namespace parallm::cuda {
void attention_decode_splits(int n);  // the test hooks (attention.cu)
void attention_decode_pre(int n);
namespace attn_detail {
struct DecodeChunks {
  int n, keys;
};
DecodeChunks decode_chunks(int64_t groups, int sms, int max_len, int step, int forced, int64_t group_bytes);
}  // namespace attn_detail
}

// decode_chunks, the rule decode attention's launch takes its key chunks from, at decode's shapes on 132 SMs
// (7B: 32 kv heads, D 128, 32 keys a block step; GPT-2: 12, D 64, 64 keys; bf16): one chunk from three (sequence, head
// group) blocks an SM (S27-4, S27-5 in bench/RESULTS.md) or where a group's cache is 64 KiB or less (GPT-2 at 256
// keys: S29-1, S29-3), else as many as fill 8 blocks an SM, at most a step's keys each; a forced count caps it. Each
// chunk whole steps of keys, and together they cover the cache.
static void decode_chunk_rule() {
  struct Want {
    const char* what;
    int64_t groups;
    int max_len, step, D, forced, n;
  };
  const Want cases[] = {
      {"7B batch 1", 32, 256, 32, 128, -1, 8},      {"7B batch 12", 384, 256, 32, 128, -1, 3},
      {"7B batch 13", 416, 256, 32, 128, -1, 1},    {"7B batch 16", 512, 256, 32, 128, -1, 1},
      {"7B batch 64", 2048, 256, 32, 128, -1, 1},   {"GPT-2 batch 1", 12, 256, 64, 64, -1, 1},
      {"GPT-2 batch 16", 192, 256, 64, 64, -1, 1},  {"GPT-2 batch 64", 768, 256, 64, 64, -1, 1},
      {"GPT-2 batch 1, 257 keys", 12, 257, 64, 64, -1, 5}, {"GPT-2 batch 16, 1024 keys", 192, 1024, 64, 64, -1, 6},
      {"7B batch 16, 3 forced", 512, 256, 32, 128, 3, 3}, {"7B batch 1, 4096 keys", 32, 4096, 32, 128, -1, 32},
  };
  for (const Want& c : cases) {
    const auto dc = pc::attn_detail::decode_chunks(c.groups, 132, c.max_len, c.step, c.forced,
                                                   int64_t(c.max_len) * c.D * 2 * 2);
    const bool ok = dc.n == c.n && dc.keys % c.step == 0 && int64_t(dc.n) * dc.keys >= c.max_len &&
                    int64_t(dc.n - 1) * dc.keys < c.max_len;
    all_ok &= ok;
    std::printf("  decode_chunks %-24s %5lld groups: %2d chunks of %4d keys (want %2d) %s\n", c.what,
                static_cast<long long>(c.groups), dc.n, dc.keys, c.n, ok ? "ok" : "FAIL");
  }
}

// attention_decode (flash-decoding: key chunks over blocks, then the combine) against float64, at a
// forced number of chunks; ragged lengths, grouped heads; the output poisoned first.
static void decode(DType dt, std::vector<int32_t> lens, int L, int Hq, int Hkv, int D, int splits) {
  const int B = int(lens.size());
  Buf q(dt, size_t(B) * Hq * D), k(dt, size_t(B) * L * Hkv * D), v(dt, size_t(B) * L * Hkv * D), out(dt, size_t(B) * Hq * D);
  out.poison();
  std::vector<double> ref(out.f.size());
  const double scale = 1 / std::sqrt(double(D));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < Hq; ++h) {
      const int g = h / (Hq / Hkv);
      std::vector<double> sc(lens[b]);
      double m = -1e300, l = 0;
      for (int j = 0; j < lens[b]; ++j) {
        double a = 0;
        for (int d = 0; d < D; ++d) a += q[(size_t(b) * Hq + h) * D + d] * k[((size_t(b) * L + j) * Hkv + g) * D + d];
        m = std::max(m, sc[j] = a * scale);
      }
      for (int j = 0; j < lens[b]; ++j) l += std::exp(sc[j] - m);
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (int j = 0; j < lens[b]; ++j) o += std::exp(sc[j] - m) / l * v[((size_t(b) * L + j) * Hkv + g) * D + d];
        ref[(size_t(b) * Hq + h) * D + d] = o;
      }
    }
  pc::attention_decode_splits(splits);
  pc::attention_decode(nullptr, dt, q.p(), k.p(), v.p(), lens.data(), out.p(), B, Hq, Hkv, D, int64_t(Hq) * D,
                       int64_t(L) * Hkv * D, int64_t(Hkv) * D, L, float(scale));
  char w[96];
  std::snprintf(w, sizeof w, "attention_decode B%d L%d Hq%d Hkv%d D%d splits %d", B, L, Hq, Hkv, D, splits);
  check(w, dt, out.get(), ref);
  // With a counter: the split kernel's last block of each head group merges the chunks (no combine
  // launch): the same bits as the combine, and every counter back at zero.
  Buf out2(dt, out.f.size());
  out2.poison();
  std::vector<uint32_t> cnt(size_t(B) * Hq, 0u);
  pc::attention_decode(nullptr, dt, q.p(), k.p(), v.p(), lens.data(), out2.p(), B, Hq, Hkv, D, int64_t(Hq) * D,
                       int64_t(L) * Hkv * D, int64_t(Hkv) * D, L, float(scale), cnt.data());
  pc::attention_decode_splits(-1);
  const std::vector<float> a = out.get(), c = out2.get();
  bool same = true, rearmed = true;
  for (size_t i = 0; i < a.size(); ++i) same &= std::memcmp(&a[i], &c[i], sizeof(float)) == 0;
  for (uint32_t x : cnt) rearmed &= x == 0u;
  all_ok &= same && rearmed;
  std::printf("  %-52s %-4s %s, counters %s %s\n", "  ... the chunks merged by the last block", dt == DType::BF16 ? "bf16" : "f32",
              same ? "= the combine's" : "!= the combine's", rearmed ? "rearmed" : "NOT rearmed", same && rearmed ? "ok" : "FAIL");
}

// Whether two outputs hold the same bits (NaNs included).
static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
  return true;
}

// rope_kv_attention_decode (decode_split's FRESH form) bit for bit against rope_kv_write on a copy of qkv,
// then attention_decode: the output and both caches; qkv left as it was. Positions mid-context, at the end,
// past lens, outside the cache; forced chunk counts, with and without a counter.
static void fused_decode(DType dt, std::vector<int32_t> pos, std::vector<int32_t> lens, int L, int Hq, int Hkv, int D,
                         int rot, int splits, bool counter) {
  const int B = int(pos.size());
  const int64_t st = int64_t(Hq + 2 * Hkv) * D + 8, W = int64_t(Hkv) * D;
  Buf qkv(dt, B * st), kc(dt, size_t(B) * L * W), vc(dt, size_t(B) * L * W), out(dt, size_t(B) * Hq * D);
  Buf qkv2 = qkv, kc2 = kc, vc2 = vc, out2 = out, qkv3 = qkv, kc3 = kc, vc3 = vc, out3 = out;
  out.poison(), out2.poison(), out3.poison();
  const std::vector<float> q0 = qkv.get();
  const float scale = 1 / std::sqrt(float(D));
  std::vector<uint32_t> cnt(size_t(B) * Hq, 0u), cnt2 = cnt;
  pc::attention_decode_splits(splits);
  pc::rope_kv_attention_decode(nullptr, dt, qkv.p(), kc.p(), vc.p(), pos.data(), lens.data(), out.p(), B, Hq, Hkv, D, st,
                               rot, 10000.f, nullptr, L * W, W, L, scale, counter ? cnt.data() : nullptr);
  pc::rope_kv_write(nullptr, dt, qkv2.p(), kc2.p(), vc2.p(), pos.data(), B, Hq, Hkv, D, st, rot, 10000.f, nullptr, L * W, W, L);
  pc::attention_decode(nullptr, dt, qkv2.p(), kc2.p(), vc2.p(), lens.data(), out2.p(), B, Hq, Hkv, D, st, L * W, W, L, scale,
                       counter ? cnt2.data() : nullptr);
  // The PRE form (bf16: the first keys below pos loaded, and with rotation the angles at pos computed, before the
  // PDL wait; the rotating form's at batch 1 only, attention.cu's attn_pre_rope): the same bits. (Past four q heads
  // a kv head the host runs the two launches instead of the fused kernel.)
  const bool pre = dt == DType::BF16 && Hq / Hkv <= 4 && (rot == 0 || B == 1);
  if (pre) {
    std::vector<uint32_t> cnt3(cnt.size(), 0u);
    pc::attention_decode_pre(1);
    pc::rope_kv_attention_decode(nullptr, dt, qkv3.p(), kc3.p(), vc3.p(), pos.data(), lens.data(), out3.p(), B, Hq, Hkv,
                                 D, st, rot, 10000.f, nullptr, L * W, W, L, scale, counter ? cnt3.data() : nullptr);
    pc::attention_decode_pre(-1);
  }
  pc::attention_decode_splits(-1);
  const auto same = same_bits;
  bool finite = true;
  for (float x : out.get()) finite &= std::isfinite(x);
  bool rearmed = true;
  for (uint32_t x : cnt) rearmed &= x == 0u;
  const bool ok = finite && rearmed && same(out.get(), out2.get()) && same(kc.get(), kc2.get()) &&
                  same(vc.get(), vc2.get()) && same(qkv.get(), q0) &&
                  (!pre || (same(out3.get(), out.get()) && same(kc3.get(), kc.get()) && same(vc3.get(), vc.get())));
  all_ok &= ok;
  char w[112];
  std::snprintf(w, sizeof w, "rope_kv_attention_decode B%d L%d Hq%d Hkv%d D%d rot%d splits %d%s", B, L, Hq, Hkv, D, rot,
                splits, counter ? " +counter" : "");
  std::printf("  %-52s %-4s %s\n", w, dt == DType::BF16 ? "bf16" : "f32",
              ok ? (pre ? "ok (= rope_kv_write + attention_decode; PRE too)" : "ok (= rope_kv_write + attention_decode)")
                 : "FAIL (bits differ, unwritten, or qkv changed)");
}

namespace parallm::cuda {  // the qkv product's split-K partials into decode attention (attention.cu)
bool splitk_rope_kv_attention_decode(cudaStream_t st, DType dt, const float* ws, int splits, const void* bias, void* kc,
                                     void* vc, const int32_t* pos, const int32_t* lens, void* out, int B, int Hq, int Hkv,
                                     int D, int rot_dim, float theta, const float* freqs, int64_t kv_bstride,
                                     int64_t kv_tstride, int max_len, float scale, uint32_t* counter);
}

// splitk_rope_kv_attention_decode (decode_split's kFreshRopeSum form: the slices summed in the attention kernel)
// bit for bit against splitk_rope_kv_write then attention_decode: the output and both caches, with and without
// the PRE form; and where the form does not apply (pairs across packs), false with nothing written.
static void splitk_attention(std::vector<int32_t> pos, std::vector<int32_t> lens, int L, int Hq, int Hkv, int D, int rot,
                             int splits, int chunks, bool bias, bool counter) {
  const DType dt = DType::BF16;
  const int B = int(pos.size());
  const int64_t N = int64_t(Hq + 2 * Hkv) * D, W = int64_t(Hkv) * D;
  std::vector<float> ws(size_t(splits) * B * N);
  std::uniform_real_distribution<float> U(-2, 2);
  for (float& x : ws) x = U(rng);
  Buf bv(dt, N), kc(dt, size_t(B) * L * W), vc(dt, size_t(B) * L * W), out(dt, size_t(B) * Hq * D), qkv2(dt, size_t(B) * N);
  Buf kc2 = kc, vc2 = vc, out2 = out, kc3 = kc, vc3 = vc, out3 = out;
  out.poison(), out2.poison(), out3.poison(), qkv2.poison();
  const std::vector<float> kc0 = kc.get(), vc0 = vc.get();
  const float scale = 1 / std::sqrt(float(D));
  std::vector<uint32_t> cnt(size_t(B) * Hq, 0u), cnt2 = cnt, cnt3 = cnt;
  const void* pb = bias ? bv.p() : nullptr;
  pc::attention_decode_splits(chunks);
  pc::splitk_rope_kv_write(nullptr, dt, ws.data(), splits, pb, qkv2.p(), kc2.p(), vc2.p(), pos.data(), B, Hq, Hkv, D, rot,
                           10000.f, nullptr, L * W, W, L, false);
  pc::attention_decode(nullptr, dt, qkv2.p(), kc2.p(), vc2.p(), lens.data(), out2.p(), B, Hq, Hkv, D, N, L * W, W, L, scale,
                       counter ? cnt2.data() : nullptr);
  const bool applies = pc::splitk_rope_kv_attention_decode(nullptr, dt, ws.data(), splits, pb, kc.p(), vc.p(), pos.data(),
                                                           lens.data(), out.p(), B, Hq, Hkv, D, rot, 10000.f, nullptr, L * W,
                                                           W, L, scale, counter ? cnt.data() : nullptr);
  pc::attention_decode_pre(1);
  const bool applies3 = pc::splitk_rope_kv_attention_decode(nullptr, dt, ws.data(), splits, pb, kc3.p(), vc3.p(),
                                                            pos.data(), lens.data(), out3.p(), B, Hq, Hkv, D, rot, 10000.f,
                                                            nullptr, L * W, W, L, scale, counter ? cnt3.data() : nullptr);
  pc::attention_decode_pre(-1);
  pc::attention_decode_splits(-1);
  const auto same = same_bits;
  // (taken only in its PRE form: outside it, false with nothing launched)
  const bool want = (rot / 2) % 8 == 0 && rot > 0 && D % 8 == 0 && Hq / Hkv <= 4;
  bool ok = !applies && applies3 == want, rearmed = true;
  for (uint32_t x : cnt) rearmed &= x == 0u;
  for (uint32_t x : cnt3) rearmed &= x == 0u;
  // outside PRE nothing launched: the output still poisoned, the caches as they were
  ok &= std::isnan(out.get()[0]) && same(kc.get(), kc0) && same(vc.get(), vc0);
  if (want)
    ok &= rearmed && same(out3.get(), out2.get()) && same(kc3.get(), kc2.get()) && same(vc3.get(), vc2.get());
  else
    ok &= std::isnan(out3.get()[0]) && same(kc3.get(), kc0) && same(vc3.get(), vc0);
  all_ok &= ok;
  char w[112];
  std::snprintf(w, sizeof w, "splitk_rope_kv_attention_decode B%d L%d Hq%d Hkv%d D%d rot%d splits %d chunks %d%s%s", B, L,
                Hq, Hkv, D, rot, splits, chunks, bias ? " bias" : "", counter ? " +counter" : "");
  std::printf("  %-52s %-4s %s\n", w, "bf16",
              !ok     ? "FAIL (bits differ, unwritten, or taken where it does not apply)"
              : want ? "ok (PRE: = splitk_rope_kv_write + attention_decode; else not taken)"
                     : "ok (does not apply: nothing launched)");
}

template <class E>
static void attention(int B, int T, int Hq, int Hkv, int D, bool simt) {
  const DType dt = sizeof(E) == 4 ? DType::F32 : DType::BF16;
  Problem<E> p(B, T, Hq, Hkv, D, unsigned(T * 13 + D + Hq));
  const E nan = fromf<E>(NAN);
  std::vector<E> out(p.q.size(), nan), dq(p.q.size(), nan), dk(p.k.size(), nan), dv(p.k.size(), nan);
  std::vector<float> lse(p.lse.size(), NAN), ws(size_t(B) * Hq * T * (D + 1), NAN);
  const float scale = float(p.scale);
  pc::attention_forward(nullptr, dt, p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(), B, T, Hq, Hkv, D,
                        p.qbs(), p.qts(), p.kvbs(), p.kvts(), scale);
  if (simt) setenv("PARALLM_ATTN_BWD", "simt", 1);
  // (the backward takes the reference's stored out, so its delta is the reference's)
  pc::attention_backward(nullptr, dt, p.q.data(), p.k.data(), p.v.data(), p.out.data(), p.dout.data(), p.lse.data(),
                         dq.data(), dk.data(), dv.data(), ws.data(), B, T, Hq, Hkv, D, p.qbs(), p.qts(), p.kvbs(),
                         p.kvts(), scale);
  unsetenv("PARALLM_ATTN_BWD");
  char w[96];
  std::snprintf(w, sizeof w, "attention B%d T%d Hq%d Hkv%d D%d%s", B, T, Hq, Hkv, D, simt ? " (simt)" : "");
  check((std::string(w) + " fwd out").c_str(), dt, F(out), p.outr);
  check((std::string(w) + " fwd lse").c_str(), DType::F32, lse, p.lser);
  check((std::string(w) + " dq").c_str(), dt, F(dq), p.dqr);
  check((std::string(w) + " dk").c_str(), dt, F(dk), p.dkr);
  check((std::string(w) + " dv").c_str(), dt, F(dv), p.dvr);
}

// argmax (softmax.cu) against the host's first maximum (NaN after every number): rows short enough for a
// block a row and long enough to be cut into chunks and merged; values on a coarse grid so ties cross chunks.
static void argmax_rows(DType dt, int64_t R, int64_t C, bool nans) {
  Buf x(dt, R * C);
  std::uniform_int_distribution<int> q(-50, 50);
  for (int64_t i = 0; i < R * C; ++i) x.set(i, nans && i % 7 == 3 ? NAN : float(q(rng)) / 8);
  std::vector<int32_t> out(R, -1), ref(R);
  for (int64_t r = 0; r < R; ++r) {
    int64_t b = -1;
    for (int64_t c = 0; c < C; ++c) {
      const float v = x.f[r * C + c];
      if (std::isnan(v)) continue;
      if (b < 0 || v > x.f[r * C + b]) b = c;
    }
    ref[r] = int32_t(b < 0 ? 0 : b);
  }
  pc::argmax(nullptr, dt, x.p(), out.data(), R, C);
  const bool ok = out == ref;
  all_ok &= ok;
  char w[96];
  std::snprintf(w, sizeof w, "argmax %ldx%ld%s", long(R), long(C), nans ? " with NaNs" : "");
  std::printf("  %-52s %-4s %s\n", w, dt == DType::BF16 ? "bf16" : "f32", ok ? "ok" : "FAIL");
}

int main() {
  decode_chunk_rule();
  for (DType dt : {DType::F32, DType::BF16}) {
    std::printf("%s\n", dt == DType::F32 ? "f32" : "bf16");
    sum_rows(dt, 7, 5, false);
    sum_rows(dt, 300, 771, true);
    sum_rows(dt, 700, 64, false);    // one launch of 32 row lanes (<= kColShortRows)
    sum_rows(dt, 1500, 136, true);   // two launches: chunks of rows, then their partials
    sum_rows(dt, 1030, 24, false);   // two launches, one element an access
    norm_bwd(dt, 37, 48, false);   // several rows a block
    norm_bwd(dt, 9, 771, false);   // unaligned rows: one element an access
    norm_bwd(dt, 5, 4104, true);   // several packs a thread
    norm_bwd(dt, 600, 96, false);  // more rows than blocks
    norm_bwd(dt, 4100, 64, false); // 512 blocks: dgamma and dbeta summed in one launch of 32 row lanes
    norm_bwd(dt, 4100, 40, true);  // the same for rmsnorm's dw alone, one element an access
    norm_bwd(dt, 4100, 64, false, 1);  // with the dx sums: three partials summed in one launch
    norm_bwd(dt, 37, 48, false, 2);    // several rows a block (shared-memory combine of three partials), added
    norm_bwd(dt, 9, 771, false, 1);    // one element an access
    gelu_silu(dt, 1003, 5, 24);
    gelu_bias(dt, 700, 136, false);  // chunks of rows, two a lane; an odd row count
    gelu_bias(dt, 37, 24, true);     // one chunk of rows
    gelu_bias(dt, 301, 13, false);   // one element an access
    rope_bwd(dt, 6, 3, 64, 32);
    rope_kv(dt, 4, 6, 3, 64, 32, 9);  // partial rotary, a sequence at -1 and one past the cache
    rope_kv(dt, 2, 4, 4, 16, 0, 3);   // no rotation: the two cache writes
    rope_kv(dt, 3, 5, 1, 320, 64, 7); // 7 heads (a block's last warps idle); a 256-element k tail and 320-element v heads: rounds a lane
    splitk_rope_kv(dt, 4, 4, 2, 32, 32, 9, 3, true);  // a sequence at -1 and one past the cache; GQA
    splitk_rope_kv(dt, 2, 3, 3, 24, 8, 5, 5, false);  // partial rotation, five slices (one past splitk_sum2's group of 4)
    splitk_rope_kv(dt, 3, 2, 1, 16, 0, 4, 2, true);   // no rotation: the cache writes alone
    decode(dt, {300, 1, 129}, 300, 8, 2, 64, 5);  // several chunks, one sequence shorter than a chunk
    decode(dt, {77}, 80, 4, 4, 128, 1);            // one chunk: no combine
    decode(dt, {1000}, 1000, 8, 1, 64, -1);        // chosen chunks, 8 query heads a kv head
    fused_decode(dt, {5, 40, 25}, {30, 41, 20}, 48, 4, 4, 64, 64, 3, true);  // the new key mid-context, last, past lens
    fused_decode(dt, {-1, 48, 30}, {9, 48, 31}, 48, 8, 2, 128, 128, -1, true);  // outside the cache; GQA
    fused_decode(dt, {100}, {101}, 120, 6, 1, 80, 32, 4, false);  // two head blocks a kv head, partial rotation, combine
    fused_decode(dt, {7, 0}, {8, 1}, 9, 3, 3, 20, 12, 2, true);     // unaligned heads, pairs across packs
    // One sequence (bf16: the rotating form's PRE): the new key mid-chunk, GQA at the cache's end, unaligned heads.
    fused_decode(dt, {30}, {31}, 48, 4, 4, 64, 64, 3, true);
    fused_decode(dt, {47}, {48}, 48, 8, 2, 128, 128, -1, true);
    fused_decode(dt, {7}, {8}, 9, 3, 3, 20, 12, 2, false);
    fused_decode(dt, {16}, {17}, 17, 3, 3, 64, 0, 1, false);       // no rotation (GPT-2), one chunk
    // Without rotation, with the PRE form too: the new key in the first step of a chunk and later, mid-context,
    // past lens, outside the cache; chunks; GQA; unaligned heads.
    fused_decode(dt, {5, 40, 25, -1}, {30, 41, 20, 9}, 48, 4, 4, 64, 0, 3, true);
    fused_decode(dt, {0, 63, 17}, {1, 64, 18}, 64, 8, 2, 128, 0, 4, true);
    fused_decode(dt, {100}, {101}, 120, 6, 1, 80, 0, -1, false);
    fused_decode(dt, {7, 3}, {8, 4}, 9, 3, 3, 20, 0, 2, true);
    if (dt == DType::BF16) {
      // The new key mid-context, at the cache's end, past lens, outside the cache; one chunk and several (the
      // counter's merge and the combine); GQA; a bias; five slices; partial rotation; pairs across packs (not taken).
      splitk_attention({5, 40, 25, -1}, {30, 41, 20, 9}, 48, 4, 4, 64, 64, 4, 1, true, false);
      splitk_attention({0, 63, 17}, {1, 64, 18}, 64, 8, 2, 128, 128, 3, 3, false, true);
      splitk_attention({100}, {101}, 120, 8, 2, 128, 128, 5, -1, true, false);
      splitk_attention({30, 7}, {31, 8}, 48, 4, 4, 64, 32, 2, 2, false, false);
      splitk_attention({7}, {8}, 9, 3, 3, 24, 8, 2, 1, false, false);
    }
    embedding_bwd(dt, 5000, 40, 24);  // the sort's global stages
    embedding_bwd(dt, 300, 1000, 5);
    cross_entropy(dt, 11, 1001, false);
    cross_entropy(dt, 6, 256, true);
    cross_entropy(dt, 7, 1001, true);      // odd rows in place: packs from each row's first aligned element
    cross_entropy(dt, 5, 1001, false, 1);  // gradient rows at another alignment: one element an access
    cross_entropy(dt, 7, 1001, true, 0, 1024);  // rows padded to 1024 (GPT-2's 50257 in 50304): padding zeroed
    cross_entropy(dt, 6, 1001, false, 0, 1008);
    cross_entropy(dt, 300, 9003, true, 0, 9024);  // more rows than blocks (a grid of SMs), several loads in flight
    optimizer(dt, 40003, 30000);
    argmax_rows(dt, 5, 1000, false);   // a block a row
    argmax_rows(dt, 3, 50257, false);  // GPT-2's vocabulary: 13 chunks a row, merged
    argmax_rows(dt, 2, 40000, true);   // chunks, NaNs skipped
  }
  attention<float>(1, 40, 2, 1, 64, false);
  attention<float>(1, 20, 2, 2, 48, false);
  attention<bf16>(1, 70, 4, 2, 64, false);
  attention<bf16>(1, 70, 4, 2, 64, true);
  attention<bf16>(1, 40, 2, 1, 128, false);
  std::printf(all_ok ? "all passed\n" : "FAILED\n");
  return all_ok ? 0 : 1;
}
