// Embedding gather: whole rows copied with memcpy; ids outside [0, V) give zeros.
#include <cstring>

#include "kernels.h"
#include "simd.h"

namespace parallm::cpu {

void embedding(const Ctx& ctx, DType dt, const int32_t* ids, const void* table, void* out, int64_t N, int64_t V,
               int64_t C) {
  if (N < 0 || V < 0 || C < 0) fail("embedding: negative size N=", N, " V=", V, " C=", C);
  if (N == 0 || C == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("embedding: dtype ", dtype_name(dt), " is not supported (N=", N, " V=", V, " C=", C, ")");
  if (!ids || !out || (V > 0 && !table)) fail("embedding: null pointer (N=", N, " V=", V, " C=", C, ")");
  const size_t row = size_t(C) * dtype_size(dt);
  const char* t = static_cast<const char*>(table);
  char* o = static_cast<char*>(out);
  parallel_rows(ctx, N, N * C / 4, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++) {
      const int64_t id = ids[n];
      if (id >= 0 && id < V) std::memcpy(o + n * row, t + id * row, row);
      else std::memset(o + n * row, 0, row);
    }
  });
}

}  // namespace parallm::cpu
