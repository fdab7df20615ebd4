// The GEMVs of native/cuda/matmul_gemv.cuh (the pipelined and the register kernel, plain, with rmsnorm,
// with SwiGLU; the register kernel held bit for bit to the pipelined one), and its split-K reduce with the
// norm (splitk_reduce_norm, held bit for bit to splitk_reduce), run on the CPU through emu.h (cp.async copies at
// once, mma.sync through the warp's barrier), against a float64 reference on random bf16 inputs, C
// poisoned (NaN) first: M = 1..16, N not a multiple of 8, K not a multiple of 32, grids of one tile a
// block and of several (the ring running on across tiles), warps left without a K chunk, bias, alpha and
// beta. The emulator checks the indexing and the ring's bookkeeping; it cannot see timing or the memory
// ordering of a real GPU. Built and run by run.sh; exits non-zero on a failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <vector_functions.h>

#include "emu.h"
#define PARALLM_GEMV_SMEM parallm::cuda::attn_detail::smem_raw
#include "matmul_gemv.cuh"

using bf16 = __nv_bfloat16;
namespace mm = parallm::cuda::mm;

static std::mt19937 rng(2027);

// ||C - ref|| / ||ref|| over the output, infinite if any element is not finite (unwritten: C starts NaN).
static double rel_error(const std::vector<bf16>& C, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double o = __bfloat162float(C[i]);
    if (!std::isfinite(o)) return INFINITY;
    num += (o - ref[i]) * (o - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// norm: the NORM form (rmsnorm_matmul): X's rows normalized by rstd and the weight nw (reference in
// float64 from the bf16 inputs; the kernel rounds the normalized rows to bf16, within the bound).
template <int NW = mm::GEMVP_WARPS, int UC = mm::GEMVP_UC, int P = mm::GEMVP_P>
static bool one(int M, int N, int K, int grid, bool bias_on, float alpha, float beta, bool norm = false) {
  std::uniform_real_distribution<float> U(-1, 1);
  std::vector<bf16> X(size_t(M) * K), W(size_t(N) * K), B(N), C(size_t(M) * N), NW_(K);
  for (auto& v : X) v = __float2bfloat16_rn(U(rng));
  for (auto& v : W) v = __float2bfloat16_rn(U(rng));
  for (auto& v : B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : NW_) v = __float2bfloat16_rn(0.5f + U(rng));
  for (auto& v : C) v = __float2bfloat16_rn(beta != 0.f ? U(rng) : NAN);
  const float eps = 1e-5f;
  std::vector<double> H(size_t(M) * K);
  for (int m = 0; m < M; ++m) {
    double ss = 0;
    for (int k = 0; k < K; ++k) ss += double(__bfloat162float(X[size_t(m) * K + k])) * __bfloat162float(X[size_t(m) * K + k]);
    const double rstd = norm ? 1 / std::sqrt(ss / K + eps) : 1;
    for (int k = 0; k < K; ++k)
      H[size_t(m) * K + k] = __bfloat162float(X[size_t(m) * K + k]) * rstd * (norm ? __bfloat162float(NW_[k]) : 1.f);
  }
  std::vector<double> ref(size_t(M) * N);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += H[size_t(m) * K + k] * __bfloat162float(W[size_t(n) * K + k]);
      s *= alpha;
      if (beta != 0.f) s += beta * double(__bfloat162float(C[size_t(m) * N + n]));
      if (bias_on) s += __bfloat162float(B[n]);
      ref[size_t(m) * N + n] = s;
    }
  const int pair_ok = N % 2 == 0;
  const std::vector<bf16> C0 = C;
  emu_launch(unsigned(grid), NW * 32, [&] {
    if (norm)
      mm::gemv_pipe_kernel<bf16, NW, UC, P, true>(X.data(), W.data(), bias_on ? B.data() : nullptr, C.data(), M, N, K,
                                                  alpha, beta, pair_ok, NW_.data(), eps, mm::gemvp_norm_threads(K));
    else
      mm::gemv_pipe_kernel<bf16, NW, UC, P>(X.data(), W.data(), bias_on ? B.data() : nullptr, C.data(), M, N, K,
                                            alpha, beta, pair_ok);
  });
  const double e = rel_error(C, ref);
  bool ok = e <= 1e-2;
  std::printf("  gemv_pipe<%d,%d,%d>%s M%-2d N%-4d K%-5d grid %-3d%s alpha %.2f beta %.2f: rel. error %.2e %s\n", NW, UC, P,
              norm ? " (rmsnorm)" : "", M, N, K, grid, bias_on ? " bias" : "     ", alpha, beta, e, ok ? "ok" : "FAIL");
  if (NW != mm::GEMV_WARPS) return ok;  // (16 warps split K otherwise: other sums)
  // The register kernel, both load forms (and, plain, on 16 rows a block; and the run-time form with its first
  // pass loaded before the PDL wait, WPRE): the pipelined kernel's bits (the same K split and order).
  // sel 4 and 5: the plain product in one pass of 12 chunks a warp (matmul.cu's gemv_one_pass), loaded after and
  // before the PDL wait.
  // sel 6 and 7 (one row of X): X's row in shared memory, unroll 8 (matmul.cu's gemv_xs), loaded after and before
  // the PDL wait.
  for (int sel = 0; sel < 8; ++sel) {
    if (norm && (sel == 2 || sel >= 4)) continue;
    if (sel >= 6 && (M != 1 || K > mm::kXsMaxK)) continue;
    std::vector<bf16> R = C0;
    emu_launch(unsigned(sel == 2 ? (N + 15) / 16 : (N + 7) / 8), mm::GEMV_WARPS * 32, [&] {
      const bf16* b = bias_on ? B.data() : nullptr;
      const int nt = mm::gemvp_norm_threads(K);
      constexpr int kNone = mm::NORM_NONE, kStore = mm::EPI_STORE;
      if (sel == 7) mm::gemv_kernel<bf16, 1, 8, 2, kNone, kStore, kNone, true, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok);
      else if (sel == 6) mm::gemv_kernel<bf16, 1, 8, 2, kNone, kStore, kNone, false, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok);
      else if (sel == 5) mm::gemv_kernel<bf16, 1, 12, 2, kNone, kStore, kNone, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok);
      else if (sel == 4) mm::gemv_kernel<bf16, 1, 12, 2>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok);
      else if (sel == 3 && norm)
        mm::gemv_kernel<bf16, 1, 4, 1, mm::NORM_RMS, kStore, kNone, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok, 1, NW_.data(), eps, nt);
      else if (sel == 3) mm::gemv_kernel<bf16, 1, 4, 1, kNone, kStore, kNone, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok, 1);
      else if (sel == 2) mm::gemv_kernel<bf16, 2, 4, false>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok);
      else if (norm && sel) mm::gemv_kernel<bf16, 1, 4, true, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok, 1, NW_.data(), eps, nt);
      else if (norm) mm::gemv_kernel<bf16, 1, 4, false, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok, 0, NW_.data(), eps, nt);
      else if (sel) mm::gemv_kernel<bf16, 1, 4, true>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok, 1);
      else mm::gemv_kernel<bf16, 1, 4, false>(X.data(), W.data(), b, R.data(), M, N, K, alpha, beta, pair_ok);
    });
    size_t diff = 0;
    for (size_t i = 0; i < R.size(); ++i) diff += std::memcmp(&R[i], &C[i], sizeof(bf16)) != 0;
    const double er = rel_error(R, ref);
    const bool okr = er <= 1e-2 && diff == 0;
    std::printf("  gemv (register, %s load)%s M%-2d N%-4d K%-5d: rel. error %.2e, %zu elements differ from the pipelined kernel %s\n",
                sel == 7 ? "hinted, X in shared memory, unroll 8, first pass before the wait"
                : sel == 6 ? "hinted, X in shared memory, unroll 8"
                : sel == 5 ? "hinted, one pass of 12, first pass before the wait" : sel == 4 ? "hinted, one pass of 12"
                : sel == 3 ? "run-time, first pass before the wait" : sel == 2 ? "16 rows a block, plain" : sel ? "run-time" : "plain",
                norm ? " (rmsnorm)" : "", M, N, K, er,
                diff, okr ? "ok" : "FAIL");
    ok &= okr;
  }
  return ok;
}

// SWIGLU (with the norm): W [2F, K], the gate rows then the up rows; C [M, F] = silu(gate) * up.
static bool swiglu(int M, int F, int K, int grid) {
  std::uniform_real_distribution<float> U(-1, 1);
  std::vector<bf16> X(size_t(M) * K), W(size_t(2 * F) * K), C(size_t(M) * F), NW_(K);
  for (auto& v : X) v = __float2bfloat16_rn(U(rng));
  for (auto& v : W) v = __float2bfloat16_rn(U(rng) * 0.1f);
  for (auto& v : NW_) v = __float2bfloat16_rn(0.5f + U(rng));
  for (auto& v : C) v = __float2bfloat16_rn(NAN);
  const float eps = 1e-5f;
  std::vector<double> ref(size_t(M) * F);
  for (int m = 0; m < M; ++m) {
    double ss = 0;
    for (int k = 0; k < K; ++k) ss += std::pow(double(__bfloat162float(X[size_t(m) * K + k])), 2);
    const double rstd = 1 / std::sqrt(ss / K + eps);
    for (int f = 0; f < F; ++f) {
      double g = 0, u = 0;
      for (int k = 0; k < K; ++k) {
        const double h = __bfloat162float(X[size_t(m) * K + k]) * rstd * __bfloat162float(NW_[k]);
        g += h * __bfloat162float(W[size_t(f) * K + k]);
        u += h * __bfloat162float(W[size_t(F + f) * K + k]);
      }
      ref[size_t(m) * F + f] = g / (1 + std::exp(-g)) * u;
    }
  }
  emu_launch(unsigned(grid), 8 * 32, [&] {
    mm::gemv_pipe_kernel<bf16, 8, 2, 8, true, true>(X.data(), W.data(), nullptr, C.data(), M, F, K, 1.f, 0.f, 0,
                                                    NW_.data(), eps, mm::gemvp_norm_threads(K));
  });
  const double e = rel_error(C, ref);
  bool ok = e <= 1e-2;
  std::printf("  gemv_pipe<8,2,8> (rmsnorm, swiglu) M%-2d F%-4d K%-5d grid %-3d: rel. error %.2e %s\n", M, F, K, grid, e,
              ok ? "ok" : "FAIL");
  // The register kernel's fused form: a block on 8 gate rows and their 8 up rows; the pipelined bits.
  std::vector<bf16> R(C.size(), __float2bfloat16_rn(NAN));
  emu_launch(unsigned((F + 7) / 8), mm::GEMV_WARPS * 32, [&] {
    mm::gemv_kernel<bf16, 2, 4, true, true, true>(X.data(), W.data(), nullptr, R.data(), M, F, K, 1.f, 0.f, 0, 1,
                                                  NW_.data(), eps, mm::gemvp_norm_threads(K));
  });
  size_t diff = 0;
  for (size_t i = 0; i < R.size(); ++i) diff += std::memcmp(&R[i], &C[i], sizeof(bf16)) != 0;
  const double er = rel_error(R, ref);
  const bool okr = er <= 1e-2 && diff == 0;
  std::printf("  gemv (register, rmsnorm, swiglu) M%-2d F%-4d K%-5d: rel. error %.2e, %zu elements differ from the pipelined kernel %s\n",
              M, F, K, er, diff, okr ? "ok" : "FAIL");
  return ok && okr;
}

// The register kernel with layernorm in its prologue (GPT-2's qkv and up projections), and GELU after the
// bias (the up projection): against float64.
static bool layernorm_gemv(int M, int N, int K, bool gelu, bool bias_on) {
  std::uniform_real_distribution<float> U(-1, 1);
  std::vector<bf16> X(size_t(M) * K), W(size_t(N) * K), B(N), C(size_t(M) * N), G(K), Bt(K);
  for (auto& v : X) v = __float2bfloat16_rn(2.f * U(rng) + 0.5f);  // an offset: the mean matters
  for (auto& v : W) v = __float2bfloat16_rn(U(rng) * 0.1f);
  for (auto& v : B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : G) v = __float2bfloat16_rn(1.f + 0.5f * U(rng));
  for (auto& v : Bt) v = __float2bfloat16_rn(0.2f * U(rng));
  for (auto& v : C) v = __float2bfloat16_rn(NAN);
  const float eps = 1e-5f;
  std::vector<double> ref(size_t(M) * N);
  for (int m = 0; m < M; ++m) {
    double mean = 0, var = 0;
    for (int k = 0; k < K; ++k) mean += __bfloat162float(X[size_t(m) * K + k]);
    mean /= K;
    for (int k = 0; k < K; ++k) var += std::pow(__bfloat162float(X[size_t(m) * K + k]) - mean, 2);
    const double rstd = 1 / std::sqrt(var / K + eps);
    for (int n = 0; n < N; ++n) {
      double s = bias_on ? double(__bfloat162float(B[n])) : 0.;
      for (int k = 0; k < K; ++k) {
        const double h = (__bfloat162float(X[size_t(m) * K + k]) - mean) * rstd * __bfloat162float(G[k]) +
                         __bfloat162float(Bt[k]);
        s += h * __bfloat162float(W[size_t(n) * K + k]);
      }
      if (gelu) s = 0.5 * s * (1 + std::tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)));
      ref[size_t(m) * N + n] = s;
    }
  }
  emu_launch(unsigned((N + 7) / 8), mm::GEMV_WARPS * 32, [&] {
    const bf16* b = bias_on ? B.data() : nullptr;
    const int nt = mm::gemvp_norm_threads(K), pair_ok = N % 2 == 0;
    if (gelu)
      mm::gemv_kernel<bf16, 1, 4, true, mm::NORM_LN, mm::EPI_GELU>(X.data(), W.data(), b, C.data(), M, N, K, 1.f, 0.f,
                                                                   pair_ok, 1, G.data(), eps, nt, Bt.data());
    else
      mm::gemv_kernel<bf16, 1, 4, false, mm::NORM_LN>(X.data(), W.data(), b, C.data(), M, N, K, 1.f, 0.f, pair_ok, 0,
                                                      G.data(), eps, nt, Bt.data());
  });
  const double e = rel_error(C, ref);
  const bool ok = e <= 1e-2;
  std::printf("  gemv (register, layernorm%s) M%-2d N%-4d K%-5d%s: rel. error %.2e %s\n", gelu ? ", gelu" : "", M, N, K,
              bias_on ? " bias" : "     ", e, ok ? "ok" : "FAIL");
  return ok;
}

// The register kernel with an activation in its epilogue and no norm (the unfused rmsnorm_matmul_swiglu
// and layernorm_matmul after their norm): SwiGLU over W's gate and up rows, or GELU after the bias.
static bool epilogue_gemv(int M, int N, int K, bool swiglu, bool bias_on, bool sel) {
  std::uniform_real_distribution<float> U(-1, 1);
  const int rows = swiglu ? 2 * N : N;
  std::vector<bf16> X(size_t(M) * K), W(size_t(rows) * K), B(N), C(size_t(M) * N);
  for (auto& v : X) v = __float2bfloat16_rn(U(rng));
  for (auto& v : W) v = __float2bfloat16_rn(U(rng) * 0.1f);
  for (auto& v : B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : C) v = __float2bfloat16_rn(NAN);
  std::vector<double> ref(size_t(M) * N);
  auto dot = [&](int m, int r) {
    double s = 0;
    for (int k = 0; k < K; ++k) s += double(__bfloat162float(X[size_t(m) * K + k])) * __bfloat162float(W[size_t(r) * K + k]);
    return s;
  };
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      if (swiglu) {
        const double g = dot(m, n), u = dot(m, N + n);
        ref[size_t(m) * N + n] = g / (1 + std::exp(-g)) * u;
      } else {
        const double s = dot(m, n) + (bias_on ? double(__bfloat162float(B[n])) : 0.);
        ref[size_t(m) * N + n] = 0.5 * s * (1 + std::tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)));
      }
    }
  emu_launch(unsigned((N + 7) / 8), mm::GEMV_WARPS * 32, [&] {
    const bf16* b = bias_on ? B.data() : nullptr;
    if (swiglu && sel) mm::gemv_kernel<bf16, 2, 4, true, mm::NORM_NONE, mm::EPI_SWIGLU>(X.data(), W.data(), nullptr, C.data(), M, N, K, 1.f, 0.f, 0, 1);
    else if (swiglu) mm::gemv_kernel<bf16, 2, 4, false, mm::NORM_NONE, mm::EPI_SWIGLU>(X.data(), W.data(), nullptr, C.data(), M, N, K, 1.f, 0.f, 0);
    else if (sel) mm::gemv_kernel<bf16, 1, 4, true, mm::NORM_NONE, mm::EPI_GELU>(X.data(), W.data(), b, C.data(), M, N, K, 1.f, 0.f, N % 2 == 0, 1);
    else mm::gemv_kernel<bf16, 1, 4, false, mm::NORM_NONE, mm::EPI_GELU>(X.data(), W.data(), b, C.data(), M, N, K, 1.f, 0.f, N % 2 == 0);
  });
  const double e = rel_error(C, ref);
  const bool ok = e <= 1e-2;
  std::printf("  gemv (register, %s, %s load) M%-2d N%-4d K%-5d%s: rel. error %.2e %s\n", swiglu ? "swiglu" : "gelu",
              sel ? "run-time" : "plain", M, N, K, bias_on ? " bias" : "     ", e, ok ? "ok" : "FAIL");
  return ok;
}

// The register kernel on 32 W rows a block (matmul.cu's launch_wide_gemv: HN 4, unroll 4 and 2; with SwiGLU 2 gate
// and 2 up sets, unroll 2): the bits of 8 rows a block (8 gate + 8 up with SwiGLU), every element written.
static bool wide(int M, int N, int K, bool swiglu) {
  std::uniform_real_distribution<float> U(-1, 1);
  const int rows = swiglu ? 2 * N : N;
  std::vector<bf16> X(size_t(M) * K), W(size_t(rows) * K), B(N), C0(size_t(M) * N);
  for (auto& v : X) v = __float2bfloat16_rn(U(rng));
  for (auto& v : W) v = __float2bfloat16_rn(U(rng) * 0.1f);
  for (auto& v : B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : C0) v = __float2bfloat16_rn(U(rng));
  const float beta = swiglu ? 0.f : 0.5f;
  const bf16* b = swiglu ? nullptr : B.data();
  const int pair_ok = N % 2 == 0;
  // sets: the launch's 8-row sets of C a block; kern: the instance, on a copy of C0 (poisoned unless beta reads it).
  auto run = [&](int sets, auto kern) {
    std::vector<bf16> C = C0;
    if (beta == 0.f)
      for (auto& v : C) v = __float2bfloat16_rn(NAN);
    emu_launch(unsigned((N + 8 * sets - 1) / (8 * sets)), mm::GEMV_WARPS * 32,
               [&] { kern(X.data(), W.data(), b, C.data(), M, N, K, 1.f, beta, pair_ok, 0, nullptr, 0.f, 32, nullptr, 0, nullptr, nullptr, 0); });
    return C;
  };
  std::vector<bf16> base;
  std::vector<std::pair<const char*, std::vector<bf16>>> forms;
  if (swiglu) {
    base = run(1, mm::gemv_kernel<bf16, 2, 4, 0, mm::NORM_NONE, mm::EPI_SWIGLU>);
    forms.emplace_back("2 gate + 2 up sets a block, unroll 2", run(2, mm::gemv_kernel<bf16, 4, 2, 0, mm::NORM_NONE, mm::EPI_SWIGLU>));
  } else {
    base = run(1, mm::gemv_kernel<bf16, 1, 4, 0>);
    forms.emplace_back("32 rows a block, unroll 4", run(4, mm::gemv_kernel<bf16, 4, 4, 0>));
    forms.emplace_back("32 rows a block, unroll 2", run(4, mm::gemv_kernel<bf16, 4, 2, 0>));
  }
  bool all = true;
  for (const auto& v : base) all &= !std::isnan(__bfloat162float(v));
  for (auto& [name, C] : forms) {
    size_t differ = 0, unwritten = 0;
    for (size_t i = 0; i < C.size(); ++i) {
      if (std::isnan(__bfloat162float(C[i]))) ++unwritten;
      if (std::memcmp(&C[i], &base[i], sizeof(bf16)) != 0) ++differ;
    }
    const bool ok = all && differ == 0 && unwritten == 0;
    std::printf("  gemv (register, %s%s) M%-2d N%-5d K%-5d: %zu differ from the 8-row form, %zu unwritten %s\n",
                name, swiglu ? ", swiglu" : "", M, N, K, differ, unwritten, ok ? "ok" : "FAIL");
    all &= ok;
  }
  return all;
}

// The register kernel's post-norm (matmul_residual_norm): C += X W^T + bias, then the last block to
// finish normalizes C's rows into H (rmsnorm, or layernorm with nb); the counter comes back zero.
// The post-norm read back from C, pass by pass (gemv_rows_stats over C, gemv_norm_pack): one block.
template <bool LN>
static void norm_from_c(const bf16* C, int M, int N, int nt, const bf16* G, const bf16* Bt, bf16* H) {
  static float s_norm[64];
  mm::gemv_rows_stats<bf16, LN, true>(C, M, N, 1e-5f, nt, s_norm, s_norm + 16, s_norm + 32);
  const int packs = N / 8;
  for (int i = int(threadIdx.x); i < M * packs; i += int(blockDim.x)) {
    const int m = i / packs, v = i % packs;
    mm::gemv_norm_pack<bf16, LN>(C + size_t(i) * 8, G + v * 8, LN ? Bt + v * 8 : nullptr, LN ? s_norm[m] : 0.f, s_norm[16 + m], H + size_t(i) * 8);
  }
}
static bool post_norm(int M, int N, int K, bool ln, bool sel) {
  std::uniform_real_distribution<float> U(-1, 1);
  std::vector<bf16> X(size_t(M) * K), W(size_t(N) * K), B(N), C(size_t(M) * N), H(size_t(M) * N), G(N), Bt(N);
  for (auto& v : X) v = __float2bfloat16_rn(U(rng));
  for (auto& v : W) v = __float2bfloat16_rn(U(rng) * 0.1f);
  for (auto& v : B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : C) v = __float2bfloat16_rn(2.f * U(rng) + 0.5f);
  for (auto& v : H) v = __float2bfloat16_rn(NAN);
  for (auto& v : G) v = __float2bfloat16_rn(1.f + 0.5f * U(rng));
  for (auto& v : Bt) v = __float2bfloat16_rn(0.2f * U(rng));
  std::vector<double> xr(size_t(M) * N), hr(size_t(M) * N);
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      double s = double(__bfloat162float(B[n])) + __bfloat162float(C[size_t(m) * N + n]);
      for (int k = 0; k < K; ++k) s += double(__bfloat162float(X[size_t(m) * K + k])) * __bfloat162float(W[size_t(n) * K + k]);
      xr[size_t(m) * N + n] = __bfloat162float(__float2bfloat16_rn(float(s)));
    }
    double mean = 0, var = 0;
    for (int n = 0; n < N; ++n) mean += xr[size_t(m) * N + n];
    mean = ln ? mean / N : 0.;
    for (int n = 0; n < N; ++n) var += std::pow(xr[size_t(m) * N + n] - mean, 2);
    const double rstd = 1 / std::sqrt(var / N + 1e-5);
    for (int n = 0; n < N; ++n)
      hr[size_t(m) * N + n] = (xr[size_t(m) * N + n] - mean) * rstd * __bfloat162float(G[n]) + (ln ? __bfloat162float(Bt[n]) : 0.);
  }
  const std::vector<bf16> C0 = C;
  unsigned counter = 0;
  const int nt = mm::gemvp_norm_threads(N), pair_ok = N % 2 == 0;
  emu_launch(unsigned((N + 7) / 8), mm::GEMV_WARPS * 32, [&] {
    if (ln && sel)
      mm::gemv_kernel<bf16, 1, 4, true, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_LN>(X.data(), W.data(), B.data(), C.data(), M, N, K, 1.f, 1.f, pair_ok, 1, G.data(), 1e-5f, nt, Bt.data(), 0, H.data(), &counter);
    else if (ln)
      mm::gemv_kernel<bf16, 1, 4, false, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_LN>(X.data(), W.data(), B.data(), C.data(), M, N, K, 1.f, 1.f, pair_ok, 0, G.data(), 1e-5f, nt, Bt.data(), 0, H.data(), &counter);
    else if (sel)
      mm::gemv_kernel<bf16, 1, 4, true, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_RMS>(X.data(), W.data(), B.data(), C.data(), M, N, K, 1.f, 1.f, pair_ok, 1, G.data(), 1e-5f, nt, nullptr, 0, H.data(), &counter);
    else
      mm::gemv_kernel<bf16, 1, 4, false, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_RMS>(X.data(), W.data(), B.data(), C.data(), M, N, K, 1.f, 1.f, pair_ok, 0, G.data(), 1e-5f, nt, nullptr, 0, H.data(), &counter);
  });
  // The same in one pass of 12 chunks a warp with them loaded before the PDL wait (matmul.cu's gemv_one_pass, GPT-2's
  // down projection): C and h bit for bit.
  std::vector<bf16> C3 = C0, H3(H.size(), __float2bfloat16_rn(NAN));
  unsigned counter3 = 0;
  emu_launch(unsigned((N + 7) / 8), mm::GEMV_WARPS * 32, [&] {
    if (ln)
      mm::gemv_kernel<bf16, 1, 12, 2, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_LN, true>(X.data(), W.data(), B.data(), C3.data(), M, N, K, 1.f, 1.f, pair_ok, 0, G.data(), 1e-5f, nt, Bt.data(), 0, H3.data(), &counter3);
    else
      mm::gemv_kernel<bf16, 1, 12, 2, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_RMS, true>(X.data(), W.data(), B.data(), C3.data(), M, N, K, 1.f, 1.f, pair_ok, 0, G.data(), 1e-5f, nt, nullptr, 0, H3.data(), &counter3);
  });
  bool same12 = counter3 == 0;
  for (size_t i = 0; i < C.size(); ++i) same12 &= std::memcmp(&C[i], &C3[i], sizeof(bf16)) == 0;
  for (size_t i = 0; i < H.size(); ++i) same12 &= std::memcmp(&H[i], &H3[i], sizeof(bf16)) == 0;
  // One row of X: the XS form (X's row in shared memory, unroll 8, loaded before the wait; matmul.cu's gemv_xs).
  if (M == 1 && K <= mm::kXsMaxK) {
    std::vector<bf16> C4 = C0, H4(H.size(), __float2bfloat16_rn(NAN));
    unsigned counter4 = 0;
    emu_launch(unsigned((N + 7) / 8), mm::GEMV_WARPS * 32, [&] {
      if (ln)
        mm::gemv_kernel<bf16, 1, 8, 2, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_LN, true, true>(X.data(), W.data(), B.data(), C4.data(), M, N, K, 1.f, 1.f, pair_ok, 0, G.data(), 1e-5f, nt, Bt.data(), 0, H4.data(), &counter4);
      else
        mm::gemv_kernel<bf16, 1, 8, 2, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_RMS, true, true>(X.data(), W.data(), B.data(), C4.data(), M, N, K, 1.f, 1.f, pair_ok, 0, G.data(), 1e-5f, nt, nullptr, 0, H4.data(), &counter4);
    });
    bool same_xs = counter4 == 0;
    for (size_t i = 0; i < C.size(); ++i) same_xs &= std::memcmp(&C[i], &C4[i], sizeof(bf16)) == 0;
    for (size_t i = 0; i < H.size(); ++i) same_xs &= std::memcmp(&H[i], &H4[i], sizeof(bf16)) == 0;
    std::printf("  ... X in shared memory, unroll 8: %s\n", same_xs ? "the same bits" : "DIFFERS");
    same12 &= same_xs;
  }
  const double ex = rel_error(C, xr), eh = rel_error(H, hr);
  // h bit for bit as the norm computes it from C read back (the epilogue's form for M * N > kPostRows:
  // gemv_rows_stats over C, gemv_norm_pack), whichever form the kernel took.
  std::vector<bf16> H2(H.size(), __float2bfloat16_rn(NAN));
  emu_launch(1u, mm::GEMV_WARPS * 32, [&] {
    if (ln) norm_from_c<true>(C.data(), M, N, nt, G.data(), Bt.data(), H2.data());
    else norm_from_c<false>(C.data(), M, N, nt, G.data(), nullptr, H2.data());
  });
  bool same = true;
  for (size_t i = 0; i < H.size(); ++i) same &= std::memcmp(&H[i], &H2[i], sizeof(bf16)) == 0;
  const bool ok = ex <= 1e-2 && eh <= 1e-2 && counter == 0 && same && same12;
  std::printf("  gemv (register, residual, then %s, %s load) M%-2d N%-4d K%-5d: rel. error x %.2e, h %.2e (%s the norm from C), counter %u, one pass of 12 %s %s\n",
              ln ? "layernorm" : "rmsnorm", sel ? "run-time" : "plain", M, N, K, ex, eh, same ? "=" : "!=", counter,
              same12 ? "the same bits" : "DIFFERS", ok ? "ok" : "FAIL");
  return ok;
}

// splitk_reduce_norm (the sm90 tile's K slices reduced with the next norm): C as splitk_reduce stores it,
// bit for bit, and h against float64 from that C; a block a row, more threads than the norm's.
static bool reduce_norm(int M, int N, int splits, bool ln, int threads) {
  std::uniform_real_distribution<float> U(-1, 1);
  std::vector<float> ws(size_t(splits) * M * N);
  std::vector<bf16> B(N), C(size_t(M) * N), G(N), Bt(N), H(size_t(M) * N);
  for (auto& v : ws) v = U(rng);
  for (auto& v : B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : C) v = __float2bfloat16_rn(2.f * U(rng) + 0.5f);
  for (auto& v : G) v = __float2bfloat16_rn(1.f + 0.5f * U(rng));
  for (auto& v : Bt) v = __float2bfloat16_rn(0.2f * U(rng));
  for (auto& v : H) v = __float2bfloat16_rn(NAN);
  std::vector<bf16> C2 = C;
  const int pair_ok = N % 2 == 0, nt = mm::gemvp_norm_threads(N);
  const int64_t pairs = int64_t(M) * ((N + 1) / 2);
  emu_launch(unsigned((pairs + 255) / 256), 256,
             [&] { mm::splitk_reduce<bf16>(ws.data(), splits, B.data(), C2.data(), M, N, 1.f, 1.f, pair_ok); });
  emu_launch(unsigned(M), threads, [&] {
    if (ln) mm::splitk_reduce_norm<bf16, true>(ws.data(), splits, B.data(), C.data(), M, N, 1.f, 1.f, pair_ok, G.data(), Bt.data(), 1e-5f, nt, H.data());
    else mm::splitk_reduce_norm<bf16, false>(ws.data(), splits, B.data(), C.data(), M, N, 1.f, 1.f, pair_ok, G.data(), nullptr, 1e-5f, nt, H.data());
  });
  bool same = true;
  for (size_t i = 0; i < C.size(); ++i) same &= std::memcmp(&C[i], &C2[i], sizeof(bf16)) == 0;
  std::vector<double> hr(size_t(M) * N);
  for (int m = 0; m < M; ++m) {
    double mean = 0, var = 0;
    for (int n = 0; n < N; ++n) mean += __bfloat162float(C[size_t(m) * N + n]);
    mean = ln ? mean / N : 0.;
    for (int n = 0; n < N; ++n) var += std::pow(__bfloat162float(C[size_t(m) * N + n]) - mean, 2);
    const double rstd = 1 / std::sqrt(var / N + 1e-5);
    for (int n = 0; n < N; ++n)
      hr[size_t(m) * N + n] = (__bfloat162float(C[size_t(m) * N + n]) - mean) * rstd * __bfloat162float(G[n]) + (ln ? __bfloat162float(Bt[n]) : 0.);
  }
  const double eh = rel_error(H, hr);
  const bool ok = same && eh <= 1e-2;
  std::printf("  splitk_reduce_norm (%s) M%-2d N%-4d %d slices, %d threads: C %s splitk_reduce's, rel. error h %.2e %s\n",
              ln ? "layernorm" : "rmsnorm", M, N, splits, threads, same ? "=" : "!=", eh, ok ? "ok" : "FAIL");
  return ok;
}

// splitk_reduce_swiglu (a gate+up product's K slices reduced with SwiGLU): y bit for bit as splitk_reduce (alpha 1,
// beta 0, no bias) then silu_gate's arithmetic on the stored gate and up.
static bool reduce_swiglu(int M, int F, int splits) {
  std::uniform_real_distribution<float> U(-1, 1);
  const int N = 2 * F;
  std::vector<float> ws(size_t(splits) * M * N);
  for (auto& v : ws) v = 3.f * U(rng);
  std::vector<bf16> GU(size_t(M) * N, __float2bfloat16_rn(NAN)), Y(size_t(M) * F, __float2bfloat16_rn(NAN));
  emu_launch(unsigned((int64_t(M) * F + 255) / 256), 256,
             [&] { mm::splitk_reduce<bf16>(ws.data(), splits, nullptr, GU.data(), M, N, 1.f, 0.f, 1); });
  emu_launch(unsigned((int64_t(M) * ((F + 1) / 2) + 255) / 256), 256,
             [&] { mm::splitk_reduce_swiglu<bf16>(ws.data(), splits, Y.data(), M, F); });
  // The 8-column form where it applies (F % 8 == 0), into its own output.
  const bool eight = F % 8 == 0;
  std::vector<bf16> Y8(size_t(M) * F, __float2bfloat16_rn(NAN));
  if (eight)
    emu_launch(unsigned((int64_t(M) * (F / 8) + 255) / 256), 256,
               [&] { mm::splitk_reduce_swiglu8<bf16>(ws.data(), splits, Y8.data(), M, F); });
  bool same = true, same8 = true;
  for (int m = 0; m < M; ++m)
    for (int f = 0; f < F; ++f) {
      const float g = __bfloat162float(GU[size_t(m) * N + f]), u = __bfloat162float(GU[size_t(m) * N + F + f]);
      const bf16 want = __float2bfloat16_rn(mm::gemvp_silu(g) * u);
      same &= std::memcmp(&want, &Y[size_t(m) * F + f], sizeof(bf16)) == 0;
      if (eight) same8 &= std::memcmp(&want, &Y8[size_t(m) * F + f], sizeof(bf16)) == 0;
    }
  std::printf("  splitk_reduce_swiglu M%-2d F%-5d %d slices: y %s splitk_reduce then silu_gate%s %s\n", M, F, splits,
              same ? "=" : "!=", eight ? (same8 ? "; 8 a thread =" : "; 8 a thread !=") : "",
              same && same8 ? "ok" : "FAIL");
  return same && same8;
}

int main() {
  bool ok = true;
  ok &= one(1, 64, 4096, 8, false, 1.f, 0.f);    // one tile a block, 16 chunks a warp (4 items)
  ok &= one(1, 203, 1000, 3, true, 1.f, 0.f);    // N odd, K % 32 != 0, ~9 tiles a block: ring across tiles
  ok &= one(16, 40, 520, 2, false, 0.5f, 0.f);   // M = 16: both X rows a lane; 17 chunks, warps short
  ok &= one(5, 24, 64, 2, true, 1.f, 0.25f);     // 2 chunks: six warps with none; beta reads C
  ok &= one(9, 130, 776, 4, false, 1.f, 0.f);    // rows 8..15 partly valid
  ok &= one(3, 17, 4104, 1, true, 2.f, 0.f);     // one block, 3 tiles, last one partial; partial last item
  ok &= one(1, 40, 4096, 2, false, 1.f, 0.f, true);   // rmsnorm in the prologue: 128 threads a row (4 warps)
  ok &= one(16, 24, 64, 2, true, 1.f, 0.5f, true);    // 16 rows, one warp a row
  ok &= one(5, 33, 8192, 3, false, 1.f, 0.f, true);   // 256 threads a row (every warp)
  // The alternative shapes (matmul.cu's launch_gemv_pipe_any): items of 2 chunks 12 deep; 16 warps.
  ok &= one<8, 2, 12>(3, 203, 1000, 3, true, 1.f, 0.f);
  ok &= one<8, 2, 12>(2, 40, 4096, 2, false, 1.f, 0.f, true);
  ok &= one<16, 4, 4>(16, 130, 776, 4, false, 1.f, 0.25f);
  ok &= one<16, 4, 4>(1, 24, 8192, 2, true, 1.f, 0.f, true);
  ok &= swiglu(1, 64, 4096, 3);   // several tiles a block
  ok &= swiglu(13, 21, 520, 2);   // F not a multiple of 8 (the up rows start mid-tile), rows 8..12
  ok &= layernorm_gemv(1, 2304, 768, false, true);  // GPT-2's qkv at batch 1 (32 threads a row)
  ok &= layernorm_gemv(3, 203, 768, true, true);    // its up projection's GELU; N odd, 3 rows
  ok &= layernorm_gemv(4, 40, 4096, true, false);   // 128 threads a row (4 warps), no bias
  ok &= layernorm_gemv(2, 17, 8192, false, true);   // 256 threads a row (every warp)
  ok &= epilogue_gemv(1, 64, 4096, true, false, true);    // LLaMA's gate/up at batch 1, run-time load
  ok &= epilogue_gemv(16, 21, 520, true, false, false);   // 16 rows, F not a multiple of 8, plain load
  ok &= epilogue_gemv(1, 203, 768, false, true, false);   // GPT-2's up projection: GELU after the bias, N odd
  ok &= epilogue_gemv(9, 40, 776, false, true, true);     // rows 8..15 partly valid
  ok &= wide(16, 292, 1000, false);    // edge sets (N not a multiple of 32), K % 32 != 0, beta reads C
  ok &= wide(13, 264, 4096, false);    // rows 8..12; a last block with one set of its four in
  ok &= wide(16, 1000, 520, true);     // SwiGLU: F not a multiple of 16 (an up set past the end)
  ok &= wide(1, 21, 776, true);        // one row; F inside a block's first gate set
  ok &= post_norm(1, 256, 512, false, true);    // 32 blocks, the norm on one warp's threads (32 a row)
  ok &= post_norm(3, 4096, 64, false, false);   // LLaMA's width: 128 threads a row, 512 blocks
  ok &= post_norm(16, 768, 96, true, true);     // GPT-2's width, layernorm, 16 rows
  ok &= post_norm(5, 200, 40, true, false);     // a partial 8-row tile
  // (layernorm's rows through shared memory up to M * N = kPostRows; 16 x 768 above reads C from L2)
  ok &= post_norm(1, 768, 3072, true, false);   // GPT-2's down projection at batch 1
  ok &= post_norm(4, 768, 768, true, true);     // GPT-2's out projection at batch 4
  ok &= post_norm(1, 4096, 64, true, false);    // kPostRows exactly
  ok &= reduce_norm(16, 4096, 2, false, 512);   // LLaMA's width at batch 16: a pack a thread, 128 the norm's
  ok &= reduce_norm(7, 4096, 5, false, 256);    // two packs a thread; four slices' loads at once, then one
  ok &= reduce_norm(5, 768, 4, true, 96);       // GPT-2's, layernorm (32 threads the norm's)
  ok &= reduce_norm(3, 8192, 8, false, 512);    // 256 threads the norm's; two packs a thread
  ok &= reduce_swiglu(16, 11008, 3);   // LLaMA-7B's gate+up at batch 16 in the W-as-A tile's three slices
  ok &= reduce_swiglu(5, 21, 5);        // F odd (the last thread one column), four slices' loads then one
  ok &= reduce_swiglu(2, 64, 8);        // two batches of four slices
  ok &= reduce_swiglu(3, 24, 7);        // four slices' loads then three at once, 8 a thread
  std::printf(ok ? "all passed\n" : "FAILED\n");
  return ok ? 0 : 1;
}
