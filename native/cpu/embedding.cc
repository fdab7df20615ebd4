// Embedding gather: whole rows copied with memcpy; ids outside [0, V) give zeros.
// Backward: the N rows are bucketed by id (a stable counting sort keeps n order within a bucket), then
// each touched table row is one task: its bucket summed in f32 in n order, added to the row once.
#include <cstring>
#include <vector>

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

namespace {

template <class E>
void scatter_rows_t(const std::vector<int64_t>& start, const std::vector<int32_t>& order,
                    const std::vector<int32_t>& touched, const void* doutv, void* dtv, int64_t u0, int64_t u1,
                    int64_t C, float scale, float* acc) {
  using T = typename E::T;
  const T* dout = static_cast<const T*>(doutv);
  for (int64_t u = u0; u < u1; u++) {
    const int32_t id = touched[u];
    for (int64_t c = 0; c < C; c++) acc[c] = 0.f;
    for (int64_t k = start[id]; k < start[id + 1]; k++) {
      const T* row = dout + int64_t(order[k]) * C;
      for (int64_t c = 0; c < C; c++) acc[c] += E::load(row, c);
    }
    T* dst = static_cast<T*>(dtv) + int64_t(id) * C;
    for (int64_t c = 0; c < C; c++) E::store(dst, c, E::load(dst, c) + scale * acc[c]);
  }
}

}  // namespace

void embedding_backward(const Ctx& ctx, DType dt, const int32_t* ids, const void* dout, void* dtable, int64_t N,
                        int64_t V, int64_t C, float scale) {
  if (N < 0 || V < 0 || C < 0) fail("embedding_backward: negative size N=", N, " V=", V, " C=", C);
  if (N == 0 || C == 0 || V == 0) return;
  if (dt != DType::F32 && dt != DType::BF16)
    fail("embedding_backward: dtype ", dtype_name(dt), " is not supported (N=", N, " V=", V, " C=", C, ")");
  if (!ids || !dout || !dtable) fail("embedding_backward: null pointer (N=", N, " V=", V, " C=", C, ")");
  if (N > INT32_MAX) fail("embedding_backward: N=", N, " rows is too many (V=", V, " C=", C, ")");
  // Counting sort of the in-range rows by id.
  std::vector<int64_t> start(size_t(V) + 1, 0);
  for (int64_t n = 0; n < N; n++)
    if (ids[n] >= 0 && ids[n] < V) start[size_t(ids[n]) + 1]++;
  std::vector<int32_t> touched;
  for (int64_t v = 0; v < V; v++) {
    if (start[size_t(v) + 1]) touched.push_back(int32_t(v));
    start[size_t(v) + 1] += start[size_t(v)];
  }
  std::vector<int32_t> order(size_t(start[size_t(V)]));
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t n = 0; n < N; n++)
      if (ids[n] >= 0 && ids[n] < V) order[size_t(fill[size_t(ids[n])]++)] = int32_t(n);
  }
  const int64_t U = int64_t(touched.size());
  parallel_rows(ctx, U, int64_t(order.size()) * C + U * C * 2, [&](int64_t u0, int64_t u1) {
    std::vector<float> acc(static_cast<size_t>(C));
    if (dt == DType::F32) scatter_rows_t<F32T>(start, order, touched, dout, dtable, u0, u1, C, scale, acc.data());
    else scatter_rows_t<BF16T>(start, order, touched, dout, dtable, u0, u1, C, scale, acc.data());
  });
}

}  // namespace parallm::cpu
