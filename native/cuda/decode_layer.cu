// GPT-2 decode, one whole transformer layer in one launch (decode_layer_gpt2, native/core/kernels.h): a
// persistent kernel whose phases meet at a grid-wide barrier, for B <= 4 sequences in bf16.
//
// Why: at batch 1 a GPT-2 124M layer is ~9 small kernels of ~5 µs each, mostly launch, ramp and tail; the
// weights are 3.5-9.4 MB a matrix. Here a layer costs one launch, four grid barriers and its weight read.
//
// Phases (every block takes part in each; a barrier after each phase that writes what a later one reads):
//   P1  h = layernorm(x; g1, b1) (every block computes it whole, in shared memory: C is small), then the
//       qkv rows: q into the workspace, k and v straight into the caches at pos[b]   | barrier
//   P2  attention: items (b, head, key split), a block an item; each writes its partial softmax
//       (max, sum, unnormalized output) into the workspace, and the last split of a head to finish
//       (a count a head) merges them into att (rounded to bf16, as attention_decode) | barrier
//   P3  every block loads att whole, then the out rows: x += att Wout^T + bout (one f32 sum, one
//       rounding)                                                                    | barrier
//   P4  h2 = layernorm(x; g2, b2) (every block, whole), then the up rows with GELU into the workspace
//                                                                                    | barrier
//   P5  every block loads a = gelu(...) whole into shared memory, then the down rows: x += a Wdown^T + bdown
// The rounding points are the ops apart's (layernorm_matmul, rope_kv_write, attention_decode, matmul with
// beta = 1, layernorm_matmul with GELU, matmul with beta = 1); the order of the f32 sums is this kernel's,
// so the result is the ops' to bf16 tolerance, not bit for bit.
//
// GEMV phases: a warp owns output rows n = gw + i * WARPS (gw = warp * gridDim + block: rows spread evenly
// over the blocks), a lane 16-byte loads of each row (k8 = lane + 32 j). The first rows of a phase are
// loaded into registers BEFORE the barrier that precedes it (weights never depend on the activations),
// so the barrier's wait overlaps the weight read; and at the start every warp asks L2 for all its later
// phases' rows (prefetch_l2), so HBM streams them while P1 and P2 run.
//
// The grid barrier: one u32 on the device, zero (low 31 bits) on entry. Each block's thread 0 adds 1 (block
// 0 adds 2^31 - (blocks - 1)), so once every block has arrived the word's top bit has flipped and its low
// bits are zero again; each waits for the flip. Four barriers flip it four times: the word is left as it
// was found (zero stays zero), so a caller's counter of matmul_residual_norm can serve here too. Fences
// around the arrive and after the wait order every block's writes before every later read (gpu scope);
// the data other blocks wrote during the launch is read with ld.global.cg (L2), never through L1 or the
// read-only path.
//
// The launch is cooperative (cudaLaunchAttributeCooperative through cudaLaunchKernelEx): the runtime
// refuses a grid that cannot be co-resident, so the barrier cannot deadlock; the attribute is valid for
// graph kernel nodes (driver_types.h: "Valid for graph nodes, launches"), so a captured decode step keeps
// it. The grid is one block a multiprocessor (the occupancy query must allow at least one: checked).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "check.h"
#include "common.cuh"
#include "kernels.h"
#include "launch.cuh"
#include "workspace.h"

namespace parallm::cuda {
namespace dl {

using bf16 = __nv_bfloat16;

constexpr int kThreads = 256, kWarps = kThreads / 32;
constexpr int kMaxB = 4;        // sequences a launch
constexpr int kMinChunk = 32;   // keys an attention split holds at least (fewer splits for short contexts)
constexpr int kAttU = 4;        // keys a group loads at once in P2
constexpr int kMergeU = 8;      // partials a thread loads at once in the merge of a head

struct Params {
  bf16* x;
  const bf16 *g1, *b1, *wqkv, *bqkv, *wout, *bout, *g2, *b2, *wup, *bup, *wdown, *bdown;
  bf16 *kc, *vc;
  const int32_t *pos, *lens;
  unsigned* bar;
  bf16* q;      // workspace: [B, C]
  bf16* a;      // workspace: [B, 4C]
  float* part;  // workspace: [B, H, nsplit, D + 2] (output, then max and sum)
  bf16* att;    // workspace: [B, C], the merged attention (by the last split of each head)
  unsigned* done;  // workspace: [B, H], splits of each head finished (zeroed in P1)
  int B, C, H, max_len, nsplit;
  int64_t kvb, kvt;
  int skip;        // PARALLM_DECODE_LAYER_SKIP (measurement only, wrong results): see skip_mask()
  float eps, sl2;  // sl2: 1/sqrt(D) * log2(e) (scores in log2 units, as attention_decode)
};

// Shared memory: act [B][4C] bf16 (a GEMV's input), then the attention merge and small reductions.
inline size_t smem_bytes(int B, int C) {
  return size_t(B) * 4 * C * 2 + sizeof(float) * (2048 + 64 + 64) + sizeof(float) * 2 * 256;
}

// ------------------------------------------------------------------------------------- small helpers
__device__ __forceinline__ float lo_bf(unsigned u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u << 16);
#else
  const unsigned v = u << 16;
  float f;
  std::memcpy(&f, &v, 4);
  return f;
#endif
}
__device__ __forceinline__ float hi_bf(unsigned u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u & 0xffff0000u);
#else
  const unsigned v = u & 0xffff0000u;
  float f;
  std::memcpy(&f, &v, 4);
  return f;
#endif
}
__device__ __forceinline__ float round_bf(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// sum over i < 8 of w[i] * h[i] (both 8 bf16 in 16 bytes), into s.
__device__ __forceinline__ float dot8(const uint4& w, const uint4& h, float s) {
  s = fmaf(lo_bf(w.x), lo_bf(h.x), s);
  s = fmaf(hi_bf(w.x), hi_bf(h.x), s);
  s = fmaf(lo_bf(w.y), lo_bf(h.y), s);
  s = fmaf(hi_bf(w.y), hi_bf(h.y), s);
  s = fmaf(lo_bf(w.z), lo_bf(h.z), s);
  s = fmaf(hi_bf(w.z), hi_bf(h.z), s);
  s = fmaf(lo_bf(w.w), lo_bf(h.w), s);
  s = fmaf(hi_bf(w.w), hi_bf(h.w), s);
  return s;
}

// A weight load: streamed past L1 (each row is read once a launch).
__device__ __forceinline__ uint4 ld_weight(const bf16* p) {
#ifdef __CUDA_ARCH__
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
#else
  return *reinterpret_cast<const uint4*>(p);
#endif
}
// What other blocks wrote during this launch (and x): from L2, never a stale L1 line.
__device__ __forceinline__ uint4 ld_cg16(const void* p) { return __ldcg(reinterpret_cast<const uint4*>(p)); }
__device__ __forceinline__ float ld_cg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float ld_cg_bf(const bf16* p) {
  const unsigned short u = __ldcg(reinterpret_cast<const unsigned short*>(p));
  return lo_bf(unsigned(u));
}

__device__ __forceinline__ unsigned bar_load(unsigned* p) {
#if defined(__CUDA_ARCH__)
  unsigned v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
#elif defined(PARALLM_EMU)
  std::this_thread::yield();  // (the emulation: other blocks' threads need the cores)
  return std::atomic_ref<unsigned>(*p).load();
#else
  return *p;
#endif
}

// The grid barrier (see the top). Every thread of every block calls it.
__device__ __forceinline__ void grid_barrier(unsigned* bar) {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned inc = blockIdx.x == 0 ? 0x80000000u - (gridDim.x - 1) : 1u;
    __threadfence();  // this block's writes (ordered before by __syncthreads) before the arrival
    const unsigned old = atomicAdd(bar, inc);
    while (((old ^ bar_load(bar)) & 0x80000000u) == 0) {
    }
    __threadfence();  // the other blocks' writes before this block's reads
  }
  __syncthreads();
}

// The barrier between phases; with skip bit 1 only the block's own (to time the grid barriers' share).
__device__ __forceinline__ void phase_barrier(const Params& p) {
  if (p.skip & 1) __syncthreads();
  else grid_barrier(p.bar);
}

// Sum of v over the warp (every lane gets it; fixed butterfly order).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ------------------------------------------------------------------------------------- layernorm
// act[b][0..C) = layernorm(x[b]; g, beta, eps) rounded to bf16, for b < B, by the whole block (as norm.cu:
// mean, then the mean of the centred squares, rstd = rsqrt(var + eps), ((x - mean) rstd) g + beta).
// red: 2 * kWarps * kMaxB floats. Ends with a __syncthreads (act ready).
__device__ void block_layernorm(const bf16* x, const bf16* g, const bf16* beta, bf16* act, int B, int C, float eps,
                                float* red) {
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int C8 = C / 8, total = B * C8;
  constexpr int PK = (kMaxB * 1024 / 8 + kThreads - 1) / kThreads;  // packs a thread holds (C <= 1024)
  uint4 xr[PK];
  float s[kMaxB];
#pragma unroll
  for (int b = 0; b < kMaxB; ++b) s[b] = 0.f;
#pragma unroll
  for (int i = 0; i < PK; ++i) {
    const int p = tid + i * kThreads;
    if (p < total) {
      const int b = p / C8, c8 = p - b * C8;
      xr[i] = ld_cg16(x + int64_t(b) * C + c8 * 8);
      float t = 0.f;
      t += lo_bf(xr[i].x) + hi_bf(xr[i].x);
      t += lo_bf(xr[i].y) + hi_bf(xr[i].y);
      t += lo_bf(xr[i].z) + hi_bf(xr[i].z);
      t += lo_bf(xr[i].w) + hi_bf(xr[i].w);
#pragma unroll
      for (int bb = 0; bb < kMaxB; ++bb)
        if (bb == b) s[bb] += t;
    }
  }
  float mean[kMaxB], rstd[kMaxB];
  const float inv_c = 1.f / float(C);
#pragma unroll
  for (int b = 0; b < kMaxB; ++b) {
    s[b] = warp_sum(s[b]);
    if (lane == 0) red[warp * kMaxB + b] = s[b];
  }
  __syncthreads();
#pragma unroll
  for (int b = 0; b < kMaxB; ++b) {
    float t = 0.f;
    for (int w = 0; w < kWarps; ++w) t += red[w * kMaxB + b];
    mean[b] = t * inv_c;
    s[b] = 0.f;
  }
#pragma unroll
  for (int i = 0; i < PK; ++i) {
    const int p = tid + i * kThreads;
    if (p < total) {
      const int b = p / C8;
      float m = 0.f;
#pragma unroll
      for (int bb = 0; bb < kMaxB; ++bb)
        if (bb == b) m = mean[bb];
      const unsigned* u = &xr[i].x;
      float t = 0.f;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float d0 = lo_bf(u[e]) - m, d1 = hi_bf(u[e]) - m;
        t += d0 * d0;
        t += d1 * d1;
      }
#pragma unroll
      for (int bb = 0; bb < kMaxB; ++bb)
        if (bb == b) s[bb] += t;
    }
  }
#pragma unroll
  for (int b = 0; b < kMaxB; ++b) {
    s[b] = warp_sum(s[b]);
    if (lane == 0) red[kWarps * kMaxB + warp * kMaxB + b] = s[b];
  }
  __syncthreads();
#pragma unroll
  for (int b = 0; b < kMaxB; ++b) {
    float t = 0.f;
    for (int w = 0; w < kWarps; ++w) t += red[kWarps * kMaxB + w * kMaxB + b];
    rstd[b] = rsqrtf(__fmaf_rn(t, inv_c, eps));  // (norm.cu's rounding)
  }
#pragma unroll
  for (int i = 0; i < PK; ++i) {
    const int p = tid + i * kThreads;
    if (p < total) {
      const int b = p / C8, c8 = p - b * C8;
      float m = 0.f, r = 0.f;
#pragma unroll
      for (int bb = 0; bb < kMaxB; ++bb)
        if (bb == b) m = mean[bb], r = rstd[bb];
      const uint4 gg = *reinterpret_cast<const uint4*>(g + c8 * 8);
      const uint4 be = *reinterpret_cast<const uint4*>(beta + c8 * 8);
      const unsigned* u = &xr[i].x;
      const unsigned* gu = &gg.x;
      const unsigned* bu = &be.x;
      uint4 o;
      unsigned* ou = &o.x;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float t0 = (lo_bf(u[e]) - m) * r, t1 = (hi_bf(u[e]) - m) * r;
        t0 = __fadd_rn(__fmul_rn(t0, lo_bf(gu[e])), lo_bf(bu[e]));  // (rounded apart, as norm_kernel)
        t1 = __fadd_rn(__fmul_rn(t1, hi_bf(gu[e])), hi_bf(bu[e]));
        const __nv_bfloat162 pr = __floats2bfloat162_rn(t0, t1);
        ou[e] = *reinterpret_cast<const unsigned*>(&pr);
      }
      *reinterpret_cast<uint4*>(act + int64_t(b) * C + c8 * 8) = o;
    }
  }
  __syncthreads();
}

// ------------------------------------------------------------------------------------- GEMV rows
// R rows of a warp, NL 16-byte loads of each per lane (k8 = lane + 32 j < K / 8).
template <int R, int NL>
struct Rows {
  uint4 w[R][NL];
};

template <int R, int NL>
__device__ __forceinline__ void load_rows(Rows<R, NL>& rw, const bf16* W, int N, int K, int n0, int nstride) {
  const int lane = int(threadIdx.x) & 31, K8 = K / 8;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int n = n0 + r * nstride;
#pragma unroll
    for (int j = 0; j < NL; ++j) {
      const int k8 = lane + 32 * j;
      rw.w[r][j] = (n < N && k8 < K8) ? ld_weight(W + int64_t(n) * K + k8 * 8) : uint4{0u, 0u, 0u, 0u};
    }
  }
}

// The warp's R rows against act [B][K] (shared memory, bf16): s[r][b], the same in every lane.
template <int R, int NL>
__device__ __forceinline__ void dot_rows(const Rows<R, NL>& rw, const bf16* act, int B, int K, float (&s)[R][kMaxB]) {
  const int lane = int(threadIdx.x) & 31, K8 = K / 8;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < kMaxB; ++b) s[r][b] = 0.f;
#pragma unroll
  for (int j = 0; j < NL; ++j) {
    const int k8 = lane + 32 * j;
    if (k8 < K8) {
#pragma unroll
      for (int b = 0; b < kMaxB; ++b) {
        if (b < B) {
          const uint4 h = *reinterpret_cast<const uint4*>(act + int64_t(b) * K + k8 * 8);
#pragma unroll
          for (int r = 0; r < R; ++r) s[r][b] = dot8(rw.w[r][j], h, s[r][b]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < kMaxB; ++b)
      if (b < B) s[r][b] = warp_sum(s[r][b]);
}

// One GEMV phase over rows [0, N) of W [N, K]: `pre` holds the warp's first R rows (loaded before the
// barrier); later rows are loaded here. epi(b, n, s, first) for each output, lane r * kMaxB + b storing
// it; `first`: row n is of the warp's first R (a lane's Pre values, loaded before the barrier, are its).
template <int R>
struct LaneRow {  // the output of the warp's first R rows this lane stores: row n of sequence b
  int b, n;
  bool ok;
  __device__ LaneRow(int gw, int nwarps, int N, int B) {
    const int lane = int(threadIdx.x) & 31, r = lane / kMaxB;
    b = lane % kMaxB, n = gw + r * nwarps, ok = r < R && b < B && n < N;
  }
};
template <int R, int NL, class Epi>
__device__ __forceinline__ void gemv_phase(Rows<R, NL>& pre, const bf16* W, int N, int K, const bf16* act, int B,
                                           int gw, int nwarps, Epi epi) {
  const int lane = int(threadIdx.x) & 31;
  for (int base = gw, c = 0; base < N; base += R * nwarps, ++c) {
    if (c) load_rows(pre, W, N, K, base, nwarps);
    float s[R][kMaxB];
    dot_rows(pre, act, B, K, s);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int b = 0; b < kMaxB; ++b) {
        const int n = base + r * nwarps;
        if (b < B && n < N && lane == r * kMaxB + b) epi(b, n, s[r][b], c == 0);
      }
  }
}

// Ask L2 for the warp's rows of W (rows gw, gw + nwarps, ...): lane 0, one bulk prefetch a row.
__device__ __forceinline__ void prefetch_rows(const bf16* W, int N, int K, int gw, int nwarps) {
  if ((threadIdx.x & 31) != 0) return;
  for (int n = gw; n < N; n += nwarps) prefetch_l2(W + int64_t(n) * K, uint32_t(K) * 2);
}

__device__ __forceinline__ float bias_of(const bf16* b, int n) { return b ? __bfloat162float(b[n]) : 0.f; }

// ------------------------------------------------------------------------------------- attention
// The merged attention of head h of sequence b, dimension d, from its nv split partials (as
// attention_decode combines its key splits: weights exp2(m_s - M) / L, then the weighted sum, rounded to
// bf16 once), into att. The partials come from L2 kMergeU at a time (loads issued together).
// Field f of the partials of splits s0 .. s0 + kMergeU - 1 (pp: the head's first; f: a dimension, D the
// max, D + 1 the sum), `none` past the nv splits there are: the loads issued together.
template <int D>
__device__ __forceinline__ void load_splits(const float* pp, int s0, int nv, int f, float none, float (&v)[kMergeU]) {
#pragma unroll
  for (int u = 0; u < kMergeU; ++u) v[u] = s0 + u < nv ? ld_cg(pp + (s0 + u) * (D + 2) + f) : none;
}

template <int D>
__device__ void merge_head(const Params& p, int b, int h, int nv, int d) {
  const float* pp = p.part + (int64_t(b) * p.H + h) * p.nsplit * (D + 2);
  float m[kMergeU], v[kMergeU];
  float M = -INFINITY;
  for (int s0 = 0; s0 < nv; s0 += kMergeU) {
    load_splits<D>(pp, s0, nv, D, -INFINITY, m);
#pragma unroll
    for (int u = 0; u < kMergeU; ++u) M = fmaxf(M, m[u]);
  }
  float L = 0.f;
  for (int s0 = 0; s0 < nv; s0 += kMergeU) {
    load_splits<D>(pp, s0, nv, D, -INFINITY, m);
    load_splits<D>(pp, s0, nv, D + 1, 0.f, v);
#pragma unroll
    for (int u = 0; u < kMergeU; ++u)
      if (s0 + u < nv) L += v[u] * exp2f(m[u] - M);
  }
  float O = 0.f;
  for (int s0 = 0; s0 < nv; s0 += kMergeU) {
    load_splits<D>(pp, s0, nv, D, -INFINITY, m);
    load_splits<D>(pp, s0, nv, d, 0.f, v);
#pragma unroll
    for (int u = 0; u < kMergeU; ++u)
      if (s0 + u < nv) O += v[u] * (exp2f(m[u] - M) / L);
  }
  p.att[int64_t(b) * p.C + h * D + d] = __float2bfloat16_rn(O);
}

// P2: item (b, h, split) over keys [s0, s1) of the split: groups of GS = D / 8 lanes, a lane 8 dims; a
// group walks its keys kAttU at a time with an online softmax; the groups merge through shared memory.
template <int D>
__device__ void attention_item(const Params& p, int b, int h, int split, int nv, int len, float* sm) {
  constexpr int GS = D / 8, NG = kThreads / GS;
  float* s_acc = sm;             // [NG][D]
  float* s_ml = sm + NG * D;     // [NG][2]
  const int tid = int(threadIdx.x), grp = tid / GS, lig = tid % GS, dim0 = lig * 8;
  const int C = p.C;
  const int chunk = (len + nv - 1) / nv, s0 = split * chunk, s1 = min(len, s0 + chunk);
  float qr[8];
  {
    const uint4 qq = ld_cg16(p.q + int64_t(b) * C + h * D + dim0);
    const unsigned* u = &qq.x;
#pragma unroll
    for (int e = 0; e < 4; ++e) qr[2 * e] = lo_bf(u[e]) * p.sl2, qr[2 * e + 1] = hi_bf(u[e]) * p.sl2;
  }
  float m = -INFINITY, l = 0.f, acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0.f;
  const bf16* kp = p.kc + int64_t(b) * p.kvb + int64_t(h) * D + dim0;
  const bf16* vp = p.vc + int64_t(b) * p.kvb + int64_t(h) * D + dim0;
  // Every group of the block runs the same trip count (the shuffles need whole warps).
  for (int base = s0; base < s1; base += NG * kAttU) {
    const int j0 = base + grp * kAttU;
    uint4 kk[kAttU], vv[kAttU];
#pragma unroll
    for (int u = 0; u < kAttU; ++u) {
      const bool ok = j0 + u < s1;
      kk[u] = ok ? ld_cg16(kp + int64_t(j0 + u) * p.kvt) : uint4{0u, 0u, 0u, 0u};
      vv[u] = ok ? ld_cg16(vp + int64_t(j0 + u) * p.kvt) : uint4{0u, 0u, 0u, 0u};
    }
    float s[kAttU];
#pragma unroll
    for (int u = 0; u < kAttU; ++u) {
      const unsigned* ku = &kk[u].x;
      float d = 0.f;
#pragma unroll
      for (int e = 0; e < 4; ++e) d = fmaf(qr[2 * e], lo_bf(ku[e]), fmaf(qr[2 * e + 1], hi_bf(ku[e]), d));
#pragma unroll
      for (int o = GS / 2; o; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      s[u] = j0 + u < s1 ? d : -INFINITY;
    }
    if (j0 < s1) {
      float mx = s[0];
#pragma unroll
      for (int u = 1; u < kAttU; ++u) mx = fmaxf(mx, s[u]);
      const float mn = fmaxf(m, mx);
      const float alpha = exp2f(m - mn);
      m = mn;
      float pu[kAttU], ps = 0.f;
#pragma unroll
      for (int u = 0; u < kAttU; ++u) ps += (pu[u] = exp2f(s[u] - mn));
      l = l * alpha + ps;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] *= alpha;
#pragma unroll
      for (int u = 0; u < kAttU; ++u) {
        const unsigned* vu = &vv[u].x;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          acc[2 * e] = fmaf(pu[u], lo_bf(vu[e]), acc[2 * e]);
          acc[2 * e + 1] = fmaf(pu[u], hi_bf(vu[e]), acc[2 * e + 1]);
        }
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) s_acc[grp * D + dim0 + e] = acc[e];
  if (lig == 0) s_ml[2 * grp] = m, s_ml[2 * grp + 1] = l;
  __syncthreads();
  float* out = p.part + ((int64_t(b) * p.H + h) * p.nsplit + split) * (D + 2);
  if (tid < D) {
    float M = -INFINITY;
    for (int g = 0; g < NG; ++g) M = fmaxf(M, s_ml[2 * g]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY)
      for (int g = 0; g < NG; ++g) {
        const float w = exp2f(s_ml[2 * g] - M);
        L += s_ml[2 * g + 1] * w;
        O += s_acc[g * D + tid] * w;
      }
    out[tid] = O;
    if (tid == 0) out[D] = M, out[D + 1] = L;
    __threadfence();  // (each writer's part of the partial before the count below)
  }
  // The last of the head's nv splits to finish merges them into att (the threadfence-reduction pattern:
  // every thread's part of the partial, a fence, a block barrier, then one count; the block that counts
  // last sees every split's partial whole).
  int* s_last = reinterpret_cast<int*>(sm + 2048 + 64);  // (after s_acc and s_ml, in the 2048 + 64 + 64)
  __syncthreads();
  if (tid == 0) *s_last = atomicAdd(p.done + b * p.H + h, 1u) == unsigned(nv - 1);
  __syncthreads();
  if (*s_last) {
    __threadfence();
    if (tid < D) merge_head<D>(p, b, h, nv, tid);
  }
  __syncthreads();  // (s_acc is reused by the block's next item)
}

// Key splits of sequence b that hold keys (the rest are skipped by P2 and P3 alike).
__device__ __forceinline__ int used_splits(const Params& p, int len) {
  if (len <= 0) return 0;
  return min(p.nsplit, (len + kMinChunk - 1) / kMinChunk);
}
__device__ __forceinline__ int seq_len(const Params& p, int b) { return min(__ldg(p.lens + b), p.max_len); }

// ------------------------------------------------------------------------------------- the kernel
template <int D, int NL>
__global__ void __launch_bounds__(kThreads, 1) decode_layer_kernel(const Params p) {
#ifdef PARALLM_EMU
  unsigned char* smem = emu_block_smem;
#else
  extern __shared__ __align__(16) unsigned char dl_smem[];
  unsigned char* smem = dl_smem;
#endif
  const int B = p.B, C = p.C, H = p.H, C3 = 3 * C, C4 = 4 * C;
  bf16* act = reinterpret_cast<bf16*>(smem);                                          // [B][<= 4C]
  float* sm = reinterpret_cast<float*>(smem + size_t(B) * C4 * 2);                     // attention merge
  float* red = sm + 2048 + 64 + 64;                                                    // reductions
  const int tid = int(threadIdx.x), warp = tid >> 5;
  const int nwarps = int(gridDim.x) * kWarps, gw = warp * int(gridDim.x) + int(blockIdx.x);

  // ---- P1: the qkv rows' first weights in flight, L2 asked for the later phases', then the norm.
  const bool gemv = !(p.skip & 16), norm = !(p.skip & 8);
  Rows<3, NL> wq;
  if (gemv) {
    load_rows(wq, p.wqkv, C3, C, gw, nwarps);
    if (!(p.skip & 32)) {
      prefetch_rows(p.wout, C, C, gw, nwarps);
      prefetch_rows(p.wup, C4, C, gw, nwarps);
      prefetch_rows(p.wdown, C, C4, gw, nwarps);
    }
  }
  // The epilogues' biases (and residuals) of a lane's first rows are loaded before the phase's barrier,
  // so after the warp sums only the stores remain (each a dependent load less: S9-6).
  const LaneRow<3> lq(gw, nwarps, C3, B);
  const float bq = lq.ok ? bias_of(p.bqkv, lq.n) : 0.f;
  if (blockIdx.x == 0)  // (P2's split counts; the barrier after P1 orders this before them)
    for (int i = tid; i < B * H; i += kThreads) p.done[i] = 0u;
  if (norm) block_layernorm(p.x, p.g1, p.b1, act, B, C, p.eps, red);
  if (gemv) gemv_phase(wq, p.wqkv, C3, C, act, B, gw, nwarps, [&](int b, int n, float s, bool first) {
    const bf16 v = __float2bfloat16_rn(s + (first ? bq : bias_of(p.bqkv, n)));
    if (n < C) {
      p.q[int64_t(b) * C + n] = v;
    } else {
      const int ps = __ldg(p.pos + b);
      if (ps >= 0 && ps < p.max_len) {  // (as kv_write: a position outside the cache writes nothing)
        bf16* cache = n < 2 * C ? p.kc : p.vc;
        cache[int64_t(b) * p.kvb + int64_t(ps) * p.kvt + (n < 2 * C ? n - C : n - 2 * C)] = v;
      }
    }
  });
  phase_barrier(p);

  // ---- P2: attention partials.
  if (!(p.skip & 2)) {
    const int items = B * H * p.nsplit;
    for (int it = int(blockIdx.x); it < items; it += int(gridDim.x)) {
      const int split = it % p.nsplit, bh = it / p.nsplit, b = bh / H, h = bh - b * H;
      const int len = seq_len(p, b), nv = used_splits(p, len);
      if (split >= nv) continue;  // (uniform over the block)
      attention_item<D>(p, b, h, split, nv, len, sm);
    }
  }
  Rows<1, NL> wo;  // the out rows' first weights, before the barrier
  if (gemv) load_rows(wo, p.wout, C, C, gw, nwarps);
  const LaneRow<1> lo(gw, nwarps, C, B);  // (x is not written before P3: its row can be read now)
  const float bo = lo.ok ? bias_of(p.bout, lo.n) : 0.f, xo = lo.ok ? ld_cg_bf(p.x + int64_t(lo.b) * C + lo.n) : 0.f;
  phase_barrier(p);

  // ---- P3: att (merged in P2 by each head's last split) whole into shared memory, then
  // x += att Wout^T + bout.
  if (!(p.skip & 4)) {
    for (int i = tid; i < B * C / 8; i += kThreads) {
      const int b = i / (C / 8);
      reinterpret_cast<uint4*>(act)[i] = used_splits(p, seq_len(p, b)) ? ld_cg16(p.att + int64_t(i) * 8) : uint4{0u, 0u, 0u, 0u};
    }
    __syncthreads();
  }
  // xd: the x this lane writes in its first row, which is the row it adds to again in P5 (the down
  // projection's rows fall to the lanes as the out projection's: both have C rows).
  float xd = 0.f;
  if (gemv) gemv_phase(wo, p.wout, C, C, act, B, gw, nwarps, [&](int b, int n, float s, bool first) {
    bf16* xp = p.x + int64_t(b) * C + n;
    const bf16 v = __float2bfloat16_rn(s + (first ? xo : ld_cg_bf(xp)) + (first ? bo : bias_of(p.bout, n)));
    *xp = v;
    if (first) xd = __bfloat162float(v);
  });
  Rows<3, NL> wu;  // the up rows' first weights, before the barrier
  if (gemv) load_rows(wu, p.wup, C4, C, gw, nwarps);
  const LaneRow<3> lu(gw, nwarps, C4, B);
  const float bu = lu.ok ? bias_of(p.bup, lu.n) : 0.f;
  phase_barrier(p);

  // ---- P4: h2 = layernorm(x), then a = gelu(h2 Wup^T + bup) into the workspace.
  if (norm) block_layernorm(p.x, p.g2, p.b2, act, B, C, p.eps, red);
  if (gemv) gemv_phase(wu, p.wup, C4, C, act, B, gw, nwarps, [&](int b, int n, float s, bool first) {
    p.a[int64_t(b) * C4 + n] = __float2bfloat16_rn(gelu_tanh(round_bf(s + (first ? bu : bias_of(p.bup, n)))));
  });
  Rows<1, 4 * NL> wd;  // the down rows' first weights, before the barrier
  if (gemv) load_rows(wd, p.wdown, C, C4, gw, nwarps);
  const float bd = lo.ok ? bias_of(p.bdown, lo.n) : 0.f;
  phase_barrier(p);

  // ---- P5: a whole into shared memory, then x += a Wdown^T + bdown.
  for (int i = tid; i < B * C4 / 8; i += kThreads)
    reinterpret_cast<uint4*>(act)[i] = ld_cg16(p.a + int64_t(i) * 8);
  __syncthreads();
  if (gemv) gemv_phase(wd, p.wdown, C, C4, act, B, gw, nwarps, [&](int b, int n, float s, bool first) {
    bf16* xp = p.x + int64_t(b) * C + n;
    *xp = __float2bfloat16_rn(s + (first ? xd : ld_cg_bf(xp)) + (first ? bd : bias_of(p.bdown, n)));
  });
}

// ------------------------------------------------------------------------------------- host side
std::atomic<int> g_forced_grid{0};  // test hook: blocks of the grid (0: one a multiprocessor)

// PARALLM_DECODE_LAYER_SKIP=<mask>, to place the kernel's time without a profiler by leaving parts out
// (the results are then wrong; never set it otherwise): 1 the grid barriers (each block syncs alone),
// 2 the attention partials, 4 their merge, 8 the layernorms, 16 the GEMV phases; 32 only the L2 prefetch of the
// later phases' weights (the results stay right: to time what the prefetch costs). Read once.
int skip_mask() {
  static const int m = [] {
    const char* e = std::getenv("PARALLM_DECODE_LAYER_SKIP");
    return e ? std::max(0, std::min(63, std::atoi(e))) : 0;
  }();
  return m;
}

// Blocks of a kernel that can be co-resident with this much shared memory on device `dev` (asked once).
struct OccKey {
  const void* fn;
  int dev;
  size_t smem;
  int blocks;
};
std::mutex g_occ_mu;
OccKey g_occ[64];
int g_occ_n = 0;

template <class K>
int resident_blocks(K kern, int dev, size_t smem, const char* what) {
  const void* fn = reinterpret_cast<const void*>(kern);
  {
    std::lock_guard<std::mutex> lk(g_occ_mu);
    for (int i = 0; i < g_occ_n; ++i)
      if (g_occ[i].fn == fn && g_occ[i].dev == dev && g_occ[i].smem == smem) return g_occ[i].blocks;
  }
  int blocks = 0;
  PARALLM_CUDA_CHECK(max_coresident_blocks(kern, kThreads, smem, dev, &blocks), what, ": occupancy on device ", dev,
                     " (", smem, " bytes of shared memory)");
  PARALLM_CHECK(blocks >= 1, what, ": device ", dev, " cannot launch the kernel cooperatively (no cooperative "
                "launch, or the kernel does not fit a multiprocessor with ", smem, " bytes of shared memory)");
  std::lock_guard<std::mutex> lk(g_occ_mu);
  if (g_occ_n < 64) g_occ[g_occ_n++] = OccKey{fn, dev, smem, blocks};
  return blocks;
}

template <int D, int NL>
void launch(cudaStream_t st, Params p, const char* what) {
  auto kern = decode_layer_kernel<D, NL>;
  const size_t smem = smem_bytes(p.B, p.C);
  int dev = 0;
  PARALLM_CUDA_CHECK(cudaGetDevice(&dev), what, ": cudaGetDevice");
  int sms = 0;
  PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), what, ": SM count");
  const int most = resident_blocks(kern, dev, smem, what);
  const int forced = g_forced_grid.load(std::memory_order_relaxed);
  const int grid = forced > 0 ? std::min(forced, most) : std::min(sms, most);
  // Attention splits: the blocks shared out over the B * H heads (at least kMinChunk keys a split).
  const int by_len = (p.max_len + kMinChunk - 1) / kMinChunk;
  p.nsplit = std::max(1, std::min(grid / (p.B * p.H), by_len));
  // Workspace: q, a, the partials (256-byte aligned parts).
  auto up = [](size_t n) { return (n + 255) & ~size_t(255); };
  const size_t qb = up(size_t(p.B) * p.C * 2), ab = up(size_t(p.B) * 4 * p.C * 2),
               pb = up(size_t(p.B) * p.H * p.nsplit * (D + 2) * 4), tb = up(size_t(p.B) * p.C * 2),
               db = up(size_t(p.B) * p.H * 4);
  const size_t wsb = qb + ab + pb + tb + db;
  const Workspace w = workspace_acquire(st, kWsDecodeLayer, wsb, what);
  void* ws = w.p;
  p.q = static_cast<bf16*>(ws);
  p.a = reinterpret_cast<bf16*>(static_cast<char*>(ws) + qb);
  p.part = reinterpret_cast<float*>(static_cast<char*>(ws) + qb + ab);
  p.att = reinterpret_cast<bf16*>(static_cast<char*>(ws) + qb + ab + pb);
  p.done = reinterpret_cast<unsigned*>(static_cast<char*>(ws) + qb + ab + pb + tb);
  const cudaError_t e = launch_cooperative(kern, dim3(unsigned(grid)), dim3(kThreads), smem, st, p);
  const cudaError_t ef = workspace_release(st, w);
  PARALLM_CUDA_CHECK(e, what, " (cooperative launch of ", grid, " blocks, ", smem, " bytes of shared memory)");
  PARALLM_CUDA_CHECK(ef, what, ": free workspace");
}

}  // namespace dl

void decode_layer_grid(int n) { dl::g_forced_grid.store(n, std::memory_order_relaxed); }

void decode_layer_gpt2(cudaStream_t st, DType dt, void* x, const void* g1, const void* b1, const void* wqkv,
                       const void* bqkv, const void* wout, const void* bout, const void* g2, const void* b2,
                       const void* wup, const void* bup, const void* wdown, const void* bdown, void* kc, void* vc,
                       const int32_t* pos, const int32_t* lens, uint32_t* counter, int B, int C, int H, int D,
                       int64_t kv_bstride, int64_t kv_tstride, int max_len, float eps) {
  char what[160];
  std::snprintf(what, sizeof what, "decode_layer_gpt2 (B=%d C=%d H=%d D=%d max_len=%d)", B, C, H, D, max_len);
  PARALLM_CHECK(dt == DType::BF16, what, ": dtype ", dtype_name(dt), " is not supported on CUDA (bf16)");
  PARALLM_CHECK(decode_layer_gpt2_supported(B, C, H, D, kv_bstride, kv_tstride, max_len), what,
                ": unsupported sizes (need 1 <= B <= 4, D 64 or 128, C = H * D <= 1024, C % 8 == 0, the cache "
                "strides multiples of 8 with token stride >= C, max_len >= 1)");
  PARALLM_CHECK(counter, what, ": no counter (the grid barrier's i32 on the device, zero)");
  PARALLM_CHECK(x && g1 && b1 && wqkv && wout && g2 && b2 && wup && wdown && kc && vc && pos && lens, what,
                ": null pointer");
  const void* ptrs[] = {x, g1, b1, wqkv, wout, g2, b2, wup, wdown, kc, vc};
  for (const void* q : ptrs) PARALLM_CHECK(aligned16(q), what, ": a tensor is not 16-byte aligned");
  dl::Params p{};
  p.x = static_cast<dl::bf16*>(x);
  p.g1 = static_cast<const dl::bf16*>(g1), p.b1 = static_cast<const dl::bf16*>(b1);
  p.wqkv = static_cast<const dl::bf16*>(wqkv), p.bqkv = static_cast<const dl::bf16*>(bqkv);
  p.wout = static_cast<const dl::bf16*>(wout), p.bout = static_cast<const dl::bf16*>(bout);
  p.g2 = static_cast<const dl::bf16*>(g2), p.b2 = static_cast<const dl::bf16*>(b2);
  p.wup = static_cast<const dl::bf16*>(wup), p.bup = static_cast<const dl::bf16*>(bup);
  p.wdown = static_cast<const dl::bf16*>(wdown), p.bdown = static_cast<const dl::bf16*>(bdown);
  p.kc = static_cast<dl::bf16*>(kc), p.vc = static_cast<dl::bf16*>(vc);
  p.pos = pos, p.lens = lens, p.bar = counter;
  p.B = B, p.C = C, p.H = H, p.max_len = max_len;
  p.kvb = kv_bstride, p.kvt = kv_tstride;
  p.eps = eps;
  p.skip = dl::skip_mask();
  p.sl2 = float(1.0 / std::sqrt(double(D)) * 1.4426950408889634);
  const bool small = C <= 768;
  if (D == 64) small ? dl::launch<64, 3>(st, p, what) : dl::launch<64, 4>(st, p, what);
  else small ? dl::launch<128, 3>(st, p, what) : dl::launch<128, 4>(st, p, what);
}

}  // namespace parallm::cuda
