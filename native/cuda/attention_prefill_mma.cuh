// Tensor-core causal prefill for bf16 (included by attention.cu). FlashAttention-2 layout on mma.sync:
// a block owns BM = 16*NW query rows of one (b, h); warp w owns rows 16w..16w+15 with their Q fragments in
// registers for the whole key loop. K and V come in tiles of 64 keys, double-buffered in shared memory by
// cp.async (the next tile's copy overlaps this tile's math). S = Q K^T and O += P V run on
// mma.m16n8k16 (bf16 in, f32 accumulate); the S accumulators are re-packed in registers as the A operand
// of P V (the accumulator layout of two n8 tiles is the A layout of one k16 step), so P never touches
// shared memory. Softmax runs in log2 units (scale*log2e folded in) with ex2.approx. With lse non-null
// (attention_forward) each row's logsumexp is written too, for the backward.
#pragma once
#include <cuda_bf16.h>
#include <cstdint>

#include "mma_ptx.cuh"

namespace parallm::cuda::attn_detail {

using ptx::cp_async16;
using ptx::cp_async_commit;
using ptx::cp_async_wait;
using ptx::ldsm_x4;
using ptx::ldsm_x4_t;
using ptx::smem_addr;
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ptx::MmaOp<__nv_bfloat16>::run(c, a, b0, b1);
}
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 t = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&t);
}

// The end of a row pair's online softmax (rows row0 and row0 + 8 of a quad's accumulators): the quad's
// partial row sums added, the natural-log logsumexp stored (training forward, quad lane 0, rows < Tq; m
// and l are in log2 units), and l replaced by 1 / l for scaling O. Both prefill kernels end with it.
template <bool LSE>
__device__ __forceinline__ void finish_rows(float (&lr)[2], const float (&mr)[2], float* __restrict__ lse,
                                            int64_t lse_row0, int row0, int Tq, int quad_lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    lr[r] += __shfl_xor_sync(0xffffffffu, lr[r], 1);
    lr[r] += __shfl_xor_sync(0xffffffffu, lr[r], 2);
    if constexpr (LSE) {
      if (quad_lane == 0 && row0 + r * 8 < Tq) lse[lse_row0 + row0 + r * 8] = (mr[r] + __log2f(lr[r])) * 0.6931471805599453f;
    }
    lr[r] = 1.f / lr[r];
  }
}


template <int D, int NW>
struct PrefillMma {
  static constexpr int BM = 16 * NW, BN = 64, NT = 32 * NW, CPR = D / 8;
  static constexpr size_t SMEM = size_t(BM + 4 * BN) * D * 2;  // Q, 2x K, 2x V
  static_assert(D % 64 == 0, "swizzle assumes at least 8 chunks of 16 bytes per row");
};

// Rows of D bf16 in shared memory, 16-byte chunk c of row r stored at chunk c ^ (r & 7): the 8 rows an
// ldmatrix phase reads then fall in 8 distinct bank groups.
template <int D, int ROWS, int NT>
__device__ __forceinline__ void load_tile(uint32_t s, const __nv_bfloat16* g, int64_t tstride, int row0, int limit,
                                          int tid) {
  constexpr int CPR = D / 8;
  static_assert((ROWS * CPR) % NT == 0, "tile must split evenly over the block");
#pragma unroll
  for (int it = 0; it < ROWS * CPR / NT; ++it) {
    const int idx = it * NT + tid, r = idx / CPR, c = idx % CPR;
    const bool ok = row0 + r < limit;
    const __nv_bfloat16* src = ok ? g + int64_t(row0 + r) * tstride + c * 8 : g;
    cp_async16(s + (r * D + ((c ^ (r & 7)) << 3)) * 2, src, ok ? 16 : 0);
  }
}

// LSE: a training forward, which also writes the logsumexp (a separate instance, so inference's kernel
// carries no branch or register for it).
template <int D, int NW, bool LSE>
__global__ void __launch_bounds__(NW * 32, NW == 4 ? 2 : 1)
prefill_mma(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
            const __nv_bfloat16* __restrict__ v, __nv_bfloat16* __restrict__ out, float* __restrict__ lse, int B,
            int Tq, int Tk, int Hq, int Hkv, int64_t qbs, int64_t qts, int64_t kvbs, int64_t kvts, float sl2,
            int nmb) {
  using P = PrefillMma<D, NW>;
  constexpr int BM = P::BM, BN = P::BN, NT = P::NT, KS = D / 16, NN = BN / 8, ND = D / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const uint32_t sQ = smem_addr(smem_raw);
  const uint32_t sK = sQ + BM * D * 2, sV = sK + 2 * BN * D * 2;
  constexpr uint32_t TILE = BN * D * 2;

  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int bhc = B * Hq;
  const int mb = nmb - 1 - int(blockIdx.x / bhc);  // heaviest (latest) query tiles first
  const int bh = int(blockIdx.x % bhc), b = bh / Hq, h = bh % Hq, g = h / (Hq / Hkv);
  const int off = Tk - Tq, m0 = mb * BM;
  const int kend = min(Tk, m0 + BM + off), nkb = (kend + BN - 1) / BN;
  const __nv_bfloat16* qp = q + b * qbs + int64_t(h) * D;
  const __nv_bfloat16* kp = k + b * kvbs + int64_t(g) * D;
  const __nv_bfloat16* vp = v + b * kvbs + int64_t(g) * D;

  load_tile<D, BM, NT>(sQ, qp, qts, m0, Tq, tid);
  load_tile<D, BN, NT>(sK, kp, kvts, 0, Tk, tid);
  load_tile<D, BN, NT>(sV, vp, kvts, 0, Tk, tid);
  cp_async_commit();

  // Per-lane ldmatrix offsets: every row a lane addresses has (row & 7) == (lane & 7), so the swizzle is
  // chunk ^ (lane & 7).
  const int l7 = lane & 7;
  const uint32_t q_row = (w * 16 + (lane & 15)) * D * 2;
  const int q_c = lane >> 4;                                             // chunk within a k16 step
  const uint32_t k_row = (l7 + ((lane >> 4) << 3)) * D * 2;              // n-tile pair rows
  const int k_c = (lane >> 3) & 1;
  const uint32_t v_row = (l7 + (((lane >> 3) & 1) << 3)) * D * 2;        // key rows of a k16 step
  const int v_c = lane >> 4;

  uint32_t qf[KS][4];
  float o[ND][4];
#pragma unroll
  for (int i = 0; i < ND; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float mr[2] = {-INFINITY, -INFINITY}, lr[2] = {0.f, 0.f};
  const int gi = lane >> 2, ti = lane & 3;
  const int row_a = m0 + w * 16 + gi;  // this lane's two rows: row_a and row_a + 8

  for (int nb = 0; nb < nkb; ++nb) {
    const uint32_t buf = (nb & 1) * TILE;
    if (nb + 1 < nkb) {
      load_tile<D, BN, NT>(sK + (buf ^ TILE), kp, kvts, (nb + 1) * BN, Tk, tid);
      load_tile<D, BN, NT>(sV + (buf ^ TILE), vp, kvts, (nb + 1) * BN, Tk, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (nb == 0) {
#pragma unroll
      for (int ks = 0; ks < KS; ++ks) ldsm_x4(qf[ks], sQ + q_row + (((ks * 2 + q_c) ^ l7) << 4));
    }

    float s[NN][4];
#pragma unroll
    for (int n = 0; n < NN; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int jp = 0; jp < NN / 2; ++jp) {
        uint32_t bf[4];
        ldsm_x4(bf, sK + buf + jp * 16 * D * 2 + k_row + (((ks * 2 + k_c) ^ l7) << 4));
        mma_bf16(s[2 * jp], qf[ks], bf[0], bf[1]);
        mma_bf16(s[2 * jp + 1], qf[ks], bf[2], bf[3]);
      }
    }

    const int n0 = nb * BN;
    const bool need_mask = (n0 + BN > Tk) || (n0 + BN - 1 > m0 + off);
#pragma unroll
    for (int n = 0; n < NN; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[n][e] * sl2;
        if (need_mask) {
          const int j = n0 + n * 8 + 2 * ti + (e & 1), i = row_a + ((e >> 1) << 3);
          if (j >= Tk || j > i + off) x = -INFINITY;
        }
        s[n][e] = x;
      }

    // Online softmax for the lane's two rows; the row spans the 4 lanes of a quad.
    float mx[2] = {mr[0], mr[1]};
#pragma unroll
    for (int n = 0; n < NN; ++n) {
      mx[0] = fmaxf(mx[0], fmaxf(s[n][0], s[n][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[n][2], s[n][3]));
    }
    float alpha[2], base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // nothing seen yet: keep zeros, avoid inf - inf
      alpha[r] = ex2(mr[r] - base[r]);
      mr[r] = mx[r];
      lr[r] *= alpha[r];  // per-lane partial sums; the quad is summed once at the end
    }
#pragma unroll
    for (int i = 0; i < ND; ++i) {
      o[i][0] *= alpha[0], o[i][1] *= alpha[0];
      o[i][2] *= alpha[1], o[i][3] *= alpha[1];
    }
    uint32_t pa[NN / 2][4];
#pragma unroll
    for (int n = 0; n < NN; ++n) {
      const float p0 = ex2(s[n][0] - base[0]), p1 = ex2(s[n][1] - base[0]);
      const float p2 = ex2(s[n][2] - base[1]), p3 = ex2(s[n][3] - base[1]);
      lr[0] += p0 + p1;
      lr[1] += p2 + p3;
      pa[n >> 1][(n & 1) * 2 + 0] = pack_bf16(p0, p1);
      pa[n >> 1][(n & 1) * 2 + 1] = pack_bf16(p2, p3);
    }

#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
#pragma unroll
      for (int dp = 0; dp < ND / 2; ++dp) {
        uint32_t bf[4];
        ldsm_x4_t(bf, sV + buf + kk * 16 * D * 2 + v_row + (((dp * 2 + v_c) ^ l7) << 4));
        mma_bf16(o[2 * dp], pa[kk], bf[0], bf[1]);
        mma_bf16(o[2 * dp + 1], pa[kk], bf[2], bf[3]);
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's copy
  }

  finish_rows<LSE>(lr, mr, lse, (int64_t(b) * Hq + h) * Tq, row_a, Tq, ti);
  __nv_bfloat16* ob = out + (int64_t(b) * Tq * Hq + h) * D + 2 * ti;
  const int64_t ors = int64_t(Hq) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row_a + r * 8;
    if (i < Tq) {
      __nv_bfloat16* op = ob + i * ors;
#pragma unroll
      for (int n = 0; n < ND; ++n)
        *reinterpret_cast<uint32_t*>(op + n * 8) = pack_bf16(o[n][2 * r] * lr[r], o[n][2 * r + 1] * lr[r]);
    }
  }
}

}  // namespace parallm::cuda::attn_detail
