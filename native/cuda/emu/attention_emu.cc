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
#include "attention_ref.h"

using namespace parallm::cuda::attn_detail;
using bf16 = __nv_bfloat16;

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
    prefill_mma<D, 4, true>(p.q.data(), p.k.data(), p.v.data(), out.data(), lse.data(), B, T, T, Hq, Hkv, p.qbs(), p.qts(),
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

// The one-kernel backward for short sequences (bwd_short_mma: T <= 128, D 64, Hq == Hkv), on the Problem's own
// out (delta computed in the kernel from it).
bool short_case(int B, int T, int H) {
  std::printf("tensor cores, one kernel (bf16) D64 B%d T%d H%d\n", B, T, H);
  Problem<bf16> p(B, T, H, H, 64, unsigned(B * 104729 + T * 13 + H));
  const bf16 nan = fromf<bf16>(NAN);
  std::vector<bf16> dq(p.q.size(), nan), dk(p.k.size(), nan), dv(p.k.size(), nan);
  emu_launch(B * H, kShortBwdThreads, [&] {
    bwd_short_mma<64>(p.q.data(), p.k.data(), p.v.data(), p.out.data(), p.dout.data(), p.lse.data(), dq.data(),
                      dk.data(), dv.data(), T, H, p.qbs(), p.qts(), p.kvbs(), p.kvts(), float(p.scale));
  });
  bool ok = verdict("bwd_short_mma dq", relerr(F(dq), p.dqr), 1e-2);
  ok &= verdict("bwd_short_mma dk", relerr(F(dk), p.dkr), 1e-2);
  ok &= verdict("bwd_short_mma dv", relerr(F(dv), p.dvr), 1e-2);
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
  ok &= short_case(1, 128, 2);  // every warp's keys and queries
  ok &= short_case(2, 70, 3);   // a ragged last chunk; warps past it idle
  ok &= short_case(1, 16, 1);   // one chunk
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
