// The Hopper prefill attention (native/cuda/attention_prefill_sm90.cuh: wgmma + TMA, warp-specialized,
// persistent; plain, with FlashAttention-3's intra-warpgroup overlap, and with the two consumers' ping-pong) run
// on the CPU through emu.h, the stand-ins sm90_common.cuh (mbarriers, 4-D TMA boxes with the 128-byte swizzle)
// and matmul_wgmma_op.cuh, and run.sh's splices attn90_ops_emu.h (the wgmmas, register-A ones too) and
// attn90_sync_emu.h (the ping-pong's named barriers), against attention_ref.h's float64 causal attention:
// grouped-query heads, a ragged last query and key tile, grids shorter than the work items (the blocks' snake
// over them), out poisoned (NaN) first, and the lse. Built and run by run.sh (`tiles`); exits non-zero on a
// failure.
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "emu.h"
#include "sm90_common.cuh"
#include "matmul_wgmma_op.cuh"  // (before the kernel: attn90_ops_emu.h, spliced into it, uses it)
#include "attention_prefill_sm90.cuh"
#include "attention_ref.h"

using namespace parallm::cuda::attn_detail;
namespace sm90 = parallm::cuda::sm90;
using bf16 = __nv_bfloat16;

template <int D, bool OVL, bool PP>
static bool prefill_case(int B, int T, int Hq, int Hkv, int grid) {
  using P = PrefillSm90<D>;
  Problem<bf16> p(B, T, Hq, Hkv, D, unsigned(B * 7919 + T * 31 + Hq * 7 + D + OVL + 2 * PP));
  std::vector<bf16> out(p.q.size(), fromf<bf16>(NAN));
  std::vector<float> lse(p.lse.size(), NAN);
  auto map = [&](CUtensorMap* m, const std::vector<bf16>& x, int H, int rows) {
    const uint64_t sh = uint64_t(D) * 2, st = sh * H, sb = st * T;
    sm90::emu_encode_4d(m, x.data(), {uint64_t(D), uint64_t(H), uint64_t(T), uint64_t(B)}, {sh, st, sb},
                        {64u, 1u, uint32_t(rows), 1u});
  };
  CUtensorMap mq, mk, mv;
  map(&mq, p.q, Hq, P::BM);
  map(&mk, p.k, Hkv, P::BN);
  map(&mv, p.v, Hkv, P::BN);
  const int nmb = (T + P::BM - 1) / P::BM;
  sm90::emu_s90_base = emu_dyn_smem;  // (the kernel's extern shared array, as run.sh's rewrite makes it)
  emu_launch(unsigned(grid), P::THREADS, [&] {
    prefill_sm90<D, true, OVL, PP>(mq, mk, mv, out.data(), lse.data(), B, T, T, Hq, Hkv,
                                   float(p.scale) * 1.4426950408889634f, nmb);
  });
  std::vector<float> of(out.size());
  for (size_t i = 0; i < out.size(); ++i) of[i] = tof(out[i]);
  const double eo = relerr(of, p.outr), el = relerr(lse, p.lser);
  const int errs = sm90::emu_sm90_errors.exchange(0);
  const bool ok = eo <= 1e-2 && el <= 1e-4 && errs == 0;
  std::printf("  prefill_sm90 D%-3d%s%s B%d T%-4d Hq%d Hkv%d grid %d: out rel. error %.2e, lse %.2e%s %s\n", D,
              OVL ? " overlapped" : "", PP ? ", ping-pong" : "", B, T, Hq, Hkv, grid, eo, el,
              errs ? " (emulation errors)" : "", ok ? "ok" : "FAIL");
  return ok;
}

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  bool ok = true;
  std::printf("The Hopper prefill attention (attention_prefill_sm90.cuh):\n");
  ok &= prefill_case<128, false, false>(1, 130, 2, 1, 2);  // two query tiles, the second of 2 rows; GQA 2:1
  ok &= prefill_case<128, true, false>(2, 200, 2, 2, 3);   // FlashAttention-3's overlap; 8 items on 3 blocks
  ok &= prefill_case<128, true, true>(1, 256, 4, 2, 2);    // and the two consumers' ping-pong
  ok &= prefill_case<64, false, false>(1, 100, 2, 1, 1);   // D 64: one box a row, three stages
  std::printf(ok ? "all passed\n" : "FAILED\n");
  return ok ? 0 : 1;
}
