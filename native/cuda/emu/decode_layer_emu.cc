// The persistent GPT-2 decode-layer kernel (native/cuda/decode_layer.cu) on the host emulation (emu.h),
// its blocks all running at once (emu_launch_coop: the kernel waits at grid barriers), against a float64
// reference that rounds to bf16 where the ops apart do (layernorm, the qkv product, the KV cache, the
// attention output, the residual after each projection, the up product and its GELU). Random bf16
// inputs; B 1..4, D 64 and 128, C up to 832 (both register widths), several lens (one key, a split's
// worth, many splits), grids of a few blocks (the row loops run several chunks a warp). Checked: x, the
// new cache rows, the cache rows around them untouched, the counter left zero. Built and run by
// test/unit/decode-layer-emu.test.ts; exits non-zero on a failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <cuda_bf16.h>

#include "kernels.h"

using bf16 = __nv_bfloat16;
namespace pc = parallm::cuda;
namespace parallm::cuda {
void decode_layer_grid(int n);
}

static std::mt19937 rng(4242);
static bool all_ok = true;

static double rb(double v) { return __bfloat162float(__float2bfloat16_rn(float(v))); }

struct T {
  std::vector<bf16> h;
  std::vector<double> d;  // the stored values
  explicit T(size_t n, float lo = -1, float hi = 1) : h(n), d(n) {
    std::uniform_real_distribution<float> U(lo, hi);
    for (size_t i = 0; i < n; ++i) h[i] = __float2bfloat16_rn(U(rng)), d[i] = __bfloat162float(h[i]);
  }
  void* p() { return h.data(); }
};

static void layernorm_ref(const std::vector<double>& x, const T& g, const T& b, int B, int C, double eps,
                          std::vector<double>& y) {
  y.assign(size_t(B) * C, 0);
  for (int r = 0; r < B; ++r) {
    double m = 0, v = 0;
    for (int c = 0; c < C; ++c) m += x[size_t(r) * C + c];
    m /= C;
    for (int c = 0; c < C; ++c) v += (x[size_t(r) * C + c] - m) * (x[size_t(r) * C + c] - m);
    const double rs = 1 / std::sqrt(v / C + eps);
    for (int c = 0; c < C; ++c) y[size_t(r) * C + c] = rb((x[size_t(r) * C + c] - m) * rs * g.d[c] + b.d[c]);
  }
}
// y[b][n] = sum_k h[b][k] W[n][k] + bias[n] (float64)
static void linear_ref(const std::vector<double>& h, const T& W, const T& bias, int B, int N, int K, std::vector<double>& y) {
  y.assign(size_t(B) * N, 0);
  for (int b = 0; b < B; ++b)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += h[size_t(b) * K + k] * W.d[size_t(n) * K + k];
      y[size_t(b) * N + n] = s + bias.d[n];
    }
}
static double gelu(double x) { return 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

static double rel(const std::vector<double>& o, const std::vector<double>& r) {
  double n = 0, d = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    if (!std::isfinite(o[i])) return INFINITY;
    n += (o[i] - r[i]) * (o[i] - r[i]);
    d += r[i] * r[i];
  }
  return std::sqrt(n / (d > 0 ? d : 1));
}

static void one(int B, int H, int D, int maxLen, std::vector<int> pos, int grid = 0) {
  const int C = H * D, C3 = 3 * C, C4 = 4 * C;
  const int64_t kvT = C, kvB = int64_t(maxLen) * C;
  const double eps = 1e-5;
  const float ws = 1.f / std::sqrt(float(C));
  T x(size_t(B) * C, -2, 2), g1(C, 0.5f, 1.5f), b1(C, -0.2f, 0.2f), wqkv(size_t(C3) * C, -ws, ws), bqkv(C3, -0.2f, 0.2f);
  T wout(size_t(C) * C, -ws, ws), bout(C, -0.2f, 0.2f), g2(C, 0.5f, 1.5f), b2(C, -0.2f, 0.2f);
  T wup(size_t(C4) * C, -ws, ws), bup(C4, -0.2f, 0.2f), wdown(size_t(C) * C4, -ws / 2, ws / 2), bdown(C, -0.2f, 0.2f);
  T kc(size_t(B) * maxLen * C, -1, 1), vc(size_t(B) * maxLen * C, -1, 1);
  std::vector<int32_t> lens(B);
  for (int b = 0; b < B; ++b) lens[b] = pos[b] + 1;
  const std::vector<bf16> k0 = kc.h, v0 = vc.h;
  uint32_t counter = 0;

  // The reference.
  std::vector<double> h, qkv, xr = x.d;
  layernorm_ref(xr, g1, b1, B, C, eps, h);
  linear_ref(h, wqkv, bqkv, B, C3, C, qkv);
  for (double& v : qkv) v = rb(v);
  std::vector<double> kd = kc.d, vd = vc.d;
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c) {
      kd[size_t(b) * kvB + size_t(pos[b]) * kvT + c] = qkv[size_t(b) * C3 + C + c];
      vd[size_t(b) * kvB + size_t(pos[b]) * kvT + c] = qkv[size_t(b) * C3 + 2 * C + c];
    }
  std::vector<double> att(size_t(B) * C);
  for (int b = 0; b < B; ++b)
    for (int hh = 0; hh < H; ++hh) {
      const int L = lens[b];
      std::vector<double> s(L);
      double mx = -INFINITY;
      for (int j = 0; j < L; ++j) {
        double t = 0;
        for (int d = 0; d < D; ++d) t += qkv[size_t(b) * C3 + hh * D + d] * kd[size_t(b) * kvB + size_t(j) * kvT + hh * D + d];
        s[j] = t / std::sqrt(double(D));
        mx = std::max(mx, s[j]);
      }
      double den = 0;
      for (int j = 0; j < L; ++j) den += (s[j] = std::exp(s[j] - mx));
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (int j = 0; j < L; ++j) o += s[j] * vd[size_t(b) * kvB + size_t(j) * kvT + hh * D + d];
        att[size_t(b) * C + hh * D + d] = rb(o / den);
      }
    }
  std::vector<double> t;
  linear_ref(att, wout, bout, B, C, C, t);
  for (size_t i = 0; i < xr.size(); ++i) xr[i] = rb(xr[i] + t[i]);
  layernorm_ref(xr, g2, b2, B, C, eps, h);
  std::vector<double> a;
  linear_ref(h, wup, bup, B, C4, C, a);
  for (double& v : a) v = rb(gelu(rb(v)));
  linear_ref(a, wdown, bdown, B, C, C4, t);
  for (size_t i = 0; i < xr.size(); ++i) xr[i] = rb(xr[i] + t[i]);

  // The kernel.
  std::vector<int32_t> posv(pos.begin(), pos.end());
  pc::decode_layer_grid(grid);
  pc::decode_layer_gpt2(nullptr, parallm::DType::BF16, x.p(), g1.p(), b1.p(), wqkv.p(), bqkv.p(), wout.p(), bout.p(),
                        g2.p(), b2.p(), wup.p(), bup.p(), wdown.p(), bdown.p(), kc.p(), vc.p(), posv.data(), lens.data(),
                        &counter, B, C, H, D, kvB, kvT, maxLen, float(eps));
  pc::decode_layer_grid(0);

  std::vector<double> xo(x.h.size()), x0 = x.d, dref(x.h.size()), dout(x.h.size());
  for (size_t i = 0; i < xo.size(); ++i) {
    xo[i] = __bfloat162float(x.h[i]);
    dref[i] = xr[i] - x0[i];
    dout[i] = xo[i] - x0[i];
  }
  std::vector<double> kn, kr, vn, vr;
  bool untouched = true;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < maxLen; ++j)
      for (int c = 0; c < C; ++c) {
        const size_t i = size_t(b) * kvB + size_t(j) * kvT + c;
        if (j == pos[b]) {
          kn.push_back(__bfloat162float(kc.h[i])), kr.push_back(kd[i]);
          vn.push_back(__bfloat162float(vc.h[i])), vr.push_back(vd[i]);
        } else if (std::memcmp(&kc.h[i], &k0[i], 2) || std::memcmp(&vc.h[i], &v0[i], 2)) {
          untouched = false;
        }
      }
  const double ex = rel(xo, xr), ed = rel(dout, dref), ek = rel(kn, kr), ev = rel(vn, vr);
  const bool ok = ex <= 1e-2 && ed <= 3e-2 && ek <= 1e-2 && ev <= 1e-2 && untouched && counter == 0;
  all_ok &= ok;
  std::printf("  B%d H%-2d D%-3d C%-4d maxLen %-4d pos", B, H, D, C, maxLen);
  for (int p : pos) std::printf(" %d", p);
  std::printf("%s: x %.2e, layer's update %.2e, k %.2e, v %.2e%s%s %s\n", grid ? " (grid forced)" : "", ex, ed, ek,
              ev, untouched ? "" : ", OTHER CACHE ROWS WRITTEN", counter ? ", COUNTER NOT ZERO" : "", ok ? "ok" : "FAIL");
}

int main() {
  std::printf("decode_layer_gpt2 (emulated, cooperative grid):\n");
  one(1, 2, 64, 64, {40});
  one(1, 1, 128, 200, {149});
  one(2, 2, 64, 96, {0, 95});
  one(3, 2, 64, 80, {0, 37, 79});
  one(4, 1, 128, 48, {5, 47, 20, 31});
  one(2, 3, 64, 130, {129, 64}, 2);
  one(1, 13, 64, 40, {33});  // C = 832: the wider register rows
  one(1, 2, 64, 600, {520});  // D 64, several splits of a head, merged by the last to finish
  std::printf(all_ok ? "all passed\n" : "FAILURES\n");
  return all_ok ? 0 : 1;
}
