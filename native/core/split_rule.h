// The K slices the sm90 matmul cuts a compute-bound GEMM into when it has fewer 128 x 256 tiles than SMs
// (native/cuda/matmul.cu, sm90_splits): a pure rule, here so the CPU build's tests can hold it to its cases
// (the addon's testing.matmulWaveSplits).
#pragma once
#include <cstdint>

namespace parallm {

// Slices 1-8 that should finish first: the rounds of units the SMs run (a unit is one slice of one tile, at
// most ceil(tiles * s / sms) of them an SM) times a slice's k-tiles at ~0.76 µs each (a 128 x 256 x 64 step
// of bf16 wgmma at ~5.5 TFLOP/s an SM), plus, when cut, the reduce: its launch (~4 µs) and its traffic (s
// slices of f32 partials written and read, C read and written) at ~3 TB/s. A cut must win by 3%; a slice
// keeps at least 16 k-tiles. Training's weight gradients are the case (GPT-2 at 64-128 sequences of 128:
// qkv's 54 tiles get 2 slices, up's and down's 72 get 3 at 16,384 tokens and stay whole at 8,192).
//
// sm90_tiles_us is that estimate for tiles bn columns wide (256, or 192: a k-tile taken at 3/4 of 256's time, the
// wgmma's N) in s slices.
inline double sm90_tiles_us(int tiles, int nk, int64_t M, int64_t N, int sms, int s, int bn = 256) {
  constexpr double k_tile_us = 0.76, reduce_launch_us = 4.0, bytes_per_us = 3.0e6;
  const int64_t rounds = (int64_t(tiles) * s + sms - 1) / sms;
  double t = double(rounds) * double((nk + s - 1) / s) * k_tile_us * double(bn) / 256.0;
  if (s > 1) t += reduce_launch_us + double(2 * s + 2) * double(M) * double(N) * 4.0 / bytes_per_us;
  return t;
}

inline int sm90_wave_splits(int tiles, int nk, int64_t M, int64_t N, int sms) {
  if (tiles <= 0 || nk <= 0 || sms <= 0) return 1;
  double best = 0.0;
  int best_s = 1;
  for (int s = 1; s <= 8 && (s == 1 || nk / s >= 16); ++s) {
    const double t = sm90_tiles_us(tiles, nk, M, N, sms, s);
    if (s == 1 || t < best * 0.97) best = t, best_s = s;
  }
  return best_s;
}

// The 128-row tile's width for an M x N product of nk k-tiles: 192 columns where its estimate (s192 K slices) beats
// 256's (s256 slices) by 12%, as when the last round of 256-wide tiles leaves SMs idle that 192-wide ones fill:
// GPT-2's N = 768 products at 8,192 rows (192 tiles of 256 or 256 of 192: two rounds either way, the narrower a
// quarter shorter) and its up and down weight gradients at 8,192 tokens (72 tiles or 96, one round). The margin:
// a 192-wide tile loads more bytes a FLOP (40 KB a k-tile for 3/4 of 48 KB's work), so even estimates keep 256.
inline int sm90_tile_width(int64_t M, int64_t N, int nk, int sms, int s256, int s192) {
  if (M <= 0 || N <= 0 || nk <= 0 || sms <= 0) return 256;
  const int tm = int((M + 127) / 128);
  const int t256 = tm * int((N + 255) / 256), t192 = tm * int((N + 191) / 192);
  const double e256 = sm90_tiles_us(t256, nk, M, N, sms, s256 < 1 ? 1 : s256, 256);
  const double e192 = sm90_tiles_us(t192, nk, M, N, sms, s192 < 1 ? 1 : s192, 192);
  return e192 < 0.88 * e256 ? 192 : 256;
}

}  // namespace parallm
