// Seeded top-k / top-p sampling, one token per row. The CUDA sampler follows the same text in
// core/kernels.h, so every step here is spelled out in one fixed order:
//   1. temperature <= 0: argmax (first maximum, NaN never wins).
//   2. z = x / T; zmax = max z; p = exp(z - zmax) / sum, sums in f32 in index order, expf.
//   3. top_k in (0, V): kth = the k-th largest logit (nth_element on a copy); keep x >= kth (ties kept).
//   4. top_p < 1: the kept p sorted descending; the smallest prefix whose running f32 sum >= top_p * (kept
//      mass, summed in index order) ends at tau (at least one token; all kept if rounding never gets
//      there); keep p >= tau (ties kept).
//   5. u = uniform01(seed, row, offset); target = u * (final kept mass, index order); walk the kept tokens
//      in index order summing p; the first with sum > target wins, else the last kept token.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "../core/rng.h"
#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {
namespace {

int32_t first_argmax(const float* x, int64_t V) {
  int64_t best = -1;
  float bv = 0.f;
  for (int64_t i = 0; i < V; i++)
    if (x[i] == x[i] && (best < 0 || x[i] > bv)) {
      best = i;
      bv = x[i];
    }
  return int32_t(best < 0 ? 0 : best);
}

int32_t sample_row(const float* x, int64_t V, float temperature, int top_k, float top_p, uint64_t seed, uint64_t row,
                   uint64_t offset, std::vector<float>& p, std::vector<float>& tmp, std::vector<uint8_t>& keep) {
  if (!(temperature > 0.f)) return first_argmax(x, V);

  // 2. probabilities over the whole row
  p.resize(size_t(V));
  float zmax = -INFINITY;
  for (int64_t i = 0; i < V; i++) {
    p[i] = x[i] / temperature;
    if (p[i] > zmax) zmax = p[i];
  }
  // Sums in f64 (see kernels.h): then their order does not matter, and the CUDA sampler, which sums
  // in another order, picks the same token.
  double total = 0.0;
  for (int64_t i = 0; i < V; i++) {
    p[i] = std::exp(p[i] - zmax);
    total += p[i];
  }
  const float S = float(total);
  for (int64_t i = 0; i < V; i++) p[i] = p[i] / S;

  // 3. top-k on the logits
  keep.assign(size_t(V), 1);
  if (top_k > 0 && top_k < V) {
    tmp.assign(x, x + V);
    std::nth_element(tmp.begin(), tmp.begin() + (top_k - 1), tmp.end(), std::greater<float>());
    const float kth = tmp[top_k - 1];
    for (int64_t i = 0; i < V; i++) keep[i] = x[i] >= kth;
  }
  double mass = 0.0;
  for (int64_t i = 0; i < V; i++)
    if (keep[i]) mass += p[i];

  // 4. top-p among the kept
  if (top_p < 1.f) {
    tmp.clear();
    for (int64_t i = 0; i < V; i++)
      if (keep[i]) tmp.push_back(p[i]);
    std::sort(tmp.begin(), tmp.end(), std::greater<float>());
    const double want = double(top_p) * mass;
    double run = 0.0;
    float tau = tmp.empty() ? 0.f : tmp.back();
    for (size_t i = 0; i < tmp.size(); i++) {
      run += tmp[i];
      if (run >= want) {
        tau = tmp[i];
        break;
      }
    }
    mass = 0.0;
    for (int64_t i = 0; i < V; i++) {
      keep[i] = keep[i] && p[i] >= tau;
      if (keep[i]) mass += p[i];
    }
  }

  // 5. the draw
  const double target = double(uniform01(seed, row, offset)) * mass;
  double run = 0.0;
  int64_t last = -1;
  for (int64_t i = 0; i < V; i++) {
    if (!keep[i]) continue;
    run += p[i];
    last = i;
    if (run > target) return int32_t(i);
  }
  return int32_t(last >= 0 ? last : first_argmax(x, V));  // NaN logits can leave nothing kept
}

}  // namespace

void sample(const Ctx& ctx, DType dt, const void* logits, int32_t* out, int64_t R, int64_t V, float temperature,
            int top_k, float top_p, uint64_t seed, const int32_t* offsets, const int32_t* rows) {
  if (R < 0 || V < 0) fail("sample: negative size R=", R, " V=", V);
  if (R == 0) return;
  if (V == 0) fail("sample: empty rows (R=", R, " V=0)");
  if (V > INT32_MAX) fail("sample: V=", V, " does not fit an int32 token id (R=", R, ")");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("sample: dtype ", dtype_name(dt), " is not supported (R=", R, " V=", V, ")");
  if (!logits || !out) fail("sample: null pointer (R=", R, " V=", V, ")");
  parallel_rows(ctx, R, R * V * 20, [&](int64_t r0, int64_t r1) {
    std::vector<float> xf, p, tmp;
    std::vector<uint8_t> keep;
    for (int64_t r = r0; r < r1; r++) {
      const float* x;
      if (dt == DType::F32) {
        x = static_cast<const float*>(logits) + r * V;
      } else {
        const uint16_t* xb = static_cast<const uint16_t*>(logits) + r * V;
        xf.resize(size_t(V));
        for (int64_t i = 0; i < V; i++) xf[i] = bf16_load(xb[i]);
        x = xf.data();
      }
      const uint64_t off = offsets ? uint64_t(int64_t(offsets[r])) : 0;
      const uint64_t key = rows ? uint64_t(int64_t(rows[r])) : uint64_t(r);
      out[r] = sample_row(x, V, temperature, top_k, top_p, seed, key, off, p, tmp, keep);
    }
  });
}

}  // namespace parallm::cpu
