// Rotary position embedding in place, Hugging Face "rotate_half" layout (see core/kernels.h).
// The angle is formed as HF does, in f32: a = float(pos) * f with f = float(theta^(-2i/rot_dim)); its cos
// and sin are then taken in double so that large positions lose nothing beyond that f32 product. One
// cos/sin table per row serves all H heads. A caller's frequency table (freqs, f32[rot_dim/2]) replaces
// the theta formula, for scaled RoPE. The backward is the same rotation by -a (sin negated).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

template <class E>
PL_INLINE void rotate_t(void* xv, const float* cs, const float* sn, int64_t r, int H, int D, int64_t tstride,
                        int half) {
  for (int h = 0; h < H; h++) {
    typename E::T* x = static_cast<typename E::T*>(xv) + r * tstride + int64_t(h) * D;
    typename E::T* x2p = x + half;
    for (int i = 0; i < half; i++) {
      const float x1 = E::load(x, i), x2 = E::load(x2p, i);
      E::store(x, i, x1 * cs[i] - x2 * sn[i]);
      E::store(x2p, i, x2 * cs[i] + x1 * sn[i]);
    }
  }
}
PL_INLINE void rotate_row_body(DType dt, void* x, const float* cs, const float* sn, int64_t r, int H, int D,
                               int64_t tstride, int half) {
  if (dt == DType::F32) rotate_t<F32T>(x, cs, sn, r, H, D, tstride, half);
  else rotate_t<BF16T>(x, cs, sn, r, H, D, tstride, half);
}
PL_MULTIVERSION(void, rotate_row,
                (DType dt, void* x, const float* cs, const float* sn, int64_t r, int H, int D, int64_t ts, int half),
                (dt, x, cs, sn, r, H, D, ts, half))

}  // namespace

namespace {

// sign = 1: rope; sign = -1: its inverse (rope_backward). `op` names the caller in errors.
void rope_rotate(const Ctx& ctx, const char* op, DType dt, void* x, const int32_t* pos, int64_t R, int H, int D,
                 int64_t tstride, int rot_dim, float theta, const float* freqs, float sign) {
  if (R < 0 || H < 0 || D < 0 || tstride < 0)
    fail(op, ": negative size R=", R, " H=", H, " D=", D, " tstride=", tstride);
  if (R == 0 || H == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail(op, ": dtype ", dtype_name(dt), " is not supported (R=", R, " H=", H, " D=", D, ")");
  if (rot_dim <= 0 || rot_dim > D || rot_dim % 2)
    fail(op, ": rot_dim=", rot_dim, " must be even and in [2, D=", D, "] (R=", R, " H=", H, ")");
  if (!x || !pos) fail(op, ": null pointer (R=", R, " H=", H, " D=", D, ")");
  const int half = rot_dim / 2;
  std::vector<float> freq(static_cast<size_t>(half));
  for (int i = 0; i < half; i++)
    freq[i] = freqs ? freqs[i] : float(std::pow(double(theta), -2.0 * i / double(rot_dim)));
  parallel_rows(ctx, R, R * H * half * 6 + R * half * 40, [&](int64_t r0, int64_t r1) {
    std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
    for (int64_t r = r0; r < r1; r++) {
      const float p = float(pos[r]);
      for (int i = 0; i < half; i++) {
        const double a = double(p * freq[i]);
        cs[i] = float(std::cos(a));
        sn[i] = sign * float(std::sin(a));
      }
      rotate_row(dt, x, cs.data(), sn.data(), r, H, D, tstride, half);
    }
  });
}

}  // namespace

void rope(const Ctx& ctx, DType dt, void* x, const int32_t* pos, int64_t R, int H, int D, int64_t tstride, int rot_dim,
          float theta, const float* freqs) {
  rope_rotate(ctx, "rope", dt, x, pos, R, H, D, tstride, rot_dim, theta, freqs, 1.0f);
}

void rope_backward(const Ctx& ctx, DType dt, void* dx, const int32_t* pos, int64_t R, int H, int D, int64_t tstride,
                   int rot_dim, float theta, const float* freqs) {
  rope_rotate(ctx, "rope_backward", dt, dx, pos, R, H, D, tstride, rot_dim, theta, freqs, -1.0f);
}

}  // namespace parallm::cpu
