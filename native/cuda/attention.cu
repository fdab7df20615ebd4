// Causal attention: prefill (flash-style, online softmax, the score matrix never leaves the chip) and
// decode over a KV cache (split-K "flash decoding" with a combine step). Semantics: native/core/kernels.h.
//
// Kernels and when each runs:
//   prefill_sm90<D>     bf16, D = 128 (64 when asked), on compute capability 9.0, layouts the TMA can
//                       express: wgmma + TMA, a producer warpgroup and two consumer warpgroups of 64 query
//                       rows, a persistent grid (attention_prefill_sm90.cuh), by default with the
//                       intra-warpgroup overlap (tile kt's softmax while tile kt-1's P V runs). Ninth
//                       session, one H200, TFLOP/s at B1 H32 D128 causal T2048 / T8192: 461 / 597 (cuDNN
//                       SDPA in that call 337 / 597; prefill_mma 255 / 293). D = 64 keeps prefill_mma
//                       (GPT-2's training step at T = 128 was 1% slower with the non-persistent sm90
//                       kernel, though it is faster at T1024: 233 against 194). PARALLM_ATTN_PREFILL and the attentionPrefillKernel hook pick a kernel or
//                       variant (prefill_choice).
//   prefill_mma<D, NW>  bf16, D in {64, 128}, 16-byte aligned q/k/v rows: tensor cores (mma.sync
//                       m16n8k16 + ldmatrix), FlashAttention-2 layout: each warp owns 16 query rows with
//                       Q in registers, K/V tiles of 64 keys double-buffered in shared memory by cp.async.
//   prefill_simt<T>     f32 (accurate), and bf16 for any other D <= 256 or unaligned layouts: CUDA cores.
//   decode_split<T,GS>  one block per (key chunk, kv head, sequence); a block serves every query head of
//                       its kv head so the cache is read once; 16-byte loads. decode_combine merges the
//                       chunks' partial softmax states when there is more than one chunk; given a counter
//                       (the decode's, per KV cache), the split kernel's last block of each head group
//                       merges them instead, one launch fewer a layer. Its FRESH form
//                       (rope_kv_attention_decode) also rotates the new token's q and k heads and writes
//                       its k and v rows into the caches: rope_kv_write's launch folded in.
//   attention_forward   the prefill kernels with Tq == Tk, each also writing its rows' logsumexp.
//   attention_backward  delta = rowsum(dout * out), then dK/dV per key tile, then dQ per query tile: on
//                       tensor cores (attention_backward_mma.cuh) for bf16, D in {64, 128}, 16-byte aligned
//                       rows; else on CUDA cores (attention_backward.cuh). PARALLM_ATTN_BWD=simt in the
//                       environment forces the CUDA-core kernels (the GPU tests compare the two). At T <= 128,
//                       D 64 and as many kv heads as query heads, all three in one kernel (bwd_short_mma).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "attention_backward.cuh"
#include "attention_backward_mma.cuh"
#include "attention_prefill_mma.cuh"
#ifdef __CUDACC__  // (the host emulation, native/cuda/emu, compiles this file with g++: no TMA or wgmma)
#include "attention_prefill_sm90.cuh"
#endif
#include "check.h"
#include "common.cuh"
#include "../core/runtime.h"
#include "launch.cuh"
#include "kernels.h"
#include "rope_common.cuh"
#include "workspace.h"

namespace parallm::cuda {
namespace attn_detail {

using bf16 = __nv_bfloat16;
constexpr float kLog2e = 1.4426950408889634f;

// Tuning knobs (the scratch harness sweeps them; production uses the defaults).
int g_decode_blocks_per_sm = 8;  // decode: aim for this many blocks per SM before splitting keys further
struct DecodeChunks {
  int n, keys;  // chunks, and keys a chunk
};
DecodeChunks decode_chunks(int64_t groups, int sms, int max_len, int step, int forced, int64_t group_bytes);
// PARALLM_DECODE_SPLITS=n (a measurement knob): decode attention in n key chunks at most (1: one kernel, no
// combine), else chosen per call.
int decode_splits_from_env() {
  const char* e = std::getenv("PARALLM_DECODE_SPLITS");
  if (!e) return -1;
  char* end = nullptr;
  const long v = std::strtol(e, &end, 10);
  return end != e && *end == 0 && v >= 1 && v <= 65536 ? int(v) : -1;
}
std::atomic<int> g_decode_splits{decode_splits_from_env()};  // and the test hook (attention_decode_splits): -1 chosen
// decode_split's PRE form (the plain FRESH one, bf16): the test hook attention_decode_pre (1 on, 0 off, -1 by the
// rule), else under decode's frozen weights (core/runtime.h) unless PARALLM_ATTN_PRE=0. GPT-2 decode, where it runs
// at every batch: +3-8% at batch 1, +2-4% at 16 (S21-1, S21-2, bench/RESULTS.md).
std::atomic<int> g_attn_pre{-1};
bool attn_pre() {
  const int h = g_attn_pre.load(std::memory_order_relaxed);
  if (h >= 0) return h == 1;
  static const bool off = [] {
    const char* e = std::getenv("PARALLM_ATTN_PRE");
    return e && e[0] == '0' && !e[1];
  }();
  return !off && frozen_weights();
}
// The rotating FRESH form's PRE too at batch 1 (LLaMA's fused decode attention: +0.2-0.3% at 7B, S25-3), unless
// PARALLM_ATTN_PRE_ROPE=0 (a measurement knob). Not at larger batches, where the fused form runs only when asked
// (PARALLM_DECODE_FUSED_ATTN=1): there its 4 blocks an SM cost 7B 1.1% at 16 and 0.7% at 64 (S25-5).
bool attn_pre_rope() {
  static const bool off = [] {
    const char* e = std::getenv("PARALLM_ATTN_PRE_ROPE");
    return e && e[0] == '0' && !e[1];
  }();
  return !off;
}
// The plain form's PRE too (no FRESH row: the kernel before wrote row lens[b] - 1 and no other, decode's contract
// lens = pos + 1: the qkv projection's split-K reduce with the rope in it, linearRopeKvWrite, or rope_kv_write),
// under decode's frozen weights unless PARALLM_ATTN_PRE_PLAIN=0: 7B at batch 16 +0.6-0.9% (S26-2, S26-4,
// bench/RESULTS.md), the same bits.
bool attn_pre_plain() {
  static const bool off = [] {
    const char* e = std::getenv("PARALLM_ATTN_PRE_PLAIN");
    return e && e[0] == '0' && !e[1];
  }();
  return !off && attn_pre();
}
int g_prefill_d128_warps = 4;    // prefill D=128: 4 warps (64 rows, 2 blocks/SM) or 8 warps (128 rows)
// The bf16 prefill kernel where both apply, as the attentionPrefillKernel hook numbers them: 0 automatic
// (prefill_sm90 with the overlap for D = 128, prefill_mma for D = 64), 1 prefill_mma, 2 prefill_sm90, 3 it with the
// intra-warpgroup overlap, 4 with the ping-pong, 5 with both. g_prefill_env: PARALLM_ATTN_PREFILL (mma,
// sm90, sm90-overlap, sm90-pingpong, sm90-overlap-pingpong; else automatic), -1 not read yet;
// g_prefill_kernel: the hook, which wins when not 0.
std::atomic<int> g_prefill_env{-1};
std::atomic<int> g_prefill_kernel{0};

// The kernel for head dim D: 0 prefill_mma, else 2..5 as above.
int prefill_choice(int D) {
  int v = g_prefill_kernel.load(std::memory_order_relaxed);
  if (!v) {
    v = g_prefill_env.load(std::memory_order_relaxed);
    if (v < 0) {
      const char* e = std::getenv("PARALLM_ATTN_PREFILL");
      const char* names[] = {"", "mma", "sm90", "sm90-overlap", "sm90-pingpong", "sm90-overlap-pingpong"};
      v = 0;
      for (int i = 1; e && i < 6; ++i)
        if (std::strcmp(e, names[i]) == 0) v = i;
      g_prefill_env.store(v, std::memory_order_relaxed);
    }
  }
  if (!v) v = D == 128 ? 3 : 1;
  return v == 1 ? 0 : v;
}

// ---------------------------------------------------------------------------------------------------
// Prefill on CUDA cores. A block of 4 warps owns 16 query rows (4 per warp) of one (b, h); keys come in
// tiles of 32 through shared memory (as f32). Each lane scores one key of the tile for the warp's 4 rows,
// then lanes own output dims d = lane + 32t. Accurate (expf-grade exp2) so f32 lands near 1e-6.
constexpr int kSimtRows = 16, kSimtKeys = 32, kSimtThreads = 128;

template <typename T>
__global__ void __launch_bounds__(kSimtThreads)
prefill_simt(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v, T* __restrict__ out,
             float* __restrict__ lse, int B, int Tq, int Tk, int Hq, int Hkv, int D, int64_t qbs, int64_t qts,
             int64_t kvbs, int64_t kvts, float sl2, int nqb) {
  extern __shared__ float sm[];
  const int ks = D | 1;  // odd row stride: lanes reading sK[lane][d] hit distinct banks
  float* sQ = sm;                       // [16][D]
  float* sK = sQ + kSimtRows * D;       // [32][ks]
  float* sV = sK + kSimtKeys * ks;      // [32][D]
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int bhc = B * Hq;
  const int qb = nqb - 1 - int(blockIdx.x / bhc);  // heaviest (latest) query tiles first
  const int bh = int(blockIdx.x % bhc), b = bh / Hq, h = bh % Hq, g = h / (Hq / Hkv);
  const int off = Tk - Tq, q0 = qb * kSimtRows;
  const T* qp = q + b * qbs + int64_t(h) * D;
  const T* kp = k + b * kvbs + int64_t(g) * D;
  const T* vp = v + b * kvbs + int64_t(g) * D;

  for (int idx = tid; idx < kSimtRows * D; idx += kSimtThreads) {
    int r = idx / D, d = idx - r * D;
    sQ[idx] = (q0 + r < Tq) ? f32(qp[int64_t(q0 + r) * qts + d]) : 0.f;
  }
  float m[4], l[4], acc[4][8];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int t = 0; t < 8; ++t) acc[r][t] = 0.f;
  }
  const int kend = min(Tk, q0 + kSimtRows + off);
  for (int k0 = 0; k0 < kend; k0 += kSimtKeys) {
    __syncthreads();  // previous tile fully consumed (and sQ written on the first pass)
    for (int idx = tid; idx < kSimtKeys * D; idx += kSimtThreads) {
      int r = idx / D, d = idx - r * D;
      bool ok = k0 + r < Tk;
      int64_t o = int64_t(k0 + r) * kvts + d;
      sK[r * ks + d] = ok ? f32(kp[o]) : 0.f;
      sV[r * D + d] = ok ? f32(vp[o]) : 0.f;
    }
    __syncthreads();
    float s[4] = {0.f, 0.f, 0.f, 0.f};
    const float* krow = sK + lane * ks;
    const float* qrow = sQ + (w * 4) * D;
    for (int d = 0; d < D; ++d) {
      float kv = krow[d];
#pragma unroll
      for (int r = 0; r < 4; ++r) s[r] = fmaf(qrow[r * D + d], kv, s[r]);
    }
    const int j = k0 + lane;
    float p[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = q0 + w * 4 + r;
      float x = (j < Tk && j <= i + off) ? s[r] * sl2 : -INFINITY;
      float mx = x;
#pragma unroll
      for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      float mn = fmaxf(m[r], mx);
      float base = mn == -INFINITY ? 0.f : mn;  // a row with nothing seen yet stays all zeros
      float alpha = exp2f(m[r] - base);
      p[r] = exp2f(x - base);
      float ps = p[r];
#pragma unroll
      for (int o = 16; o; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
      l[r] = l[r] * alpha + ps;
      m[r] = mn;
#pragma unroll
      for (int t = 0; t < 8; ++t) acc[r][t] *= alpha;
    }
    const int nk = min(kSimtKeys, kend - k0);
    for (int jj = 0; jj < nk; ++jj) {
      float pj[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) pj[r] = __shfl_sync(0xffffffffu, p[r], jj);
      const float* vrow = sV + jj * D;
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        int d = t * 32 + lane;
        if (d < D) {
          float vv = vrow[d];
#pragma unroll
          for (int r = 0; r < 4; ++r) acc[r][t] = fmaf(pj[r], vv, acc[r][t]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int i = q0 + w * 4 + r;
    if (i >= Tq) continue;
    const float inv = 1.f / l[r];
    if (lse && lane == 0) lse[(int64_t(b) * Hq + h) * Tq + i] = (m[r] + log2f(l[r])) * 0.6931471805599453f;
    T* op = out + ((int64_t(b) * Tq + i) * Hq + h) * D;
#pragma unroll
    for (int t = 0; t < 8; ++t) {
      int d = t * 32 + lane;
      if (d < D) op[d] = from_f32<T>(acc[r][t] * inv);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Decode. Threads form groups of GS; a group scores one key at a time, each thread holding 8 dims of it
// (one 16-byte load for bf16), reduced across the group by shuffles. Each group walks its own keys with
// its own online softmax over U keys per step (all 2U loads issued before any math); the groups of a
// block are merged through shared memory at the end, the blocks of a sequence by decode_combine.
constexpr int kDecThreads = 128, kDecU = 4;

// 8 consecutive elements kept as raw bits (4 registers for bf16) until used, so many loads can be in flight
// without holding 8 floats each. Aligned: one 16-byte load (bf16) or two (f32).
template <typename T>
struct Raw8 {
  static constexpr int W = sizeof(T) == 2 ? 1 : 2;
  uint4 u[W];
  // STREAM: data read once (decode's cached keys and values, each row once a step): ld.global.cs, cached to be
  // evicted first, where the read-only path (__ldg) held the rows like any other line. S22-8 (bench/RESULTS.md):
  // 7B decode at batch 1 +4%, GPT-2 at batch 16 +6-13%, the rest even; the same values, so the same bits.
  template <bool ALIGNED, bool STREAM = false>
  __device__ __forceinline__ void load(const T* p, bool ok, int nvalid) {
    if constexpr (ALIGNED) {
#pragma unroll
      for (int i = 0; i < W; ++i) {
        const uint4* a = reinterpret_cast<const uint4*>(p) + i;
        u[i] = !ok ? make_uint4(0, 0, 0, 0) : STREAM ? __ldcs(a) : __ldg(a);
      }
    } else {
      T* e = reinterpret_cast<T*>(u);
#pragma unroll
      for (int i = 0; i < 8; ++i) e[i] = (ok && i < nvalid) ? p[i] : from_f32<T>(0.f);
    }
  }
  __device__ __forceinline__ float operator[](int i) const { return f32(reinterpret_cast<const T*>(u)[i]); }
  template <bool ALIGNED>
  __device__ __forceinline__ void store(T* p, int nvalid) const {
    if constexpr (ALIGNED) {
#pragma unroll
      for (int i = 0; i < W; ++i) reinterpret_cast<uint4*>(p)[i] = u[i];
    } else {
      const T* e = reinterpret_cast<const T*>(u);
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (i < nvalid) p[i] = e[i];
    }
  }
};

// The FRESH form's new token (rope_kv_attention_decode): its q, k and v heads are the rows of qkv (the
// kernel's q, q_bstride its stride: Hq q heads, Hkv k heads, Hkv v heads), at position pos[b]; the caches
// get its k and v rows there (kc, vc: the kernel's k and v, writable).
template <typename T>
struct DecodeFresh {
  const int32_t* pos;
  const float* freqs;  // rope's inverse frequencies (null: from theta)
  T* kc;
  T* vc;
  float theta;
  int rot_dim;  // 0: no rotation (GPT-2)
  // The kFreshRopeSum form (splitk_rope_kv_attention_decode): the rows are the qkv product's f32 partials
  // ws [splits][B][n] (n = (Hq + 2 Hkv) D, plane = B n), summed here with the bias instead of by a reduce launch.
  const float* ws = nullptr;
  const T* bias = nullptr;
  int splits = 0;
  int64_t n = 0, plane = 0;
};

// The SUM form's rows: this block's q heads (slots 0 .. nh - 1), k head (slot HPB) and v head (slot HPB + 1) of row
// b of the qkv product into s_row, each element as splitk_reduce stores it (and kvcache.cu's splitk_rope_kv_kernel
// reads it): the f32 slices added in order from 0, then the bias, rounded to T. Four elements a thread, every slice's
// load in flight at once (a thread summing its own 8 dims and their partners from the slices made a chain of ~40 L2
// loads: 7B at batch 16 2-4% slower than the reduce launch, S29-2). D % 8 == 0 (the host's condition).
template <typename T, int HPB>
__device__ __forceinline__ void sum_rows(T* s_row, const DecodeFresh<T>& fr, int b, int h0, int nh, int g, int Hq,
                                         int Hkv, int D) {
  const int per = D / 4, packs = (nh + 2) * per;
  for (int idx = threadIdx.x; idx < packs; idx += blockDim.x) {
    const int seg = idx / per, e0 = (idx - seg * per) * 4;
    const int64_t col = int64_t(seg < nh ? h0 + seg : seg == nh ? Hq + g : Hq + Hkv + g) * D + e0;
    const float* p = fr.ws + int64_t(b) * fr.n + col;  // written by the kernel before: past L1
    float4 x[4];
#pragma unroll
    for (int s = 0; s < 4; ++s)
      if (s < fr.splits) x[s] = __ldcg(reinterpret_cast<const float4*>(p + s * fr.plane));
    float v[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int s = 0; s < 4; ++s)
      if (s < fr.splits) v[0] += x[s].x, v[1] += x[s].y, v[2] += x[s].z, v[3] += x[s].w;
    for (int s = 4; s < fr.splits; ++s) {
      const float4 y = __ldcg(reinterpret_cast<const float4*>(p + s * fr.plane));
      v[0] += y.x, v[1] += y.y, v[2] += y.z, v[3] += y.w;
    }
    T* dst = s_row + (seg < nh ? seg : seg == nh ? HPB : HPB + 1) * D + e0;
#pragma unroll
    for (int i = 0; i < 4; ++i) dst[i] = from_f32<T>(fr.bias ? v[i] + f32(fr.bias[col + i]) : v[i]);
  }
}

// 8 elements of a row in shared memory (16-byte aligned) as Raw8's aligned load gives them; zeros where !ok.
template <typename T>
__device__ __forceinline__ void load_shared8(Raw8<T>& r, const T* p, bool ok) {
#pragma unroll
  for (int i = 0; i < Raw8<T>::W; ++i) r.u[i] = ok ? reinterpret_cast<const uint4*>(p)[i] : make_uint4(0, 0, 0, 0);
}

// The elements a thread's 8 dims of a head pair with under rope (d + half below half, d - half from half to
// rot_dim; zero past rot_dim): one 16-byte pack when the pairs' packs line up, else element by element.
template <typename T, bool ALIGNED>
__device__ __forceinline__ void load_partner(Raw8<T>& r, const T* head, int dim0, int nvalid, bool ok, int rot_dim) {
  const int half = rot_dim / 2;
  if (ALIGNED && half % 8 == 0) {
    r.template load<true>(head + (dim0 < half ? dim0 + half : dim0 - half), ok && dim0 < rot_dim, 8);
    return;
  }
  T* e = reinterpret_cast<T*>(r.u);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int d = dim0 + i;
    e[i] = (ok && i < nvalid && d < rot_dim) ? head[d < half ? d + half : d - half] : from_f32<T>(0.f);
  }
}

// Element e (dim d = dim0 + e < rot_dim) of a head rotated as rope_kv_kernel (kvcache.cu) rotates it:
// rope_rotate of the pair with the same cos and sin, rounded to T, so the fused kernel sees the bits
// rope_kv_write stores. partner holds the element d pairs with.
template <typename T>
__device__ __forceinline__ void rope_elem(Raw8<T>& r, const Raw8<T>& partner, int e, bool lo, float cs, float sn) {
  const float x = r[e], y = partner[e];
  T y1, y2;
  rope_rotate(lo ? x : y, lo ? y : x, cs, sn, y1, y2);
  reinterpret_cast<T*>(r.u)[e] = lo ? y1 : y2;
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Element d of row `row`'s output from its first nv chunks' partial states (nv >= 1): the chunks' maximum
// M, then L and O summed in chunk order, O / L. Read past L1 (the split kernel's last block reads what
// other blocks wrote); the roundings spelled out, so decode_combine and that block give the same bits.
__device__ __forceinline__ float merge_chunks(const float* __restrict__ part_o, const float* __restrict__ part_ml,
                                              int64_t row, int nsplit, int nv, int D, int d) {
  const float* ml = part_ml + row * nsplit * 2;
  float M = -INFINITY;
  for (int s = 0; s < nv; ++s) M = fmaxf(M, __ldcg(ml + 2 * s));
  float L = 0.f, O = 0.f;
  for (int s = 0; s < nv; ++s) {
    const float w = fast_exp2(__fsub_rn(__ldcg(ml + 2 * s), M));
    L = __fmaf_rn(__ldcg(ml + 2 * s + 1), w, L);
    O = __fmaf_rn(__ldcg(part_o + (row * nsplit + s) * D + d), w, O);
  }
  return __fdiv_rn(O, L);
}

// FRESH (DecodeFresh; kFresh without rope, kFreshRope with it), for one block a kv head (nsub == 1, at most
// four q heads a kv head: the host runs the two launches on a copy of the rows otherwise): q is the new
// token's qkv rows; the q heads and the k head are rotated in registers, the block of the chunk holding
// pos[b] writes the k and v rows into the caches before its keys are read (the only block that reads that
// row), so the loop is the plain form's: the bits of rope_kv_write then this kernel. qkv is left as it is.
// (A first form had every block of the chunk use the new rows from registers in place of the cache's, for
// any number of blocks a kv head: 80 registers against the plain form's 56 at one head a block, and 7B
// decode lost 1.5-4.7% against the two launches: S15-3, S15-5.)
// kFreshRopeSum: kFreshRope with the rows summed from the qkv product's split-K partials (sum_rows), so the
// bits of splitk_rope_kv_write then the plain form, one launch where there were two (bf16, D % 8 == 0, rot_dim / 2
// a multiple of 8; splitk_rope_kv_attention_decode).
constexpr int kFresh = 1, kFreshRope = 2, kFreshRopeSum = 3;
constexpr int kRopeMaxPairs = 128;  // rot_dim / 2 for D <= 256
// At one head a block the rotating form is held to 64 registers (8 blocks an SM; the plain form's 56-61
// give 8-9): unbounded, the rows and partners in flight in its prologue took 72 (kFresh takes 63). Its PRE
// form holds the first keys and values too, so it is held to 4 blocks an SM (128 registers): it runs at batch 1
// only (attn_pre_rope), where 7B's grid is two blocks an SM.
constexpr int kFreshBlocks = 8, kFreshPreBlocks = 4;
// One step of decode_split's loop: the kDecU keys from j0 (kk, vv; those at s1 and past score -inf) into each
// head's running max m, sum l and output acc.
template <typename T, int GS, int HPB>
__device__ __forceinline__ void decode_keys(const float (&qr)[HPB][8], float (&m)[HPB], float (&l)[HPB],
                                            float (&acc)[HPB][8], const Raw8<T> (&kk)[kDecU],
                                            const Raw8<T> (&vv)[kDecU], int j0, int s1, int nh) {
#pragma unroll
  for (int i = 0; i < HPB; ++i) {
    if (i >= nh) break;
    float s[kDecU];
#pragma unroll
    for (int u = 0; u < kDecU; ++u) {
      float d = 0.f;
#pragma unroll
      for (int e = 0; e < 8; ++e) d = fmaf(qr[i][e], kk[u][e], d);
#pragma unroll
      for (int o = GS / 2; o; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      s[u] = j0 + u < s1 ? d : -INFINITY;
    }
    if (j0 >= s1) continue;  // no shuffles past this point
    float mx = s[0];
#pragma unroll
    for (int u = 1; u < kDecU; ++u) mx = fmaxf(mx, s[u]);
    const float mn = fmaxf(m[i], mx);  // finite: key j0 < s1 is real
    const float alpha = fast_exp2(m[i] - mn);
    m[i] = mn;
    float ps = 0.f, p[kDecU];
#pragma unroll
    for (int u = 0; u < kDecU; ++u) ps += (p[u] = fast_exp2(s[u] - mn));
    l[i] = l[i] * alpha + ps;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      float a = acc[i][e] * alpha;
#pragma unroll
      for (int u = 0; u < kDecU; ++u) a = fmaf(p[u], vv[u][e], a);
      acc[i][e] = a;
    }
  }
}

// PRE (the FRESH forms; attn_pre in this file, under decode's frozen weights): the block's first keys and
// values, those below pos[b], are loaded before the PDL wait, and the rotating form's angles at pos[b] computed.
// This kernel writes row pos[b] itself and the kernel before (the qkv projection) writes no cache row, so the rows
// below it are the last step's, finished before this step began; lens and pos are the step's inputs, written
// before it, and the rope frequencies a table made once. The plain form's PRE (attn_pre_plain) loads those below
// lens[b] - 1 (= pos[b]), the row the kernel before wrote (linearRopeKvWrite's reduce, or rope_kv_write). Outside
// pdl.cuh's contract on the caller's word, as the GEMV's WPRE (matmul.cu's gemv_wpre). The loop then runs the same
// sums: the same bits.
template <typename T, int GS, int HPB, bool ALIGNED, int FRESH, bool PRE = false>
__global__ void __launch_bounds__(kDecThreads, FRESH >= kFreshRope && HPB == 1 ? (PRE ? kFreshPreBlocks : kFreshBlocks) : 0)
decode_split(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
             const int32_t* __restrict__ lens, T* __restrict__ out, float* __restrict__ part_o,
             float* __restrict__ part_ml, int Hq, int Hkv, int D, int64_t qbs, int64_t kvbs, int64_t kvts,
             int max_len, int chunk, int nsplit, int nsub, float sl2, unsigned* __restrict__ counter,
             DecodeFresh<T> fr) {
  PARALLM_TRACE_SCOPE(AttnSplit);
  if constexpr (!PRE) pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  constexpr int NG = kDecThreads / GS, DW = GS * 8;
  __shared__ float s_acc[NG][HPB][DW];
  __shared__ float s_ml[NG][HPB][2];
  __shared__ int s_last[1];  // (an array: the host emulation makes block-scope shared arrays its shared memory)
  __shared__ float s_rope[FRESH >= kFreshRope ? 2 * kRopeMaxPairs : 1];  // the rotating forms' cos, then sin
  const int split = blockIdx.x, b = blockIdx.z;
  const int g = blockIdx.y / nsub, sub = blockIdx.y - g * nsub;
  const int G = Hq / Hkv, h0 = g * G + sub * HPB, nh = min(HPB, G - sub * HPB);
  const int tid = threadIdx.x, grp = tid / GS, lig = tid % GS, dim0 = lig * 8;
  const bool active = dim0 < D;
  const int nvalid = D - dim0;
  // PRE: this group's first kDecU keys and values below pos[b] (old) before the wait; the rest of the chunk after.
  [[maybe_unused]] Raw8<T> kk0[PRE ? kDecU : 1], vv0[PRE ? kDecU : 1];
  [[maybe_unused]] int old = 0;
  if constexpr (PRE) {
    const T* kp = k + b * kvbs + int64_t(g) * D + dim0;
    const T* vp = v + b * kvbs + int64_t(g) * D + dim0;
    const int lenp = min(lens[b], max_len);
    old = FRESH != 0 ? min(lenp, fr.pos[b]) : lenp - 1;
    const int j0 = split * chunk + grp * kDecU, s1p = min(min(lenp, split * chunk + chunk), old);
#pragma unroll
    for (int u = 0; u < kDecU; ++u) {
      const bool ok = active && j0 + u < s1p;
      kk0[u].template load<ALIGNED, true>(kp + int64_t(j0 + u) * kvts, ok, nvalid);
      vv0[u].template load<ALIGNED, true>(vp + int64_t(j0 + u) * kvts, ok, nvalid);
    }
    if constexpr (FRESH >= kFreshRope)  // the angles (below, where the form is not PRE), made visible there
      for (int i = tid; i < fr.rot_dim / 2; i += kDecThreads)
        sincosf(float(fr.pos[b]) * rope_freq(fr.freqs, fr.theta, i, fr.rot_dim), &s_rope[kRopeMaxPairs + i], &s_rope[i]);
    pdl_wait();
    pdl_trigger();
  }
  // q is loaded before the length is known: the two reads overlap (a block's chain of dependent reads,
  // lens -> q -> first keys, is most of its time at the short chunks flash-decoding gives each block).
  // (the SUM form's rows come from fr.ws, not q: summed into s_row first)
  constexpr bool SUM = FRESH == kFreshRopeSum;
  __shared__ uint4 s_row16[SUM ? (HPB + 2) * 256 * sizeof(T) / 16 : 1];  // (uint4: 16-byte aligned rows)
  T* s_row = reinterpret_cast<T*>(s_row16);
  if constexpr (SUM) {
    sum_rows<T, HPB>(s_row, fr, b, h0, nh, g, Hq, Hkv, D);
    __syncthreads();
  }
  Raw8<T> qraw[HPB];
#pragma unroll
  for (int i = 0; i < HPB; ++i) {
    if constexpr (SUM) load_shared8(qraw[i], s_row + i * D + dim0, active && i < nh);
    else qraw[i].template load<ALIGNED>(q + b * qbs + int64_t(h0 + (i < nh ? i : 0)) * D + dim0, active && i < nh, nvalid);
  }
  // FRESH: the new token's position, and its k and v rows (this block's kv head) with the partners of q's
  // and k's rotated dims, loaded with q.
  if constexpr (FRESH != 0) {
    Raw8<T> knew, vnew;
    const int64_t koff = int64_t(Hq + g) * D, voff = int64_t(Hq + Hkv + g) * D;
    if constexpr (SUM) {
      load_shared8(knew, s_row + HPB * D + dim0, active);
      load_shared8(vnew, s_row + (HPB + 1) * D + dim0, active);
    } else {
      knew.template load<ALIGNED>(q + b * qbs + koff + dim0, active, nvalid);
      vnew.template load<ALIGNED>(q + b * qbs + voff + dim0, active, nvalid);
    }
    const int p = fr.pos[b];
    if constexpr (FRESH >= kFreshRope) {
      Raw8<T> qpart[HPB], kpart;
      // The partners (load_partner's; the SUM form's packs line up: rot_dim / 2 % 8 == 0). head: the head's first
      // element in q's row, slot: its slot in s_row.
      const int half = fr.rot_dim / 2;
      auto partner = [&](Raw8<T>& r, int64_t head, int slot, bool ok) {
        if constexpr (SUM)
          load_shared8(r, s_row + slot * D + (dim0 < half ? dim0 + half : dim0 - half), ok && dim0 < fr.rot_dim);
        else
          load_partner<T, ALIGNED>(r, q + b * qbs + head, dim0, nvalid, ok, fr.rot_dim);
      };
#pragma unroll
      for (int i = 0; i < HPB; ++i) partner(qpart[i], int64_t(h0 + (i < nh ? i : 0)) * D, i, active && i < nh);
      partner(kpart, koff, HPB, active);
      // Each pair's angle at p once a block (rope_kv_kernel's sincosf argument, so the same cos and sin) into
      // shared memory, where every thread computing its own dims' took 16 times the sincosf a head needs
      // (each group, both halves); then every head rotated with them.
      if constexpr (!PRE)
        for (int i = tid; i < half; i += kDecThreads)
          sincosf(float(p) * rope_freq(fr.freqs, fr.theta, i, fr.rot_dim), &s_rope[kRopeMaxPairs + i], &s_rope[i]);
      __syncthreads();
      if (active) {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const int d = dim0 + e;
          if (d >= fr.rot_dim) continue;
          const int i = d < half ? d : d - half;
          const float cs = s_rope[i], sn = s_rope[kRopeMaxPairs + i];
#pragma unroll
          for (int h = 0; h < HPB; ++h) rope_elem(qraw[h], qpart[h], e, d < half, cs, sn);
          rope_elem(knew, kpart, e, d < half, cs, sn);
        }
      }
    }
    // The block of the chunk holding p writes the rows (it exists even when p is past lens[b], where
    // nothing reads them), visible to its threads' loads below after the barrier: no other block reads
    // that row, and this one has not read it.
    if (p >= 0 && p < max_len && split == p / chunk && grp == 0 && active) {
      const int64_t c = b * kvbs + int64_t(p) * kvts + int64_t(g) * D + dim0;
      knew.template store<ALIGNED>(fr.kc + c, nvalid);
      vnew.template store<ALIGNED>(fr.vc + c, nvalid);
    }
    __syncthreads();
  }
  const int len = min(lens[b], max_len);
  const int s0 = split * chunk, s1 = min(len, s0 + chunk);
  if (s0 >= s1) {
    // (lens >= 1 by contract; keep the output defined: decode_combine writes zeros, and so does this
    // without it)
    if (len <= 0 && split == 0 && (nsplit == 1 || counter))
      for (int idx = tid; idx < nh * D; idx += kDecThreads)
        out[(int64_t(b) * Hq + h0 + idx / D) * D + idx % D] = from_f32<T>(0.f);
    return;
  }

  float qr[HPB][8];
#pragma unroll
  for (int i = 0; i < HPB; ++i)
#pragma unroll
    for (int e = 0; e < 8; ++e) qr[i][e] = qraw[i][e] * sl2;  // scores come out in log2 units
  float m[HPB], l[HPB], acc[HPB][8];
#pragma unroll
  for (int i = 0; i < HPB; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[i][e] = 0.f;
  }
  const T* kp = k + b * kvbs + int64_t(g) * D + dim0;
  const T* vp = v + b * kvbs + int64_t(g) * D + dim0;
  // Every group of a warp runs the same trip count (the shuffles below need the whole warp); a group past
  // the end scores -inf and skips its update.
  int first = s0;
  if constexpr (PRE) {  // the first step: its keys below old came before the wait, the others (row pos[b]) now
    const int j0 = s0 + grp * kDecU;
#pragma unroll
    for (int u = 0; u < kDecU; ++u) {
      if (j0 + u < old) continue;
      const bool ok = active && j0 + u < s1;
      kk0[u].template load<ALIGNED, true>(kp + int64_t(j0 + u) * kvts, ok, nvalid);
      vv0[u].template load<ALIGNED, true>(vp + int64_t(j0 + u) * kvts, ok, nvalid);
    }
    decode_keys<T, GS, HPB>(qr, m, l, acc, kk0, vv0, j0, s1, nh);
    first += NG * kDecU;
  }
  for (int base = first; base < s1; base += NG * kDecU) {
    const int j0 = base + grp * kDecU;
    Raw8<T> kk[kDecU], vv[kDecU];
#pragma unroll
    for (int u = 0; u < kDecU; ++u) {
      bool ok = active && j0 + u < s1;
      kk[u].template load<ALIGNED, true>(kp + int64_t(j0 + u) * kvts, ok, nvalid);
      vv[u].template load<ALIGNED, true>(vp + int64_t(j0 + u) * kvts, ok, nvalid);
    }
    decode_keys<T, GS, HPB>(qr, m, l, acc, kk, vv, j0, s1, nh);
  }
  // Merge the block's groups. A group that saw no key has m = -inf, l = 0 and weighs nothing.
#pragma unroll
  for (int i = 0; i < HPB; ++i) {
#pragma unroll
    for (int e = 0; e < 8; ++e) s_acc[grp][i][dim0 + e] = acc[i][e];
    if (lig == 0) s_ml[grp][i][0] = m[i], s_ml[grp][i][1] = l[i];
  }
  __syncthreads();
  for (int idx = tid; idx < nh * D; idx += kDecThreads) {
    const int i = idx / D, d = idx - i * D;
    float M = -INFINITY;
#pragma unroll
    for (int gg = 0; gg < NG; ++gg) M = fmaxf(M, s_ml[gg][i][0]);
    float L = 0.f, O = 0.f;
#pragma unroll
    for (int gg = 0; gg < NG; ++gg) {
      float w = fast_exp2(s_ml[gg][i][0] - M);
      L += s_ml[gg][i][1] * w;
      O += s_acc[gg][i][d] * w;
    }
    const int64_t row = int64_t(b) * Hq + h0 + i;
    if (nsplit == 1) {
      out[row * D + d] = from_f32<T>(O / L);
    } else {
      part_o[(row * nsplit + split) * D + d] = O;
      if (d == 0) part_ml[(row * nsplit + split) * 2] = M, part_ml[(row * nsplit + split) * 2 + 1] = L;
    }
  }
  if (nsplit == 1 || !counter) return;
  // With a counter: the last of the nv blocks of this (sequence, head group) to finish merges the chunks'
  // partial states as decode_combine would (merge_chunks: the same bits), then rearms its counter. nv
  // counts the chunks that hold keys, the blocks that got this far.
  __threadfence();  // this block's partials, device-wide, before it is counted
  __syncthreads();
  const int nv = min(nsplit, (len + chunk - 1) / chunk);
  unsigned* cnt = counter + int64_t(b) * gridDim.y + blockIdx.y;
  if (tid == 0) s_last[0] = atomicAdd(cnt, 1u) == unsigned(nv - 1);
  __syncthreads();
  if (!s_last[0]) return;
  __threadfence();
  for (int idx = tid; idx < nh * D; idx += kDecThreads) {
    const int64_t row = int64_t(b) * Hq + h0 + idx / D;
    out[row * D + idx % D] = from_f32<T>(merge_chunks(part_o, part_ml, row, nsplit, nv, D, idx % D));
  }
  if (tid == 0) *cnt = 0u;  // rearmed for the next call (a graph replays it)
}

// One block per (b, h): merges the chunks that held keys (those starting below lens[b]).
template <typename T>
__global__ void __launch_bounds__(128)
decode_combine(const float* __restrict__ part_o, const float* __restrict__ part_ml,
               const int32_t* __restrict__ lens, T* __restrict__ out, int Hq, int D, int max_len, int chunk,
               int nsplit) {
  PARALLM_TRACE_SCOPE(AttnCombine);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  const int64_t row = blockIdx.x;
  const int b = int(row / Hq);
  const int len = min(lens[b], max_len);
  const int nv = len <= 0 ? 0 : min(nsplit, (len + chunk - 1) / chunk);
  for (int d = threadIdx.x; d < D; d += blockDim.x)
    out[row * D + d] = from_f32<T>(nv ? merge_chunks(part_o, part_ml, row, nsplit, nv, D, d) : 0.f);
}

template <typename T>
void prefill_simt_launch(cudaStream_t st, const void* q, const void* k, const void* v, void* out, float* lse, int B,
                         int Tq, int Tk, int Hq, int Hkv, int D, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts,
                         float sl2) {
  const int nqb = (Tq + kSimtRows - 1) / kSimtRows;
  const int64_t blocks = int64_t(nqb) * B * Hq;
  PARALLM_CHECK(blocks < (int64_t(1) << 31), "attention_prefill: B*Hq*ceil(Tq/16)=", blocks, " too large");
  const size_t smem = sizeof(float) * (kSimtRows * D + kSimtKeys * (D | 1) + kSimtKeys * D);
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(prefill_simt<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                     "attention_prefill: smem attribute (D=", D, ")");
  prefill_simt<T><<<unsigned(blocks), kSimtThreads, smem, st>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), static_cast<T*>(out), lse, B, Tq,
      Tk, Hq, Hkv, D, qbs, qts, kvbs, kvts, sl2, nqb);
  PARALLM_LAUNCH_CHECK("attention_prefill (simt ", sizeof(T) == 4 ? "f32" : "bf16", ") B=", B, " Tq=", Tq,
                       " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
}

template <int D, int NW>
void prefill_mma_launch(cudaStream_t st, const void* q, const void* k, const void* v, void* out, float* lse, int B,
                        int Tq, int Tk, int Hq, int Hkv, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float sl2) {
  using K = PrefillMma<D, NW>;
  const int nmb = (Tq + K::BM - 1) / K::BM;
  const int64_t blocks = int64_t(nmb) * B * Hq;
  PARALLM_CHECK(blocks < (int64_t(1) << 31), "attention_prefill: B*Hq*ceil(Tq/", K::BM, ")=", blocks,
                " too large");
  auto kernel = lse ? prefill_mma<D, NW, true> : prefill_mma<D, NW, false>;
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(K::SMEM)),
                     "attention_prefill: smem attribute (D=", D, ")");
  kernel<<<unsigned(blocks), NW * 32, K::SMEM, st>>>(
      static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v), static_cast<bf16*>(out),
      lse, B, Tq, Tk, Hq, Hkv, qbs, qts, kvbs, kvts, sl2, nmb);
  PARALLM_LAUNCH_CHECK("attention_prefill (mma) B=", B, " Tq=", Tq, " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv,
                       " D=", D);
}

// Decode attention's key chunks, and the keys a chunk (a multiple of step, the keys a block step), for `groups`
// (sequence, head group) blocks over a cache of max_len on `sms` SMs; `forced` >= 1 asks for that many at most
// (PARALLM_DECODE_SPLITS, the attention_decode_splits hook). Split only as far as needed to fill the GPU, and not
// at all where the groups alone come to three blocks an SM or more: on one chunk 7B at batch 16 (512 groups) gained
// 1.9-2.1% against the three the fill target chose, GPT-2 at 64 (768) 6.6% against two (S27-4, S27-5,
// bench/RESULTS.md), the chunks' partial states, their counter and the last block's merge all gone; 7B at 12 (384
// groups, under three an SM) lost 0.35% on it, so keeps the fill target's three. Nor where a group's whole cache
// (max_len rows of its k and v heads: group_bytes) is 64 KiB or less: GPT-2 at 256 keys (D 64) ran faster on one chunk
// at every batch measured, 1 (+5.2%), 2 (+2.4%), 4, 8 and 16 (+2.6-3.7%) (S29-1, S29-3, bench/RESULTS.md), where 7B at 256 (128 KiB)
// lost 1.2-1.5% on it at 1 and 8 and was even at 4. The host emulation checks the choices (kernels_emu.cc).
DecodeChunks decode_chunks(int64_t groups, int sms, int max_len, int step, int forced, int64_t group_bytes) {
  const bool whole = groups >= 3 * int64_t(sms) || group_bytes <= 64 * 1024;
  const int64_t target = whole ? groups : int64_t(sms) * g_decode_blocks_per_sm;
  int nsplit = int(std::min<int64_t>(forced >= 1 ? forced : (target + groups - 1) / groups, (max_len + step - 1) / step));
  nsplit = std::max(nsplit, 1);
  int chunk = (max_len + nsplit - 1) / nsplit;
  chunk = (chunk + step - 1) / step * step;
  return {(max_len + chunk - 1) / chunk, chunk};
}

// Decode attention's grid for B sequences: the (sequence, head group) blocks of HPB query heads, the SMs, and the key
// chunks decode_chunks gives them (kv heads of D elements of elem bytes; GS threads a key).
struct DecodeGrid {
  int64_t groups;
  int nsub, sms;
  DecodeChunks dc;
};
DecodeGrid decode_grid(int B, int Hq, int Hkv, int D, int max_len, int GS, int HPB, size_t elem) {
  const int nsub = (Hq / Hkv + HPB - 1) / HPB;
  const int64_t groups = int64_t(B) * Hkv * nsub;
  int dev = 0, sms = 0;
  PARALLM_CUDA_CHECK(cudaGetDevice(&dev), "attention_decode: cudaGetDevice");
  PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
                     "attention_decode: SM count");
  const DecodeChunks dc = decode_chunks(groups, sms, max_len, (kDecThreads / GS) * kDecU,
                                       g_decode_splits.load(std::memory_order_relaxed),
                                       int64_t(max_len) * D * 2 * int64_t(elem));
  return {groups, nsub, sms, dc};
}
int decode_gs(int D) { return D <= 64 ? 8 : D <= 128 ? 16 : 32; }  // decode_dispatch's group size

template <typename T, int GS, int HPB>
void decode_launch(cudaStream_t st, bool aligned, const void* q, const void* k, const void* v, const int32_t* lens,
                   void* out, int B, int Hq, int Hkv, int D, int64_t qbs, int64_t kvbs, int64_t kvts, int max_len,
                   float sl2, unsigned* counter, const DecodeFresh<T>* fr) {
  const DecodeGrid dg = decode_grid(B, Hq, Hkv, D, max_len, GS, HPB, sizeof(T));
  const int nsub = dg.nsub;
  PARALLM_CHECK(int64_t(Hkv) * nsub <= 65535 && B <= 65535, "attention_decode: B=", B, " Hkv=", Hkv,
                " exceed the grid");
  const int nsplit = dg.dc.n, chunk = dg.dc.keys;

  const int64_t rows = int64_t(B) * Hq;
  const size_t part_bytes = nsplit > 1 ? sizeof(float) * size_t(rows) * nsplit * (D + 2) : 0;
  const Workspace w = workspace_acquire(st, kWsAttnPartials, part_bytes, "attention_decode (B=", B, " Hq=", Hq, " D=", D,
                                        " splits=", nsplit, ")");
  float* part = static_cast<float*>(w.p);
  float* part_o = part;
  float* part_ml = part ? part + size_t(rows) * nsplit * D : nullptr;
  dim3 grid(nsplit, Hkv * nsub, B);
  auto kern = !fr                ? (aligned ? decode_split<T, GS, HPB, true, 0> : decode_split<T, GS, HPB, false, 0>)
              : fr->rot_dim == 0 ? (aligned ? decode_split<T, GS, HPB, true, kFresh> : decode_split<T, GS, HPB, false, kFresh>)
                                 : (aligned ? decode_split<T, GS, HPB, true, kFreshRope>
                                            : decode_split<T, GS, HPB, false, kFreshRope>);
  // The PRE form loads before its wait, so it launches with PDL wherever the GEMVs do (level 1), not only at
  // PARALLM_PDL=2 as the small kernels (launch_pdl_small).
  bool pre = false;
  if constexpr (std::is_same_v<T, bf16>) {
    if (fr && fr->ws) {  // (splitk_rope_kv_attention_decode: aligned, rotating, PRE: sum_form_applies)
      pre = true;
      kern = decode_split<T, GS, HPB, true, kFreshRopeSum, true>;
    } else if (fr && fr->rot_dim == 0 && attn_pre()) {
      pre = true;
      kern = aligned ? decode_split<T, GS, HPB, true, kFresh, true> : decode_split<T, GS, HPB, false, kFresh, true>;
    } else if (fr && B == 1 && attn_pre() && attn_pre_rope()) {
      pre = true;
      kern = aligned ? decode_split<T, GS, HPB, true, kFreshRope, true> : decode_split<T, GS, HPB, false, kFreshRope, true>;
    } else if (!fr && attn_pre_plain()) {
      pre = true;
      kern = aligned ? decode_split<T, GS, HPB, true, 0, true> : decode_split<T, GS, HPB, false, 0, true>;
    }
  }
  PARALLM_CUDA_CHECK(launch_maybe_pdl(pdl_allows(pre ? 1 : 2), kern, grid, dim3(kDecThreads), 0, st,
                                      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
                                      lens, static_cast<T*>(out), part_o, part_ml, Hq, Hkv, D, qbs, kvbs, kvts, max_len,
                                      chunk, nsplit, nsub, sl2, counter, fr ? *fr : DecodeFresh<T>{}),
                     "attention_decode B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " max_len=", max_len,
                     " splits=", nsplit);
  if (nsplit > 1 && counter) {  // (the split kernel's last block a head group merged the chunks)
    PARALLM_CUDA_CHECK(workspace_release(st, w), "attention_decode: free workspace");
  } else if (nsplit > 1) {
    PARALLM_CUDA_CHECK(launch_pdl_small(decode_combine<T>, dim3(unsigned(rows)), dim3(128), 0, st,
                                        static_cast<const float*>(part_o), static_cast<const float*>(part_ml), lens,
                                        static_cast<T*>(out), Hq, D, max_len, chunk, nsplit),
                       "attention_decode combine B=", B, " Hq=", Hq, " D=", D, " splits=", nsplit);
    PARALLM_CUDA_CHECK(workspace_release(st, w), "attention_decode: free workspace");
  }
}

// Heads per block: all query heads of a kv head up to 4 (more are split over blocks); fewer heads mean
// fewer registers, so MHA (1 head per kv head) runs at high occupancy.
template <typename T, int GS>
void decode_heads(cudaStream_t st, bool aligned, const void* q, const void* k, const void* v, const int32_t* lens,
                  void* out, int B, int Hq, int Hkv, int D, int64_t qbs, int64_t kvbs, int64_t kvts, int max_len,
                  float sl2, unsigned* counter, const DecodeFresh<T>* fr) {
  const int G = Hq / Hkv;
  if (G == 1)
    decode_launch<T, GS, 1>(st, aligned, q, k, v, lens, out, B, Hq, Hkv, D, qbs, kvbs, kvts, max_len, sl2, counter, fr);
  else if (G == 2)
    decode_launch<T, GS, 2>(st, aligned, q, k, v, lens, out, B, Hq, Hkv, D, qbs, kvbs, kvts, max_len, sl2, counter, fr);
  else
    decode_launch<T, GS, 4>(st, aligned, q, k, v, lens, out, B, Hq, Hkv, D, qbs, kvbs, kvts, max_len, sl2, counter, fr);
}

template <typename T>
void decode_dispatch(cudaStream_t st, bool aligned, const void* q, const void* k, const void* v,
                     const int32_t* lens, void* out, int B, int Hq, int Hkv, int D, int64_t qbs, int64_t kvbs,
                     int64_t kvts, int max_len, float sl2, unsigned* counter, const DecodeFresh<T>* fr = nullptr) {
  if (D <= 64)
    decode_heads<T, 8>(st, aligned, q, k, v, lens, out, B, Hq, Hkv, D, qbs, kvbs, kvts, max_len, sl2, counter, fr);
  else if (D <= 128)
    decode_heads<T, 16>(st, aligned, q, k, v, lens, out, B, Hq, Hkv, D, qbs, kvbs, kvts, max_len, sl2, counter, fr);
  else
    decode_heads<T, 32>(st, aligned, q, k, v, lens, out, B, Hq, Hkv, D, qbs, kvbs, kvts, max_len, sl2, counter, fr);
}

// attention_prefill, and attention_forward (Tq == Tk, lse written): the op names its errors.
void prefill_any(const char* op, cudaStream_t st, DType dt, const void* q, const void* k, const void* v, void* out,
                 float* lse, int B, int Tq, int Tk, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride,
                 int64_t kv_bstride, int64_t kv_tstride, float scale) {
  PARALLM_CHECK(dt == DType::F32 || dt == DType::BF16, op, ": dtype ", dtype_name(dt),
                " not supported (f32, bf16)");
  PARALLM_CHECK(B >= 0 && Tq >= 0 && Tk >= Tq && Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && D > 0 && D <= 256,
                op, ": bad sizes B=", B, " Tq=", Tq, " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv, " D=", D,
                " (need Tk >= Tq, Hq a multiple of Hkv, 0 < D <= 256)");
  if (B == 0 || Tq == 0) return;
  PARALLM_CHECK(q && k && v && out, op, ": null pointer (B=", B, " Tq=", Tq, ")");
  const float sl2 = scale * kLog2e;
  if (dt == DType::F32) {
    prefill_simt_launch<float>(st, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D, q_bstride, q_tstride, kv_bstride,
                               kv_tstride, sl2);
    return;
  }
  const bool al = aligned16(q) && aligned16(k) && aligned16(v) && q_bstride % 8 == 0 && q_tstride % 8 == 0 &&
                  kv_bstride % 8 == 0 && kv_tstride % 8 == 0;
#ifdef __CUDACC__
  // The sm90 kernel where it is switched on and the TMA can express the layout (else the launch declines).
  // (Its softmax takes the row maxima of the raw scores, so it needs a positive scale.)
  const int sm90 = al && (D == 64 || D == 128) && sl2 > 0.f ? prefill_choice(D) : 0;
  if (sm90 && prefill_sm90_device()) {
    const bool ovl = sm90 == 3 || sm90 == 5, pp = sm90 >= 4;
    const bool done = D == 128 ? prefill_sm90_launch<128>(st, ovl, pp, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, q_bstride,
                                                          q_tstride, kv_bstride, kv_tstride, sl2)
                               : prefill_sm90_launch<64>(st, ovl, pp, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, q_bstride,
                                                         q_tstride, kv_bstride, kv_tstride, sl2);
    if (done) return;
  }
#endif
  if (al && D == 128) {
    if (g_prefill_d128_warps == 8)
      prefill_mma_launch<128, 8>(st, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, q_bstride, q_tstride, kv_bstride,
                                 kv_tstride, sl2);
    else
      prefill_mma_launch<128, 4>(st, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, q_bstride, q_tstride, kv_bstride,
                                 kv_tstride, sl2);
  } else if (al && D == 64) {
    prefill_mma_launch<64, 4>(st, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, q_bstride, q_tstride, kv_bstride,
                              kv_tstride, sl2);
  } else {
    prefill_simt_launch<bf16>(st, q, k, v, out, lse, B, Tq, Tk, Hq, Hkv, D, q_bstride, q_tstride, kv_bstride,
                              kv_tstride, sl2);
  }
}

template <typename E, int DM>
void backward_launch(cudaStream_t st, const void* q, const void* k, const void* v, const void* out, const void* dout,
                     const float* lse, void* dq, void* dk, void* dv, float* delta, int B, int T, int Hq, int Hkv,
                     int D, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale) {
  const int64_t rows = int64_t(B) * T * Hq;
  PARALLM_CHECK(cdiv(rows, 8) < (int64_t(1) << 31), "attention_backward: B*E*Hq=", rows, " too large");
  bwd_delta<E><<<unsigned(cdiv(rows, 8)), 256, 0, st>>>(static_cast<const E*>(out), static_cast<const E*>(dout),
                                                         delta, rows, T, Hq, D);
  PARALLM_LAUNCH_CHECK("attention_backward (delta) B=", B, " T=", T, " Hq=", Hq, " D=", D);
  const int ntile = int(cdiv(T, kBwdTile));
  const int64_t kv_blocks = int64_t(ntile) * B * Hkv, q_blocks = int64_t(ntile) * B * Hq;
  PARALLM_CHECK(q_blocks < (int64_t(1) << 31), "attention_backward: B*Hq*ceil(T/32)=", q_blocks, " too large");
  constexpr size_t smem = BwdSimt<DM>::SMEM;
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(bwd_dkdv<E, DM>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                     "attention_backward: smem attribute (D=", D, ")");
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(bwd_dq<E, DM>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                     "attention_backward: smem attribute (D=", D, ")");
  auto* qt = static_cast<const E*>(q);
  auto* kt = static_cast<const E*>(k);
  auto* vt = static_cast<const E*>(v);
  auto* gt = static_cast<const E*>(dout);
  bwd_dkdv<E, DM><<<unsigned(kv_blocks), kBwdThreads, smem, st>>>(qt, kt, vt, gt, lse, delta, static_cast<E*>(dk),
                                                                  static_cast<E*>(dv), B, T, Hq, Hkv, D, qbs, qts,
                                                                  kvbs, kvts, scale, ntile);
  PARALLM_LAUNCH_CHECK("attention_backward (dk, dv) B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  bwd_dq<E, DM><<<unsigned(q_blocks), kBwdThreads, smem, st>>>(qt, kt, vt, gt, lse, delta, static_cast<E*>(dq), B, T,
                                                               Hq, Hkv, D, qbs, qts, kvbs, kvts, scale, ntile);
  PARALLM_LAUNCH_CHECK("attention_backward (dq) B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
}

template <int D, int BM, int BN>
void backward_mma_launch(cudaStream_t st, const void* q, const void* k, const void* v, const void* dout,
                         const float* lse, const float* delta, void* dq, void* dk, void* dv, int B, int T, int Hq,
                         int Hkv, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale) {
  using KV = BwdDkdvMma<D, BM>;
  using KQ = BwdDqMma<D, BN>;
  const int nkb = (T + KV::BN - 1) / KV::BN, nmb = (T + KQ::BM - 1) / KQ::BM;
  const int64_t kv_blocks = int64_t(nkb) * B * Hkv, q_blocks = int64_t(nmb) * B * Hq;
  PARALLM_CHECK(q_blocks < (int64_t(1) << 31) && kv_blocks < (int64_t(1) << 31),
                "attention_backward: B*Hq*ceil(T/64)=", q_blocks, " too large");
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(bwd_dkdv_mma<D, BM>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(KV::SMEM)),
                     "attention_backward: smem attribute (D=", D, ")");
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(bwd_dq_mma<D, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(KQ::SMEM)),
                     "attention_backward: smem attribute (D=", D, ")");
  auto* qt = static_cast<const bf16*>(q);
  auto* kt = static_cast<const bf16*>(k);
  auto* vt = static_cast<const bf16*>(v);
  auto* gt = static_cast<const bf16*>(dout);
  bwd_dkdv_mma<D, BM><<<unsigned(kv_blocks), kMmaBwdThreads, KV::SMEM, st>>>(
      qt, kt, vt, gt, lse, delta, static_cast<bf16*>(dk), static_cast<bf16*>(dv), T, Hq, Hkv, qbs, qts, kvbs, kvts,
      scale, nkb);
  PARALLM_LAUNCH_CHECK("attention_backward (mma dk, dv) B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  bwd_dq_mma<D, BN><<<unsigned(q_blocks), kMmaBwdThreads, KQ::SMEM, st>>>(
      qt, kt, vt, gt, lse, delta, static_cast<bf16*>(dq), B, T, Hq, Hkv, qbs, qts, kvbs, kvts, scale, nmb);
  PARALLM_LAUNCH_CHECK("attention_backward (mma dq) B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
}

// The one-kernel backward for short sequences (bwd_short_mma: T <= 128, D 64, a kv head a query head). On unless
// PARALLM_ATTN_BWD_SHORT=0 (the three kernels then, for comparisons; read at each call, as PARALLM_ATTN_BWD is, so
// the GPU tests hold both paths to the CPU).
bool backward_short_on() {
  const char* e = std::getenv("PARALLM_ATTN_BWD_SHORT");
  return !(e && std::strcmp(e, "0") == 0);
}

void backward_short_launch(cudaStream_t st, const void* q, const void* k, const void* v, const void* out,
                           const void* dout, const float* lse, void* dq, void* dk, void* dv, int B, int T, int H,
                           int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale) {
  constexpr size_t smem = BwdShortMma<64>::SMEM;
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(bwd_short_mma<64>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
                     "attention_backward: smem attribute (short, ", smem, " bytes)");
  PARALLM_CHECK(int64_t(B) * H < (int64_t(1) << 31), "attention_backward: B*H=", int64_t(B) * H, " too large");
  bwd_short_mma<64><<<unsigned(int64_t(B) * H), kShortBwdThreads, smem, st>>>(
      static_cast<const bf16*>(q), static_cast<const bf16*>(k), static_cast<const bf16*>(v),
      static_cast<const bf16*>(out), static_cast<const bf16*>(dout), lse, static_cast<bf16*>(dq),
      static_cast<bf16*>(dk), static_cast<bf16*>(dv), T, H, qbs, qts, kvbs, kvts, scale);
  PARALLM_LAUNCH_CHECK("attention_backward (short, one kernel) B=", B, " T=", T, " H=", H, " D=64");
}

bool backward_simt_forced() {
  const char* e = std::getenv("PARALLM_ATTN_BWD");
  return e && std::strcmp(e, "simt") == 0;
}

template <typename E>
void backward_dispatch(cudaStream_t st, const void* q, const void* k, const void* v, const void* out,
                       const void* dout, const float* lse, void* dq, void* dk, void* dv, float* delta, int B, int T,
                       int Hq, int Hkv, int D, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale) {
  if constexpr (sizeof(E) == 2) {
    const bool al = aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout) && aligned16(dq) &&
                    aligned16(dk) && aligned16(dv) && qbs % 8 == 0 && qts % 8 == 0 && kvbs % 8 == 0 &&
                    kvts % 8 == 0;
    if (al && D == 64 && T <= kShortBwdT && Hq == Hkv && aligned16(out) && !backward_simt_forced() &&
        backward_short_on()) {
      backward_short_launch(st, q, k, v, out, dout, lse, dq, dk, dv, B, T, Hq, qbs, qts, kvbs, kvts, scale);
      return;
    }
    if (al && (D == 64 || D == 128) && !backward_simt_forced()) {
      const int64_t rows = int64_t(B) * T * Hq;
      PARALLM_CHECK(cdiv(rows, 8) < (int64_t(1) << 31), "attention_backward: B*T*Hq=", rows, " too large");
      bwd_delta<E><<<unsigned(cdiv(rows, 8)), 256, 0, st>>>(static_cast<const E*>(out), static_cast<const E*>(dout),
                                                             delta, rows, T, Hq, D);
      PARALLM_LAUNCH_CHECK("attention_backward (delta) B=", B, " T=", T, " Hq=", Hq, " D=", D);
      if (D == 64)
        backward_mma_launch<64, 64, 64>(st, q, k, v, dout, lse, delta, dq, dk, dv, B, T, Hq, Hkv, qbs, qts, kvbs,
                                        kvts, scale);
      else
        backward_mma_launch<128, 32, 32>(st, q, k, v, dout, lse, delta, dq, dk, dv, B, T, Hq, Hkv, qbs, qts, kvbs,
                                         kvts, scale);
      return;
    }
  }
  if (D <= 64)
    backward_launch<E, 64>(st, q, k, v, out, dout, lse, dq, dk, dv, delta, B, T, Hq, Hkv, D, qbs, qts, kvbs, kvts,
                           scale);
  else
    backward_launch<E, 128>(st, q, k, v, out, dout, lse, dq, dk, dv, delta, B, T, Hq, Hkv, D, qbs, qts, kvbs, kvts,
                            scale);
}

}  // namespace attn_detail

void attention_decode_splits(int n) { attn_detail::g_decode_splits.store(n, std::memory_order_relaxed); }
void attention_decode_pre(int n) { attn_detail::g_attn_pre.store(n, std::memory_order_relaxed); }
void attention_prefill_kernel(int n) { attn_detail::g_prefill_kernel.store(n, std::memory_order_relaxed); }

void attention_prefill(cudaStream_t st, DType dt, const void* q, const void* k, const void* v, void* out, int B,
                       int Tq, int Tk, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride,
                       int64_t kv_bstride, int64_t kv_tstride, float scale) {
  attn_detail::prefill_any("attention_prefill", st, dt, q, k, v, out, nullptr, B, Tq, Tk, Hq, Hkv, D, q_bstride,
                           q_tstride, kv_bstride, kv_tstride, scale);
}

void attention_forward(cudaStream_t st, DType dt, const void* q, const void* k, const void* v, void* out, float* lse,
                       int B, int T, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                       int64_t kv_tstride, float scale) {
  PARALLM_CHECK(lse || B == 0 || T == 0, "attention_forward: null lse (B=", B, " T=", T, " Hq=", Hq, ")");
  attn_detail::prefill_any("attention_forward", st, dt, q, k, v, out, lse, B, T, T, Hq, Hkv, D, q_bstride, q_tstride,
                           kv_bstride, kv_tstride, scale);
}

void attention_decode(cudaStream_t st, DType dt, const void* q, const void* k, const void* v, const int32_t* lens,
                      void* out, int B, int Hq, int Hkv, int D, int64_t q_bstride, int64_t kv_bstride,
                      int64_t kv_tstride, int max_len, float scale, uint32_t* counter) {
  using namespace attn_detail;
  PARALLM_CHECK(dt == DType::F32 || dt == DType::BF16, "attention_decode: dtype ", dtype_name(dt),
                " not supported (f32, bf16)");
  PARALLM_CHECK(B >= 0 && Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && D > 0 && D <= 256 && max_len >= 1,
                "attention_decode: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " max_len=", max_len,
                " (need Hq a multiple of Hkv, 0 < D <= 256, max_len >= 1)");
  if (B == 0) return;
  PARALLM_CHECK(q && k && v && lens && out, "attention_decode: null pointer (B=", B, ")");
  const float sl2 = scale * kLog2e;
  const int64_t vec = dt == DType::BF16 ? 8 : 4;  // elements per 16 bytes
  const bool al = aligned16(q) && aligned16(k) && aligned16(v) && D % 8 == 0 && q_bstride % vec == 0 &&
                  kv_bstride % vec == 0 && kv_tstride % vec == 0;
  if (dt == DType::BF16)
    decode_dispatch<bf16>(st, al, q, k, v, lens, out, B, Hq, Hkv, D, q_bstride, kv_bstride, kv_tstride, max_len,
                          sl2, counter);
  else
    decode_dispatch<float>(st, al, q, k, v, lens, out, B, Hq, Hkv, D, q_bstride, kv_bstride, kv_tstride, max_len,
                           sl2, counter);
}

void rope_kv_attention_decode(cudaStream_t st, DType dt, const void* qkv, void* kc, void* vc, const int32_t* pos,
                              const int32_t* lens, void* out, int B, int Hq, int Hkv, int D, int64_t qkv_stride,
                              int rot_dim, float theta, const float* freqs, int64_t kv_bstride, int64_t kv_tstride,
                              int max_len, float scale, uint32_t* counter) {
  using namespace attn_detail;
  PARALLM_CHECK(dt == DType::F32 || dt == DType::BF16, "rope_kv_attention_decode: dtype ", dtype_name(dt),
                " not supported (f32, bf16)");
  PARALLM_CHECK(B >= 0 && Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && D > 0 && D <= 256 && max_len >= 1 && rot_dim >= 0 &&
                    rot_dim <= D && rot_dim % 2 == 0 && qkv_stride >= int64_t(Hq + 2 * Hkv) * D &&
                    kv_tstride >= int64_t(Hkv) * D,
                "rope_kv_attention_decode: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " max_len=", max_len,
                " rot_dim=", rot_dim, " qkv_stride=", qkv_stride, " cache token stride=", kv_tstride,
                " (need Hq a multiple of Hkv, 0 < D <= 256, an even rot_dim <= D)");
  if (rot_dim > 0 && !freqs && !(theta > 0.f))
    fail("rope_kv_attention_decode: theta=", theta, " must be positive (B=", B, " D=", D, ")");
  if (B == 0) return;
  PARALLM_CHECK(qkv && kc && vc && pos && lens && out, "rope_kv_attention_decode: null pointer (B=", B, ")");
  if (Hq / Hkv > 4) {
    // More than one block a kv head (decode_heads): each would read the new rows before one has written
    // them. The two launches, on a copy of the rows (qkv is only read).
    const int64_t W3 = int64_t(Hq + 2 * Hkv) * D, es = int64_t(dtype_size(dt));
    const size_t bytes = size_t(B) * size_t(W3 * es);
    const Workspace w = workspace_acquire(st, kWsAttnRows, bytes, "rope_kv_attention_decode: copy of the rows (B=", B,
                                          " Hq=", Hq, " Hkv=", Hkv, " D=", D, ")");
    void* rows = w.p;
    PARALLM_CUDA_CHECK(cudaMemcpy2DAsync(rows, size_t(W3 * es), qkv, size_t(qkv_stride * es), size_t(W3 * es), size_t(B),
                                         cudaMemcpyDeviceToDevice, st),
                       "rope_kv_attention_decode: copy of the rows (B=", B, ")");
    rope_kv_write(st, dt, rows, kc, vc, pos, B, Hq, Hkv, D, W3, rot_dim, theta, freqs, kv_bstride, kv_tstride, max_len);
    attention_decode(st, dt, rows, kc, vc, lens, out, B, Hq, Hkv, D, W3, kv_bstride, kv_tstride, max_len, scale, counter);
    PARALLM_CUDA_CHECK(workspace_release(st, w), "rope_kv_attention_decode: free the copy (B=", B, ")");
    return;
  }
  const float sl2 = scale * kLog2e;
  const int64_t vec = dt == DType::BF16 ? 8 : 4;  // elements per 16 bytes
  const bool al = aligned16(qkv) && aligned16(kc) && aligned16(vc) && D % 8 == 0 && qkv_stride % vec == 0 &&
                  kv_bstride % vec == 0 && kv_tstride % vec == 0;
  if (dt == DType::BF16) {
    const DecodeFresh<bf16> fr{pos, freqs, static_cast<bf16*>(kc), static_cast<bf16*>(vc), theta, rot_dim};
    decode_dispatch<bf16>(st, al, qkv, kc, vc, lens, out, B, Hq, Hkv, D, qkv_stride, kv_bstride, kv_tstride, max_len,
                          sl2, counter, &fr);
  } else {
    const DecodeFresh<float> fr{pos, freqs, static_cast<float*>(kc), static_cast<float*>(vc), theta, rot_dim};
    decode_dispatch<float>(st, al, qkv, kc, vc, lens, out, B, Hq, Hkv, D, qkv_stride, kv_bstride, kv_tstride, max_len,
                           sl2, counter, &fr);
  }
}

// The qkv product's split-K partials straight into decode attention (matmul.cu's reduce_slices, for
// matmul_rope_kv_attention_decode): decode_split's kFreshRopeSum form adds the slices, rotates, writes the caches
// and attends in one launch, where splitk_rope_kv_write and attention_decode took two (the reduce's launch cost 7B's
// batch-16 step ~2 us a layer, S29-1); the same bits. false, with nothing launched, where that form does not
// apply: the caller then runs the two. ws [splits][B][(Hq + 2 Hkv) D]; sizes checked by the caller.
bool splitk_rope_kv_attention_decode(cudaStream_t st, DType dt, const float* ws, int splits, const void* bias, void* kc,
                                     void* vc, const int32_t* pos, const int32_t* lens, void* out, int B, int Hq, int Hkv,
                                     int D, int rot_dim, float theta, const float* freqs, int64_t kv_bstride,
                                     int64_t kv_tstride, int max_len, float scale, uint32_t* counter) {
  using namespace attn_detail;
  // bf16 in whole 16-byte packs, each rotated pair's packs lined up (sum_rows, load_shared8), one block a kv head
  // (FRESH).
  if (dt != DType::BF16 || D % 8 != 0 || D > 256 || rot_dim <= 0 || rot_dim > D || (rot_dim / 2) % 8 != 0 ||
      Hq % Hkv != 0 || Hq / Hkv > 4 || !aligned16(kc) || !aligned16(vc) || kv_bstride % 8 != 0 || kv_tstride % 8 != 0 ||
      (!freqs && !(theta > 0.f)) || splits < 1 || B < 1 || B > 65535)
    return false;
  // Only in its PRE form (its first keys loaded before the PDL wait, under decode's frozen weights), with every block
  // resident at that form's bound of 4 an SM: without it, 7B at batch 16 lost 4.5% against the two launches, where
  // with it it gained 0.8% (S29-2, S29-3).
  const int G = Hq / Hkv, hpb = G == 1 ? 1 : G == 2 ? 2 : 4;
  const DecodeGrid dg = decode_grid(B, Hq, Hkv, D, max_len, decode_gs(D), hpb, sizeof(bf16));
  if (!attn_pre() || dg.groups * dg.dc.n > int64_t(kFreshPreBlocks) * dg.sms) return false;
  DecodeFresh<bf16> fr{pos, freqs, static_cast<bf16*>(kc), static_cast<bf16*>(vc), theta, rot_dim};
  fr.ws = ws;
  fr.bias = static_cast<const bf16*>(bias);
  fr.splits = splits;
  fr.n = int64_t(Hq + 2 * Hkv) * D;
  fr.plane = int64_t(B) * fr.n;
  decode_dispatch<bf16>(st, true, nullptr, kc, vc, lens, out, B, Hq, Hkv, D, fr.n, kv_bstride, kv_tstride, max_len,
                        scale * kLog2e, counter, &fr);
  return true;
}

void attention_backward(cudaStream_t st, DType dt, const void* q, const void* k, const void* v, const void* out,
                        const void* dout, const float* lse, void* dq, void* dk, void* dv, float* workspace, int B,
                        int T, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                        int64_t kv_tstride, float scale) {
  using namespace attn_detail;
  PARALLM_CHECK(dt == DType::F32 || dt == DType::BF16, "attention_backward: dtype ", dtype_name(dt),
                " not supported (f32, bf16)");
  PARALLM_CHECK(B >= 0 && T >= 0 && Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && D > 0,
                "attention_backward: bad sizes B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D,
                " (need Hq a multiple of Hkv, D > 0)");
  PARALLM_CHECK(D <= 128, "attention_backward: head dim D=", D, " not supported (at most 128) (B=", B, " T=", T,
                " Hq=", Hq, ")");
  if (B == 0 || T == 0) return;
  PARALLM_CHECK(q && k && v && out && dout && lse && dq && dk && dv && workspace,
                "attention_backward: null pointer (B=", B, " T=", T, " Hq=", Hq, " D=", D, ")");
  // workspace (attention_backward_workspace elements): delta = rowsum(dout * out) in its first B*Hq*T.
  if (dt == DType::F32)
    backward_dispatch<float>(st, q, k, v, out, dout, lse, dq, dk, dv, workspace, B, T, Hq, Hkv, D, q_bstride,
                             q_tstride, kv_bstride, kv_tstride, scale);
  else
    backward_dispatch<bf16>(st, q, k, v, out, dout, lse, dq, dk, dv, workspace, B, T, Hq, Hkv, D, q_bstride,
                            q_tstride, kv_bstride, kv_tstride, scale);
}

}  // namespace parallm::cuda
