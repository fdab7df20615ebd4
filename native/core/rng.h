// Counter-based random numbers shared by the CPU and CUDA samplers, so one seed gives one token stream
// on either backend: u = uniform(seed, row, offset) depends on nothing else.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PARALLM_HD __host__ __device__ __forceinline__
#else
#define PARALLM_HD inline
#endif

namespace parallm {

PARALLM_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A float in [0, 1) with 24 random bits.
PARALLM_HD float uniform01(uint64_t seed, uint64_t row, uint64_t offset) {
  uint64_t h = splitmix64(seed ^ splitmix64(row * 0xD1B54A32D192ED03ull + offset));
  return float(h >> 40) * (1.0f / 16777216.0f);
}

}  // namespace parallm
