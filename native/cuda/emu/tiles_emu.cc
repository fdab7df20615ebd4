// The Hopper matmul tiles (native/cuda/matmul_sm90.cuh: the 64- and 128-row tiles, every transpose; and
// matmul_sm90_wtile.cuh: the W-as-A tile for decode's few rows) run on the CPU through emu.h and the
// stand-ins sm90_common.cuh (mbarriers, TMA loads and stores with the 128-byte swizzle) and
// matmul_wgmma_op.cuh (the wgmmas from shared-memory descriptors), against a float64 reference on random
// bf16 inputs, C poisoned (NaN) first where beta is 0: tile edges in M and N, a K tail the TMA zero-fills,
// K slices with their f32 partials added by splitk_reduce, the 128-row tile 256 and 192 columns wide, grids
// smaller than the work (the blocks stride and the ring runs on across units), bias, alpha and beta, and the TMA
// store of C. The emulation checks the
// indexing, the ring's and the mbarriers' bookkeeping (an arrival with none pending is an error) and that
// the descriptors read what the TMA wrote; it cannot see timing or a real GPU's memory ordering, and its sums
// within a k16 step are in k order, so it is held to float64, not to a GPU's bits.
// Built and run by run.sh (`tiles`), after rewriting the kernels' PTX-only asm statements (fences, wgmma
// fence/commit/wait, setmaxnreg) away; exits non-zero on a failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <vector_functions.h>

#include "emu.h"
#include "sm90_common.cuh"
#include "matmul_sm90.cuh"
#include "matmul_sm90_wtile.cuh"

using bf16 = __nv_bfloat16;
namespace mm = parallm::cuda::mm;
namespace sm90 = parallm::cuda::sm90;

static std::mt19937 rng(2029);

// ||C - ref|| / ||ref||, infinite if any element is not finite (unwritten: C starts NaN where beta is 0).
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

struct Problem {
  int M, N, K;
  bool transA, transB;
  std::vector<bf16> A, B, bias, C;
  std::vector<double> ref;
};

// A [M][K] (or [K][M] with transA), B [N][K] with transB (else [K][N]), C [M][N] = alpha A B^T + beta C + bias.
static Problem make(int M, int N, int K, bool ta, bool tb, bool bias_on, float alpha, float beta) {
  std::uniform_real_distribution<float> U(-1, 1);
  Problem p{M, N, K, ta, tb, std::vector<bf16>(size_t(M) * K), std::vector<bf16>(size_t(N) * K),
            std::vector<bf16>(bias_on ? N : 0), std::vector<bf16>(size_t(M) * N), std::vector<double>(size_t(M) * N)};
  for (auto& v : p.A) v = __float2bfloat16_rn(U(rng));
  for (auto& v : p.B) v = __float2bfloat16_rn(U(rng));
  for (auto& v : p.bias) v = __float2bfloat16_rn(U(rng));
  for (auto& v : p.C) v = __float2bfloat16_rn(beta != 0.f ? U(rng) : NAN);
  auto a = [&](int m, int k) { return double(__bfloat162float(ta ? p.A[size_t(k) * M + m] : p.A[size_t(m) * K + k])); };
  auto b = [&](int n, int k) { return double(__bfloat162float(tb ? p.B[size_t(n) * K + k] : p.B[size_t(k) * N + n])); };
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += a(m, k) * b(n, k);
      s *= alpha;
      if (beta != 0.f) s += beta * double(__bfloat162float(p.C[size_t(m) * N + n]));
      if (bias_on) s += __bfloat162float(p.bias[n]);
      p.ref[size_t(m) * N + n] = s;
    }
  return p;
}

// The slices' partials, added and stored as matmul.cu's reduce_slices does without a norm.
static void reduce(Problem& p, std::vector<float>& ws, int splits, float alpha, float beta) {
  const int64_t pairs = int64_t(p.M) * ((p.N + 1) / 2);
  const int pair_ok = p.N % 2 == 0;
  emu_launch(unsigned((pairs + 255) / 256), 256, [&] {
    mm::splitk_reduce<bf16>(ws.data(), splits, p.bias.empty() ? nullptr : p.bias.data(), p.C.data(), p.M, p.N, alpha,
                            beta, pair_ok);
  });
}

static bool report(const char* what, const Problem& p, int splits, int grid, bool bias_on, float alpha, float beta,
                   const char* extra = "") {
  const double e = rel_error(p.C, p.ref);
  const int errs = sm90::emu_sm90_errors.exchange(0);
  const bool ok = e <= 1e-2 && errs == 0;
  std::printf("  %s%s M%-3d N%-4d K%-5d splits %d grid %-2d%s alpha %.2f beta %.2f: rel. error %.2e%s %s\n", what,
              extra, p.M, p.N, p.K, splits, grid, bias_on ? " bias" : "     ", alpha, beta, e,
              errs ? " (emulation errors)" : "", ok ? "ok" : "FAIL");
  return ok;
}

// The W-as-A tile: X [M][K] (M <= 64) against W [N][K], as matmul.cu's try_sm90w launches it.
template <int NX>
static bool wtile_nx(int M, int N, int K, int splits, int grid, bool bias_on, float alpha, float beta) {
  using Sh = mm::WShape<NX>;
  Problem p = make(M, N, K, false, true, bias_on, alpha, beta);
  CUtensorMap mW, mX;
  sm90::emu_encode_2d(&mW, p.B.data(), uint64_t(K), uint64_t(N), 64, uint32_t(Sh::BW));
  sm90::emu_encode_2d(&mX, p.A.data(), uint64_t(K), uint64_t(M), 64, uint32_t(NX));
  const int tiles = (N + Sh::BW - 1) / Sh::BW;
  std::vector<float> ws(splits > 1 ? size_t(splits) * M * N : 0, NAN);
  emu_launch(unsigned(grid), Sh::THREADS, [&] {
    mm::s90w_kernel<bf16, NX>(mW, mX, p.bias.empty() ? nullptr : p.bias.data(), p.C.data(), M, N, K, alpha, beta, tiles,
                              splits, splits > 1 ? ws.data() : nullptr);
  });
  if (splits > 1) reduce(p, ws, splits, alpha, beta);
  char nx[32];
  std::snprintf(nx, sizeof nx, " (X rows padded to %d)", NX);
  return report("W-as-A tile", p, splits, grid, bias_on, alpha, beta, nx);
}
static bool wtile(int M, int N, int K, int splits, int grid, bool bias_on, float alpha, float beta) {
  if (M <= 8) return wtile_nx<8>(M, N, K, splits, grid, bias_on, alpha, beta);
  if (M <= 16) return wtile_nx<16>(M, N, K, splits, grid, bias_on, alpha, beta);
  if (M <= 32) return wtile_nx<32>(M, N, K, splits, grid, bias_on, alpha, beta);
  return wtile_nx<64>(M, N, K, splits, grid, bias_on, alpha, beta);
}

// The 64-row (CW 1) and 128-row (CW 2) tiles, as matmul.cu's try_sm90 and launch_sm90_t launch them; store_tma:
// C through shared memory and the TMA (the host's condition: one slice, beta 0, N % 8 == 0). The 128-row tile's cases
// also with the blocks drawing their units from a counter (matmul.cu's tile_counter), from the first or after each
// block's own first, the counter rearmed (zero) after.
template <bool TA, bool TB, int CW, int BN = 256>
static bool tile_once(int M, int N, int K, int splits, int grid, bool bias_on, float alpha, float beta, bool store_tma,
                      bool drawn, int first_own) {
  using Sh = mm::S90Shape<CW, BN>;
  Problem p = make(M, N, K, TA, TB, bias_on, alpha, beta);
  CUtensorMap mA, mB, mC;
  if (TA) sm90::emu_encode_2d(&mA, p.A.data(), uint64_t(M), uint64_t(K), 64, 64);
  else sm90::emu_encode_2d(&mA, p.A.data(), uint64_t(K), uint64_t(M), 64, uint32_t(Sh::BM));
  if (TB) sm90::emu_encode_2d(&mB, p.B.data(), uint64_t(K), uint64_t(N), 64, uint32_t(Sh::BN));
  else sm90::emu_encode_2d(&mB, p.B.data(), uint64_t(N), uint64_t(K), 64, 64);
  store_tma = store_tma && splits == 1 && beta == 0.f && N % 8 == 0;
  if (store_tma) sm90::emu_encode_2d(&mC, p.C.data(), uint64_t(N), uint64_t(M), 64, 64);
  else std::memset(&mC, 0, sizeof mC);
  const int tm = (M + Sh::BM - 1) / Sh::BM, tn = (N + Sh::BN - 1) / Sh::BN;
  std::vector<float> ws(splits > 1 ? size_t(splits) * M * N : 0, NAN);
  const int pair_ok = N % 2 == 0;
  unsigned counter[2] = {0, 0};
  emu_launch(unsigned(grid), Sh::THREADS, [&] {
    const bf16* bias = p.bias.empty() ? nullptr : p.bias.data();
    float* w = splits > 1 ? ws.data() : nullptr;
    if (drawn)
      mm::s90_kernel<bf16, TA, TB, CW, BN, true>(mA, mB, mC, store_tma, bias, p.C.data(), M, N, K, alpha, beta, tm, tn,
                                                 pair_ok, splits, w, counter, first_own);
    else
      mm::s90_kernel<bf16, TA, TB, CW, BN, false>(mA, mB, mC, store_tma, bias, p.C.data(), M, N, K, alpha, beta, tm, tn,
                                                  pair_ok, splits, w, nullptr, 0);
  });
  if (splits > 1) reduce(p, ws, splits, alpha, beta);
  char what[96];
  std::snprintf(what, sizeof what, "%d x %d tile, A%s B%s%s%s", 64 * CW, BN, TA ? "^T" : "  ", TB ? "^T" : "  ",
                store_tma ? ", C by the TMA" : "", !drawn ? ", units strided" : first_own ? ", units drawn after its own" : ", units drawn");
  bool ok = report(what, p, splits, grid, bias_on, alpha, beta);
  if (counter[0] || counter[1]) {
    std::printf("  FAILED: the tile counter was left at {%u, %u}, not rearmed\n", counter[0], counter[1]);
    ok = false;
  }
  return ok;
}
template <bool TA, bool TB, int CW, int BN = 256>
static bool tile(int M, int N, int K, int splits, int grid, bool bias_on, float alpha, float beta, bool store_tma) {
  bool ok = tile_once<TA, TB, CW, BN>(M, N, K, splits, grid, bias_on, alpha, beta, store_tma, false, 0);
  if constexpr (CW == 2) {  // (the 64-row tile always strides: matmul.cu)
    ok &= tile_once<TA, TB, CW, BN>(M, N, K, splits, grid, bias_on, alpha, beta, store_tma, true, 0);
    ok &= tile_once<TA, TB, CW, BN>(M, N, K, splits, grid, bias_on, alpha, beta, store_tma, true, 1);
  }
  return ok;
}

int main() {
  bool ok = true;
  std::printf("The W-as-A tile (matmul_sm90_wtile.cuh):\n");
  ok &= wtile(1, 128, 64, 1, 1, false, 1.f, 0.f);        // one tile, one k-tile
  ok &= wtile(5, 200, 200, 1, 1, true, 1.f, 0.f);        // N's edge rows and K's tail zero-filled; two tiles a block
  ok &= wtile(16, 384, 1000, 3, 4, false, 1.f, 0.f);     // 16 rows (decode's batch 16); slices, fewer blocks than units
  ok &= wtile(9, 256, 960, 4, 3, true, 0.5f, 0.25f);     // beta reads C in the reduce; rows 9..15 padding
  ok &= wtile(13, 130, 4104, 2, 2, false, 1.f, 0.f);     // K of 65 k-tiles (the ring laps), N odd-ish
  ok &= wtile(27, 256, 512, 1, 2, true, 2.f, 0.5f);      // X padded to 32; beta in the tile's own epilogue
  ok &= wtile(64, 128, 320, 2, 1, false, 1.f, 0.f);      // 64 rows: X padded to 64
  ok &= wtile(40, 300, 136, 1, 3, false, 1.f, 0.f);      // 40 rows padded to 64; K tail of 8
  std::printf("The 64- and 128-row tiles, 256 and 192 columns (matmul_sm90.cuh):\n");
  ok &= tile<false, true, 1>(16, 256, 192, 1, 1, false, 1.f, 0.f, false);  // decode's 64-row tile, C from registers
  ok &= tile<false, true, 1>(37, 520, 200, 1, 2, true, 1.f, 0.f, true);    // C by the TMA, edges clipped
  ok &= tile<false, true, 1>(64, 300, 1000, 3, 2, false, 1.f, 0.5f, false);  // slices, beta; N not a multiple of 8
  ok &= tile<false, true, 2>(130, 264, 136, 1, 2, true, 1.f, 0.f, true);   // 128-row tiles: 2 x 2, edges in both
  ok &= tile<false, false, 2>(100, 200, 96, 1, 1, false, 1.f, 0.f, false);  // B [K][N]: N-major boxes
  ok &= tile<true, true, 2>(96, 256, 128, 2, 2, false, 1.f, 0.f, false);   // A [K][M]: M-major boxes; slices
  ok &= tile<true, false, 1>(56, 136, 72, 1, 1, true, 0.5f, 0.f, true);    // both transposed, C by the TMA
  ok &= tile<true, false, 2>(192, 512, 64, 1, 3, false, 1.f, 0.25f, false);  // 2 x 2 tiles on 3 blocks, beta
  // The 192-column form (m64n192k16; B's K-major box 192 rows, or three 64-column boxes; C's last 64 columns a box).
  ok &= tile<false, true, 2, 192>(130, 400, 136, 1, 2, true, 1.f, 0.f, true);    // 2 x 3 tiles, edges; C by the TMA
  ok &= tile<false, false, 2, 192>(256, 384, 200, 2, 3, false, 1.f, 0.f, false);  // B [K][N]; slices
  ok &= tile<true, false, 2, 192>(200, 192, 128, 1, 1, true, 0.5f, 0.25f, false); // dW's form: A^T, beta
  ok &= tile<true, true, 2, 192>(128, 200, 72, 1, 2, false, 1.f, 0.f, true);     // both transposed, N's edge by the TMA
  std::printf(ok ? "all passed\n" : "FAILED\n");
  return ok ? 0 : 1;
}
