// Tensor-core causal attention backward for bf16, D in {64, 128} (included by attention.cu), on the
// fragments and shared-memory layout of prefill_mma (attention_prefill_mma.cuh: swizzled 16-byte chunks,
// ldmatrix offsets, accumulators re-packed in registers as the next product's A operand). Deterministic:
// each output element is summed by one warp in a fixed order, no atomics.
//
//   bwd_dkdv_mma<D, BM>  one block (4 warps) per (64 keys, kv head, sequence); warp w owns keys 16w..16w+15
//     with dK and dV accumulating in registers. For each query head of the group and each query tile of BM
//     rows at or after the keys (Q, dO, lse, delta double-buffered by cp.async):
//       S^T = K Q^T, dP^T = V dO^T  (K, V rows as A from shared memory, Q, dO rows as B)
//       P^T = exp(scale S^T - lse), dS^T = P^T (dP^T - delta)   (masked: key after query, query past T)
//       dV += P^T dO, dK += dS^T Q  (P^T, dS^T re-packed as A; dO, Q as B through ldmatrix.trans)
//   bwd_dq_mma<D, BN>    one block (4 warps) per (64 queries, q head, sequence); warp w owns queries
//     16w..16w+15 with Q and dO fragments in registers; key tiles of BN double-buffered:
//       S = Q K^T, dP = dO V^T, dS = P (dP - delta), dQ += dS K.
//   bwd_short_mma<D>     T <= 128 and a kv head for each query head (GPT-2 at sequence 128): one block (8 warps)
//     a (head, sequence) does all three, reading Q, K, V, dO and O once: delta = rowsum(dO O) in its prologue; warp
//     w owns keys 16w..16w+15 and walks the query chunks of 16 at or after them (S^T, dP^T, dV += P^T dO, dK +=
//     dS^T Q, as bwd_dkdv_mma does), leaving dS^T in shared memory; then owns queries 16w..16w+15, dQ = dS K over
//     the key chunks up to its own (dS^T read transposed by ldmatrix). One launch where there were three, and
//     each head's tensors read once where the dK/dV and dQ kernels each read them.
// P and dS are rounded to bf16 as the products' operands (as FlashAttention-2 does); sums are f32.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "attention_prefill_mma.cuh"
#include "common.cuh"

namespace parallm::cuda::attn_detail {

constexpr int kMmaBwdThreads = 128;
constexpr float kBwdLog2e = 1.4426950408889634f;  // (attention.cu's kLog2e comes after this header)

template <int D, int BM>
struct BwdDkdvMma {
  static constexpr int BN = 64;
  static constexpr size_t SMEM = size_t(2 * BN + 4 * BM) * D * 2 + 4 * BM * sizeof(float);  // K, V, 2x(Q, dO), 2x(lse, delta)
};
template <int D, int BN>
struct BwdDqMma {
  static constexpr int BM = 64;
  static constexpr size_t SMEM = size_t(2 * BM + 4 * BN) * D * 2;  // Q, dO, 2x(K, V)
};

// A warp's 16 rows of f32 accumulators (this lane's rows r0 and r0 + 8; value 2r + c of fragment n is column
// 8n + 2 ti + c) times mul, stored as bf16 pairs at base + row * stride; rows at or past T are skipped. Every
// kernel here ends with it (dK, dV, dQ).
template <int ND>
__device__ __forceinline__ void store_rows(__nv_bfloat16* base, int64_t stride, int r0, int T, int ti,
                                           const float (&acc)[ND][4], float mul) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + r * 8;
    if (row >= T) continue;
    __nv_bfloat16* p = base + int64_t(row) * stride + 2 * ti;
#pragma unroll
    for (int n = 0; n < ND; ++n)
      *reinterpret_cast<uint32_t*>(p + n * 8) = pack_bf16(acc[n][2 * r] * mul, acc[n][2 * r + 1] * mul);
  }
}

template <int D, int BM>
__global__ void __launch_bounds__(kMmaBwdThreads)
bwd_dkdv_mma(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
             const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ dout,
             const float* __restrict__ lse, const float* __restrict__ delta, __nv_bfloat16* __restrict__ dk,
             __nv_bfloat16* __restrict__ dv, int T, int Hq, int Hkv, int64_t qbs, int64_t qts, int64_t kvbs,
             int64_t kvts, float scale, int nkb) {
  constexpr int BN = BwdDkdvMma<D, BM>::BN, NT = kMmaBwdThreads, KS = D / 16, NQ = BM / 8, ND = D / 8;
  constexpr uint32_t QTILE = BM * D * 2;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const uint32_t sK = smem_addr(smem_raw), sV = sK + BN * D * 2;
  const uint32_t sQ = sV + BN * D * 2, sdO = sQ + 2 * QTILE;  // two buffers each
  float* sL = reinterpret_cast<float*>(smem_raw + size_t(2 * BN + 4 * BM) * D * 2);  // [2][BM]
  float* sDl = sL + 2 * BM;                                                          // [2][BM]

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int kb = int(blockIdx.x % nkb);  // key block 0 (the most query tiles) first
  const int bg = int(blockIdx.x / nkb), b = bg / Hkv, g = bg % Hkv;
  const int G = Hq / Hkv, k0 = kb * BN;
  const int qt0 = k0 / BM, nqt = (T + BM - 1) / BM, per_head = nqt - qt0, total = G * per_head;
  const int64_t orow = int64_t(Hq) * D;
  const __nv_bfloat16* kp = k + b * kvbs + int64_t(g) * D;
  const __nv_bfloat16* vp = v + b * kvbs + int64_t(g) * D;

  // Issue the copies of iteration `it` (query head, query tile) into buffer it & 1.
  auto fetch = [&](int it) {
    const int h = g * G + it / per_head, q0 = (qt0 + it % per_head) * BM, bf = it & 1;
    load_tile<D, BM, NT>(sQ + bf * QTILE, q + b * qbs + int64_t(h) * D, qts, q0, T, tid);
    load_tile<D, BM, NT>(sdO + bf * QTILE, dout + int64_t(b) * T * orow + int64_t(h) * D, orow, q0, T, tid);
    if (tid < BM) {
      const int i = q0 + tid;
      const int64_t o = (int64_t(b) * Hq + h) * T + i;
      sL[bf * BM + tid] = i < T ? lse[o] * kBwdLog2e : 0.f;  // in log2 units
      sDl[bf * BM + tid] = i < T ? delta[o] : 0.f;
    }
  };
  load_tile<D, BN, NT>(sK, kp, kvts, k0, T, tid);
  load_tile<D, BN, NT>(sV, vp, kvts, k0, T, tid);
  fetch(0);
  cp_async_commit();

  const int l7 = lane & 7;
  const uint32_t a_row = (w * 16 + (lane & 15)) * D * 2;  // A: this warp's 16 key rows
  const int a_c = lane >> 4;
  const uint32_t b_row = (l7 + ((lane >> 4) << 3)) * D * 2;  // B from rows as n (Q, dO rows)
  const int b_c = (lane >> 3) & 1;
  const uint32_t t_row = (l7 + (((lane >> 3) & 1) << 3)) * D * 2;  // B from rows as k (ldmatrix.trans)
  const int t_c = lane >> 4;
  const int gi = lane >> 2, ti = lane & 3;
  const int ja = k0 + w * 16 + gi;  // this lane's key rows: ja and ja + 8
  const float sl2 = scale * kBwdLog2e;

  float akk[ND][4], avv[ND][4];
#pragma unroll
  for (int n = 0; n < ND; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) akk[n][e] = avv[n][e] = 0.f;

  for (int it = 0; it < total; ++it) {
    const int bf = it & 1;
    if (it + 1 < total) {
      fetch(it + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint32_t qb = sQ + bf * QTILE, ob = sdO + bf * QTILE;
    const float* L = sL + bf * BM;
    const float* Dl = sDl + bf * BM;
    const int q0 = (qt0 + it % per_head) * BM;

    float s[NQ][4], dp[NQ][4];
#pragma unroll
    for (int n = 0; n < NQ; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t kf[4], vf[4];
      ldsm_x4(kf, sK + a_row + (((ks * 2 + a_c) ^ l7) << 4));
      ldsm_x4(vf, sV + a_row + (((ks * 2 + a_c) ^ l7) << 4));
#pragma unroll
      for (int jp = 0; jp < NQ / 2; ++jp) {
        uint32_t x[4], y[4];
        ldsm_x4(x, qb + jp * 16 * D * 2 + b_row + (((ks * 2 + b_c) ^ l7) << 4));
        ldsm_x4(y, ob + jp * 16 * D * 2 + b_row + (((ks * 2 + b_c) ^ l7) << 4));
        mma_bf16(s[2 * jp], kf, x[0], x[1]);
        mma_bf16(s[2 * jp + 1], kf, x[2], x[3]);
        mma_bf16(dp[2 * jp], vf, y[0], y[1]);
        mma_bf16(dp[2 * jp + 1], vf, y[2], y[3]);
      }
    }
    // P^T and dS^T, re-packed as A operands (rows: keys; k: queries).
    uint32_t pa[NQ / 2][4], da[NQ / 2][4];
#pragma unroll
    for (int n = 0; n < NQ; ++n) {
      float p[4], d[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ic = n * 8 + 2 * ti + (e & 1), i = q0 + ic, j = ja + ((e >> 1) << 3);
        p[e] = (i < T && j <= i) ? ex2(s[n][e] * sl2 - L[ic]) : 0.f;
        d[e] = p[e] * (dp[n][e] - Dl[ic]);
      }
      pa[n >> 1][(n & 1) * 2 + 0] = pack_bf16(p[0], p[1]);
      pa[n >> 1][(n & 1) * 2 + 1] = pack_bf16(p[2], p[3]);
      da[n >> 1][(n & 1) * 2 + 0] = pack_bf16(d[0], d[1]);
      da[n >> 1][(n & 1) * 2 + 1] = pack_bf16(d[2], d[3]);
    }
#pragma unroll
    for (int kk = 0; kk < BM / 16; ++kk) {
#pragma unroll
      for (int dq2 = 0; dq2 < ND / 2; ++dq2) {
        uint32_t x[4], y[4];
        ldsm_x4_t(x, ob + kk * 16 * D * 2 + t_row + (((dq2 * 2 + t_c) ^ l7) << 4));
        ldsm_x4_t(y, qb + kk * 16 * D * 2 + t_row + (((dq2 * 2 + t_c) ^ l7) << 4));
        mma_bf16(avv[2 * dq2], pa[kk], x[0], x[1]);
        mma_bf16(avv[2 * dq2 + 1], pa[kk], x[2], x[3]);
        mma_bf16(akk[2 * dq2], da[kk], y[0], y[1]);
        mma_bf16(akk[2 * dq2 + 1], da[kk], y[2], y[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's copy
  }

  store_rows(dk + b * kvbs + int64_t(g) * D, kvts, ja, T, ti, akk, scale);
  store_rows(dv + b * kvbs + int64_t(g) * D, kvts, ja, T, ti, avv, 1.f);
}

template <int D, int BN>
__global__ void __launch_bounds__(kMmaBwdThreads)
bwd_dq_mma(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
           const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ dout, const float* __restrict__ lse,
           const float* __restrict__ delta, __nv_bfloat16* __restrict__ dq, int B, int T, int Hq, int Hkv,
           int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float scale, int nmb) {
  constexpr int BM = BwdDqMma<D, BN>::BM, NT = kMmaBwdThreads, KS = D / 16, NK = BN / 8, ND = D / 8;
  constexpr uint32_t KTILE = BN * D * 2;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const uint32_t sQ = smem_addr(smem_raw), sdO = sQ + BM * D * 2;
  const uint32_t sK = sdO + BM * D * 2, sV = sK + 2 * KTILE;

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int bhc = B * Hq;
  const int mb = nmb - 1 - int(blockIdx.x / bhc);  // the latest query tiles (the most keys) first
  const int bh = int(blockIdx.x % bhc), b = bh / Hq, h = bh % Hq, g = h / (Hq / Hkv);
  const int m0 = mb * BM, kend = min(T, m0 + BM), nkb = (kend + BN - 1) / BN;
  const int64_t orow = int64_t(Hq) * D;
  const __nv_bfloat16* kp = k + b * kvbs + int64_t(g) * D;
  const __nv_bfloat16* vp = v + b * kvbs + int64_t(g) * D;

  load_tile<D, BM, NT>(sQ, q + b * qbs + int64_t(h) * D, qts, m0, T, tid);
  load_tile<D, BM, NT>(sdO, dout + int64_t(b) * T * orow + int64_t(h) * D, orow, m0, T, tid);
  load_tile<D, BN, NT>(sK, kp, kvts, 0, T, tid);
  load_tile<D, BN, NT>(sV, vp, kvts, 0, T, tid);
  cp_async_commit();

  const int l7 = lane & 7;
  const uint32_t a_row = (w * 16 + (lane & 15)) * D * 2;
  const int a_c = lane >> 4;
  const uint32_t b_row = (l7 + ((lane >> 4) << 3)) * D * 2;
  const int b_c = (lane >> 3) & 1;
  const uint32_t t_row = (l7 + (((lane >> 3) & 1) << 3)) * D * 2;
  const int t_c = lane >> 4;
  const int gi = lane >> 2, ti = lane & 3;
  const int row_a = m0 + w * 16 + gi;  // this lane's query rows: row_a and row_a + 8
  const float sl2 = scale * kBwdLog2e;
  float lr[2], dr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_a + r * 8;
    const int64_t o = (int64_t(b) * Hq + h) * T + i;
    lr[r] = i < T ? lse[o] * kBwdLog2e : 0.f;
    dr[r] = i < T ? delta[o] : 0.f;
  }

  uint32_t qf[KS][4], of[KS][4];
  float acc[ND][4];
#pragma unroll
  for (int n = 0; n < ND; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;

  for (int nb = 0; nb < nkb; ++nb) {
    const uint32_t buf = (nb & 1) * KTILE;
    if (nb + 1 < nkb) {
      load_tile<D, BN, NT>(sK + (buf ^ KTILE), kp, kvts, (nb + 1) * BN, T, tid);
      load_tile<D, BN, NT>(sV + (buf ^ KTILE), vp, kvts, (nb + 1) * BN, T, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (nb == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        ldsm_x4(qf[ks], sQ + a_row + (((ks * 2 + a_c) ^ l7) << 4));
        ldsm_x4(of[ks], sdO + a_row + (((ks * 2 + a_c) ^ l7) << 4));
      }
    }
    float s[NK][4], dp[NK][4];
#pragma unroll
    for (int n = 0; n < NK; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int jp = 0; jp < NK / 2; ++jp) {
        uint32_t x[4], y[4];
        ldsm_x4(x, sK + buf + jp * 16 * D * 2 + b_row + (((ks * 2 + b_c) ^ l7) << 4));
        ldsm_x4(y, sV + buf + jp * 16 * D * 2 + b_row + (((ks * 2 + b_c) ^ l7) << 4));
        mma_bf16(s[2 * jp], qf[ks], x[0], x[1]);
        mma_bf16(s[2 * jp + 1], qf[ks], x[2], x[3]);
        mma_bf16(dp[2 * jp], of[ks], y[0], y[1]);
        mma_bf16(dp[2 * jp + 1], of[ks], y[2], y[3]);
      }
    }
    const int n0 = nb * BN;
    uint32_t da[NK / 2][4];
#pragma unroll
    for (int n = 0; n < NK; ++n) {
      float d[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = n0 + n * 8 + 2 * ti + (e & 1), r = e >> 1, i = row_a + r * 8;
        const float p = (i < T && j <= i) ? ex2(s[n][e] * sl2 - lr[r]) : 0.f;
        d[e] = p * (dp[n][e] - dr[r]);
      }
      da[n >> 1][(n & 1) * 2 + 0] = pack_bf16(d[0], d[1]);
      da[n >> 1][(n & 1) * 2 + 1] = pack_bf16(d[2], d[3]);
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
      for (int dq2 = 0; dq2 < ND / 2; ++dq2) {
        uint32_t x[4];
        ldsm_x4_t(x, sK + buf + kk * 16 * D * 2 + t_row + (((dq2 * 2 + t_c) ^ l7) << 4));
        mma_bf16(acc[2 * dq2], da[kk], x[0], x[1]);
        mma_bf16(acc[2 * dq2 + 1], da[kk], x[2], x[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's copy
  }

  store_rows(dq + b * qbs + int64_t(h) * D, qts, row_a, T, ti, acc, scale);
}

constexpr int kShortBwdThreads = 256, kShortBwdT = 128;
template <int D>
struct BwdShortMma {
  // Q, K, V, dO [128][D], dS^T [128 keys][128 queries] (bf16, 16-byte chunks swizzled by row), lse and delta.
  static constexpr size_t SMEM = size_t(4 * kShortBwdT * D) * 2 + size_t(kShortBwdT * kShortBwdT) * 2 +
                                 2 * kShortBwdT * sizeof(float);
};

template <int D>
__global__ void __launch_bounds__(kShortBwdThreads, 2)
bwd_short_mma(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
              const __nv_bfloat16* __restrict__ v, const __nv_bfloat16* __restrict__ out,
              const __nv_bfloat16* __restrict__ dout, const float* __restrict__ lse, __nv_bfloat16* __restrict__ dq,
              __nv_bfloat16* __restrict__ dk, __nv_bfloat16* __restrict__ dv, int T, int H, int64_t qbs, int64_t qts,
              int64_t kvbs, int64_t kvts, float scale) {
  constexpr int NT = kShortBwdThreads, TT = kShortBwdT, KS = D / 16, ND = D / 8;
  constexpr uint32_t TILE = TT * D * 2;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const uint32_t sQ = smem_addr(smem_raw), sK = sQ + TILE, sV = sK + TILE, sdO = sV + TILE, sS = sdO + TILE;
  unsigned char* const pS = smem_raw + 4 * TILE;  // dS^T, written through a pointer
  float* sL = reinterpret_cast<float*>(smem_raw + 4 * TILE + TT * TT * 2);
  float* sDl = sL + TT;

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int b = int(blockIdx.x / H), h = int(blockIdx.x % H);
  const int64_t orow = int64_t(H) * D;
  load_tile<D, TT, NT>(sQ, q + b * qbs + int64_t(h) * D, qts, 0, T, tid);
  load_tile<D, TT, NT>(sK, k + b * kvbs + int64_t(h) * D, kvts, 0, T, tid);
  load_tile<D, TT, NT>(sV, v + b * kvbs + int64_t(h) * D, kvts, 0, T, tid);
  load_tile<D, TT, NT>(sdO, dout + int64_t(b) * T * orow + int64_t(h) * D, orow, 0, T, tid);
  cp_async_commit();
  {
    // delta = rowsum(dO O) and lse (log2 units), two threads a row, while the copies land; rows past T 0.
    const int r = tid >> 1, half = tid & 1;
    float acc = 0.f;
    if (r < T) {
      const int64_t at = (int64_t(b) * T + r) * orow + int64_t(h) * D + half * (D / 2);
#pragma unroll
      for (int c = 0; c < D / 16; ++c) {
        const uint4 ov = *reinterpret_cast<const uint4*>(out + at + c * 8);
        const uint4 gv = *reinterpret_cast<const uint4*>(dout + at + c * 8);
        __nv_bfloat16 o8[8], g8[8];
        memcpy(o8, &ov, 16);  // (not a cast: the host emulation's compiler keeps the aliasing rules)
        memcpy(g8, &gv, 16);
#pragma unroll
        for (int e = 0; e < 8; ++e) acc += f32(o8[e]) * f32(g8[e]);
      }
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    if (half == 0) {
      sDl[r] = acc;
      sL[r] = r < T ? lse[(int64_t(b) * H + h) * T + r] * kBwdLog2e : 0.f;
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  const int l7 = lane & 7, gi = lane >> 2, ti = lane & 3;
  const uint32_t a_row = (w * 16 + (lane & 15)) * D * 2;  // A: this warp's 16 rows
  const int a_c = lane >> 4;
  const uint32_t b_row = (l7 + ((lane >> 4) << 3)) * D * 2;  // B from rows as n
  const int b_c = (lane >> 3) & 1;
  const uint32_t t_row = (l7 + (((lane >> 3) & 1) << 3)) * D * 2;  // B from rows as k (ldmatrix.trans)
  const int t_c = lane >> 4;
  const float sl2 = scale * kBwdLog2e;
  const int nc = (T + 15) / 16;  // chunks of 16 rows

  if (w < nc) {  // keys 16w..16w+15: dK and dV
    const int ja = w * 16 + gi;  // this lane's key rows: ja and ja + 8
    uint32_t kf[KS][4], vf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      ldsm_x4(kf[ks], sK + a_row + (((ks * 2 + a_c) ^ l7) << 4));
      ldsm_x4(vf[ks], sV + a_row + (((ks * 2 + a_c) ^ l7) << 4));
    }
    float akk[ND][4], avv[ND][4];
#pragma unroll
    for (int n = 0; n < ND; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) akk[n][e] = avv[n][e] = 0.f;
    for (int c = w; c < nc; ++c) {
      const uint32_t qb = sQ + c * 16 * D * 2, ob = sdO + c * 16 * D * 2;
      float s[2][4], dp[2][4];
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.f;
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) {
        uint32_t x[4], y[4];
        ldsm_x4(x, qb + b_row + (((ks * 2 + b_c) ^ l7) << 4));
        ldsm_x4(y, ob + b_row + (((ks * 2 + b_c) ^ l7) << 4));
        mma_bf16(s[0], kf[ks], x[0], x[1]);
        mma_bf16(s[1], kf[ks], x[2], x[3]);
        mma_bf16(dp[0], vf[ks], y[0], y[1]);
        mma_bf16(dp[1], vf[ks], y[2], y[3]);
      }
      // P^T and dS^T re-packed as A operands (rows: keys; k: this chunk's 16 queries); dS^T also to shared memory
      // for the dQ pass, row = key, 16-byte chunk (query / 8) XOR (key & 7).
      uint32_t pa[4], da[4];
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        float p[4], d[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int i = c * 16 + n * 8 + 2 * ti + (e & 1), j = ja + ((e >> 1) << 3);
          p[e] = (i < T && j <= i) ? ex2(s[n][e] * sl2 - sL[i]) : 0.f;
          d[e] = p[e] * (dp[n][e] - sDl[i]);
        }
        pa[n * 2 + 0] = pack_bf16(p[0], p[1]);
        pa[n * 2 + 1] = pack_bf16(p[2], p[3]);
        da[n * 2 + 0] = pack_bf16(d[0], d[1]);
        da[n * 2 + 1] = pack_bf16(d[2], d[3]);
        const uint32_t col = ((uint32_t(c * 2 + n) ^ uint32_t(gi)) << 4) + 4 * ti;  // (ja & 7 == (ja + 8) & 7 == gi)
        *reinterpret_cast<uint32_t*>(pS + ja * TT * 2 + col) = da[n * 2 + 0];
        *reinterpret_cast<uint32_t*>(pS + (ja + 8) * TT * 2 + col) = da[n * 2 + 1];
      }
#pragma unroll
      for (int dq2 = 0; dq2 < ND / 2; ++dq2) {
        uint32_t x[4], y[4];
        ldsm_x4_t(x, ob + t_row + (((dq2 * 2 + t_c) ^ l7) << 4));
        ldsm_x4_t(y, qb + t_row + (((dq2 * 2 + t_c) ^ l7) << 4));
        mma_bf16(avv[2 * dq2], pa, x[0], x[1]);
        mma_bf16(avv[2 * dq2 + 1], pa, x[2], x[3]);
        mma_bf16(akk[2 * dq2], da, y[0], y[1]);
        mma_bf16(akk[2 * dq2 + 1], da, y[2], y[3]);
      }
    }
    store_rows(dk + b * kvbs + int64_t(h) * D, kvts, ja, T, ti, akk, scale);
    store_rows(dv + b * kvbs + int64_t(h) * D, kvts, ja, T, ti, avv, 1.f);
  }
  __syncthreads();  // every dS^T chunk written

  if (w < nc) {  // queries 16w..16w+15: dQ = dS K over the key chunks up to theirs (later keys' dS is 0)
    const uint32_t s_row = uint32_t(l7 + ((lane >> 4) << 3)) * TT * 2;  // A from dS^T: rows keys, chunks queries
    const int s_c = w * 2 + ((lane >> 3) & 1);
    float acc[ND][4];
#pragma unroll
    for (int n = 0; n < ND; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    for (int kc = 0; kc <= w; ++kc) {
      uint32_t a[4];
      ldsm_x4_t(a, sS + kc * 16 * TT * 2 + s_row + ((uint32_t(s_c) ^ uint32_t(l7)) << 4));
#pragma unroll
      for (int dq2 = 0; dq2 < ND / 2; ++dq2) {
        uint32_t x[4];
        ldsm_x4_t(x, sK + kc * 16 * D * 2 + t_row + (((dq2 * 2 + t_c) ^ l7) << 4));
        mma_bf16(acc[2 * dq2], a, x[0], x[1]);
        mma_bf16(acc[2 * dq2 + 1], a, x[2], x[3]);
      }
    }
    store_rows(dq + b * qbs + int64_t(h) * D, qts, w * 16 + gi, T, ti, acc, scale);
  }
}

}  // namespace parallm::cuda::attn_detail
