// Shared helpers for the CPU kernels: run-time ISA choice, per-ISA function versions, element loads and
// stores for f32/bf16/f16, a vectorizable exp, and small argument checks.
//
// The build uses -O3 without -march, so anything wider than SSE2 must be compiled per function with a
// target attribute and picked at run time. PL_MULTIVERSION stamps out AVX-512, AVX2 and baseline copies of
// an always-inline body (GCC vectorizes each copy for its own target after inlining) plus a dispatcher.
#pragma once
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdlib>

#include "../core/dtype.h"
#include "../core/errors.h"
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define PL_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define PL_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#endif
#define PL_INLINE inline __attribute__((always_inline))

namespace parallm::cpu {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// Detected once; PARALLM_CPU_ISA=scalar|avx2|avx512 caps it (tests use it to exercise every path).
inline Isa& isa_slot() {
  static Isa v = [] {
    Isa best = Isa::Scalar;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::Avx2;
    if (best == Isa::Avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      best = Isa::Avx512;
#endif
    if (const char* e = std::getenv("PARALLM_CPU_ISA")) {
      Isa cap = best;
      if (!std::strcmp(e, "scalar")) cap = Isa::Scalar;
      else if (!std::strcmp(e, "avx2")) cap = Isa::Avx2;
      if (int(cap) < int(best)) best = cap;
    }
    return best;
  }();
  return v;
}
inline Isa isa() { return isa_slot(); }
inline const char* isa_name(Isa i) { return i == Isa::Avx512 ? "avx512" : i == Isa::Avx2 ? "avx2" : "scalar"; }

#if defined(__x86_64__)
// f16 <-> f32 needs F16C to be fast; every CPU with AVX2+FMA that we dispatch to has it.
#define PL_MULTIVERSION(ret, name, params, args)                                   \
  PL_TARGET_AVX512 static ret name##_avx512 params { return name##_body args; }   \
  PL_TARGET_AVX2 static ret name##_avx2 params { return name##_body args; }       \
  static ret name##_base params { return name##_body args; }                      \
  static ret name params {                                                        \
    switch (::parallm::cpu::isa()) {                                              \
      case ::parallm::cpu::Isa::Avx512: return name##_avx512 args;                \
      case ::parallm::cpu::Isa::Avx2: return name##_avx2 args;                    \
      default: return name##_base args;                                           \
    }                                                                             \
  }
#else
#define PL_MULTIVERSION(ret, name, params, args) \
  static ret name params { return name##_body args; }
#endif

// ---- element access: bit-exact with dtype.h, written branch-free so loops over them vectorize ----------

PL_INLINE float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
PL_INLINE uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
PL_INLINE float bf16_load(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
PL_INLINE uint16_t bf16_store(float f) {
  uint32_t u = f32_to_bits(f);
  uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  uint32_t nan = (u >> 16) | 0x40u;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? nan : r);
}

// Element type tags: F32 is float, BF16 and F16 are uint16_t storage.
struct F32T {
  using T = float;
  static PL_INLINE float load(const float* p, int64_t i) { return p[i]; }
  static PL_INLINE void store(float* p, int64_t i, float v) { p[i] = v; }
};
struct BF16T {
  using T = uint16_t;
  static PL_INLINE float load(const uint16_t* p, int64_t i) { return bf16_load(p[i]); }
  static PL_INLINE void store(uint16_t* p, int64_t i, float v) { p[i] = bf16_store(v); }
};
struct F16T {  // rare on CPU: the scalar converters of dtype.h
  using T = uint16_t;
  static PL_INLINE float load(const uint16_t* p, int64_t i) { return f16_to_f32(p[i]); }
  static PL_INLINE void store(uint16_t* p, int64_t i, float v) { p[i] = f32_to_f16(v); }
};

// exp(x) for f32 in plain arithmetic (Cody-Waite reduction, degree-6 polynomial, ~1.5 ulp) so that loops
// calling it vectorize; libm's expf does not. Inputs below -87.3 give 0, above 88.7 give +inf; NaN -> NaN.
PL_INLINE float fast_exp(float x) {
  const float hi = 88.72283f, lo = -87.33654f;
  float xc = x > hi ? hi : (x < lo ? lo : x);
  // Round to nearest by the 1.5*2^23 trick (no SSE4.1 round at the baseline ISA).
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n via the exponent field; n in [-126, 128] here, and 2^128 is split to stay finite before scaling.
  int32_t ni = int32_t(n);
  int32_t n1 = ni > 127 ? 127 : ni;
  float s1 = bits_to_f32(uint32_t(n1 + 127) << 23);
  float s2 = bits_to_f32(uint32_t(ni - n1 + 127) << 23);
  float y = p * s1 * s2;
  y = x > hi ? INFINITY : y;
  y = x < lo ? 0.0f : y;
  return x != x ? x : y;
}

// ---- parallel helpers ------------------------------------------------------------------------------------

// Run fn over [0, n) on the pool when there is enough work (`work` ~ scalar operations in total),
// otherwise inline: a parallel_for has a few microseconds of fixed cost.
template <class F>
inline void parallel_rows(const Ctx& ctx, int64_t n, int64_t work, const F& fn) {
  if (n <= 0) return;
  constexpr int64_t kMinWorkPerThread = 16384;
  int threads = ctx.pool ? ctx.pool->size() : 1;
  if (threads <= 1 || n == 1 || work < 2 * kMinWorkPerThread) {
    fn(int64_t(0), n);
    return;
  }
  int64_t per_row = work / n > 0 ? work / n : 1;
  int64_t grain = kMinWorkPerThread / per_row;
  if (grain < 1) grain = 1;
  ctx.pool->parallel_for(n, [&](int64_t b, int64_t e) { fn(b, e); }, grain);
}

inline void check_float_dtype(const char* op, DType dt) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail(op, ": dtype ", dtype_name(dt), " is not supported on the CPU (f32 or bf16)");
}

}  // namespace parallm::cpu
