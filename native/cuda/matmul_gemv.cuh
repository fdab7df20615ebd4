// The GEMVs: M <= 16 rows of X [M,K] against W [N,K] (transB), the decode projections, bound by streaming
// W once. Two kernels add in the same order (the same K split over 8 warps, the same k permutation, the
// same tensor-core steps), so which one runs changes no bits:
//
// gemv_kernel, the register kernel (the default at every batch; launch_gemv_t): a block of 8 warps on 8 *
// HN W rows, each warp over its own contiguous K range, UNROLL chunks of 32 k loaded into registers
// before the first multiply; sums meet in shared memory. X is the 16-row A operand of mma.sync (rows >= M
// zeros), 8 W rows the B operand; a lane loads 8 consecutive k of its W row and of its two X rows, and
// inside a 32-wide chunk the k order is permuted identically for A and B (lane quad t holds k =
// 8t..8t+7), which a dot product does not see, so both loads stay 16 bytes.
//
// gemv_pipe_kernel, the pipelined kernel (matmulGemv 1..3; it measured slower, bench/RESULTS.md S7-5):
//   - W goes global -> shared memory by 16-byte cp.async into a per-warp ring of P items (an item is UC
//     chunks of 32 k for the warp's 8 W rows), P - 1 items in flight per warp, so ~(P-1) * UC * 512
//     bytes a warp and NW times that an SM without spending registers on them;
//   - one block per SM (the ring is ~128 KB), each owning a contiguous run of 8-row tiles (the tile
//     count split evenly over the blocks, so no SM gets a wave more than another); the warps split K and
//     the ring runs on across the block's tiles, so the stream never drains between tiles;
//   - each lane copies into shared memory exactly the 16 bytes it later reads, so a lane waits only on
//     its own copies (cp.async.wait_group) and no barrier guards the ring;
//   - a tile's per-warp partial sums meet in shared memory (double-buffered by tile parity, one
//     __syncthreads a tile) and one warp, in turn, adds them in warp order (deterministic) and stores.
//
// Both launch with PDL (pdl.cuh, launch_pdl): before griddepcontrol.wait they at most prefetch W into L2 (the
// register kernel by default not: matmul.cu's gemv_prefetch), except the register kernel's WPRE instance, which
// decode's frozen weights launch: it loads its first pass of W before the wait (matmul.cu's gemv_wpre).
// X is read straight from global memory (every block reads the same few rows, so those loads hit L1/L2).
// Both need K % 8 == 0 and 16-byte aligned X and W.
//
// NORM (rmsnorm_matmul, 16-bit): X's rows are RMS-normalized on the way in, h = x * rstd * nw rounded to
// T, so decode's norm needs no launch and no pass of its own. Each block computes the M rows' rstd
// (gemv_rows_rstd) with norm.cu's arrangement for a row (ntx threads, pack v = tid + i * ntx summed in
// order, warp butterfly, warps summed in order) and its formulas, so h has the bits rmsnorm (16-byte
// path) writes and the result is the one of rmsnorm then the GEMV.
//
// POST (matmul_residual_norm, the register kernel): after the store (C = X W^T + bias + C, the residual
// stream), C's rows normalized into hout (rmsnorm, or layernorm with nb), so the norm that reads the
// residual next needs no launch of its own. Each block's stores are fenced and counted on `counter`; the
// last block to finish rereads C past L1 (__ldcg) and normalizes it with norm.cu's arrangement and
// formulas (gemv_rows_stats, gemv_norm_pack: the bits norm.cu writes), then rearms the counter (0).
//
// SWIGLU (rmsnorm_matmul_swiglu): W holds 2N rows, the gate rows then the up rows; a block (register
// kernel) or an item (pipelined) carries both halves of its rows (n and N + n), and the epilogue writes
// C[M,N] = silu(gate) * up from the two products each rounded to T first, as silu_gate (activation.cu)
// computes it from a stored gate+up.
#pragma once
#include "matmul_common.cuh"
#include "mma_ptx.cuh"

namespace parallm::cuda::mm {

// The host emulation (native/cuda/emu) runs one block at a time on std::threads: function statics are its
// shared memory.
#ifdef PARALLM_GEMV_SMEM
#define PARALLM_GEMV_SHARED static
#else
#define PARALLM_GEMV_SHARED __shared__
#endif

// The norm in a GEMV's prologue: NORM_RMS (rmsnorm) or NORM_LN (layernorm), NORM_NONE without.
constexpr int NORM_NONE = 0, NORM_RMS = 1, NORM_LN = 2;

// The statistics of X's M rows as norm.cu's norm_kernel computes them (see the top): RMS the rstd into
// s_rstd[0..M); LN also the mean into s_mean[0..M), from a second pass over the centred values. s_part
// holds a row sum's warp partials [32]. Every thread of the block calls it (two barriers a pass).
template <typename T, bool LN, bool CG = false>
__device__ __forceinline__ void gemv_rows_stats(const T* __restrict__ X, int M, int K, float eps, int ntx,
                                                float* s_mean, float* s_rstd, float* s_part) {
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5, nvec = K / 8, nwarps = ntx / 32;
  const float inv_c = 1.f / float(K);
  // One pass: the row's sum of a * a (RMS), of a (LN's mean), or of (a - mean)^2, in norm_kernel's order
  // (pack v = tid + i * ntx, a warp butterfly, the warps' partials in order).
  auto row_pass = [&](const T* xr, int kind, float mean) {
    float acc = 0.f;
    if (tid < ntx)
      for (int v = tid; v < nvec; v += ntx) {
        Pack<T, 8> p;
        if constexpr (CG) {  // (POST: C as other blocks wrote it, past this SM's L1)
          const uint4 raw = __ldcg(reinterpret_cast<const uint4*>(xr + int64_t(v) * 8));
          memcpy(&p, &raw, 16);
        } else {
          p = *reinterpret_cast<const Pack<T, 8>*>(xr + int64_t(v) * 8);
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float a = f32(p.v[e]);
          if (kind == 0) acc += a * a;
          else if (kind == 1) acc += a;
          else {
            const float d = a - mean;
            acc += d * d;
          }
        }
      }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0 && warp < nwarps) s_part[warp] = acc;
    __syncthreads();
    float t = s_part[0];
    if (nwarps > 1) {
      t = 0.f;
      for (int i = 0; i < nwarps; ++i) t += s_part[i];
    }
    __syncthreads();  // every thread has read s_part before the next pass writes it
    return t;
  };
#pragma unroll 1
  for (int m = 0; m < M; ++m) {
    const T* xr = X + int64_t(m) * K;
    if constexpr (LN) {
      const float mean = row_pass(xr, 1, 0.f) * inv_c;
      const float q = row_pass(xr, 2, mean);
      if (tid == 0) s_mean[m] = mean, s_rstd[m] = rsqrtf(__fmaf_rn(q, inv_c, eps));
    } else {
      const float t = row_pass(xr, 0, 0.f);
      if (tid == 0) s_rstd[m] = rsqrtf(__fmaf_rn(t, inv_c, eps));
    }
  }
  __syncthreads();
}

// NORM: a lane's 8 k of X rows g and g + 8 (xr[0], xr[1]) normalized in place as norm_kernel writes
// them: t = (x - mean) * rstd (mean 0 for RMS), * w, + b (LN's beta), rounded to T.
template <typename T, bool LN>
__device__ __forceinline__ void gemv_norm_x(uint4 (&xr)[2], const T* __restrict__ nw, const T* __restrict__ nb,
                                            const float (&mean)[2], const float (&rs)[2]) {
  const Pack<T, 8> wv = *reinterpret_cast<const Pack<T, 8>*>(nw);
  Pack<T, 8> bv;
  if constexpr (LN) bv = *reinterpret_cast<const Pack<T, 8>*>(nb);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    Pack<T, 8> xe;  // (memcpy, not a cast: the bits change type without aliasing)
    memcpy(&xe, &xr[r], 16);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      float t = (f32(xe.v[e]) - mean[r]) * rs[r];
      t = __fmul_rn(t, f32(wv.v[e]));  // (rounded apart, as norm_kernel: no fma)
      if constexpr (LN) t = __fadd_rn(t, f32(bv.v[e]));
      xe.v[e] = from_f32<T>(t);
    }
    memcpy(&xr[r], &xe, 16);
  }
}

// POST: 8 elements of a row of C (read past L1) normalized into h as norm_kernel writes them.
template <typename T, bool LN>
__device__ __forceinline__ void gemv_norm_pack(const T* x, const T* __restrict__ w, const T* __restrict__ b, float mean,
                                               float rstd, T* __restrict__ h);
// The same from the 8 elements' bits in hand (raw).
template <typename T, bool LN>
__device__ __forceinline__ void gemv_norm_raw(const uint4& raw, const T* __restrict__ w, const T* __restrict__ b,
                                              float mean, float rstd, T* __restrict__ h) {
  Pack<T, 8> xe, o;
  memcpy(&xe, &raw, 16);
  const Pack<T, 8> wv = *reinterpret_cast<const Pack<T, 8>*>(w);
  Pack<T, 8> bv;
  if constexpr (LN) bv = *reinterpret_cast<const Pack<T, 8>*>(b);
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    float t = (f32(xe.v[e]) - mean) * rstd;
    t = __fmul_rn(t, f32(wv.v[e]));  // (rounded apart, as norm_kernel: no fma)
    if constexpr (LN) t = __fadd_rn(t, f32(bv.v[e]));
    o.v[e] = from_f32<T>(t);
  }
  *reinterpret_cast<Pack<T, 8>*>(h) = o;
}
template <typename T, bool LN>
__device__ __forceinline__ void gemv_norm_pack(const T* x, const T* __restrict__ w, const T* __restrict__ b, float mean,
                                               float rstd, T* __restrict__ h) {
  gemv_norm_raw<T, LN>(__ldcg(reinterpret_cast<const uint4*>(x)), w, b, mean, rstd, h);
}


// Split K's second pass with the norm that reads C next (matmul_residual_norm on the sm90 64-row tile:
// launch_sm90_t), a block a row of C. Its column pairs are summed over the slices and stored as
// splitk_reduce does (splitk_store2: the same bits), each thread's pairs at once with every load in flight;
// the stored row also goes to shared memory, from which the row's statistics (gemv_rows_stats, in
// norm_kernel's order) and h (gemv_norm_raw: norm.cu's bits) are computed. One launch where decode at
// batch 16-64 ran two (the reduce, then the norm: ~3.5 + 5 µs, S13-1); the first form, which read the row
// back from memory twice after storing it, took 11.8 µs (S14-1). 16-bit T, N % 8 == 0, N <= kReduceNormMax,
// C, h, w and b 16-byte aligned; blockDim.x a multiple of 32, at least ntx (the norm's threads for a row of
// N, gemvp_norm_threads).
constexpr int kReduceNormMax = 8192;
template <typename T, bool LN>
__global__ void __launch_bounds__(512)
splitk_reduce_norm(const float* __restrict__ ws, int splits, const T* __restrict__ bias, T* __restrict__ C, int M,
                   int N, float alpha, float beta, int pair_ok, const T* __restrict__ w, const T* __restrict__ b,
                   float eps, int ntx, T* __restrict__ h) {
  PARALLM_TRACE_SCOPE(ReduceNorm);
  static_assert(sizeof(T) == 2, "16-bit rows: a pack of 8 is one 16-byte load");
  pdl_begin();  // launched as splitk_reduce is (launch_sm90_t): the partials are read after the wait
  PARALLM_GEMV_SHARED float s_norm[64];  // the row's mean [0], rstd [16], a row sum's warp partials [32..64)
  PARALLM_GEMV_SHARED __align__(16) T s_row[kReduceNormMax];  // the row as stored
  const int64_t row = blockIdx.x;
  for (int v = int(threadIdx.x); v < N / 8; v += int(blockDim.x)) {
    float sum[8];
    splitk_sum8(ws, splits, int64_t(M) * N, row * N + int64_t(v) * 8, sum);
    float2 y[4];
#pragma unroll
    for (int q = 0; q < 4; ++q)
      y[q] = store2(C, bias, M, N, row, int64_t(v) * 8 + 2 * q, sum[2 * q], sum[2 * q + 1], alpha, beta, pair_ok);
    Pack<T, 8> o;
#pragma unroll
    for (int q = 0; q < 4; ++q) o.v[2 * q] = from_f32<T>(y[q].x), o.v[2 * q + 1] = from_f32<T>(y[q].y);
    *reinterpret_cast<Pack<T, 8>*>(s_row + v * 8) = o;
  }
  __syncthreads();  // the stored row in shared memory before any thread reads another's part
  gemv_rows_stats<T, LN, false>(s_row, 1, N, eps, ntx, s_norm, s_norm + 16, s_norm + 32);
  const float mean = LN ? s_norm[0] : 0.f, rstd = s_norm[16];
  for (int v = int(threadIdx.x); v < N / 8; v += int(blockDim.x))
    gemv_norm_raw<T, LN>(*reinterpret_cast<const uint4*>(s_row + v * 8), w + v * 8, LN ? b + v * 8 : nullptr, mean,
                         rstd, h + row * N + int64_t(v) * 8);
}

// SWIGLU's store: C[row, col] = silu(gate) * up, each product rounded to T first (s[0]: gate, s[1]: up;
// e: the mma.sync accumulator element, rows g / g + 8, columns col / col + 1).
template <typename T>
__device__ __forceinline__ void gemv_store_swiglu(T* __restrict__ C, const float (&s)[2][4], int M, int N, int g,
                                                  int col) {
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), cc = col + (e & 1);
    if (row < M && cc < N) {
      const float gate = f32(from_f32<T>(s[0][e])), up = f32(from_f32<T>(s[1][e]));
      C[int64_t(row) * N + cc] = from_f32<T>(gemvp_silu(gate) * up);
    }
  }
}

// GELU's store: C = gelu(s + bias) with s + bias rounded to T first, as linear (store2) then gelu
// (activation.cu, gelu_tanh in common.cuh) compute it (alpha 1, beta 0).
template <typename T>
__device__ __forceinline__ void gemv_store_gelu(T* __restrict__ C, const T* __restrict__ bias, const float (&s)[4],
                                                int M, int N, int g, int col) {
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const int row = g + (e >= 2 ? 8 : 0), cc = col + (e & 1);
    if (row < M && cc < N) {
      float r = 1.f * s[e];
      if (bias) r += f32(bias[cc]);
      C[int64_t(row) * N + cc] = from_f32<T>(gelu_tanh(f32(from_f32<T>(r))));
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The register kernel.
constexpr int GEMV_WARPS = 8;

// Its W load. SEL 1: chosen per call between the L2::256B-hinted load and the plain one
// (PARALLM_GEMV_L2HINT=0 picks plain; matmul.cu); SEL 2: the hinted load always; SEL 0: the plain load
// always. The run-time choice costs registers (76 against 56 for one set of rows: ptxas -v), which is why
// it lost to the plain load at N = 4096 (S7-6: three blocks an SM left a second wave of 512) and why SEL 2
// beats both there (S13-4); launch_register_gemv picks by N.
template <int SEL>
__device__ __forceinline__ uint4 ld_w16(const void* p, int hint) {
  if constexpr (SEL == 2) return ptx::ld_stream16_l2_256(p);
  else if constexpr (SEL == 1) return hint ? ptx::ld_stream16_l2_256(p) : ptx::ld_stream16(p);
  else return ptx::ld_stream16(p);
}


// The epilogue: EPI_STORE (alpha, beta, bias: store2), EPI_SWIGLU or EPI_GELU (see the top).
constexpr int EPI_STORE = 0, EPI_SWIGLU = 1, EPI_GELU = 2;
// POST LN: the most elements of C (M * N) its last block holds in shared memory (8 KB of bf16: GPT-2's rows
// up to 5 of 768); more are read from L2 for each pass.
constexpr int kPostRows = 4096;

// HN sets of 8 W rows a block: rows n0 + 8h + g; with EPI_SWIGLU (HN = 2S) sets h < S the gate rows n0 + 8h + g
// and sets S + h the up rows N + n0 + 8h + g. NORM as at the top (nw, nb, eps, ntx: the norm's weight, LN's bias,
// epsilon and threads a row). POST (NORM_RMS / NORM_LN, with NORM_NONE and EPI_STORE) as at the top: nw,
// nb, eps and ntx are then the post-norm's (ntx for a row of N), hout its output, counter the block count.
// XS (one row of X, HN == 1, no prologue norm or activation; K <= kXsMaxK): X's row is staged in shared memory once
// after the PDL wait and each chunk's X read from there at its arithmetic, so a pass holds only W's chunks in
// registers: unroll 8 at the registers unroll 4 takes otherwise, twice the bytes in flight (matmul.cu's gemv_xs).
// The same products in the same order: the same bits.
constexpr int kXsMaxK = 11008;
template <typename T, int HN, int UNROLL, int SEL = 1, int NORM = NORM_NONE, int EPI = EPI_STORE,
          int POST = NORM_NONE, bool WPRE = false, bool XS = false>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
gemv_kernel(const T* __restrict__ X, const T* __restrict__ W, const T* __restrict__ bias, T* __restrict__ C, int M,
            int N, int K, float alpha, float beta, int pair_ok, int l2hint = 0, const T* __restrict__ nw = nullptr,
            float eps = 0.f, int ntx = 32, const T* __restrict__ nb = nullptr, int pf16 = 0,
            T* __restrict__ hout = nullptr, unsigned* __restrict__ counter = nullptr, int late_trigger = 0) {
  PARALLM_TRACE_SCOPE(Gemv);
  constexpr bool SWIGLU = EPI == EPI_SWIGLU;
  static_assert(!SWIGLU || HN % 2 == 0, "SwiGLU: sets [0, HN/2) the gate rows, [HN/2, HN) the up rows");
  constexpr int S = SWIGLU ? HN / 2 : HN;  // 8-row sets of C's columns a block
  static_assert(EPI != EPI_GELU || HN == 1, "GELU: one set of rows");
  static_assert(POST == NORM_NONE || (NORM == NORM_NONE && EPI == EPI_STORE), "POST: after a plain store only");
  static_assert(!XS || (HN == 1 && NORM == NORM_NONE && EPI == EPI_STORE), "XS: one set of rows, a plain product");
  PARALLM_GEMV_SHARED __align__(16) T s_x[XS ? kXsMaxK : 8];  // XS: X's row (M == 1)
  PARALLM_GEMV_SHARED float red[GEMV_WARPS][HN][4][32];
  // NORM / POST: the rows' mean [16] and rstd [16], a row sum's warp partials [32]
  PARALLM_GEMV_SHARED float s_norm[NORM != NORM_NONE || POST != NORM_NONE ? 64 : 1];
  PARALLM_GEMV_SHARED int s_last[1];  // POST: this block finished last
  // POST LN: C's rows read once by the last block (when M * N <= kPostRows), for the statistics and h
  PARALLM_GEMV_SHARED __align__(16) T s_rows[POST == NORM_LN ? kPostRows : 8];
#ifdef PARALLM_GEMV_SMEM
  // The host emulation: these statics outlive a block and start zeroed, where a GPU's shared memory holds
  // whatever was there; poison them each block so a read of an unwritten entry shows.
  if (threadIdx.x == 0) memset(red, 0xff, sizeof red), memset(s_norm, 0xff, sizeof s_norm);
  __syncthreads();
#endif
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * 8 * S;
  const int nchunks = (K + 31) / 32;
  const int per = (nchunks + GEMV_WARPS - 1) / GEMV_WARPS;
  const int c_begin = warp * per, c_end = min(c_begin + per, nchunks);
  // Set h's row r (0..7): its column of C, and its row of W.
  auto col_of = [&](int h, int r) { return n0 + 8 * (h % S) + r; };
  auto wrow_of = [&](int h, int r) { return (h / S) * N + n0 + 8 * (h % S) + r; };

  bool wv[HN];
  const T* wp[HN];
#pragma unroll
  for (int h = 0; h < HN; ++h) {
    wv[h] = col_of(h, g) < N;
    wp[h] = W + (int64_t)(wv[h] ? wrow_of(h, g) : 0) * K;
  }
  const bool xv0 = g < M, xv1 = g + 8 < M;
  const T* x0 = X + (int64_t)(xv0 ? g : 0) * K;
  const T* x1 = X + (int64_t)(xv1 ? g + 8 : 0) * K;

  // WPRE (decode's frozen weights: matmul.cu's gemv_wpre): this warp's first pass of W into registers (w0) before
  // the PDL wait, outside pdl.cuh's contract on the caller's word that the kernel it can overlap writes no weight.
  const uint4 z = make_uint4(0, 0, 0, 0);
  [[maybe_unused]] uint4 w0[WPRE ? UNROLL : 1][HN];
  if constexpr (WPRE) {
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int k = (c_begin + u) * 32 + 8 * t;
      const bool in = (c_begin + u < c_end) && k < K;
#pragma unroll
      for (int h = 0; h < HN; ++h) w0[u][h] = (in && wv[h]) ? ld_w16<SEL>(wp[h] + k, l2hint) : z;
    }
  }
  // PDL (pdl.cuh): let the next kernel start (at once, or with late_trigger after the wait); with pf16 >= 0 ask L2
  // for this warp's first pass of W (lane h*8 + r: set h, row r, UNROLL chunks from c_begin), or that many
  // sixteenths of its K range if more (gemv_prefetch in matmul.cu: none by default), while the kernel before
  // finishes; then wait for its output.
  if (!late_trigger) pdl_trigger();
  if (pf16 >= 0 && lane < 8 * HN && c_begin < c_end) {  // (pf16 -1: none)
    const int h = lane / 8, r = lane % 8;
    if (col_of(h, r) < N) {
      const int span = max(UNROLL, ((c_end - c_begin) * pf16 + 15) / 16);
      const int k0 = c_begin * 32, k1 = min(min(c_begin + span, c_end) * 32, K);
      prefetch_l2(W + int64_t(wrow_of(h, r)) * K + k0, uint32_t(k1 - k0) * uint32_t(sizeof(T)));
    }
  }
  pdl_wait();
  if (late_trigger) pdl_trigger();
  if constexpr (XS) {
    for (int i = int(threadIdx.x) * 8; i < K; i += int(blockDim.x) * 8)
      *reinterpret_cast<uint4*>(s_x + i) = __ldg(reinterpret_cast<const uint4*>(X + i));
    __syncthreads();
  }

  float mean[2] = {0.f, 0.f}, rs[2] = {1.f, 1.f};  // NORM: X rows g and g + 8
  if constexpr (NORM != NORM_NONE) {
    gemv_rows_stats<T, NORM == NORM_LN>(X, M, K, eps, ntx, s_norm, s_norm + 16, s_norm + 32);
    // (s_norm's means are written for LN only: RMS keeps mean 0)
    if (xv0) rs[0] = s_norm[16 + g];
    if (xv1) rs[1] = s_norm[16 + g + 8];
    if constexpr (NORM == NORM_LN) {
      if (xv0) mean[0] = s_norm[g];
      if (xv1) mean[1] = s_norm[g + 8];
    }
  }

  float acc[HN][4] = {};
  // One pass: UNROLL chunks from c of W (wr) and X (xr) into the warp's sums.
  auto pass = [&](int c, const uint4 (&wr)[UNROLL][HN], uint4 (&xr)[UNROLL][2]) {
    // NORM: normalized only after every W load of the step is issued; done in the loads' loop, each chunk's
    // arithmetic waited for its X load before the next chunk's W load went out (S8-2: 7B decode 203 -> 141).
    if constexpr (NORM != NORM_NONE) {
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int k = (c + u) * 32 + 8 * t;
        if ((c + u < c_end) && k < K && (xv0 || xv1)) gemv_norm_x<T, NORM == NORM_LN>(xr[u], nw + k, nb + k, mean, rs);
      }
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      uint32_t a0[4] = {xr[u][0].x, xr[u][1].x, xr[u][0].y, xr[u][1].y};
      uint32_t a1[4] = {xr[u][0].z, xr[u][1].z, xr[u][0].w, xr[u][1].w};
#pragma unroll
      for (int h = 0; h < HN; ++h) {
        ptx::MmaOp<T>::run(acc[h], a0, wr[u][h].x, wr[u][h].y);
        ptx::MmaOp<T>::run(acc[h], a1, wr[u][h].z, wr[u][h].w);
      }
    }
  };
  int c_next = c_begin;
  if constexpr (WPRE) {  // the first pass, its W loaded before the wait
    if (c_next < c_end) {
      uint4 xr[UNROLL][2];
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int k = (c_next + u) * 32 + 8 * t;
        const bool in = (c_next + u < c_end) && k < K;
        if constexpr (XS) {
          xr[u][0] = (in && xv0) ? *reinterpret_cast<const uint4*>(s_x + k) : z;
          xr[u][1] = z;
        } else {
          xr[u][0] = (in && xv0) ? __ldg(reinterpret_cast<const uint4*>(x0 + k)) : z;
          xr[u][1] = (in && xv1) ? __ldg(reinterpret_cast<const uint4*>(x1 + k)) : z;
        }
      }
      pass(c_next, w0, xr);
      c_next += UNROLL;
    }
  }
  for (int c = c_next; c < c_end; c += UNROLL) {
    uint4 wr[UNROLL][HN], xr[UNROLL][2];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      int k = (c + u) * 32 + 8 * t;
      bool in = (c + u < c_end) && k < K;  // K % 8 == 0 here: a lane's 8 k are all in or all out
#pragma unroll
      for (int h = 0; h < HN; ++h) wr[u][h] = (in && wv[h]) ? ld_w16<SEL>(wp[h] + k, l2hint) : z;
      if constexpr (!XS) {
        xr[u][0] = (in && xv0) ? __ldg(reinterpret_cast<const uint4*>(x0 + k)) : z;
        xr[u][1] = (in && xv1) ? __ldg(reinterpret_cast<const uint4*>(x1 + k)) : z;
      }
    }
    if constexpr (XS) {  // (after every W load of the pass is out: X from shared memory, row 0 only)
#pragma unroll
      for (int u = 0; u < UNROLL; ++u) {
        const int k = (c + u) * 32 + 8 * t;
        xr[u][0] = ((c + u < c_end) && k < K && xv0) ? *reinterpret_cast<const uint4*>(s_x + k) : z;
        xr[u][1] = z;
      }
    }
    pass(c, wr, xr);
  }
#pragma unroll
  for (int h = 0; h < HN; ++h)
#pragma unroll
    for (int i = 0; i < 4; ++i) red[warp][h][i][lane] = acc[h][i];
  __syncthreads();
  if constexpr (SWIGLU) {
    if (threadIdx.x < 32 * S) {  // warp hs: gate set hs with up set S + hs
      const int hs = threadIdx.x / 32;
      float s[2][4] = {};
      for (int w = 0; w < GEMV_WARPS; ++w)
#pragma unroll
        for (int u = 0; u < 2; ++u)
#pragma unroll
          for (int i = 0; i < 4; ++i) s[u][i] += red[w][u * S + hs][i][lane];
      gemv_store_swiglu(C, s, M, N, g, n0 + 8 * hs + 2 * t);
    }
  } else if (threadIdx.x < 32 * HN) {
    const int h = threadIdx.x / 32;
    float s[4] = {};
#pragma unroll
    for (int w = 0; w < GEMV_WARPS; ++w)
#pragma unroll
      for (int i = 0; i < 4; ++i) s[i] += red[w][h][i][lane];
    // c0,c1: X row g, W rows (cols of C) n0 + 8h + 2t, +1; c2,c3: X row g + 8.
    int col = n0 + 8 * h + 2 * t;
    if constexpr (EPI == EPI_GELU) {
      gemv_store_gelu(C, bias, s, M, N, g, col);
    } else {
      store2(C, bias, M, N, g, col, s[0], s[1], alpha, beta, pair_ok);
      store2(C, bias, M, N, g + 8, col, s[2], s[3], alpha, beta, pair_ok);
    }
  }
  if constexpr (POST != NORM_NONE) {
    __threadfence();  // this block's stores of C, device-wide, before it is counted
    __syncthreads();
    if (threadIdx.x == 0) s_last[0] = atomicAdd(counter, 1u) == gridDim.x - 1;
    __syncthreads();
    if (s_last[0]) {
      __threadfence();
      const int packs = N / 8;
      if (POST == NORM_LN && M * N <= kPostRows) {
        // C's rows into shared memory with one read (all packs in flight), then LN's two statistics passes
        // and h from there: one trip to L2 where reading C for each pass took three, each waiting on the
        // last. The same values in the same order: the same bits. (RMS, one pass fewer, keeps the reads:
        // its kernels are LLaMA's batch-1 projections, whose code this would change untimed.)
        for (int i = int(threadIdx.x); i < M * packs; i += int(blockDim.x))
          *reinterpret_cast<uint4*>(s_rows + i * 8) = __ldcg(reinterpret_cast<const uint4*>(C + int64_t(i) * 8));
        __syncthreads();
        gemv_rows_stats<T, POST == NORM_LN, false>(s_rows, M, N, eps, ntx, s_norm, s_norm + 16, s_norm + 32);
        for (int i = int(threadIdx.x); i < M * packs; i += int(blockDim.x)) {
          const int m = i / packs, v = i % packs;
          gemv_norm_raw<T, POST == NORM_LN>(*reinterpret_cast<const uint4*>(s_rows + i * 8), nw + v * 8, nb + v * 8,
                                            POST == NORM_LN ? s_norm[m] : 0.f, s_norm[16 + m], hout + int64_t(i) * 8);
        }
      } else {
        gemv_rows_stats<T, POST == NORM_LN, true>(C, M, N, eps, ntx, s_norm, s_norm + 16, s_norm + 32);
        for (int i = int(threadIdx.x); i < M * packs; i += int(blockDim.x)) {
          const int m = i / packs, v = i % packs;
          const int64_t o = int64_t(m) * N + int64_t(v) * 8;
          gemv_norm_pack<T, POST == NORM_LN>(C + o, nw + v * 8, nb + v * 8, POST == NORM_LN ? s_norm[m] : 0.f,
                                             s_norm[16 + m], hout + o);
        }
      }
      if (threadIdx.x == 0) *counter = 0u;  // rearmed for the next call (a graph replays it)
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The pipelined kernel.
// Warps a block, chunks (32 k) an item, items in a warp's ring.
constexpr int GEMVP_WARPS = 8, GEMVP_UC = 4, GEMVP_P = 8;

// The ring, the tile sums [2][NW][H][4][32], and (NORM) the rows' rstd [16] and a row sum's warp partials
// [32]. H: 2 with SWIGLU (gate and up sums), else 1.
template <int NW, int UC, int P, int H = 1>
constexpr size_t gemvp_smem() {
  return size_t(NW) * P * H * UC * 32 * 16 + size_t(2) * NW * H * 4 * 32 * sizeof(float) + 48 * sizeof(float);
}


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
  PARALLM_TRACE_SCOPE(GemvPipe);
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
    float* s_rstd = red + 2 * NW * H * 4 * 32;  // [16], then a row sum's warp partials [32]
    gemv_rows_stats<T, false>(X, M, K, eps, ntx, nullptr, s_rstd, s_rstd + 16);
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
        if constexpr (NORM)
          if (in && (xv0 || xv1)) gemv_norm_x<T, false>(xr[u], nw + k, nullptr, {0.f, 0.f}, {rs0, rs1});
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
        gemv_store_swiglu(C, s, M, N, g, col);
      } else {
        store2(C, bias, M, N, g, col, s[0][0], s[0][1], alpha, beta, pair_ok);
        store2(C, bias, M, N, g + 8, col, s[0][2], s[0][3], alpha, beta, pair_ok);
      }
    }
  }
  ptx::cp_async_wait<0>();  // (only empty groups remain; exit with nothing in flight)
}

}  // namespace parallm::cuda::mm
