// LayerNorm and RMSNorm over the last dimension (C) of a row-major [R, C] tensor.
//
// One row per group of threads: a block holds ty rows side by side (ty > 1 only for short rows, so a
// block still has 4 warps), and each row's tx threads read it with 16-byte loads, keep up to kCached
// loads each in registers, and write it back from there: one read and one write of the row through
// device memory (kept as loaded, so bf16 costs half the registers of f32). Longer rows re-read the rest (from L2). Reductions use a fixed order, so the result
// is the same on every run.
//
// Backward (norm_bwd_kernel): the same row layout; a block walks a fixed set of rows, each thread keeping
// the dgamma/dbeta (dw) partial sums of its own columns in registers across them, and writes one partial
// row per block; reduce.cuh's column sum adds those rows in block order (deterministic, no atomics).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "common.cuh"
#include "launch.cuh"
#include "kernels.h"
#include "reduce.cuh"

namespace parallm::cuda {
namespace {

constexpr int kCached = 4;          // 16-byte loads per thread kept in registers
constexpr int kMaxThreads = 512;     // per block; 128 registers a thread keep the cache out of local memory
constexpr int64_t kMaxGrid = 1 << 20;  // more rows than this: blocks loop over them

// Sum over the threadIdx.x of one row (threadIdx.y); every thread of the row gets the same value.
__device__ __forceinline__ float row_sum(float v, float* sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);  // butterfly: all lanes equal
  const int nw = blockDim.x >> 5;
  if (nw == 1) return v;
  float* row = sh + threadIdx.y * nw;
  __syncthreads();  // the previous call's readers are done with sh
  if ((threadIdx.x & 31) == 0) row[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.f;
  for (int i = 0; i < nw; ++i) t += row[i];
  return t;
}

// RMS: y = x * rstd * w.  Else: y = (x - mean) * rstd * gamma + beta (gamma/beta null: 1/0).
template <class T, int N, bool RMS>
__global__ void __launch_bounds__(kMaxThreads) norm_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                                                    const T* __restrict__ beta, T* __restrict__ y,
                                                    float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                                    int64_t R, int64_t C, float eps) {
  PARALLM_TRACE_SCOPE(Norm);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  __shared__ float sh[32];
  using P = Pack<T, N>;
  const int64_t nvec = C / N;  // N divides C (N == 1 otherwise)
  const float inv_c = 1.f / float(C);
  for (int64_t base = int64_t(blockIdx.x) * blockDim.y; base < R; base += int64_t(gridDim.x) * blockDim.y) {
    const int64_t r = base + threadIdx.y;
    const bool live = r < R;  // dead rows still join the reductions' barriers
    const T* xr = x + (live ? r : 0) * C;
    T* yr = y + (live ? r : 0) * C;

    P cache[kCached];  // the row's packs as loaded (bf16 stays 2 bytes: half the registers)
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (live && v < nvec) {
        cache[k] = *reinterpret_cast<const P*>(xr + v * N);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float a = f32(cache[k].v[j]);
          s += RMS ? a * a : a;
        }
      }
    }
    for (int64_t v = threadIdx.x + int64_t(kCached) * blockDim.x; live && v < nvec; v += blockDim.x) {
      const P p = *reinterpret_cast<const P*>(xr + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const float a = f32(p.v[j]);
        s += RMS ? a * a : a;
      }
    }
    s = row_sum(s, sh);

    float mean = 0.f, rstd;
    if (RMS) {
      rstd = rsqrtf(__fmaf_rn(s, inv_c, eps));
    } else {
      // Second pass over the centred values: no cancellation as with E[x^2] - mean^2.
      mean = s * inv_c;
      float q = 0.f;
#pragma unroll
      for (int k = 0; k < kCached; ++k) {
        const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
        if (live && v < nvec) {
#pragma unroll
          for (int j = 0; j < N; ++j) {
            const float d = f32(cache[k].v[j]) - mean;
            q += d * d;
          }
        }
      }
      for (int64_t v = threadIdx.x + int64_t(kCached) * blockDim.x; live && v < nvec; v += blockDim.x) {
        const P p = *reinterpret_cast<const P*>(xr + v * N);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float d = f32(p.v[j]) - mean;
          q += d * d;
        }
      }
      q = row_sum(q, sh);
      rstd = rsqrtf(__fmaf_rn(q, inv_c, eps));
    }
    if (live && threadIdx.x == 0) {
      if (mean_out) mean_out[r] = mean;
      if (rstd_out) rstd_out[r] = rstd;
    }
    if (!live) continue;

    auto emit = [&](int64_t v, const P& in) {
      P g, b, o;
      if (gamma) g = *reinterpret_cast<const P*>(gamma + v * N);
      if (!RMS && beta) b = *reinterpret_cast<const P*>(beta + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        float t = (f32(in.v[j]) - mean) * rstd;
        // (each step rounded apart: the GEMV epilogues and the layer kernel repeat these bits, and the
        // compiler would fuse t * g + b into an fma where no branch stands between them)
        if (gamma) t = __fmul_rn(t, f32(g.v[j]));
        if (!RMS && beta) t = __fadd_rn(t, f32(b.v[j]));
        o.v[j] = from_f32<T>(t);
      }
      *reinterpret_cast<P*>(yr + v * N) = o;
    };
#pragma unroll
    for (int k = 0; k < kCached; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (v < nvec) emit(v, cache[k]);
    }
    for (int64_t v = threadIdx.x + int64_t(kCached) * blockDim.x; v < nvec; v += blockDim.x)
      emit(v, *reinterpret_cast<const P*>(xr + v * N));
  }
}

void check_rows(const char* op, int64_t R, int64_t C) {
  if (R < 0 || C < 0) fail(op, ": negative size R=", R, " C=", C);
  if (C > 0 && R > INT64_MAX / C) fail(op, ": R*C overflows (R=", R, " C=", C, ")");
}

template <class T, int N, bool RMS>
void launch_norm(cudaStream_t s, const char* op, const T* x, const T* g, const T* b, T* y, float* mean,
                 float* rstd, int64_t R, int64_t C, float eps) {
  const int64_t per_thread = int64_t(N) * kCached;
  const int64_t want = (C + per_thread - 1) / per_thread;  // threads to keep the row in registers
  const int tx = int(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, (want + 31) / 32 * 32)));
  const int ty = std::max(1, 128 / tx);
  const int64_t blocks = std::min<int64_t>((R + ty - 1) / ty, kMaxGrid);
  PARALLM_CUDA_CHECK(launch_pdl_small(norm_kernel<T, N, RMS>, dim3(unsigned(blocks)), dim3(tx, ty), 0, s, x, g, b, y,
                                      mean, rstd, R, C, eps),
                     op, ": launch failed (R=", R, " C=", C, ")");
}

template <class T, bool RMS>
void dispatch_norm(cudaStream_t s, const char* op, const void* x, const void* g, const void* b, void* y,
                   float* mean, float* rstd, int64_t R, int64_t C, float eps) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = C % V == 0 && aligned16(x) && aligned16(y) && (!g || aligned16(g)) && (!b || aligned16(b));
  auto* xt = static_cast<const T*>(x);
  auto* gt = static_cast<const T*>(g);
  auto* bt = static_cast<const T*>(b);
  auto* yt = static_cast<T*>(y);
  if (vec) launch_norm<T, V, RMS>(s, op, xt, gt, bt, yt, mean, rstd, R, C, eps);
  else launch_norm<T, 1, RMS>(s, op, xt, gt, bt, yt, mean, rstd, R, C, eps);
}

template <bool RMS>
void norm(cudaStream_t s, const char* op, DType dt, const void* x, const void* g, const void* b, void* y,
          float* mean, float* rstd, int64_t R, int64_t C, float eps) {
  check_rows(op, R, C);
  if (R == 0 || C == 0) return;  // nothing to normalise (mean/rstd of an empty row are left alone)
  if (!x || !y) fail(op, ": null input or output (R=", R, " C=", C, ")");
  if (dt == DType::F32) dispatch_norm<float, RMS>(s, op, x, g, b, y, mean, rstd, R, C, eps);
  else if (dt == DType::BF16) dispatch_norm<__nv_bfloat16, RMS>(s, op, x, g, b, y, mean, rstd, R, C, eps);
  else fail(op, ": dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " C=", C, ")");
}

// ------------------------------------------------------------------------------------------- backward
constexpr int kBwdThreads = 256;      // per block (255 registers a thread available for the partials)
constexpr int64_t kBwdBlocks = 512;   // blocks at most: partial rows written, then column-summed

// LN: dx += rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma; dgamma += dy xhat, dbeta += dy.
// RMS: dx += rstd (g - xhat mean(g xhat)), g = dy w; dw += dy xhat. P packs of N columns per thread.
// DS (LN only): also dsum += the rows' sum of the dx left (as stored), a third partial.
// part: [NP][gridDim.x][C] f32, NP = 1 (RMS), 2 (LN) or 3 (LN with DS).
template <class T, int N, int P, bool RMS, bool DS>
__global__ void __launch_bounds__(kBwdThreads)
norm_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gamma,
                const float* __restrict__ mean, const float* __restrict__ rstd, T* __restrict__ dx,
                float* __restrict__ part, int64_t R, int64_t C) {
  __shared__ float sh[32];
  extern __shared__ float comb[];  // [2][C], blockDim.y > 1 only
  using Pk = Pack<T, N>;
  const int64_t nvec = C / N;
  const float inv_c = 1.f / float(C);
  static_assert(!(RMS && DS), "the dx sums are LN's (a bias beside the norm's)");
  float pg[P][N], pb[P][N], pd[DS ? P : 1][N];
#pragma unroll
  for (int k = 0; k < P; ++k)
#pragma unroll
    for (int j = 0; j < N; ++j) {
      pg[k][j] = pb[k][j] = 0.f;
      if (DS) pd[DS ? k : 0][j] = 0.f;
    }

  for (int64_t base = int64_t(blockIdx.x) * blockDim.y; base < R; base += int64_t(gridDim.x) * blockDim.y) {
    const int64_t r = base + threadIdx.y;
    const bool live = r < R;  // dead rows still join the reductions' barriers
    const int64_t ro = (live ? r : 0) * C;
    const float mu = (RMS || !live) ? 0.f : mean[r], rs = live ? rstd[r] : 0.f;
    float s1 = 0.f, s2 = 0.f;  // sum g, sum g xhat
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (live && v < nvec) {
        const Pk a = *reinterpret_cast<const Pk*>(dy + ro + v * N);
        const Pk b = *reinterpret_cast<const Pk*>(x + ro + v * N);
        const Pk w = *reinterpret_cast<const Pk*>(gamma + v * N);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float d = f32(a.v[j]), xh = (f32(b.v[j]) - mu) * rs, g = d * f32(w.v[j]);
          s1 += g;
          s2 += g * xh;
          pg[k][j] += d * xh;
          pb[k][j] += d;
        }
      }
    }
    if (!RMS) s1 = row_sum(s1, sh);
    s2 = row_sum(s2, sh);
    const float m1 = RMS ? 0.f : s1 * inv_c, m2 = s2 * inv_c;
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (live && v < nvec) {  // second read of dy and x: from L1/L2, the row was just read
        const Pk a = *reinterpret_cast<const Pk*>(dy + ro + v * N);
        const Pk b = *reinterpret_cast<const Pk*>(x + ro + v * N);
        const Pk w = *reinterpret_cast<const Pk*>(gamma + v * N);
        Pk o = *reinterpret_cast<const Pk*>(dx + ro + v * N);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const float xh = (f32(b.v[j]) - mu) * rs, g = f32(a.v[j]) * f32(w.v[j]);
          o.v[j] = from_f32<T>(f32(o.v[j]) + rs * (g - m1 - xh * m2));
          if (DS) pd[DS ? k : 0][j] += f32(o.v[j]);
        }
        *reinterpret_cast<Pk*>(dx + ro + v * N) = o;
      }
    }
  }

  // One partial row per block; the block's row lanes (threadIdx.y) are added in lane order.
  float* pgo = part + int64_t(blockIdx.x) * C;
  float* pbo = part + (int64_t(gridDim.x) + blockIdx.x) * C;
  float* pdo = part + (2 * int64_t(gridDim.x) + blockIdx.x) * C;
  if (blockDim.y == 1) {
#pragma unroll
    for (int k = 0; k < P; ++k) {
      const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
      if (v < nvec)
#pragma unroll
        for (int j = 0; j < N; ++j) {
          pgo[v * N + j] = pg[k][j];
          if (!RMS) pbo[v * N + j] = pb[k][j];
          if (DS) pdo[v * N + j] = pd[DS ? k : 0][j];
        }
    }
    return;
  }
  for (int y = 0; y < int(blockDim.y); ++y) {
    if (int(threadIdx.y) == y) {
#pragma unroll
      for (int k = 0; k < P; ++k) {
        const int64_t v = threadIdx.x + int64_t(k) * blockDim.x;
        if (v < nvec)
#pragma unroll
          for (int j = 0; j < N; ++j) {
            const int64_t c = v * N + j;
            comb[c] = y == 0 ? pg[k][j] : comb[c] + pg[k][j];
            if (!RMS) comb[C + c] = y == 0 ? pb[k][j] : comb[C + c] + pb[k][j];
            if (DS) comb[2 * C + c] = y == 0 ? pd[DS ? k : 0][j] : comb[2 * C + c] + pd[DS ? k : 0][j];
          }
      }
    }
    __syncthreads();
  }
  if (threadIdx.y != 0) return;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    pgo[c] = comb[c];
    if (!RMS) pbo[c] = comb[C + c];
    if (DS) pdo[c] = comb[2 * C + c];
  }
}

// The norm's parameter gradients (+=) and, with ds, the dx sums ((+)= by ds_acc): one column-sum launch for all.
template <class T, int N, int P, bool RMS>
void launch_norm_bwd(cudaStream_t s, const char* op, const T* dy, const T* x, const T* g, const float* mean,
                     const float* rstd, T* dx, T* dg, T* db, T* ds, bool ds_acc, int64_t R, int64_t C, int tx) {
  const int ty = std::max(1, 128 / tx);
  const int64_t blocks = std::min<int64_t>(cdiv(R, ty), kBwdBlocks);
  const int np = RMS ? 1 : ds ? 3 : 2;
  const size_t smem = ty > 1 ? sizeof(float) * np * size_t(C) : 0;  // ty > 1 only for C <= 128 packs
  Scratch part(s, np * blocks * C, op);
  const dim3 grid{unsigned(blocks)}, block{unsigned(tx), unsigned(ty)};
  if (RMS || !ds) norm_bwd_kernel<T, N, P, RMS, false><<<grid, block, smem, s>>>(dy, x, g, mean, rstd, dx, part.p, R, C);
  else norm_bwd_kernel<T, N, P, RMS, !RMS><<<grid, block, smem, s>>>(dy, x, g, mean, rstd, dx, part.p, R, C);
  PARALLM_LAUNCH_CHECK(op, ": launch failed (R=", R, " C=", C, " blocks=", blocks, ")");
  const ColOut<T> out{{dg, RMS ? dg : db, ds ? ds : dg}, ds_acc ? 7u : 3u};
  colsum_n<float, T>(s, op, part.p, blocks * C, out, np, blocks, C);
}

template <class T, int N, bool RMS>
void dispatch_norm_bwd_packs(cudaStream_t s, const char* op, const T* dy, const T* x, const T* g,
                             const float* mean, const float* rstd, T* dx, T* dg, T* db, T* ds, bool ds_acc, int64_t R,
                             int64_t C) {
  const int64_t nvec = C / N;
  // Two packs a thread when the row allows, up to kBwdThreads threads a row, then more packs a thread.
  const int tx = int(std::min<int64_t>(kBwdThreads, std::max<int64_t>(32, cdiv(cdiv(nvec, 2), 32) * 32)));
  const int64_t packs = cdiv(nvec, tx);
  if (packs <= 1) launch_norm_bwd<T, N, 1, RMS>(s, op, dy, x, g, mean, rstd, dx, dg, db, ds, ds_acc, R, C, tx);
  else if (packs <= 2) launch_norm_bwd<T, N, 2, RMS>(s, op, dy, x, g, mean, rstd, dx, dg, db, ds, ds_acc, R, C, tx);
  else if (packs <= 4) launch_norm_bwd<T, N, 4, RMS>(s, op, dy, x, g, mean, rstd, dx, dg, db, ds, ds_acc, R, C, tx);
  else if (packs <= 8) launch_norm_bwd<T, N, 8, RMS>(s, op, dy, x, g, mean, rstd, dx, dg, db, ds, ds_acc, R, C, tx);
  else
    fail(op, ": row of C=", C, " too long for the backward kernel (at most ", int64_t(kBwdThreads) * 8 * N,
         " elements of ", sizeof(T) == 4 ? "f32" : "bf16", ", R=", R, ")");
}

template <class T, bool RMS>
void dispatch_norm_bwd(cudaStream_t s, const char* op, const void* dy, const void* x, const void* g,
                       const float* mean, const float* rstd, void* dx, void* dg, void* db, void* ds, bool ds_acc,
                       int64_t R, int64_t C) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = C % V == 0 && aligned16(dy) && aligned16(x) && aligned16(g) && aligned16(dx);
  auto* dyt = static_cast<const T*>(dy);
  auto* xt = static_cast<const T*>(x);
  auto* gt = static_cast<const T*>(g);
  auto* dxt = static_cast<T*>(dx);
  auto* dgt = static_cast<T*>(dg);
  auto* dbt = static_cast<T*>(db);
  auto* dst = static_cast<T*>(ds);
  if (vec) dispatch_norm_bwd_packs<T, V, RMS>(s, op, dyt, xt, gt, mean, rstd, dxt, dgt, dbt, dst, ds_acc, R, C);
  else dispatch_norm_bwd_packs<T, 1, RMS>(s, op, dyt, xt, gt, mean, rstd, dxt, dgt, dbt, dst, ds_acc, R, C);
}

template <bool RMS>
void norm_bwd(cudaStream_t s, const char* op, DType dt, const void* dy, const void* x, const void* g,
              const float* mean, const float* rstd, void* dx, void* dg, void* db, void* ds, bool ds_acc, int64_t R,
              int64_t C) {
  check_rows(op, R, C);
  if (R == 0 && ds && !ds_acc && C > 0)  // no rows: nothing to add, but the dx sums are an empty sum's zeros
    PARALLM_CUDA_CHECK(cudaMemsetAsync(ds, 0, size_t(C) * dtype_size(dt), s), op, ": zero fill (C=", C, ")");
  if (R == 0 || C == 0) return;  // no rows: nothing to add
  if (!dy || !x || !g || !rstd || !dx || !dg || (!RMS && (!mean || !db)))
    fail(op, ": null input or output (R=", R, " C=", C, ")");
  if (dt == DType::F32) dispatch_norm_bwd<float, RMS>(s, op, dy, x, g, mean, rstd, dx, dg, db, ds, ds_acc, R, C);
  else if (dt == DType::BF16) dispatch_norm_bwd<__nv_bfloat16, RMS>(s, op, dy, x, g, mean, rstd, dx, dg, db, ds, ds_acc, R, C);
  else fail(op, ": dtype ", dtype_name(dt), " not supported (f32, bf16) (R=", R, " C=", C, ")");
}

}  // namespace

void layernorm(cudaStream_t s, DType dt, const void* x, const void* gamma, const void* beta, void* y, float* mean,
               float* rstd, int64_t R, int64_t C, float eps) {
  norm<false>(s, "layernorm", dt, x, gamma, beta, y, mean, rstd, R, C, eps);
}

void rmsnorm(cudaStream_t s, DType dt, const void* x, const void* w, void* y, float* rstd, int64_t R, int64_t C,
             float eps) {
  norm<true>(s, "rmsnorm", dt, x, w, nullptr, y, nullptr, rstd, R, C, eps);
}

void layernorm_backward(cudaStream_t s, DType dt, const void* dy, const void* x, const void* gamma, const float* mean,
                        const float* rstd, void* dx, void* dgamma, void* dbeta, int64_t R, int64_t C) {
  norm_bwd<false>(s, "layernorm_backward", dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, nullptr, false, R, C);
}

void layernorm_backward_dsum(cudaStream_t s, DType dt, const void* dy, const void* x, const void* gamma,
                             const float* mean, const float* rstd, void* dx, void* dgamma, void* dbeta, void* dsum,
                             bool dsum_accumulate, int64_t R, int64_t C) {
  norm_bwd<false>(s, "layernorm_backward", dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, dsum, dsum_accumulate, R, C);
}

void rmsnorm_backward(cudaStream_t s, DType dt, const void* dy, const void* x, const void* w, const float* rstd,
                      void* dx, void* dw, int64_t R, int64_t C) {
  norm_bwd<true>(s, "rmsnorm_backward", dt, dy, x, w, nullptr, rstd, dx, dw, nullptr, nullptr, false, R, C);
}

}  // namespace parallm::cuda
