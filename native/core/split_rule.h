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
inline int sm90_wave_splits(int tiles, int nk, int64_t M, int64_t N, int sms) {
  constexpr double k_tile_us = 0.76, reduce_launch_us = 4.0, bytes_per_us = 3.0e6;
  if (tiles <= 0 || nk <= 0 || sms <= 0) return 1;
  double best = 0.0;
  int best_s = 1;
  for (int s = 1; s <= 8 && (s == 1 || nk / s >= 16); ++s) {
    const int64_t rounds = (int64_t(tiles) * s + sms - 1) / sms;
    double t = double(rounds) * double((nk + s - 1) / s) * k_tile_us;
    if (s > 1) t += reduce_launch_us + double(2 * s + 2) * double(M) * double(N) * 4.0 / bytes_per_us;
    if (s == 1 || t < best * 0.97) best = t, best_s = s;
  }
  return best_s;
}

}  // namespace parallm
