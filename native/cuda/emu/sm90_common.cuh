// Emulated stand-in for ../sm90_common.cuh (found first on the emulator's include path; run.sh's `tiles`
// stage): the Hopper pieces the sm90 matmul tiles use, run on the CPU by emu.h's threads.
//   - Shared-memory addresses are offsets into mm::s90_raw, the tiles' `extern __shared__` array (one
//     block at a time runs, as emu_launch runs them).
//   - An mbarrier is a record beside that memory: its expected arrivals, the arrivals and transaction bytes
//     still pending, and the phase bit. try_wait.parity(p) passes once the phase bit differs from p (a fresh
//     barrier's "previous" phase, parity 1, counts as complete). An arrival on a barrier with none pending
//     is recorded as an error (emu_sm90_errors), as it would corrupt the phase on a GPU.
//   - A TMA load copies its box at once, rows of 128 bytes placed with the 128-byte swizzle (the 16-byte
//     chunk index XOR bits 7-9 of the shared address), zeros outside the tensor, then completes its bytes on
//     the barrier. The box's destination must be 1024-byte aligned (as on a GPU); a TMA store clips to the
//     tensor the same way in reverse.
//   - Named barriers (wg_sync) are std::barriers of the warpgroup's 128 threads.
// The tensor maps are emu_encode_2d's records in the CUtensorMap's bytes (the driver's encoder is not
// called).
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>

#include <barrier>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "emu.h"

#define PARALLM_SM90A 1
#ifndef __grid_constant__
#define __grid_constant__
#endif

namespace parallm::cuda::mm {
alignas(1024) inline unsigned char s90_raw[232448];  // the tiles' `extern __shared__ uint8_t s90_raw[]`
}

namespace parallm::cuda::sm90 {

// The running block's shared memory: mm::s90_raw (the matmul tiles), or the kernel's own array where run.sh's
// rewrite made it a pointer (emu_s90_base set to it: the prefill attention's, into emu_dyn_smem).
inline unsigned char* emu_s90_base = parallm::cuda::mm::s90_raw;
inline unsigned char* emu_s90() { return emu_s90_base; }
inline uint32_t s90_smem(const void* p) { return uint32_t(static_cast<const unsigned char*>(p) - emu_s90()); }

inline std::atomic<int> emu_sm90_errors{0};
inline void emu_sm90_error(const char* what, uint32_t a) {
  if (emu_sm90_errors.fetch_add(1) < 8) std::fprintf(stderr, "sm90 emulation: %s (shared offset %u)\n", what, a);
}

struct EmuBar {
  uint32_t expected = 0, pending = 0, phase = 0;
  int64_t tx = 0;
};
inline std::mutex emu_bar_mu;
inline std::condition_variable emu_bar_cv;  // (waiters sleep: hundreds of spinning threads on two cores crawl)
inline std::unordered_map<uint32_t, EmuBar> emu_bars;
inline void emu_bar_settle(EmuBar& b) {
  if (b.pending == 0 && b.tx == 0) b.phase ^= 1, b.pending = b.expected, emu_bar_cv.notify_all();
}
inline EmuBar* emu_bar(uint32_t bar) {
  auto it = emu_bars.find(bar);
  if (it == emu_bars.end()) {
    emu_sm90_error("an mbarrier used before mbarrier.init", bar);
    return nullptr;
  }
  return &it->second;
}
inline void mbar_init(uint32_t bar, uint32_t count) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  emu_bars[bar] = EmuBar{count, count, 0, 0};
}
inline void emu_arrive(uint32_t bar, int64_t tx) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  EmuBar* b = emu_bar(bar);
  if (!b) return;
  if (b->pending == 0) return emu_sm90_error("an arrival on an mbarrier with none pending", bar);
  b->tx += tx;
  --b->pending;
  emu_bar_settle(*b);
}
inline void mbar_expect_tx(uint32_t bar, uint32_t bytes) { emu_arrive(bar, bytes); }  // arrive.expect_tx
inline void mbar_arrive(uint32_t bar) { emu_arrive(bar, 0); }
inline void emu_complete_tx(uint32_t bar, uint32_t bytes) {
  std::lock_guard<std::mutex> g(emu_bar_mu);
  EmuBar* b = emu_bar(bar);
  if (!b) return;
  b->tx -= bytes;
  if (b->tx < 0) return emu_sm90_error("more TMA bytes completed than expected", bar);
  emu_bar_settle(*b);
}
inline void mbar_wait(uint32_t bar, uint32_t parity) {
  std::unique_lock<std::mutex> g(emu_bar_mu);
  emu_bar_cv.wait(g, [&] {
    const EmuBar* b = emu_bar(bar);
    return !b || b->phase != (parity & 1);
  });
}

// A 2-D row-major tensor [outer][inner] of esize-byte elements and its box, in a CUtensorMap's bytes.
struct EmuTensorMap {
  unsigned char* base;
  uint64_t inner, outer;
  uint32_t box_inner, box_outer, esize;
};
static_assert(sizeof(EmuTensorMap) <= sizeof(CUtensorMap));
inline void emu_encode_2d(CUtensorMap* map, const void* p, uint64_t inner, uint64_t outer, uint32_t box_inner,
                          uint32_t box_outer, uint32_t esize = 2) {
  std::memset(map, 0, sizeof *map);
  const EmuTensorMap e{static_cast<unsigned char*>(const_cast<void*>(p)), inner, outer, box_inner, box_outer, esize};
  std::memcpy(map, &e, sizeof e);
}
inline uint32_t emu_swz128(uint32_t a) { return a ^ (((a >> 7) & 7) << 4); }
// Element (r, c) of a box at shared offset s: row r 128 bytes on, swizzled.
inline unsigned char* emu_box_elem(uint32_t s, const EmuTensorMap& e, uint32_t r, uint32_t c) {
  return emu_s90() + emu_swz128(s + r * 128 + c * e.esize);
}
inline bool emu_box_ok(uint32_t s, const EmuTensorMap& e, const char* what) {
  if (e.box_inner * e.esize != 128) return emu_sm90_error(what, s), false;  // (128-byte rows: the swizzle's)
  if (s % 1024) return emu_sm90_error("a swizzled box not 1024-byte aligned", s), false;
  return true;
}
inline void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1) {
  EmuTensorMap e;
  std::memcpy(&e, map, sizeof e);
  if (emu_box_ok(dst, e, "a TMA load box whose rows are not 128 bytes"))
    for (uint32_t r = 0; r < e.box_outer; ++r)
      for (uint32_t c = 0; c < e.box_inner; ++c) {
        const int64_t y = int64_t(c1) + r, x = int64_t(c0) + c;
        unsigned char* d = emu_box_elem(dst, e, r, c);
        if (y >= 0 && x >= 0 && uint64_t(y) < e.outer && uint64_t(x) < e.inner)
          std::memcpy(d, e.base + (uint64_t(y) * e.inner + uint64_t(x)) * e.esize, e.esize);
        else
          std::memset(d, 0, e.esize);
      }
  emu_complete_tx(bar, e.box_inner * e.box_outer * e.esize);  // a box counts in full, zero-filled or not
}
// A 4-D tensor (the prefill attention's d, head, token, batch: element strides 1, then s[0..2] bytes) and its
// box (b[0] of d, 128 bytes, by b[2] tokens; the head and batch boxes 1), in a CUtensorMap's bytes.
struct EmuTensorMap4 {
  unsigned char* base;
  uint64_t dims[4], strides[3];
  uint32_t box[4], esize;
};
static_assert(sizeof(EmuTensorMap4) <= sizeof(CUtensorMap));
inline void emu_encode_4d(CUtensorMap* map, const void* p, const uint64_t (&dims)[4], const uint64_t (&strides)[3],
                          const uint32_t (&box)[4], uint32_t esize = 2) {
  std::memset(map, 0, sizeof *map);
  EmuTensorMap4 e{static_cast<unsigned char*>(const_cast<void*>(p)), {}, {}, {}, esize};
  for (int i = 0; i < 4; ++i) e.dims[i] = dims[i], e.box[i] = box[i];
  for (int i = 0; i < 3; ++i) e.strides[i] = strides[i];
  std::memcpy(map, &e, sizeof e);
}
inline void tma_load_4d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int c1, int c2, int c3) {
  EmuTensorMap4 e;
  std::memcpy(&e, map, sizeof e);
  if (e.box[0] * e.esize != 128 || e.box[1] != 1 || e.box[3] != 1) emu_sm90_error("a 4-D TMA box the emulation does not take", dst);
  else if (dst % 1024) emu_sm90_error("a swizzled box not 1024-byte aligned", dst);
  else
    for (uint32_t r = 0; r < e.box[2]; ++r)
      for (uint32_t c = 0; c < e.box[0]; ++c) {
        const int64_t x = int64_t(c0) + c, h = c1, t = int64_t(c2) + r, b = c3;
        unsigned char* d = emu_s90() + emu_swz128(dst + r * 128 + c * e.esize);
        if (x >= 0 && h >= 0 && t >= 0 && b >= 0 && uint64_t(x) < e.dims[0] && uint64_t(h) < e.dims[1] &&
            uint64_t(t) < e.dims[2] && uint64_t(b) < e.dims[3])
          std::memcpy(d, e.base + uint64_t(x) * e.esize + uint64_t(h) * e.strides[0] + uint64_t(t) * e.strides[1] +
                             uint64_t(b) * e.strides[2], e.esize);
        else
          std::memset(d, 0, e.esize);
      }
  emu_complete_tx(bar, e.box[0] * e.box[1] * e.box[2] * e.box[3] * e.esize);
}
inline void tma_store_2d(const CUtensorMap* map, uint32_t src, int c0, int c1) {
  EmuTensorMap e;
  std::memcpy(&e, map, sizeof e);
  if (!emu_box_ok(src, e, "a TMA store box whose rows are not 128 bytes")) return;
  for (uint32_t r = 0; r < e.box_outer; ++r)
    for (uint32_t c = 0; c < e.box_inner; ++c) {
      const int64_t y = int64_t(c1) + r, x = int64_t(c0) + c;
      if (y >= 0 && x >= 0 && uint64_t(y) < e.outer && uint64_t(x) < e.inner)
        std::memcpy(e.base + (uint64_t(y) * e.inner + uint64_t(x)) * e.esize, emu_box_elem(src, e, r, c), e.esize);
    }
}
inline void tma_prefetch_2d(const CUtensorMap*, int, int) {}
inline void bulk_commit() {}
inline void bulk_wait_read() {}  // (the stores above are done when they return)
inline void bulk_wait_all() {}
inline std::barrier<> emu_wg_bar[2]{std::barrier<>(128), std::barrier<>(128)};
inline void wg_sync(int cw) { emu_wg_bar[cw].arrive_and_wait(); }

// The descriptor as the GPU's (../sm90_common.cuh); the emulated wgmma (matmul_wgmma_op.cuh here) decodes it.
inline uint64_t s90_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

// (The host's encoder: none here, so the launchers' own map builders decline and tests encode with the above.)
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() { return nullptr; }

}  // namespace parallm::cuda::sm90
