// Pipelined GEMV for M <= 16 rows of X [M,K] against W [N,K] (transB): the decode projections, bound by
// streaming W once. The older gemv_kernel (matmul_sm80.cuh) keeps only UNROLL x 16 bytes a lane in flight
// in registers and its warps live for a few loads each, so an SM has too few bytes in flight to cover
// the memory latency (bench/RESULTS.md: 65% of the copy rate on an H200). Here:
//   - W goes global -> shared memory by 16-byte cp.async into a per-warp ring of P items (an item is UC
//     chunks of 32 k for the warp's 8 W rows), P - 1 items in flight per warp, so ~(P-1) * UC * 512
//     bytes a warp and NW times that an SM without spending registers on them;
//   - one block per SM (the ring is ~128 KB), each owning a contiguous run of 8-row tiles (the tile
//     count split evenly over the blocks, so no SM gets a wave more than another); the warps split K and
//     the ring runs on across the block's tiles, so the stream never drains between tiles;
//   - each lane copies into shared memory exactly the 16 bytes it later reads (lane quad t of a 32-wide
//     chunk holds k = 8t..8t+7, the k permutation the older kernel uses for its tensor-core operands), so
//     a lane waits only on its own copies (cp.async.wait_group) and no barrier guards the ring;
//   - a tile's per-warp partial sums meet in shared memory (double-buffered by tile parity, one
//     __syncthreads a tile) and one warp, in turn, adds them in warp order (deterministic) and stores.
// Launched with PDL (pdl.cuh, launch_pdl): before its griddepcontrol.wait it only prefetches W into L2.
// X (at most 16 x K) is read straight from global memory: every tile of a block reads the same K slice
// of it, so those loads hit L1/L2. Needs K % 8 == 0 and 16-byte aligned X and W, like gemv_kernel.
//
// NORM (rmsnorm_matmul, 16-bit): X's rows are RMS-normalized on the way in, h = x * rstd * nw rounded to
// T, so decode's norm needs no launch and no pass of its own. Each block computes the M rows' rstd while
// its first W copies are in flight, with norm.cu's arrangement for a row (ntx threads, pack v = tid +
// i * ntx summed in order, warp butterfly, warps summed in order) and its formulas, so h has the bits
// rmsnorm (16-byte path) writes and the result is the one of rmsnorm then this GEMV.
//
// SWIGLU (rmsnorm_matmul_swiglu): W holds 2N rows, the gate rows then the up rows; an item carries both
// halves of its tile (rows n and N + n), and the epilogue writes C[M,N] = silu(gate) * up from the two
// products each rounded to T first, as silu_gate (activation.cu) computes it from a stored gate+up.
#pragma once
#include "matmul_common.cuh"
#include "mma_ptx.cuh"

namespace parallm::cuda::mm {

// Warps a block, chunks (32 k) an item, items in a warp's ring.
constexpr int GEMVP_WARPS = 8, GEMVP_UC = 4, GEMVP_P = 8;

// The ring, the tile sums [2][NW][H][4][32], and (NORM) the rows' rstd [16] and a row sum's warp partials
// [32]. H: 2 with SWIGLU (gate and up sums), else 1.
template <int NW, int UC, int P, int H = 1>
constexpr size_t gemvp_smem() {
  return size_t(NW) * P * H * UC * 32 * 16 + size_t(2) * NW * H * 4 * 32 * sizeof(float) + 48 * sizeof(float);
}

// silu_gate's arithmetic (activation.cu): the same expression, so the fused epilogue gives its bits.
__device__ __forceinline__ float gemvp_silu(float x) { return x / (1.f + expf(-x)); }

// norm.cu's threads for one row of C elements (16-byte packs of 8, kCached = 4 packs a thread in registers).
inline int gemvp_norm_threads(int64_t C) {
  const int64_t want = (C + 31) / 32;
  return int(want > 512 ? 512 : want < 32 ? 32 : (want + 31) / 32 * 32);
}

template <typename T, int NW, int UC, int P, bool NORM = false, bool SWIGLU = false>
__global__ void __launch_bounds__(NW * 32, 1)
gemv_pipe_kernel(const T* __restrict__ X, const T* __restrict__ W, const T* __restrict__ bias, T* __restrict__ C,
                 int M, int N, int K, float alpha, float beta, int pair_ok, const T* __restrict__ nw = nullptr,
                 float eps = 0.f, int ntx = 32) {
  static_assert(P >= 2, "the ring needs a slot in use and one filling");
  constexpr int H = SWIGLU ? 2 : 1;  // row sets an item: gate and up
#ifdef PARALLM_GEMV_SMEM
  unsigned char* smem = PARALLM_GEMV_SMEM;  // the host emulation (native/cuda/emu) names its own array
#else
  extern __shared__ __align__(16) unsigned char gemvp_smem_raw[];
  unsigned char* smem = gemvp_smem_raw;
#endif
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int ntiles = (N + 7) / 8;
  const int tb = int(int64_t(blockIdx.x) * ntiles / gridDim.x);
  const int te = int(int64_t(blockIdx.x + 1) * ntiles / gridDim.x);
  const int nchunks = (K + 31) / 32, per = (nchunks + NW - 1) / NW;
  const int c0 = min(warp * per, nchunks), c1 = min(c0 + per, nchunks);
  const int ipt = (c1 - c0 + UC - 1) / UC;  // this warp's items a tile (0 when K leaves it no chunk)
  const int nitems = (te - tb) * ipt;
  // slot s, set h, chunk u: [((s*H + h)*UC + u)*32]
  uint4* ring = reinterpret_cast<uint4*>(smem) + warp * (P * H * UC * 32) + lane;
  float* red = reinterpret_cast<float*>(smem + size_t(NW) * P * H * UC * 32 * 16);  // [2][NW][H][4][32]

  // Item j of this warp: its W bytes into ring slot j % P, as one commit group (empty past the end, so
  // the count of groups in flight stays P - 1 and the wait below stays a constant).
  auto issue = [&](int j) {
    if (j < nitems) {
      const int tile = tb + j / ipt, cb = c0 + (j % ipt) * UC;
      const int row = tile * 8 + g;
#pragma unroll
      for (int h = 0; h < H; ++h) {
        const T* wr = W + (int64_t(h) * N + (row < N ? row : 0)) * K;
        uint4* dst = ring + ((j % P) * H + h) * (UC * 32);
#pragma unroll
        for (int u = 0; u < UC; ++u) {
          const int k = (cb + u) * 32 + 8 * t;
          const bool ok = row < N && cb + u < c1 && k < K;  // K % 8 == 0: a lane's 8 k are all in or all out
          ptx::cp_async16(ptx::smem_addr(dst + u * 32), ok ? wr + k : W, ok ? 16 : 0);  // 0 bytes: zeros
        }
      }
    }
    ptx::cp_async_commit();
  };
  // PDL (pdl.cuh): let the next GEMV start, and ask L2 for this warp's K slice of its first two tiles
  // (lane h * 8 + g: row g of set h), the bytes the ring's first items copy, while the kernel before
  // finishes; then wait for it before the first copy into shared memory and before X.
  pdl_trigger();
  if (lane < 8 * H && c0 < c1) {
    const int h = lane / 8, k0 = c0 * 32, k1 = min(c1 * 32, K);
    for (int tile = tb; tile < min(tb + 2, te); ++tile) {
      const int row = tile * 8 + (lane & 7);
      if (row < N) prefetch_l2(W + (int64_t(h) * N + row) * K + k0, uint32_t(k1 - k0) * uint32_t(sizeof(T)));
    }
  }
  pdl_wait();
#pragma unroll 1
  for (int j = 0; j < P - 1; ++j) issue(j);

  const bool xv0 = g < M, xv1 = g + 8 < M;
  const T* x0 = X + int64_t(xv0 ? g : 0) * K;
  const T* x1 = X + int64_t(xv1 ? g + 8 : 0) * K;
  const uint4 z = make_uint4(0, 0, 0, 0);
  float rs0 = 1.f, rs1 = 1.f;  // NORM: rstd of X rows g and g + 8
  if constexpr (NORM) {
    float* s_rstd = red + 2 * NW * H * 4 * 32;  // [16]
    float* s_part = s_rstd + 16;             // [32]
    const int tid = int(threadIdx.x), nvec = K / 8, nwarps = ntx / 32;
    const float inv_c = 1.f / float(K);
#pragma unroll 1
    for (int m = 0; m < M; ++m) {
      float sq = 0.f;
      if (tid < ntx)
        for (int v = tid; v < nvec; v += ntx) {
          const Pack<T, 8> p = *reinterpret_cast<const Pack<T, 8>*>(X + int64_t(m) * K + int64_t(v) * 8);
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const float a = f32(p.v[e]);
            sq += a * a;
          }
        }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
      if (lane == 0 && warp < nwarps) s_part[warp] = sq;
      __syncthreads();
      if (tid == 0) {
        float t = s_part[0];
        if (nwarps > 1) {
          t = 0.f;
          for (int i = 0; i < nwarps; ++i) t += s_part[i];
        }
        s_rstd[m] = rsqrtf(t * inv_c + eps);
      }
      __syncthreads();
    }
    if (xv0) rs0 = s_rstd[g];
    if (xv1) rs1 = s_rstd[g + 8];
  }
  int j = 0;
#pragma unroll 1
  for (int tile = tb; tile < te; ++tile) {
    float acc[H][4] = {};
#pragma unroll 1
    for (int i = 0; i < ipt; ++i, ++j) {
      const int cb = c0 + i * UC;
      uint4 xr[UC][2];
#pragma unroll
      for (int u = 0; u < UC; ++u) {
        const int k = (cb + u) * 32 + 8 * t;
        const bool in = cb + u < c1 && k < K;
        xr[u][0] = (in && xv0) ? __ldg(reinterpret_cast<const uint4*>(x0 + k)) : z;
        xr[u][1] = (in && xv1) ? __ldg(reinterpret_cast<const uint4*>(x1 + k)) : z;
        if constexpr (NORM) {
          if (in && (xv0 || xv1)) {
            const Pack<T, 8> wv = *reinterpret_cast<const Pack<T, 8>*>(nw + k);
#pragma unroll
            for (int r = 0; r < 2; ++r) {
              Pack<T, 8> xe;  // (memcpy, not a cast: the bits change type without aliasing)
              memcpy(&xe, &xr[u][r], 16);
              const float rs = r ? rs1 : rs0;
#pragma unroll
              for (int e = 0; e < 8; ++e) {
                float t = f32(xe.v[e]) * rs;  // norm_kernel: (x - mean) * rstd, mean 0 for RMS; then * w
                t *= f32(wv.v[e]);
                xe.v[e] = from_f32<T>(t);
              }
              memcpy(&xr[u][r], &xe, 16);
            }
          }
        }
      }
      ptx::cp_async_wait<P - 2>();  // item j's group is complete (P - 1 were in flight, j's the oldest)
      const uint4* src = ring + (j % P) * (H * UC * 32);
#pragma unroll
      for (int u = 0; u < UC; ++u) {
        const uint32_t a0[4] = {xr[u][0].x, xr[u][1].x, xr[u][0].y, xr[u][1].y};
        const uint32_t a1[4] = {xr[u][0].z, xr[u][1].z, xr[u][0].w, xr[u][1].w};
#pragma unroll
        for (int h = 0; h < H; ++h) {
          const uint4 w = src[(h * UC + u) * 32];
          ptx::MmaOp<T>::run(acc[h], a0, w.x, w.y);
          ptx::MmaOp<T>::run(acc[h], a1, w.z, w.w);
        }
      }
      // Refill the slot of item j - 1: its reads were consumed by the previous pass's MMAs, so they
      // completed before this copy is issued (one lane's own bytes; no other lane reads them).
      issue(j + P - 1);
    }
    float* r = red + ((tile - tb) & 1) * (NW * H * 4 * 32);
#pragma unroll
    for (int h = 0; h < H; ++h)
#pragma unroll
      for (int e = 0; e < 4; ++e) r[((warp * H + h) * 4 + e) * 32 + lane] = acc[h][e];
    __syncthreads();
    if (warp == (tile - tb) % NW) {
      float s[H][4] = {};
      for (int w = 0; w < NW; ++w)
#pragma unroll
        for (int h = 0; h < H; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e) s[h][e] += r[((w * H + h) * 4 + e) * 32 + lane];
      // s[.][0], s[.][1]: X row g, W rows (columns of C) tile*8 + 2t, +1; s[.][2], s[.][3]: X row g + 8.
      const int col = tile * 8 + 2 * t;
      if constexpr (SWIGLU) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = g + (e >= 2 ? 8 : 0), cc = col + (e & 1);
          if (row < M && cc < N) {
            const float gate = f32(from_f32<T>(s[0][e])), up = f32(from_f32<T>(s[1][e]));
            C[int64_t(row) * N + cc] = from_f32<T>(gemvp_silu(gate) * up);
          }
        }
      } else {
        store2(C, bias, M, N, g, col, s[0][0], s[0][1], alpha, beta, pair_ok);
        store2(C, bias, M, N, g + 8, col, s[0][2], s[0][3], alpha, beta, pair_ok);
      }
    }
  }
  ptx::cp_async_wait<0>();  // (only empty groups remain; exit with nothing in flight)
}

}  // namespace parallm::cuda::mm
