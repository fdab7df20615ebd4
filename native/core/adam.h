// AdamW's per-step settings as both backends' kernels use them (native/core/kernels.h adamw, adamw_dyn):
// the bias corrections 1 - beta^step computed in double (b^step in f32 powers would lose digits for
// large steps) and rounded once, so a step's settings have the same bits whether a kernel takes them as
// arguments or reads them from device memory (a captured graph's AdamW, src/train/zero.ts).
#pragma once
#include <cmath>

namespace parallm {

struct AdamSettings {
  float lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2;  // bc: 1 - beta^step
};
static_assert(sizeof(AdamSettings) == 8 * sizeof(float), "adamw_dyn reads the settings as f32[8]");

inline AdamSettings adam_settings(float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                                  int step) {
  return {lr, beta1, beta2, eps, weight_decay, grad_scale, float(1.0 - std::pow(double(beta1), double(step))),
          float(1.0 - std::pow(double(beta2), double(step)))};
}

}  // namespace parallm
