// Emulated stand-in for ../mma_ptx.cuh (found first on the emulator's include path): shared-memory
// addresses are offsets into attn_detail::smem_raw, cp.async copies at once, and ldmatrix / mma.sync
// gather the warp's registers through its barrier and follow the PTX ISA's fragment layouts
// (m8n8 x4 b16 loads, plain and .trans; m16n8k16 row.col bf16 with f32 accumulators).
#pragma once
#include "emu.h"
namespace parallm::cuda::ptx {
using attn_detail::smem_raw;
inline uint32_t smem_addr(const void* p) { return uint32_t((const unsigned char*)p - smem_raw); }
inline void cp_async16(uint32_t dst, const void* src, int bytes) {
  if (bytes) memcpy(smem_raw + dst, src, 16); else memset(smem_raw + dst, 0, 16);
}
inline uint4 ld_stream16(const void* p) { uint4 v; memcpy(&v, p, 16); return v; }
inline uint4 ld_stream16_l2_256(const void* p) { return ld_stream16(p); }
inline void cp_async_commit() {}
template <int N> inline void cp_async_wait() {}
inline int lane_() { return emu_linear() & 31; }
inline WarpEx& W() { return g_warp[emu_linear() >> 5]; }
inline uint16_t ld16(uint32_t a) { uint16_t v; memcpy(&v, smem_raw + a, 2); return v; }
inline float bff(uint32_t h) { uint32_t u = (h & 0xffffu) << 16; float f; memcpy(&f, &u, 4); return f; }
inline void ldsm(uint32_t (&r)[4], uint32_t addr, bool trans) {
  auto& w = W(); int l = lane_(); w.addr[l] = addr; w.bar->arrive_and_wait();
  for (int i = 0; i < 4; ++i) {
    uint16_t e0, e1;
    if (!trans) { uint32_t row = w.addr[8 * i + l / 4]; e0 = ld16(row + (2 * (l % 4)) * 2); e1 = ld16(row + (2 * (l % 4) + 1) * 2); }
    else { e0 = ld16(w.addr[8 * i + 2 * (l % 4)] + (l / 4) * 2); e1 = ld16(w.addr[8 * i + 2 * (l % 4) + 1] + (l / 4) * 2); }
    r[i] = uint32_t(e0) | (uint32_t(e1) << 16);
  }
  w.bar->arrive_and_wait();
}
inline void ldsm_x4(uint32_t (&r)[4], uint32_t addr) { ldsm(r, addr, false); }
inline void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) { ldsm(r, addr, true); }
template <typename T> struct MmaOp {
  static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    auto& w = W(); int l = lane_();
    for (int i = 0; i < 4; ++i) w.a[l][i] = a[i];
    w.b[l][0] = b0; w.b[l][1] = b1;
    w.bar->arrive_and_wait();
    auto A = [&](int r, int kk) { int ln = (r % 8) * 4 + (kk % 8) / 2; int reg = (r >= 8) + 2 * (kk >= 8); uint32_t v = w.a[ln][reg]; return bff(kk % 2 ? v >> 16 : v); };
    auto Bm = [&](int kk, int n) { int ln = n * 4 + (kk % 8) / 2; uint32_t v = w.b[ln][kk >= 8]; return bff(kk % 2 ? v >> 16 : v); };
    const int g = l / 4, t = l % 4;
    float out[4];
    for (int e = 0; e < 4; ++e) {
      int r = g + (e >= 2 ? 8 : 0), n = 2 * t + (e & 1);
      float s = 0.f;
      for (int kk = 0; kk < 16; ++kk) s += A(r, kk) * Bm(kk, n);
      out[e] = c[e] + s;
    }
    w.bar->arrive_and_wait();
    for (int e = 0; e < 4; ++e) c[e] = out[e];
  }
};
}  // namespace parallm::cuda::ptx
