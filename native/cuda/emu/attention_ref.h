// float64 references of causal attention (forward: out, lse; backward: dq, dk, dv given the lse and delta
// the kernels are given) on random inputs stored as E, shared by attention_emu.cc and kernels_emu.cc.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include <cuda_bf16.h>

inline float tof(float x) { return x; }
inline float tof(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class E> E fromf(float x);
template <> inline float fromf<float>(float x) { return x; }
template <> inline __nv_bfloat16 fromf<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

inline double relerr(const std::vector<float>& o, const std::vector<double>& r) {
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

