// The attention kernels of native/cuda run on the CPU through emu.h: the flash prefill on tensor cores
// (with the lse output attention_forward adds), and attention_backward on tensor cores and on CUDA cores,
// each against a float64 reference on random inputs (grouped-query heads, ragged tiles), outputs
// poisoned (NaN) first. The prefill kernel has run on GPUs, so it passing here also checks the
// emulator's fragment layouts. Built and run by run.sh; exits non-zero on a failure.
#include <cstdio>
#include <random>

#include "emu.h"
#include "attention_backward.cuh"
#include "attention_backward_mma.cuh"

using namespace parallm::cuda::attn_detail;
using bf16 = __nv_bfloat16;

template <class E> float tof(E x) { return parallm::cuda::f32(x); }
template <class E> E fromf(float x) { return parallm::cuda::from_f32<E>(x); }

double relerr(const std::vector<float>& o, const std::vector<double>& r) {
  double n = 0, d = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!std::isfinite(o[i])) return INFINITY;
    n += (o[i] - r[i]) * (o[i] - r[i]);
    d += r[i] * r[i];
  }
  return std::sqrt(n / d);
}

// Inputs ([B, T, H, D] contiguous), stored as E, and the float64 references.
template <class E>
struct Problem {
  int B, T, Hq, Hkv, D;
  double scale;
  std::vector<E> q, k, v, dout, out;
  std::vector<float> lse, delta;  // f32, as the kernels take them
  std::vector<double> outr, lser, dqr, dkr, dvr;
  Problem(int B_, int T_, int Hq_, int Hkv_, int D_, unsigned seed) : B(B_), T(T_), Hq(Hq_), Hkv(Hkv_), D(D_) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> U(-1, 1);
    const size_t nq = size_t(B) * T * Hq * D, nk = size_t(B) * T * Hkv * D, nr = size_t(B) * Hq * T;
    q.resize(nq), dout.resize(nq), out.resize(nq), k.resize(nk), v.resize(nk);
    for (auto* a : {&q, &dout}) for (auto& x : *a) x = fromf<E>(U(rng));
    for (auto* a : {&k, &v}) for (auto& x : *a) x = fromf<E>(U(rng));
    scale = 1.0 / std::sqrt(double(D));
    const int G = Hq / Hkv;
    auto Q = [&](int b, int i, int h, int d) { return double(tof(q[((size_t(b) * T + i) * Hq + h) * D + d])); };
    auto K = [&](int b, int j, int g, int d) { return double(tof(k[((size_t(b) * T + j) * Hkv + g) * D + d])); };
    auto V = [&](int b, int j, int g, int d) { return double(tof(v[((size_t(b) * T + j) * Hkv + g) * D + d])); };
    auto O = [&](int b, int i, int h, int d) { return double(tof(dout[((size_t(b) * T + i) * Hq + h) * D + d])); };
    outr.assign(nq, 0), lser.assign(nr, 0), lse.assign(nr, 0), delta.assign(nr, 0);
    dqr.assign(nq, 0), dkr.assign(nk, 0), dvr.assign(nk, 0);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < Hq; ++h)
        for (int i = 0; i < T; ++i) {
          const int g = h / G;
          std::vector<double> s(i + 1);
          double m = -1e300, l = 0;
          for (int j = 0; j <= i; ++j) {
            double a = 0;
            for (int d = 0; d < D; ++d) a += Q(b, i, h, d) * K(b, j, g, d);
            m = std::max(m, s[j] = a * scale);
          }
          for (int j = 0; j <= i; ++j) l += std::exp(s[j] - m);
          const size_t r = (size_t(b) * Hq + h) * T + i;
          lser[r] = m + std::log(l);
          lse[r] = float(lser[r]);
          for (int d = 0; d < D; ++d) {
            double o = 0;
            for (int j = 0; j <= i; ++j) o += std::exp(s[j] - m) / l * V(b, j, g, d);
            const size_t oi = ((size_t(b) * T + i) * Hq + h) * D + d;
            outr[oi] = o;
            out[oi] = fromf<E>(float(o));
          }
        }
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < Hq; ++h)
        for (int i = 0; i < T; ++i) {
          float a = 0;
          for (int d = 0; d < D; ++d) {
            const size_t o = ((size_t(b) * T + i) * Hq + h) * D + d;
            a += tof(out[o]) * tof(dout[o]);
          }
          delta[(size_t(b) * Hq + h) * T + i] = a;
        }
    // The gradient of the stored inputs, given the lse and delta the kernels are given.
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < Hq; ++h)
        for (int i = 0; i < T; ++i) {
          const int g = h / G;
          const size_t r = (size_t(b) * Hq + h) * T + i;
          for (int j = 0; j <= i; ++j) {
            double s = 0, dp = 0;
            for (int d = 0; d < D; ++d) s += Q(b, i, h, d) * K(b, j, g, d), dp += O(b, i, h, d) * V(b, j, g, d);
            const double p = std::exp(s * scale - double(lse[r])), ds = p * (dp - double(delta[r]));
            for (int d = 0; d < D; ++d) {
              dqr[((size_t(b) * T + i) * Hq + h) * D + d] += scale * ds * K(b, j, g, d);
              dkr[((size_t(b) * T + j) * Hkv + g) * D + d] += scale * ds * Q(b, i, h, d);
              dvr[((size_t(b) * T + j) * Hkv + g) * D + d] += p * O(b, i, h, d);
            }
          }
        }
  }
  int64_t qbs() const { return int64_t(T) * Hq * D; }
  int64_t qts() const { return int64_t(Hq) * D; }
  int64_t kvbs() const { return int64_t(T) * Hkv * D; }
  int64_t kvts() const { return int64_t(Hkv) * D; }
};

template <class E> std::vector<float> F(const std::vector<E>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = tof(x[i]);
  return y;
}

bool verdict(const char* what, double e, double tol) {
  const bool ok = e <= tol;
  std::printf("  %-34s rel. error %.2e (bound %.0e) %s\n", what, e, tol, ok ? "ok" : "FAIL");
  return ok;
}

template <int D, int BMKV, int BNQ>
bool mma_case(int B, int T, int Hq, int Hkv) {
  std::printf("tensor cores (bf16) D%d B%d T%d Hq%d Hkv%d\n", D, B, T, Hq, Hkv);
  Problem<bf16> p(B, T, Hq, Hkv, D, unsigned(B * 7919 + T * 31 + Hq * 7 + D));
  const bf16 nan = fromf<bf16>(NAN);
  std::vector<bf16> out(p.q.size(), nan), dq(p.q.size(), nan), dk(p.k.size(), nan), dv(p.k.size(), nan);
  std::vector<float> lse(p.lse.size(), NAN);
  using P = PrefillMma<D, 4>;
  const int nmb = (T + P::BM - 1) / P::BM;
  emu_launch(nmb * B * Hq, 128, [&] {
    prefill_mma<D, 4>(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(), B, T, T, Hq, Hkv, p.qbs(), p.qts(),
                      p.kvbs(), p.kvts(), float(p.scale) * 1.4426950408889634f, nmb);
  });
  const int nkb = (T + BwdDkdvMma<D, BMKV>::BN - 1) / BwdDkdvMma<D, BMKV>::BN;
  emu_launch(nkb * B * Hkv, kMmaBwdThreads, [&] {
    bwd_dkdv_mma<D, BMKV>(p.q.data(), p.k.data(), p.v.data(), p.dout.data(), p.lse.data(), p.delta.data(), dk.data(),
                          dv.data(), T, Hq, Hkv, p.qbs(), p.qts(), p.kvbs(), p.kvts(), float(p.scale), nkb);
  });
  const int nqb = (T + BwdDqMma<D, BNQ>::BM - 1) / BwdDqMma<D, BNQ>::BM;
  emu_launch(nqb * B * Hq, kMmaBwdThreads, [&] {
    bwd_dq_mma<D, BNQ>(p.q.data(), p.k.data(), p.v.data(), p.dout.data(), p.lse.data(), p.delta.data(), dq.data(), B,
                       T, Hq, Hkv, p.qbs(), p.qts(), p.kvbs(), p.kvts(), float(p.scale), nqb);
  });
  bool ok = verdict("prefill_mma out", relerr(F(out), p.outr), 1e-2);
  ok &= verdict("prefill_mma lse", relerr(lse, p.lser), 1e-5);
  ok &= verdict("bwd_dq_mma dq", relerr(F(dq), p.dqr), 1e-2);
  ok &= verdict("bwd_dkdv_mma dk", relerr(F(dk), p.dkr), 1e-2);
  ok &= verdict("bwd_dkdv_mma dv", relerr(F(dv), p.dvr), 1e-2);
  return ok;
}

template <class E, int DM>
bool simt_case(int B, int T, int Hq, int Hkv, int D) {
  std::printf("CUDA cores (%s) D%d B%d T%d Hq%d Hkv%d\n", sizeof(E) == 4 ? "f32" : "bf16", D, B, T, Hq, Hkv);
  Problem<E> p(B, T, Hq, Hkv, D, unsigned(B * 131 + T * 17 + Hq * 5 + D));
  const E nan = fromf<E>(NAN);
  std::vector<E> dq(p.q.size(), nan), dk(p.k.size(), nan), dv(p.k.size(), nan);
  const int ntile = (T + kBwdTile - 1) / kBwdTile;
  emu_launch(ntile * B * Hkv, kBwdThreads, [&] {
    bwd_dkdv<E, DM>(p.q.data(), p.k.data(), p.v.data(), p.dout.data(), p.lse.data(), p.delta.data(), dk.data(),
                    dv.data(), B, T, Hq, Hkv, D, p.qbs(), p.qts(), p.kvbs(), p.kvts(), float(p.scale), ntile);
  });
  emu_launch(ntile * B * Hq, kBwdThreads, [&] {
    bwd_dq<E, DM>(p.q.data(), p.k.data(), p.v.data(), p.dout.data(), p.lse.data(), p.delta.data(), dq.data(), B, T, Hq,
                  Hkv, D, p.qbs(), p.qts(), p.kvbs(), p.kvts(), float(p.scale), ntile);
  });
  const double tol = sizeof(E) == 4 ? 1e-5 : 1e-2;
  bool ok = verdict("bwd_dq dq", relerr(F(dq), p.dqr), tol);
  ok &= verdict("bwd_dkdv dk", relerr(F(dk), p.dkr), tol);
  ok &= verdict("bwd_dkdv dv", relerr(F(dv), p.dvr), tol);
  return ok;
}

int main() {
  bool ok = true;
  ok &= mma_case<64, 64, 64>(1, 70, 2, 1);
  ok &= mma_case<64, 64, 64>(2, 130, 4, 2);
  ok &= mma_case<128, 32, 32>(1, 77, 2, 2);
  ok &= mma_case<128, 32, 32>(1, 100, 4, 1);
  ok &= simt_case<float, 64>(1, 45, 2, 1, 64);
  ok &= simt_case<float, 64>(1, 33, 2, 2, 48);
  ok &= simt_case<float, 128>(2, 40, 4, 2, 128);
  ok &= simt_case<bf16, 64>(1, 50, 3, 1, 64);
  ok &= simt_case<bf16, 128>(1, 37, 2, 1, 96);
  std::printf(ok ? "all passed\n" : "FAILED\n");
  return ok ? 0 : 1;
}
