// Hopper (sm_90a) causal prefill for bf16, D = 64 or 128 (included by attention.cu; the plan is
// bench/ATTENTION-NOTES.md): wgmma + TMA, warp-specialized, persistent. A work item is BM = 128 query
// rows of one (b, h); a block (one a multiprocessor) takes items in turn and runs 3 warpgroups:
// warpgroup 0 is the producer (one thread issues every TMA load: an item's Q, then its K and V tiles of BN = 128 keys through a ring of STAGES stages), warpgroups 1 and 2 are consumers
// owning 64 query rows each. Per K/V tile a consumer computes S = Q K^T (wgmma m64n128k16, both operands
// from shared memory), masks and runs the online softmax on S in registers (log2 units, scale*log2e
// folded in, ex2.approx), re-packs P to bf16 in registers and accumulates O += P V (wgmma m64nDk16, A = P
// from registers, B = V from shared memory). Key tiles wholly above the diagonal are never loaded; only
// tiles that reach past a row's last key (the diagonal ones, and the tile holding key Tk - 1) are
// masked. Grouped-query: the K/V maps' head coordinate is h / (Hq / Hkv). Tile edges (Tq or Tk not a
// multiple of 128) come from the TMA's zero fill; the mask excludes keys >= Tk. O / l is stored from
// registers as bf16; with lse non-null (attention_forward) each row's natural-log logsumexp is written
// too, as prefill_mma writes it. Device code exists only in the sm_90a image (PARALLM_SM90A); the host
// launches it only on compute capability 9.0 (prefill_any).
//
// Layouts (checked against the PTX ISA, 9.7.15.5.1 "Register Fragments and Shared Memory Matrix
// Layouts" and 9.7.15.5.1.2 "Shared Memory Matrix Layout"; the descriptors are those of matmul_sm90.cuh,
// verified there on a GPU for K-major and N-major operands):
//
//   Shared memory, every tile in 64-dim boxes of 128-byte rows written by the TMA with the 128-byte
//   swizzle (16-byte chunk c of row r stored at chunk c ^ (r % 8)), each box 1024-byte aligned:
//     Q   [D/64 boxes][BM rows][64 d]  one box = 128 x 128 B = 16 KB; consumer cw's rows at +64 cw rows
//                                      (+8192 B) in every box.
//     K   [D/64 boxes][BN keys][64 d]  16 KB a box.
//     V   [D/64 boxes][BN keys][64 d]  16 KB a box.
//   S = Q K^T, m64n128k16, k-step kk (16 dims) of D/16:
//     A = Q, K-major: start = Q box kk/4 + cw*8192 + (kk%4)*32 B; LBO 16 (unused with a swizzle), SBO
//       1024 (8-row groups); imm-trans-a 0.
//     B = K, K-major (stored [key][d], i.e. B^T row-major): start = K box kk/4 + (kk%4)*32 B; LBO 16,
//       SBO 1024; imm-trans-b 0.
//   O += P V, m64nDk16, k-step kk (16 keys) of BN/16:
//     A = P from registers (below).
//     B = V, N-major (stored [key][d]: N = d contiguous): start = V box 0 + kk*2048 B (16 rows of 128 B);
//       LBO = 16 KB (from d 0-63 to d 64-127: the next box), SBO 1024 (8-key groups); imm-trans-b 1.
//   These are the ISA's canonical 128-byte-swizzle layouts (9.7.15.5.1.2.1.3; bf16 elements, T = 8):
//   K-major ((8,m),(T,2k)):((8T,SBO),(1,T)): rows 128 B apart, 8-row groups SBO apart, a k16 step the
//   row's 32 contiguous bytes from the start; MN-major ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)): 64
//   contiguous m/n, 64-wide chunks LBO apart, k rows 128 B apart, 8-k groups SBO apart. The swizzle
//   (16-byte chunk bits 4-6 XOR row bits 7-9 of the address) is the TMA's. The descriptor's base-offset
//   field stays 0: every start is a box start plus less than 128 B or plus a multiple of 1024, so bits
//   7-9 of each address are its row within the 8-row atom, as the TMA wrote it.
//
//   Register fragments (PTX ISA 9.7.15.5.1.1.1, figures "WGMMA .m64nNk16 register fragment layout for
//   matrix A / accumulator D"; the A mapping is also how public RS-form code, e.g. ThunderKittens, feeds a
//   bf16-converted accumulator tile to the next wgmma; thread = 32 w + lane of the warpgroup, g = lane / 4,
//   t = lane % 4):
//     Accumulator (f32, N/2 registers): d[4j + 2h + c] = row 16w + g + 8h, column 8j + 2t + c
//       (j < N/8, h, c in {0, 1}); the same layout matmul_sm90.cuh's epilogue relies on.
//     A in registers (bf16, 4 x b32): warp w holds rows 16w..16w+15 as mma.sync m16n8k16's A fragment:
//       a[0] = (row g, cols 2t, 2t+1), a[1] = (row g+8, cols 2t, 2t+1), a[2] = (row g, cols 8+2t, 9+2t),
//       a[3] = (row g+8, cols 8+2t, 9+2t), low half = lower column.
//     So the k16 slice kk of S (columns 16kk..16kk+15: accumulators 8kk..8kk+7) is the A operand of
//     k-step kk as a[r] = bf16x2(p[8kk + 2r], p[8kk + 2r + 1]), P never leaving registers (as in
//     prefill_mma, where two n8 accumulator tiles make one k16 A fragment).
//
// Synchronization: per stage, full_k and full_v mbarriers (the producer's expect_tx arrival plus the TMA
// bytes; S starts as soon as K has landed) and empty_k and empty_v mbarriers (lane 0 of each of the 8
// consumer warps arrives once its wgmmas reading the K, or the V, have completed: the next K tile loads
// while this stage's V is still in use); Q has its own barrier. A consumer whose 64 rows see no key of a
// tile (the block's last, for consumer 0, where Tk - Tq is not a multiple of 128) computes it anyway,
// masked to nothing: a branch around a wgmma makes ptxas serialize them all (see the consumer loop).
//
// Variants (template flags): OVL, FlashAttention-3's intra-warpgroup overlap (tile kt's softmax running
// while tile kt-1's P V is in flight), else each tile's S, softmax and P V in turn; PP, FlashAttention-3's
// inter-warpgroup ping-pong: two named barriers hand the consumers turns at issuing their GEMMs (consumer
// 0 first), so one's softmax runs while the other's GEMMs keep the tensor cores busy. Until the ninth
// session both ran with every wgmma serialized by ptxas (branches around them, and P written while a
// P V was in flight); now no variant has a C7513 / C7518 / C7520 warning (check with -Xptxas -v).
// The grid is persistent (the next item's Q and first tiles load while this one's last P V runs and O
// is stored: S9-8 measured 580 → 597 TFLOP/s at T8192, 423 → 461 at T2048). Not done yet: the epilogue
// through shared memory and the TMA.
#pragma once
#include <cuda.h>
#include <cuda_bf16.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <type_traits>
#include <cstdint>

#include "attention_prefill_mma.cuh"  // ex2, pack_bf16
#include "check.h"
#include "common.cuh"
#include "device_attr.cuh"
#include "sm90_common.cuh"

namespace parallm::cuda::attn_detail {

template <int D>
struct PrefillSm90 {
  static_assert(D == 64 || D == 128, "the sm90 prefill has tiles for D = 64 and 128");
  static constexpr int BM = 128, BN = 128, THREADS = 384;
  // D = 128: Q 32 KB + 2 x (K 32 KB + V 32 KB) = 160 KB. D = 64: 16 KB + 3 x 32 KB = 112 KB.
  static constexpr int STAGES = D == 128 ? 2 : 3;
  static constexpr int BOXES = D / 64;                         // 64-dim boxes a tile
  static constexpr int Q_BOX = BM * 128, KV_BOX = BN * 128;     // bytes of one box
  static constexpr int Q_BYTES = BOXES * Q_BOX, KV_BYTES = BOXES * KV_BOX;
  static constexpr int STAGE_BYTES = 2 * KV_BYTES;              // K then V
  // Tiles + room to align them to 1024 bytes (the swizzle atom) + the mbarriers (4 a stage, Q's full
  // and empty).
  static constexpr size_t SMEM = size_t(Q_BYTES) + size_t(STAGES) * STAGE_BYTES + 1024 + (4 * STAGES + 2) * 8;
};

#ifdef PARALLM_SM90A
using sm90::mbar_arrive;
using sm90::mbar_expect_tx;
using sm90::mbar_init;
using sm90::mbar_wait;
using sm90::s90_desc;
using sm90::s90_smem;
using sm90::tma_load_4d;

// The wgmma shapes this kernel uses, with their accumulator operands spelled out (text written by a
// script, as matmul_wgmma_op.cuh's). scale-d is a predicate: `accumulate` 0 gives d = A B.

// d (m64n128, f32) = A B (+ d when accumulate): A and B K-major in shared memory.
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(accumulate));
}

// d (m64n128, f32) += A B: A (bf16) in registers, B N-major in shared memory (imm-trans-b 1).
__device__ __forceinline__ void wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

// d (m64n64, f32) += A B: A (bf16) in registers, B N-major in shared memory (imm-trans-b 1).
__device__ __forceinline__ void wgmma_rs_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
// Registers a wgmma reads or writes, pinned in place: before the fence, so the compiler cannot sink
// their last writes below it; after the wait, so it cannot hoist their reads above it (the wgmma
// writes land asynchronously).
template <int N>
__device__ __forceinline__ void pin(float (&x)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(x[i])::"memory");
}
template <int N>
__device__ __forceinline__ void pin(uint32_t (&x)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int r = 0; r < 4; ++r) asm volatile("" : "+r"(x[i][r])::"memory");
}
#endif

// A consumer's online softmax of one tile, in place: sc (S, the thread's two rows) becomes P; m and l
// (log2 units; l a per-lane partial sum) move on, alpha is the factor O and l take. The scale rides in
// the exponent's fma, as FlashAttention does. Accumulator x holds row r0 + 8 ((x >> 1) & 1), key n0 +
// 8 (x >> 2) + 2 t4 + (x & 1). MASK (keys past a row's last, causal, or past Tk) is a template argument
// so the unmasked tiles (all but the diagonal's and the last) carry no per-element test.
template <int NS, bool MASK>
__device__ __forceinline__ void prefill_softmax(float (&sc)[NS], float (&mr)[2], float (&lr)[2], float (&alpha)[2],
                                                float sl2, int n0, int t4, int r0, int off, int Tk) {
  auto masked = [&](int x) {
    const int key = n0 + 8 * (x >> 2) + 2 * t4 + (x & 1), i = r0 + (((x >> 1) & 1) << 3);
    return key > i + off || key >= Tk;
  };
  // The row maxima of the raw scores, scaled once: with sl2 > 0 (the host sends no other scale here)
  // rounding is monotonic, so max(s) sl2 rounds to the max of the rounded s sl2, bit for bit.
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int x = 0; x < NS; ++x) {
    const float v = MASK && masked(x) ? -INFINITY : sc[x];
    mx[(x >> 1) & 1] = fmaxf(mx[(x >> 1) & 1], v);
  }
  float nb[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mr[r], mx[r] * sl2);
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float base = mx[r] == -INFINITY ? 0.f : mx[r];  // nothing seen yet: keep zeros, avoid inf - inf
    alpha[r] = ex2(mr[r] - base);
    nb[r] = -base;
    mr[r] = mx[r];
    lr[r] *= alpha[r];  // per-lane partial sums; the quad is summed once at the end
  }
#pragma unroll
  for (int x = 0; x < NS; x += 2) {  // a pair: one row, two keys
    const int r = (x >> 1) & 1;
    float p0 = ex2(fmaf(sc[x], sl2, nb[r])), p1 = ex2(fmaf(sc[x + 1], sl2, nb[r]));
    if (MASK) {
      if (masked(x)) p0 = 0.f;
      if (masked(x + 1)) p1 = 0.f;
    }
    lr[r] += p0 + p1;
    sc[x] = p0, sc[x + 1] = p1;
  }
}

// OVL: FlashAttention-3's intra-warpgroup overlap. A consumer issues tile kt's S = Q K^T, then tile
// kt-1's P V, and runs tile kt's softmax while the P V is in flight (wgmma.wait_group 1 waits for S
// alone); O is rescaled, and the new P packed to bf16 from S's registers, once that P V has landed
// (the P V in flight reads the last P). Without OVL each tile's S, softmax and P V run in turn.
// PP's turns: consumer cw waits on barrier kPpBar + cw (its 128 threads and the other consumer's arrival:
// 256), then lets the other go on kPpBar + 1 - cw once its GEMMs are issued. (Ids 1 and 2 are wg_sync's.)
constexpr int kPpBar = 8;
__device__ __forceinline__ void pp_wait(int cw) { asm volatile("bar.sync %0, 256;" ::"r"(kPpBar + cw) : "memory"); }
__device__ __forceinline__ void pp_pass(int cw) { asm volatile("bar.arrive %0, 256;" ::"r"(kPpBar + 1 - cw) : "memory"); }
// The same, and an mbarrier arrival, as predicated instructions (see the consumer loop: no branches).
__device__ __forceinline__ void pp_wait_if(int cw, bool p) {
  asm volatile("{\n.reg .pred q;\nsetp.ne.b32 q, %1, 0;\n@q bar.sync %0, 256;\n}\n" ::"r"(kPpBar + cw), "r"(int(p)) : "memory");
}
__device__ __forceinline__ void pp_pass_if(int cw, bool p) {
  asm volatile("{\n.reg .pred q;\nsetp.ne.b32 q, %1, 0;\n@q bar.arrive %0, 256;\n}\n" ::"r"(kPpBar + 1 - cw), "r"(int(p)) : "memory");
}
__device__ __forceinline__ void mbar_arrive_if(uint32_t bar, bool p) {
  asm volatile("{\n.reg .pred q;\nsetp.ne.b32 q, %1, 0;\n@q mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(bar), "r"(int(p)) : "memory");
}

template <int D, bool LSE, bool OVL, bool PP>
__global__ void __launch_bounds__(384, 1)
prefill_sm90(const __grid_constant__ CUtensorMap tmQ, const __grid_constant__ CUtensorMap tmK,
             const __grid_constant__ CUtensorMap tmV, __nv_bfloat16* __restrict__ out, float* __restrict__ lse,
             int B, int Tq, int Tk, int Hq, int Hkv, float sl2, int nmb) {
#ifdef PARALLM_SM90A
  using P = PrefillSm90<D>;
  constexpr int BM = P::BM, BN = P::BN, ST = P::STAGES, BOXES = P::BOXES;
  constexpr int NS = BN / 2, NO = D / 2, KS = BN / 16;  // S, O accumulators and P fragments a thread
  extern __shared__ uint8_t ps90_raw[];
  // Align in the shared address space (the swizzle pattern follows shared addresses).
  const uint32_t raw_s = s90_smem(ps90_raw);
  const uint32_t sQ = raw_s + ((1024 - (raw_s & 1023)) & 1023);
  const uint32_t sKV = sQ + P::Q_BYTES;  // stage s: K at sKV + s * STAGE_BYTES, V KV_BYTES after it
  const uint32_t bars = sKV + ST * P::STAGE_BYTES;
  auto full_k = [&](int s) { return bars + 8u * s; };
  auto full_v = [&](int s) { return bars + 8u * (ST + s); };
  auto empty_k = [&](int s) { return bars + 8u * (2 * ST + s); };
  auto empty_v = [&](int s) { return bars + 8u * (3 * ST + s); };
  const uint32_t qbar = bars + 8u * (4 * ST), qempty = qbar + 8u;

  // Persistent: the grid is at most one block an SM, and block c takes work items c, 2G - 1 - c, 2G + c,
  // ... (G blocks; a snake, so each block's sum of tiles comes out even). Item w is query tile
  // nmb - 1 - w / (B Hq) (the heaviest, latest tiles first) of (b, h) = w % (B Hq). The producer loads
  // the next item's Q and first K / V tiles while the consumers finish this one's last P V and store O.
  const int bhc = B * Hq, total = nmb * bhc, G = int(gridDim.x), c = int(blockIdx.x);
  const int off = Tk - Tq;
  auto item = [&](int it) { return it * G + ((it & 1) ? G - 1 - c : c); };
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < ST; ++s) {
      mbar_init(full_k(s), 1);  // the producer's expect_tx arrival (+ the TMA bytes)
      mbar_init(full_v(s), 1);
      mbar_init(empty_k(s), 8);  // lane 0 of each of the 8 consumer warps
      mbar_init(empty_v(s), 8);
    }
    mbar_init(qbar, 1);
    mbar_init(qempty, 8);  // lane 0 of each consumer warp, once the item's last S has read Q
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    // Producer: one thread issues every TMA; the warpgroup gives its registers to the consumers. K and V
    // have their own full and empty barriers: a K slot is handed back as soon as S has read it, so the
    // next K tile loads while the consumers still need this stage's V.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
    if (threadIdx.x == 0) {
      int s = 0;
      uint32_t ph = 0;
      for (int it = 0, wi = item(0); wi < total; wi = item(++it)) {
        const int mb = nmb - 1 - wi / bhc, bh = wi % bhc, b = bh / Hq, h = bh % Hq, g = h / (Hq / Hkv);
        const int m0 = mb * BM, nkb = (min(Tk, m0 + BM + off) + BN - 1) / BN;
        // Boxes count in full toward expect_tx even where the TMA zero-fills them (rows past Tq or Tk).
        mbar_wait(qempty, (it & 1) ^ 1);  // the first item passes at once (fresh barrier)
        mbar_expect_tx(qbar, P::Q_BYTES);
#pragma unroll
        for (int j = 0; j < BOXES; ++j) tma_load_4d(sQ + j * P::Q_BOX, &tmQ, qbar, 64 * j, h, m0, b);
        for (int kt = 0; kt < nkb; ++kt) {
        const uint32_t sk = sKV + s * P::STAGE_BYTES, sv = sk + P::KV_BYTES;
        mbar_wait(empty_k(s), ph ^ 1);  // first lap passes at once (fresh barrier)
        mbar_expect_tx(full_k(s), P::KV_BYTES);
#pragma unroll
        for (int j = 0; j < BOXES; ++j) tma_load_4d(sk + j * P::KV_BOX, &tmK, full_k(s), 64 * j, g, kt * BN, b);
        mbar_wait(empty_v(s), ph ^ 1);
        mbar_expect_tx(full_v(s), P::KV_BYTES);
#pragma unroll
        for (int j = 0; j < BOXES; ++j) tma_load_4d(sv + j * P::KV_BOX, &tmV, full_v(s), 64 * j, g, kt * BN, b);
        if (++s == ST) { s = 0; ph ^= 1; }
        }
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
  const int cw = wg - 1;  // consumer cw owns rows [m0 + 64 cw, m0 + 64 cw + 64)
  const int tid = threadIdx.x % 128, w = tid / 32, lane = tid % 32, t4 = lane % 4;
  const uint32_t sq = sQ + cw * 64 * 128;     // the warpgroup's 64 rows in each Q box
  const bool lead = lane == 0;
  int s = 0;  // the K / V ring's stage and parity run on across items, as the producer's do
  uint32_t ph = 0;
  for (int it = 0, wi = item(0); wi < total; wi = item(++it)) {
    const int mb = nmb - 1 - wi / bhc, bh = wi % bhc, b = bh / Hq, h = bh % Hq;
    const int m0 = mb * BM, nkb = (min(Tk, m0 + BM + off) + BN - 1) / BN;  // keys the block's last row sees
    const int row_lo = m0 + 64 * cw;
    const int r0 = row_lo + 16 * w + lane / 4;  // this thread's rows: r0 and r0 + 8

    float o[NO];
#pragma unroll
    for (int i = 0; i < NO; ++i) o[i] = 0.f;
    float mr[2] = {-INFINITY, -INFINITY}, lr[2] = {0.f, 0.f};

    // S = Q K^T for the K tile at sk into sc, issued (the caller fences, commits and waits).
    auto issue_s = [&](float(&sc)[NS], uint32_t sk) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        // k step of 16 dims: 32 bytes along a 128-byte row of box kk / 4.
        const uint32_t ko = (kk % 4) * 32;
        wgmma_ss_n128(sc, s90_desc(sq + (kk / 4) * P::Q_BOX + ko, 16, 1024),
                      s90_desc(sk + (kk / 4) * P::KV_BOX + ko, 16, 1024), kk > 0);
      }
    };
    // O += P V for the V tile at sv, issued likewise.
    auto issue_pv = [&](const uint32_t(&pa)[KS][4], uint32_t sv) {
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        // k step of 16 keys: 16 rows of 128 bytes (2048) into box 0; box 1 (d 64..127) is LBO on.
        const uint64_t dv = s90_desc(sv + kk * 2048, P::KV_BOX, 1024);
        if constexpr (D == 128) wgmma_rs_n128(o, pa[kk], dv); else wgmma_rs_n64(o, pa[kk], dv);
      }
    };
    // The tile's scores (keys n0..) in log2 units, masked where a key is past the row's last (causal) or
    // past Tk; the online softmax of the thread's two rows (a row spans the 4 lanes of a quad): the new
    // running max, alpha = the factor O and l take, l += the tile's sum; P as A fragments into pa,
    // a[r] = (p[8kk + 2r], p[8kk + 2r + 1]) (see the top).
    auto softmax = [&](float(&sc)[NS], int n0, float(&alpha)[2]) {
      if (n0 + BN - 1 > row_lo + off || n0 + BN > Tk)
        prefill_softmax<NS, true>(sc, mr, lr, alpha, sl2, n0, t4, r0, off, Tk);
      else
        prefill_softmax<NS, false>(sc, mr, lr, alpha, sl2, n0, t4, r0, off, Tk);
    };
    // P (in sc) as A fragments: a[r] of k-step kk = (p[8kk + 2r], p[8kk + 2r + 1]) (see the top).
    auto to_a = [&](const float(&p)[NS], uint32_t(&pa)[KS][4]) {
#pragma unroll
      for (int kk = 0; kk < KS; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r) pa[kk][r] = pack_bf16(p[8 * kk + 2 * r], p[8 * kk + 2 * r + 1]);
    };
    auto rescale = [&](const float(&alpha)[2]) {
#pragma unroll
      for (int j = 0; j < NO / 4; ++j) {
        o[4 * j] *= alpha[0], o[4 * j + 1] *= alpha[0];
        o[4 * j + 2] *= alpha[1], o[4 * j + 3] *= alpha[1];
      }
    };

    mbar_wait(qbar, it & 1);
    // No branch may surround a wgmma or the registers it reads or writes: ptxas then serializes every
    // wgmma of the kernel (its C7518 / C7520 warnings), which cost the overlapped and ping-pong variants
    // all they were to win. So every tile is computed: the one a warpgroup can see none of (only the
    // block's last, for consumer 0, and only where Tk - Tq is not a multiple of 128) masks to P = 0 and
    // alpha = 1 (tile 0 always has keys for every row), which leaves O and l exact. The lane-0 arrivals
    // and the ping-pong's one-sided turns are predicated instructions, not branches. A warp hands a K or V
    // slot back once its wgmmas reading it have completed.
    float sc[NS];
    uint32_t pa[KS][4];
    // PP: consumer 0 takes the first turn; every turn is taken and passed on by both consumers alike, so
    // the barriers' counts match (consumer 0 takes one more turn at the end).
    if constexpr (PP) pp_pass_if(cw, cw == 1);
    // S = Q K^T of the K tile in stage stg (parity par) on its own: issued in this consumer's turn, waited
    // for, and the K slot handed back.
    auto s_alone = [&](int stg, uint32_t par) {
      mbar_wait(full_k(stg), par);
      if constexpr (PP) pp_wait(cw);
      wgmma_fence();
      issue_s(sc, sKV + stg * P::STAGE_BYTES);
      wgmma_commit();
      if constexpr (PP) pp_pass(cw);
      wgmma_wait<0>();
      pin(sc);
      mbar_arrive_if(empty_k(stg), lead);
    };
    if constexpr (!OVL) {
      for (int kt = 0; kt < nkb; ++kt) {
        const int n0 = kt * BN;
        const uint32_t sv = sKV + s * P::STAGE_BYTES + P::KV_BYTES;
        s_alone(s, ph);
        float alpha[2];
        softmax(sc, n0, alpha);
        to_a(sc, pa);
        rescale(alpha);
        mbar_wait(full_v(s), ph);
        pin(o);
        pin(pa);
        wgmma_fence();
        issue_pv(pa, sv);
        wgmma_commit();
        wgmma_wait<0>();
        pin(o);
        mbar_arrive_if(empty_v(s), lead);
        if (++s == ST) { s = 0; ph ^= 1; }
      }
      mbar_arrive_if(qempty, lead);  // every S of the item has read Q
    } else {
      // Tile 0 alone (its S and softmax); then, a tile kt at a time, S of kt and P V of kt - 1 are issued
      // together and kt's softmax runs while that P V is in flight; the last P V after the loop. pa holds
      // the P of the previous tile (stage sp, parity php, V at svp).
      s_alone(s, ph);
      {
        float alpha[2];
        softmax(sc, 0, alpha);  // O is still zero: no rescale
        to_a(sc, pa);
      }
      int sp = s;
      uint32_t php = ph, svp = sKV + s * P::STAGE_BYTES + P::KV_BYTES;
      if (++s == ST) { s = 0; ph ^= 1; }
      for (int kt = 1; kt < nkb; ++kt) {
        const int n0 = kt * BN;
        const uint32_t sk = sKV + s * P::STAGE_BYTES, sv = sk + P::KV_BYTES;
        mbar_wait(full_k(s), ph);
        mbar_wait(full_v(sp), php);
        if constexpr (PP) pp_wait(cw);
        pin(o);
        pin(pa);
        wgmma_fence();
        issue_s(sc, sk);
        wgmma_commit();
        issue_pv(pa, svp);
        wgmma_commit();
        if constexpr (PP) pp_pass(cw);
        float alpha[2];
        wgmma_wait<1>();  // S has landed; the P V may be in flight
        pin(sc);
        mbar_arrive_if(empty_k(s), lead);
        softmax(sc, n0, alpha);
        wgmma_wait<0>();
        pin(o);
        pin(pa);
        mbar_arrive_if(empty_v(sp), lead);
        rescale(alpha);
        to_a(sc, pa);  // after the P V that read the last P has landed
        sp = s, php = ph, svp = sv;
        if (++s == ST) { s = 0; ph ^= 1; }
      }
      mbar_arrive_if(qempty, lead);  // every S of the item has read Q
      mbar_wait(full_v(sp), php);
      if constexpr (PP) pp_wait(cw);
      pin(o);
      pin(pa);
      wgmma_fence();
      issue_pv(pa, svp);
      wgmma_commit();
      if constexpr (PP) pp_pass(cw);
      wgmma_wait<0>();
      pin(o);
      mbar_arrive_if(empty_v(sp), lead);
    }
    if constexpr (PP) pp_wait_if(cw, cw == 0);  // the turn consumer 1 passed last

    finish_rows<LSE>(lr, mr, lse, (int64_t(b) * Hq + h) * Tq, r0, Tq, t4);
    // Accumulator j of a row holds dims 8j + 2 t4 (+1): one 4-byte store each, packed outside the row
    // test (a branch reading O, a wgmma operand, would serialize the next item's wgmmas).
    __nv_bfloat16* ob = out + (int64_t(b) * Tq * Hq + h) * D + 2 * t4;
    const int64_t ors = int64_t(Hq) * D;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = r0 + r * 8;
      uint32_t packed[NO / 4];
#pragma unroll
      for (int j = 0; j < NO / 4; ++j) packed[j] = pack_bf16(o[4 * j + 2 * r] * lr[r], o[4 * j + 2 * r + 1] * lr[r]);
      if (i < Tq) {
        __nv_bfloat16* op = ob + i * ors;
#pragma unroll
        for (int j = 0; j < NO / 4; ++j) *reinterpret_cast<uint32_t*>(op + 8 * j) = packed[j];
      }
    }
  }  // the block's next work item
#endif
}

// ---------------------------------------------------------------------------------------------------
// Host side.

// Compute capability 9.0 (the sm_90a image runs there only).
inline bool prefill_sm90_device() { return device_cc("attention_prefill") == 90; }

// x[b, t, hd, d] = x[b * bs + t * ts + hd * D + d] (bf16) as a 4-D map over (d, head, t, b), boxes of
// 64 d x 1 head x `rows` t x 1 b with the 128-byte swizzle and zero fill past the tensor. A dimension of
// extent 1 gets a packed stride (its stride is never used, and the caller's may be anything). False
// where the TMA cannot express the layout (strides must be multiples of 16 bytes below 2^40).
inline bool prefill_tensor_map(CUtensorMap* map, const void* p, int B, int T, int H, int D, int64_t bs, int64_t ts,
                               int rows) {
  auto encode = sm90::tensor_map_encoder();  // (null: the mma.sync kernel serves)
  if (!encode) return false;
  const uint64_t sh = uint64_t(D) * 2;
  if ((T > 1 && ts <= 0) || (B > 1 && bs <= 0)) return false;
  const uint64_t st = T > 1 ? uint64_t(ts) * 2 : sh * uint64_t(H);
  const uint64_t sb = B > 1 ? uint64_t(bs) * 2 : st * uint64_t(T);
  constexpr uint64_t kLimit = uint64_t(1) << 40;
  if (st % 16 || sb % 16 || st >= kLimit || sb >= kLimit) return false;
  cuuint64_t dims[4] = {cuuint64_t(D), cuuint64_t(H), cuuint64_t(T), cuuint64_t(B)};
  cuuint64_t strides[3] = {sh, st, sb};
  cuuint32_t box[4] = {64, 1, cuuint32_t(rows), 1};
  cuuint32_t estr[4] = {1, 1, 1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<void*>(p), dims, strides, box, estr,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

// Launches the sm90 kernel (with the intra-warpgroup overlap when `overlap`); false (nothing launched)
// where the TMA cannot express q, k or v's layout. The caller has checked the device
// (prefill_sm90_device), bf16, D, and 16-byte aligned q/k/v rows.
template <int D>
bool prefill_sm90_launch(cudaStream_t st, bool overlap, bool pingpong, const void* q, const void* k, const void* v, void* out,
                         float* lse, int B, int Tq, int Tk, int Hq, int Hkv, int64_t qbs, int64_t qts, int64_t kvbs,
                         int64_t kvts, float sl2) {
  using K = PrefillSm90<D>;
  CUtensorMap mq, mk, mv;
  if (!prefill_tensor_map(&mq, q, B, Tq, Hq, D, qbs, qts, K::BM) ||
      !prefill_tensor_map(&mk, k, B, Tk, Hkv, D, kvbs, kvts, K::BN) ||
      !prefill_tensor_map(&mv, v, B, Tk, Hkv, D, kvbs, kvts, K::BN))
    return false;
  const int nmb = (Tq + K::BM - 1) / K::BM;
  const int64_t blocks = int64_t(nmb) * B * Hq;
  PARALLM_CHECK(blocks < (int64_t(1) << 31), "attention_prefill: B*Hq*ceil(Tq/", K::BM, ")=", blocks,
                " too large");
  auto pick = [&](auto lse_v, auto ovl_v) {
    return pingpong ? prefill_sm90<D, lse_v.value, ovl_v.value, true> : prefill_sm90<D, lse_v.value, ovl_v.value, false>;
  };
  using T_ = std::true_type;
  using F_ = std::false_type;
  auto kernel = overlap ? (lse ? pick(T_{}, T_{}) : pick(F_{}, T_{})) : (lse ? pick(T_{}, F_{}) : pick(F_{}, F_{}));
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(K::SMEM)),
                     "attention_prefill (sm90): smem attribute (D=", D, ", ", K::SMEM, " bytes)");
  // Persistent: a block an SM at most (one fits, by its shared memory), each looping over work items.
  const int grid = int(std::min<int64_t>(blocks, device_sms("attention_prefill")));
  kernel<<<unsigned(grid), K::THREADS, K::SMEM, st>>>(mq, mk, mv, static_cast<__nv_bfloat16*>(out), lse, B, Tq, Tk,
                                                        Hq, Hkv, sl2, nmb);
  PARALLM_LAUNCH_CHECK("attention_prefill (sm90", overlap ? ", overlapped" : "", pingpong ? ", ping-pong" : "", ") B=", B, " Tq=", Tq, " Tk=", Tk,
                       " Hq=", Hq, " Hkv=", Hkv, " D=", D);
  return true;
}

}  // namespace parallm::cuda::attn_detail
