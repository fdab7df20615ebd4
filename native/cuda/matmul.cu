// matmul on CUDA: C[M,N] = alpha * A' B' + beta * C + bias[N] (see native/core/kernels.h).
//
// Paths, chosen per call on the host:
//   gemv  16-bit, M <= 16, transB, !transA, K % 8 == 0, A and B 16-byte aligned (sm_80+): weight-
//         bandwidth-bound decode case: the register kernel (matmul_gemv.cuh; launch_gemv_t), or the
//         pipelined one (cp.async ring, one block per SM) when the test hook asks.
//   sm90  16-bit on compute capability exactly 9.0, leading dimensions % 8 == 0 and 16-byte aligned
//         A and B (what the TMA needs): wgmma + TMA, warp-specialized, persistent (matmul_sm90.cuh);
//         128-row tiles, or 64-row ones up to M = 64 (decode batches), K sliced where tiles are few.
//   wtile 16-bit on compute capability 9.0, transB, !transA, M <= 64: the weight as the wgmma's A operand and X's
//         few rows as B (matmul_sm90_wtile.cuh); by default 7B-sized products of 9-16 rows (wtile_level).
//   sm80  16-bit on other sm_80+ devices, or shapes the sm90 path refuses: mma.sync + ldmatrix, with
//         16-byte cp.async when aligned, element loads otherwise (matmul_sm80.cuh).
//   simt  f32 (plain f32 FMA: stays exact to ~1e-5, unlike tf32), K == 0, or anything else.
// rmsnorm_matmul: the pipelined GEMV with the norm in its prologue where it applies, else rmsnorm then matmul;
// rmsnorm_matmul_swiglu likewise with SwiGLU in the epilogue, else rmsnorm_matmul then silu_gate.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>
#include <unordered_map>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "check.h"
#include "core/runtime.h"
#include "core/split_rule.h"
#include "kernels.h"
#include "launch.cuh"
#include "device_attr.cuh"
#include "matmul_gemv.cuh"
#include "matmul_simt.cuh"
#include "matmul_sm80.cuh"
#include "matmul_sm90.cuh"
#include "matmul_sm90_wtile.cuh"
#include "workspace.h"

namespace parallm::cuda {

// matmul_sm90_splits: -1 chooses the K slices per call (sm90_splits), n >= 1 asks for n.
void matmul_sm90_splits(int n);
// matmul_sm90_tile_rows: -1 chooses the sm90 tile by M (64 rows up to M = 64, else 128), 64 or 128 forces it.
void matmul_sm90_tile_rows(int n);
// matmul_sm90_tile_cols: -1 chooses the 128-row tile's width per product (sm90_width), 192 or 256 forces it.
void matmul_sm90_tile_cols(int n);
// matmul_gemv_path: -1 chooses (the register kernel, its load form by N: see launch_gemv_t), 0 the
// same, 1 the pipelined one (with the fused rmsnorm_matmul kernels), 2 and 3 the pipelined one in the
// alternative shapes of launch_gemv_pipe_any, 4 the register kernel's single-plain-load form at every N,
// 5 as -1 with the register kernel's fused rmsnorm_matmul(_swiglu) and layernorm_matmul forms
// (register_fusion), 6 the register kernel on 16 W rows a block (each block reads X once for twice the W:
// a candidate at batch 16, where X is 16 rows; the same bits), 7 no GEMV on compute capability 9.0: the
// sm90 GEMM's 64-row tile takes those products (another candidate at batch 16), 8 and 9 the register kernel on 32
// W rows a block (launch_wide_gemv; unroll 4, 2), linearSwiGLU's too.
void matmul_gemv_path(int n);
// matmul_sm90_wtile: which products the W-as-A tile (matmul_sm90_wtile.cuh) takes on compute capability 9.0:
// -1 PARALLM_WTILE's setting, or unset the dispatch's choice (wtile_level), 0 none, 1 those of M <= 64 rows
// (transB, !transA) that would go to the 64-row tile, 2 also the GEMV's (M <= 16).
void matmul_sm90_wtile(int mode);
// matmul_sm90_schedule: how the 128-row sm90 tile's blocks take their units: -1 PARALLM_GEMM_SCHEDULE's setting
// (unset: strided), 0 strided (block b: b, b + grid, ...), 1 drawn from a counter (tile_counter), 2 drawn after each
// block's own first.
void matmul_sm90_schedule(int mode);

// The qkv product's split-K reduce with its rope and cache write (kvcache.cu; PostRopeKv below).
void splitk_rope_kv_write(cudaStream_t s, DType dt, const float* ws, int splits, const void* bias, void* qkv, void* kc,
                          void* vc, const int32_t* pos, int B, int Hq, int Hkv, int D, int rot_dim, float theta,
                          const float* freqs, int64_t kv_bstride, int64_t kv_tstride, int64_t max_len, bool pdl);
// ... and with the attention after it too (attention.cu; false where its fused form does not apply).
bool splitk_rope_kv_attention_decode(cudaStream_t st, DType dt, const float* ws, int splits, const void* bias, void* kc,
                                     void* vc, const int32_t* pos, const int32_t* lens, void* out, int B, int Hq, int Hkv,
                                     int D, int rot_dim, float theta, const float* freqs, int64_t kv_bstride,
                                     int64_t kv_tstride, int max_len, float scale, uint32_t* counter);

namespace {

std::atomic<int> g_splits{-1};  // test hook: -1 = chosen per call, n = n K slices when possible
std::atomic<int> g_tma_store{1};  // test hook: 0 = the sm90 epilogue stores C from registers
std::atomic<int> g_tile_rows{-1};  // test / benchmark hook: see matmul_sm90_tile_rows
std::atomic<int> g_tile_cols{-1};  // test / benchmark hook: see matmul_sm90_tile_cols
std::atomic<int> g_gemv_path{-1};  // test / benchmark hook: see matmul_gemv_path
std::atomic<int> g_wtile{-1};      // test / benchmark hook: see matmul_sm90_wtile
// Which products of M rows the W-as-A tile takes (matmul_sm90_wtile.cuh; on compute capability 9.0, 16-bit,
// transB, !transA, M <= 64): 0 none, 1 the 64-row tile's, 2 also the GEMV's. The hook's or PARALLM_WTILE's
// setting (0, 1, 2) where given; otherwise, where the dispatch chooses the GEMV kernel too (matmulGemv -1),
// every product of 9-16 rows with K >= 4096 and a weight of at least 4096 x 4096: 7B decode at batch 16 +6-8%
// with it (S18-2, S18-3, bench/RESULTS.md; the out projection's K slices then take the next norm in their
// reduce). GPT-2's (K 768 and 3072) lost 5.8% at batch 16 on it (S18-3), and at batch 64 7B lost 5.5% (its
// m64n64 wgmmas stream qkv and gate+up slower than the 64-row tile), so those stay where they were.
int wtile_level(int64_t M, int64_t N, int64_t K) {
  int v = g_wtile.load(std::memory_order_relaxed);
  if (v < 0) {
    static const int env = [] {
      const char* e = std::getenv("PARALLM_WTILE");
      return (e && e[0] >= '0' && e[0] <= '2' && !e[1]) ? e[0] - '0' : -1;
    }();
    v = env;
  }
  if (v >= 0) return v;
  const bool large = K >= 4096 && N * K >= (int64_t(1) << 24);
  return g_gemv_path.load(std::memory_order_relaxed) == -1 && M >= 9 && M <= 16 && large ? 2 : 0;
}
// The hook's paths 8 and 9 (matmul_gemv_path): the register GEMV on 32 W rows a block (launch_wide_gemv), and
// linearSwiGLU's on 2 gate and 2 up sets. On the kernel benchmark it beat the W-as-A tile at every 7B shape of 16
// rows (S26-1, bench/RESULTS.md: 83-90% of the copy rate against 69-84% with the reduce), and in 7B's batch-16
// decode, with the norms and the rope apart, it lost 5% (S26-4, as PARALLM_GEMV_WIDE=1, since removed): so a
// benchmark and test form only.
bool wide_gemv() {
  const int p = g_gemv_path.load(std::memory_order_relaxed);
  return p == 8 || p == 9;
}
bool pipelined_gemv() { const int p = g_gemv_path.load(std::memory_order_relaxed); return p >= 1 && p <= 3; }
// An environment switch that is on when set to exactly "1".
bool env_on(const char* name) {
  const char* e = std::getenv(name);
  return e && e[0] == '1' && !e[1];
}
// A switch that is on unless set to exactly "0".
bool env_not_off(const char* name) {
  const char* e = std::getenv(name);
  return !(e && e[0] == '0' && !e[1]);
}
// The register GEMV's W loads with the L2::256B prefetch hint unless PARALLM_GEMV_L2HINT=0 (ld_w16).
int gemv_l2hint() {
  static const int v = [] {
    const char* e = std::getenv("PARALLM_GEMV_L2HINT");
    return (e && e[0] == '0') ? 0 : 1;
  }();
  return v;
}
// The register GEMV with the norm in its prologue (and SwiGLU or GELU in its epilogue) for
// rmsnorm_matmul(_swiglu) and layernorm_matmul:
// on with PARALLM_GEMV_FUSE=1 or matmulGemv(5); off by default until timed on a GPU (it recomputes the
// rows' rstd in every block: 8 KB of X from L2 a row a block, two barriers a row, hence only a few rows).
constexpr int64_t kRegisterFusionMaxM = 4;
bool register_fusion() {
  const int p = g_gemv_path.load(std::memory_order_relaxed);
  if (p == 5) return true;
  if (p != -1) return false;
  static const bool env = env_on("PARALLM_GEMV_FUSE");
  return env;
}
// How much of its W a register GEMV asks L2 for before its PDL wait (the kernel's pf16): by default nothing
// (-1): S19-3 measured 7B decode at batch 1 4.7-5.0% faster without the prefetch of each warp's first pass that
// had been the default since the fourth session (the sm90 tiles' likewise lost, S19-1, S19-2).
// PARALLM_GEMV_PREFETCH=first, that first pass (0); =all, every byte of a W up to 32 MiB (one L2 holds it; S8-2:
// 16 MiB W 86 -> 96% of the copy rate, 32 MiB 82 -> 76%); =<MiB>, that many MiB of the W spread over the warps
// (pf16 sixteenths of each warp's K range).
int gemv_prefetch(int64_t w_bytes) {
  static const double mib = [] {
    const char* e = std::getenv("PARALLM_GEMV_PREFETCH");
    if (!e) return -1.0;
    if (std::strcmp(e, "first") == 0) return 0.0;
    if (std::strcmp(e, "all") == 0) return 32.0;
    char* end = nullptr;
    const double v = std::strtod(e, &end);
    return end != e && *end == 0 && v > 0 && v <= 1024 ? v : -1.0;
  }();
  if (mib < 0) return -1;
  if (mib == 0 || w_bytes <= 0) return 0;
  if (w_bytes <= int64_t(mib * (1 << 20))) return 16;
  return std::max(1, int(16.0 * mib * (1 << 20) / double(w_bytes)));
}
// Decode's frozen weights (core/runtime.h's frozen_weights, on this thread: src/runtime.ts's withFrozenWeights):
// the register GEMV then loads its first pass of W into registers before its PDL wait (the kernel's WPRE),
// streaming weights while the kernel before drains (DECODE-NOTES, thirteenth session). That reads W outside
// pdl.cuh's contract, which is why it takes the caller's word: within decode no kernel writes a weight, and the
// only kernel a PDL launch can overlap is the one just before it (every kernel here triggers after its own wait),
// itself decode's. S20-5: 7B decode at batch 1 +3.5%, GPT-2 +10-15%. PARALLM_GEMV_WPRE=0 keeps it off even then.
bool gemv_wpre() {
  static const bool allowed = env_not_off("PARALLM_GEMV_WPRE");
  return allowed && frozen_weights();
}
// The register GEMV lets the next kernel launch after its PDL wait (as the sm90 tiles and the small kernels do: at
// most one kernel parked behind it); PARALLM_GEMV_TRIGGER_LATE=0, at its start, as before the sixteenth session
// (even in every comparison: the GEMV kernels and 7B decode in S19-5, GPT-2 decode at batch 1 in S19-6).
int gemv_late_trigger() {
  static const int v = env_not_off("PARALLM_GEMV_TRIGGER_LATE") ? 1 : 0;
  return v;
}
// Which sm90 GEMMs launch with PDL, with their split-K reduce (launch_sm90_t, launch_sm90w_t): by default the
// 64-row tile's and the W-as-A tile's, decode's products (S19-1, S19-2: 7B decode at batch 64 +3.3-4.1%, at
// batch 16 +1.8-2.4%); PARALLM_PDL_TILE=0 neither; PARALLM_PDL_GEMM=1 also the 128-row tile's (a candidate for
// training's ~150 GEMMs a step, not yet measured). Before the wait they touch no global memory: an L2
// prefetch of the first stages' weights there lost (the W-as-A tile 5% in decode, S19-1; the 64-row tile's,
// which S11-5 had measured 2-5% slower with PDL, gave +0.4-0.6% where the bare launch gave +3.3-4.1%, S19-2).
bool sm90_pdl(int cw) {
  static const bool tile = env_not_off("PARALLM_PDL_TILE");
  static const bool all = env_on("PARALLM_PDL_GEMM");
  return all || (cw == 1 && tile);
}
// Whether a tile of `grid` blocks (at most one an SM) itself launches with PDL, its split-K reduce launching with it
// either way: only where the grid takes nearly every SM (7/8 of them). Launched early, a partial grid's blocks land on
// whichever SMs free first, not spread over the GPCs as a launch on idle SMs spreads them: 7B's batch-64 64-row tiles
// (48-86 blocks on 132 SMs) each ran 4-6 µs longer after their wait once nothing kept them from launching early
// (S31-3, the capture's shared workspaces: workspace.h), where the W-as-A tiles of batch 16 (128-132 blocks) gained.
// PARALLM_PDL_PARTIAL_TILE=1 launches every tile early (a timing knob).
int device_sms();
bool tile_pdl(int grid) {
  static const bool partial = env_on("PARALLM_PDL_PARTIAL_TILE");
  return partial || int64_t(grid) * 8 >= int64_t(device_sms()) * 7;
}

// Whether a GEMV-sized product (M <= 16, B^T) goes to the sm90 64-row tile on compute capability 9.0
// instead of the register GEMV. Measured on an H200 (S11-1, graph replays): at M = 16 the tile streams
// LLaMA-7B's larger weights faster (16x22016x4096 0.049 ms against 0.053, 16x4096x11008 0.027 against
// 0.033, 16x12288x4096 0.030 against 0.031) but not 16x4096x4096 (0.013 against 0.012), and 7B decode at
// batch 16 gained 5.5% with every product on it; fewer rows than 16 and K below 4096 (GPT-2's head) were
// not measured and stay on the GEMV. PARALLM_GEMV_TILE=<rows> moves the row threshold (17: never);
// matmulGemv(7) sends every product.
bool gemv_on_tile(int64_t M, int64_t N, int64_t K) {
  static const int64_t min_rows = [] {
    const char* e = std::getenv("PARALLM_GEMV_TILE");
    if (!e) return int64_t(16);
    char* end = nullptr;
    const long r = std::strtol(e, &end, 10);
    return end != e && *end == 0 && r >= 1 && r <= 17 ? int64_t(r) : int64_t(16);
  }();
  return M >= min_rows && K >= 4096 && N * K >= (int64_t(1) << 25);
}
std::atomic<int> g_pdl{-1};  // PARALLM_PDL / the hook: -1 not read yet, else the level (launch.cuh)
std::atomic<int> g_schedule{-1};  // test / benchmark hook: see matmul_sm90_schedule

// The sm90 tile's unit counter for a launch on stream `st` (matmul_sm90.cuh: the blocks draw their units from it
// and the last block rearms it), or nullptr: the blocks stride instead. Why drawn: a persistent grid of one block an
// SM whose blocks own fixed shares runs as long as its latest block, and a block waits for its SM while another
// stream's kernel holds it (NCCL's all-reduce of a bucket beside the backward in data-parallel training, a pipeline
// stage's send or recv); drawn, the blocks that run take the late one's tiles. One counter a stream: a stream's
// kernels run in order, and a tile launched with PDL draws only after its griddepcontrol.wait, when the kernel
// before has ended (and rearmed it), so no two launches draw from one counter at once. (A graph replays on the
// stream it was captured on: runtime.cu's capture.) Allocated and zeroed at a stream's first sm90 launch outside a
// graph capture; inside one, until then, the blocks stride. Off by default: on one H200 GPT-2 training lost 1-2% drawn
// or drawn after each block's own first unit (S34-3, S35-1, bench/RESULTS.md); beside 16 held SMs a product takes
// 1.02-1.15x its time alone drawn against 1.5-1.8x strided (S35-2), but a data-parallel rank's step rehearsed on one
// GPU lost 0.5-2.7% more drawing while its buckets reduce than striding (S35-3: most of what the reductions' SMs cost
// is theirs, whatever the schedule). PARALLM_GEMM_SCHEDULE=drawn (or the hook's 1) draws, =drawn-after-own too, each
// block's first unit its own (no atomic before its first loads).
unsigned* tile_counter(cudaStream_t st) {
  static const int from_env = [] {
    const char* e = std::getenv("PARALLM_GEMM_SCHEDULE");
    return e && (std::strcmp(e, "drawn") == 0 || std::strcmp(e, "drawn-after-own") == 0) ? 1 : 0;
  }();
  const int hook = g_schedule.load(std::memory_order_relaxed);
  if ((hook == -1 ? from_env : hook) == 0) return nullptr;
  static std::mutex mu;
  static std::unordered_map<cudaStream_t, unsigned*> counters;  // never freed: 8 bytes a stream
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = counters.find(st); it != counters.end()) return it->second;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  PARALLM_CUDA_CHECK(cudaStreamIsCapturing(st, &cs), "matmul: cudaStreamIsCapturing");
  if (cs != cudaStreamCaptureStatusNone) return nullptr;  // no allocation inside a capture: strided
  int dev = -1;
  cudaGetDevice(&dev);
  void* p = nullptr;
  PARALLM_CUDA_CHECK(cudaMalloc(&p, 2 * sizeof(unsigned)), "matmul: the tile counter (8 bytes) on cuda:", dev);
  PARALLM_CUDA_CHECK(cudaMemsetAsync(p, 0, 2 * sizeof(unsigned), st), "matmul: zeroing the tile counter on cuda:", dev);
  return counters[st] = static_cast<unsigned*>(p);
}
// Drawn tiles with each block's first its own (the kernel's first_own): the hook's 2, or unset
// PARALLM_GEMM_SCHEDULE=drawn-after-own.
int tile_first_own() {
  static const int from_env = [] {
    const char* e = std::getenv("PARALLM_GEMM_SCHEDULE");
    return e && std::strcmp(e, "drawn-after-own") == 0 ? 1 : 0;
  }();
  const int hook = g_schedule.load(std::memory_order_relaxed);
  return hook == -1 ? from_env : hook == 2 ? 1 : 0;
}

// The current device's (device_attr.cuh), errors naming the matmul.
int device_cc() { return cuda::device_cc("matmul"); }
int device_sms() { return cuda::device_sms("matmul"); }

// Raise a kernel's dynamic shared-memory limit once per device (the attribute is per device). The
// kernel is a template argument so each instantiation keeps its own record.
template <auto Kernel>
void set_smem_once(size_t bytes, const char* what) {
  static std::atomic<uint64_t> done{0};
  int dev = 0;
  PARALLM_CUDA_CHECK(cudaGetDevice(&dev), "matmul: cudaGetDevice");
  uint64_t bit = (dev >= 0 && dev < kMaxDevices) ? (uint64_t(1) << dev) : 0;
  if (bit && (done.load(std::memory_order_acquire) & bit)) return;
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
                     "matmul: raising the shared-memory limit of the ", what, " kernel to ", bytes, " bytes");
  done.fetch_or(bit, std::memory_order_acq_rel);
}


// 2-D row-major tensor [outer][inner] of 16-bit elements, boxes of box_inner x box_outer, 128-byte
// swizzle, zero fill outside the tensor.
bool make_tensor_map(CUtensorMap* map, DType dt, const void* ptr, uint64_t inner, uint64_t outer,
                     uint32_t box_inner, uint32_t box_outer) {
  auto encode = sm90::tensor_map_encoder();  // (null: the sm80 path serves instead)
  if (!encode) return false;
  cuuint64_t dims[2] = {inner, outer};
  cuuint64_t strides[1] = {inner * 2};
  cuuint32_t box[2] = {box_inner, box_outer};
  cuuint32_t estr[2] = {1, 1};
  CUresult r = encode(map, dt == DType::BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                      2, const_cast<void*>(ptr), dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS;
}

// matmul_residual_norm's norm (weight w, layernorm's bias b or null, output h), handed down to the sm90
// 64-row tile's split-K reduce, which runs it in the same launch (splitk_reduce_norm) and sets done;
// otherwise the caller runs the norm after the matmul.
struct PostNorm {
  const void* w;
  const void* b;
  void* h;
  float eps;
  mutable bool done = false;
};

// A gate+up product's SwiGLU for its split-K reduce (splitk_reduce_swiglu): y [M][N/2] = silu(gate) * up, done
// set when the reduce wrote it (the product itself is then never stored).
struct PostSwiGLU {
  void* y;
  mutable bool done = false;
};

// A qkv product's rope and cache write for its split-K reduce (matmul_rope_kv_write): splitk_rope_kv_write (kvcache.cu)
// sums the slices, rotates and writes the caches in one launch and sets done; otherwise the caller runs
// rope_kv_write after the product.
struct PostRopeKv {
  void* kc;
  void* vc;
  const int32_t* pos;
  const float* freqs;
  int Hq, Hkv, D, rot_dim;
  float theta;
  int64_t kb, kt, max_len;
  mutable bool done = false;
  // matmul_rope_kv_attention_decode's attention (att set): splitk_rope_kv_attention_decode runs it from the slices
  // where it can, and sets attn_done; otherwise the caller runs attention_decode after.
  const int32_t* lens = nullptr;
  void* att = nullptr;
  uint32_t* counter = nullptr;
  float scale = 0.f;
  mutable bool attn_done = false;
};

struct Args {
  cudaStream_t stream;
  DType dt;
  const void* A;
  const void* B;
  const void* bias;
  void* C;
  int M, N, K;
  bool transA, transB;
  float alpha, beta;
  int pair_ok;
  const PostNorm* post = nullptr;
  const PostSwiGLU* swiglu = nullptr;
  const PostRopeKv* rope = nullptr;
};

#define PARALLM_MM_WHERE(a, path)                                                                          \
  "matmul(", dtype_name((a).dt), ", M=", (a).M, ", N=", (a).N, ", K=", (a).K, ", transA=", (a).transA, \
      ", transB=", (a).transB, ", ", path, ")"

template <typename T, bool TA, bool TB>
void launch_simt_t(const Args& a) {
  int tm = (a.M + mm::SIMT_BM - 1) / mm::SIMT_BM, tn = (a.N + mm::SIMT_BN - 1) / mm::SIMT_BN;
  mm::simt_kernel<T, TA, TB><<<unsigned(int64_t(tm) * tn), 256, 0, a.stream>>>(
      static_cast<const T*>(a.A), static_cast<const T*>(a.B), static_cast<const T*>(a.bias), static_cast<T*>(a.C),
      a.M, a.N, a.K, a.alpha, a.beta, tm, tn);
  PARALLM_LAUNCH_CHECK(PARALLM_MM_WHERE(a, "simt"));
}

template <typename T, bool TA, bool TB, bool AL>
void launch_sm80_t(const Args& a) {
  constexpr auto kern = mm::s80_kernel<T, TA, TB, AL>;
  set_smem_once<kern>(mm::S80_SMEM, "sm80");
  int tm = (a.M + mm::S80_BM - 1) / mm::S80_BM, tn = (a.N + mm::S80_BN - 1) / mm::S80_BN;
  kern<<<unsigned(int64_t(tm) * tn), 256, mm::S80_SMEM, a.stream>>>(
      static_cast<const T*>(a.A), static_cast<const T*>(a.B), static_cast<const T*>(a.bias), static_cast<T*>(a.C),
      a.M, a.N, a.K, a.alpha, a.beta, tm, tn, a.pair_ok);
  PARALLM_LAUNCH_CHECK(PARALLM_MM_WHERE(a, "sm80"));
}

// sm90_splits' wave rule (core/split_rule.h) on unless PARALLM_SPLITK_WAVE=0 (those GEMMs whole, as before
// S17-4: for comparisons).
bool wave_splits_on() {
  static const bool on = [] {
    const char* e = std::getenv("PARALLM_SPLITK_WAVE");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// At most nk slices (none empty), 32, and 64 MiB of f32 partials.
int clamp_splits(int s, int nk, int64_t M, int64_t N) {
  s = std::min({s, nk, 32});
  while (s > 1 && int64_t(s) * M * N * 4 > (int64_t(64) << 20)) --s;
  return std::max(s, 1);
}

// How many K slices the sm90 path cuts a GEMM into. A decode-sized GEMM (M up to a few hundred) has
// too few 128 x 256 tiles to stream the weights from every SM (LLaMA-7B at M = 128: 16 tiles for
// N = 4096 on 132 SMs); slicing K gives each SM a share of the weight bytes. Measured on an H100
// (bench/RESULTS.md): with 16 or 32 tiles, slicing halves the time; with 48 it is a wash or worse (the
// f32 partials cost as much as the idle SMs), so only GEMMs of at most a quarter wave of tiles are cut.
// Slices get at least four k-tiles (256 of K) and their f32 partials at most 64 MiB.
// (A stream-K version that also evened out the last wave of large GEMMs was tried and measured: it lost
// more to its fix-up pass than it gained; see bench/RESULTS.md.)
//
// Past a quarter wave, a compute-bound GEMM with fewer tiles than SMs and a long K is cut by sm90_wave_splits
// (core/split_rule.h): training's weight gradients (M and N a layer's features, K the batch's tokens) have
// 54-72 tiles of 128 x 256 (GPT-2), so without slices 45-60% of the SMs idle through the whole K (S17-4: those
// dW products ran at 290-410 TFLOP/s where the layers' dX products reach 600-700).
int sm90_splits(int tiles, int nk, int64_t M, int64_t N) {
  const int forced = g_splits.load(std::memory_order_relaxed);
  const int sms = device_sms();
  if (forced < 1 && tiles * 4 > sms && tiles < sms && M >= 512 && N >= 512 && nk >= 64 && wave_splits_on())
    return clamp_splits(parallm::sm90_wave_splits(tiles, nk, M, N, sms), nk, M, N);
  int s = forced >= 1 ? forced : (tiles * 4 > sms ? 1 : sms / tiles);
  if (forced < 1) s = std::min(s, nk / 4);
  return clamp_splits(s, nk, M, N);
}

// K slices for the 64-row tile (decode batches of at most 64 rows), whose tiles are the weight's
// 256-column strips alone (LLaMA-7B: 16, 43, 48 or 86). Measured on an H200 (bench/RESULTS.md S11-1,
// M = 16 and 64, 1-8 slices forced): an SM streams fast enough that 48 unsplit tiles beat 96 half-tiles
// at M = 64 (64x12288x4096 0.031 ms against 0.035: the f32 partials and their reduce cost more than the
// idle SMs), and at 16 and 64 rows a quarter wave of tiles or less does best in 3-4 slices (64x4096x11008
// 0.030 in 4, 0.032 in 8); at M = 16 the partials are a quarter as large, and up to half a wave of tiles
// gains from 2 slices (16x12288x4096 0.030 against 0.032).
int sm90_splits64(int tiles, int nk, int64_t M, int64_t N) {
  const int forced = g_splits.load(std::memory_order_relaxed);
  if (forced >= 1) return clamp_splits(forced, nk, M, N);
  const int sms = device_sms();
  int s = 1;
  if (tiles * 4 <= sms) s = std::min(4, sms / tiles);
  else if (M <= 16 && tiles * 2 <= sms) s = 2;
  return clamp_splits(std::min(s, std::max(1, nk / 4)), nk, M, N);
}

// Which sm90 tile serves M rows: 64 rows up to M = 64 (the tile_rows hook can force either).
int sm90_consumers(int64_t M) {
  const int forced = g_tile_rows.load(std::memory_order_relaxed);
  if (forced == 128) return 2;
  if (forced == 64) return 1;
  return M <= 64 ? 1 : 2;
}

// The 128-row tile's width for a product: 192 or 256 columns by sm90_tile_width (core/split_rule.h), each width's K
// slices as sm90_splits gives them. The matmulTileCols hook forces one; PARALLM_TILE192=0 keeps 256, =all takes 192
// for every product (benchmarks: each width of one product side by side).
int sm90_width(const Args& a) {
  static const int mode = [] {
    const char* e = std::getenv("PARALLM_TILE192");
    return !e ? 1 : std::strcmp(e, "0") == 0 ? 0 : std::strcmp(e, "all") == 0 ? 2 : 1;
  }();
  const int forced = g_tile_cols.load(std::memory_order_relaxed);
  if (forced == 192 || forced == 256) return forced;
  if (mode != 1) return mode == 2 ? 192 : 256;
  const int nk = (a.K + mm::S90_BK - 1) / mm::S90_BK, tm = (a.M + 127) / 128;
  const int t256 = tm * ((a.N + 255) / 256), t192 = tm * ((a.N + 191) / 192);
  return parallm::sm90_tile_width(a.M, a.N, nk, device_sms(), sm90_splits(t256, nk, a.M, a.N),
                                  sm90_splits(t192, nk, a.M, a.N));
}

// Whether the 64-row tile's split-K reduce can also run a.post's norm (splitk_reduce_norm, bf16): rows of
// whole 16-byte packs, at most kReduceNormMax columns (its row buffer in shared memory), C, h and the
// norm's weights 16-byte aligned.
bool reduce_norm_ok(const Args& a) {
  const PostNorm* pn = a.post;
  return pn && a.dt == DType::BF16 && a.N % 8 == 0 && aligned16(a.C) && aligned16(pn->w) && aligned16(pn->h) &&
         (!pn->b || aligned16(pn->b)) && a.N <= mm::kReduceNormMax;
}

// SwiGLU in the split-K reduce of a gate+up product (splitk_reduce_swiglu, rmsnorm_matmul_swiglu's ops apart; the same
// bits): silu_gate's launch goes. Off with PARALLM_REDUCE_SWIGLU=0. It had been off by default since the sixteenth
// session (S20-2: even, in its first pair form), so the 8-column form (S27-3) never ran in decode; the kernel timeline
// of 7B's batch-16 step (S29-5, a PARALLM_TRACE build) showed silu_gate's launch and its gap at ~2.7 us a layer.
bool reduce_swiglu_on() {
  static const bool v = env_not_off("PARALLM_REDUCE_SWIGLU");
  return v;
}

// A split-K product's f32 partials ws [splits][M][N] (none at one slice): under a capture the buffer its split-K
// products share, else its own (workspace.h); reduce_slices releases it.
Workspace splitk_workspace(const Args& a, int splits, const char* what) {
  const size_t bytes = splits > 1 ? size_t(splits) * size_t(a.M) * size_t(a.N) * sizeof(float) : 0;
  return workspace_acquire(a.stream, kWsSplitK, bytes, PARALLM_MM_WHERE(a, what), ": split-K for ", splits, " slices");
}

// The second pass of a split-K product (w: ws [splits][M][N] of f32 partials, released here: workspace.h):
// splitk_reduce, or with NORM_OK and a.post's norm possible there, splitk_reduce_norm (post->done set), or with
// a.swiglu, splitk_reduce_swiglu (swiglu->done set).
template <typename T, bool NORM_OK>
void reduce_slices(const Args& a, const Workspace& w, int splits, bool pdl, const char* what) {
  const float* ws = static_cast<const float*>(w.p);
  bool reduced = false;
  if constexpr (NORM_OK && std::is_same_v<T, __nv_bfloat16>) {
    if (const PostNorm* pn = a.post; reduce_norm_ok(a)) {
      // A block a row, a 16-byte pack of it a thread (up to 512): the slices' sum, the residual and bias
      // stored as splitk_reduce stores them, then the norm.
      const int ntx = mm::gemvp_norm_threads(a.N);
      const int threads = int(std::max<int64_t>(ntx, std::min<int64_t>(512, (a.N / 8 + 31) / 32 * 32)));
      auto k = pn->b ? mm::splitk_reduce_norm<T, true> : mm::splitk_reduce_norm<T, false>;
      PARALLM_CUDA_CHECK(launch_maybe_pdl(pdl, k, dim3(unsigned(a.M)), dim3(unsigned(threads)), 0, a.stream,
                                          static_cast<const float*>(ws), splits, static_cast<const T*>(a.bias),
                                          static_cast<T*>(a.C), a.M, a.N, a.alpha, a.beta, a.pair_ok,
                                          static_cast<const T*>(pn->w), static_cast<const T*>(pn->b), pn->eps, ntx,
                                          static_cast<T*>(pn->h)),
                         PARALLM_MM_WHERE(a, what), " split-K reduce with the ", pn->b ? "layernorm" : "rmsnorm");
      pn->done = reduced = true;
    }
  }
  if (const PostSwiGLU* sg = a.swiglu; !reduced && sg && reduce_swiglu_on() && a.N % 2 == 0 && a.alpha == 1.f &&
                                        a.beta == 0.f && !a.bias) {
    const int F = a.N / 2;
    // 8 columns a thread where they are whole 16-byte packs (splitk_reduce_swiglu8), else a pair: the same bits.
    const bool eight = F % 8 == 0 && aligned16(sg->y);
    const int64_t threads = int64_t(a.M) * (eight ? F / 8 : (F + 1) / 2);
    PARALLM_CUDA_CHECK(launch_maybe_pdl(pdl, eight ? mm::splitk_reduce_swiglu8<T> : mm::splitk_reduce_swiglu<T>,
                                        dim3(unsigned((threads + 255) / 256)), dim3(256), 0, a.stream,
                                        static_cast<const float*>(ws), splits, static_cast<T*>(sg->y), a.M, F),
                       PARALLM_MM_WHERE(a, what), " split-K reduce with SwiGLU");
    sg->done = reduced = true;
  }
  if (const PostRopeKv* rk = a.rope; !reduced && rk && a.alpha == 1.f && a.beta == 0.f &&
                                      int64_t(a.N) == int64_t(rk->Hq + 2 * rk->Hkv) * rk->D) {
    if (rk->att && splitk_rope_kv_attention_decode(a.stream, a.dt, ws, splits, a.bias, rk->kc, rk->vc, rk->pos, rk->lens,
                                                   rk->att, a.M, rk->Hq, rk->Hkv, rk->D, rk->rot_dim, rk->theta, rk->freqs,
                                                   rk->kb, rk->kt, int(rk->max_len), rk->scale, rk->counter))
      rk->attn_done = true;
    else
      splitk_rope_kv_write(a.stream, a.dt, static_cast<const float*>(ws), splits, a.bias, a.C, rk->kc, rk->vc, rk->pos,
                           a.M, rk->Hq, rk->Hkv, rk->D, rk->rot_dim, rk->theta, rk->freqs, rk->kb, rk->kt, rk->max_len, pdl);
    rk->done = reduced = true;
  }
  if (!reduced) {
    const int64_t pairs = int64_t(a.M) * ((a.N + 1) / 2);
    PARALLM_CUDA_CHECK(launch_maybe_pdl(pdl, mm::splitk_reduce<T>, dim3(unsigned((pairs + 255) / 256)), dim3(256), 0,
                                        a.stream, static_cast<const float*>(ws), splits, static_cast<const T*>(a.bias),
                                        static_cast<T*>(a.C), a.M, a.N, a.alpha, a.beta, a.pair_ok),
                       PARALLM_MM_WHERE(a, what), " split-K reduce");
  }
  PARALLM_CUDA_CHECK(workspace_release(a.stream, w), PARALLM_MM_WHERE(a, what), ": split-K workspace free");
}

template <typename T, bool TA, bool TB, int CW, int BN>
void launch_sm90_t(const Args& a, const CUtensorMap& mA, const CUtensorMap& mB) {
  using Sh = mm::S90Shape<CW, BN>;
  const char* what = CW == 1 ? "sm90 (64-row tile)" : BN == 192 ? "sm90 (128 x 192 tile)" : "sm90";
  int tm = (a.M + Sh::BM - 1) / Sh::BM, tn = (a.N + Sh::BN - 1) / Sh::BN;
  const int tiles = tm * tn;
  const int nk = (a.K + mm::S90_BK - 1) / mm::S90_BK;
  const int splits = CW == 2 ? sm90_splits(tiles, nk, a.M, a.N) : sm90_splits64(tiles, nk, a.M, a.N);
  // C through the TMA when the kernel writes C itself (no split-K reduce), nothing is read back
  // (beta == 0) and C's rows are whole 16-byte units; its map is encoded only then.
  CUtensorMap mC{};
  const int store_tma = splits == 1 && a.beta == 0.f && a.N % 8 == 0 && aligned16(a.C) &&
                        g_tma_store.load(std::memory_order_relaxed) && make_tensor_map(&mC, a.dt, a.C, a.N, a.M, 64, 64);
  const int units = tiles * splits;
  const int grid = std::min(units, device_sms());  // persistent: one block per SM at most
  const Workspace w = splitk_workspace(a, splits, what);
  float* ws = static_cast<float*>(w.p);
  // The kernel may launch with PDL, as the GEMVs do (pdl.cuh): its launch and set-up overlap the kernel before;
  // so does the split-K reduce's launch. By sm90_pdl: the 64-row tile's by default.
  const bool pdl = sm90_pdl(CW) && pdl_allows(1);
  // The 128-row tile's blocks draw their tiles where asked (tile_counter); the 64-row tile's (decode) stride.
  unsigned* sched = CW == 2 ? tile_counter(a.stream) : nullptr;
  const auto launch = [&](auto drawn) {
    constexpr bool D = decltype(drawn)::value;
    constexpr auto kern = mm::s90_kernel<T, TA, TB, CW, BN, D>;
    constexpr size_t smem = D ? Sh::SMEM_DRAWN : Sh::SMEM;
    set_smem_once<kern>(smem, what);
    PARALLM_CUDA_CHECK(launch_maybe_pdl(pdl && tile_pdl(grid), kern, dim3(unsigned(grid)), dim3(Sh::THREADS), smem,
                                        a.stream, mA, mB, mC, store_tma, static_cast<const T*>(a.bias),
                                        static_cast<T*>(a.C), a.M, a.N, a.K, a.alpha, a.beta, tm, tn, a.pair_ok, splits,
                                        ws, sched, tile_first_own()),
                       PARALLM_MM_WHERE(a, what));
  };
  if constexpr (CW == 2) {
    if (sched) launch(std::true_type{});
    else launch(std::false_type{});
  } else {
    launch(std::false_type{});
  }
  if (splits > 1) reduce_slices<T, CW == 1>(a, w, splits, pdl, what);
}

// The register GEMV (matmul_gemv.cuh). NORM (mm::NORM_RMS / NORM_LN) and EPI (mm::EPI_SWIGLU / EPI_GELU):
// rmsnorm_matmul(_swiglu)'s and layernorm_matmul's fused forms (norm weight nw, LN's bias nb, eps); with
// EPI_SWIGLU, a.N is F (C's columns) and W holds 2F rows.
template <typename T, int HN, int UNROLL, int SEL = 1, int NORM = mm::NORM_NONE, int EPI = mm::EPI_STORE,
          int POST = mm::NORM_NONE, bool XS = false>
void launch_gemv_v(const Args& a, const void* nw = nullptr, float eps = 0.f, const void* nb = nullptr,
                   void* hout = nullptr, unsigned* counter = nullptr) {
  constexpr int sets = EPI == mm::EPI_SWIGLU ? HN / 2 : HN;  // 8-row sets of C's columns a block
  const unsigned blocks = unsigned((a.N + 8 * sets - 1) / (8 * sets));
  const char* what = EPI == mm::EPI_SWIGLU ? (NORM == mm::NORM_RMS ? "gemv (rmsnorm, swiglu)" : "gemv (swiglu)")
                     : NORM == mm::NORM_LN  ? (EPI == mm::EPI_GELU ? "gemv (layernorm, gelu)" : "gemv (layernorm)")
                     : NORM == mm::NORM_RMS ? "gemv (rmsnorm)"
                     : EPI == mm::EPI_GELU  ? "gemv (gelu)"
                     : POST == mm::NORM_RMS ? "gemv (residual, then rmsnorm)"
                     : POST == mm::NORM_LN  ? "gemv (residual, then layernorm)"
                                            : "gemv";
  // The norm's threads a row: the prologue's over K, the post-norm's over N (norm.cu's choice for that row).
  const int ntx = mm::gemvp_norm_threads(POST != mm::NORM_NONE ? a.N : a.K);
  PARALLM_CUDA_CHECK(launch_pdl(gemv_wpre() ? mm::gemv_kernel<T, HN, UNROLL, SEL, NORM, EPI, POST, true, XS>
                                              : mm::gemv_kernel<T, HN, UNROLL, SEL, NORM, EPI, POST, false, XS>,
                                dim3(blocks),
                                dim3(mm::GEMV_WARPS * 32), 0, a.stream, static_cast<const T*>(a.A),
                                static_cast<const T*>(a.B), static_cast<const T*>(a.bias), static_cast<T*>(a.C), a.M,
                                a.N, a.K, a.alpha, a.beta, a.pair_ok, gemv_l2hint(), static_cast<const T*>(nw), eps, ntx,
                                static_cast<const T*>(nb), gemv_prefetch(int64_t(a.N) * a.K * int64_t(sizeof(T))),
                                static_cast<T*>(hout), counter, gemv_late_trigger()),
                     PARALLM_MM_WHERE(a, what));
}

// The register GEMV in the load form launch_gemv_t's measurements pick for a W of w_rows rows (same bits
// either way): the run-time choice (SEL 1) from kRunTimeLoadRows up, the always-hinted load (SEL 2) below.
// SEL 2 needs 56 registers to SEL 1's 76, so at N = 4096 all 512 blocks fit one wave (4 an SM): 1x4096x4096
// 81.6 -> 87.3% of the copy rate, 1x4096x11008 71.2 -> 88.7% (S13-4). At N >= 6144 SEL 2 loses (1x22016x4096
// 90.5 -> 73.0%: four blocks an SM of hinted loads), and SEL 0, the plain load (path 4), is slower at N = 4096.
constexpr int64_t kRunTimeLoadRows = 6144;
// A plain or post-norm product whose blocks all fit one wave with one block an SM (GPT-2's down projection: 96
// blocks of 8 rows, K 3072, each warp 12 chunks in 3 passes of 4) loads each warp's whole K range in one pass of
// 12 (gemv_kernel's UNROLL; under frozen weights all of it before the PDL wait), so the chain of dependent passes
// is paid once; 128 registers, which a grid this short can afford. The chunks are summed in the same order: the
// same bits. GPT-2 decode at batch 1 +2-6% (S21-5 … S21-7, bench/RESULTS.md); PARALLM_GEMV_ONEPASS=0 keeps it off.
// (Larger grids keep unroll 4: deeper unrolls lost there, fewer blocks fitting an SM: S6-4, S6-5.)
constexpr int kOnePassUnroll = 12;
bool gemv_one_pass(const Args& a, int64_t blocks) {
  static const bool on = env_not_off("PARALLM_GEMV_ONEPASS");
  const int64_t per = ((int64_t(a.K) + 31) / 32 + mm::GEMV_WARPS - 1) / mm::GEMV_WARPS;
  return on && blocks <= device_sms() && per > 4 && per <= kOnePassUnroll;
}
// A one-row plain or post-norm product with 4096 <= K <= mm::kXsMaxK takes gemv_kernel's XS form (X's row in
// shared memory, so unroll 8 fits the registers unroll 4 takes: twice the W bytes in flight a warp; the same
// bits). S24 (bench/RESULTS.md): 1x4096x4096 at 94.6% of the copy rate against 81.3%, 1x11008x4096 94.6 against
// 87.8. GPT-2's rows (K 768, 3072) keep the unroll-4 form: its batch-1 decode was 2% slower on XS, within the
// rounds' spread, so unshown either way. PARALLM_GEMV_XS=0 turns it off, =1 takes it at every K up to kXsMaxK.
constexpr int kXsUnroll = 8, kXsMinK = 4096;
bool gemv_xs(const Args& a) {
  static const bool off = !env_not_off("PARALLM_GEMV_XS"), every_k = env_on("PARALLM_GEMV_XS");
  return !off && a.M == 1 && a.K <= mm::kXsMaxK && (every_k || a.K >= kXsMinK);
}
template <typename T, int HN, int NORM = mm::NORM_NONE, int EPI = mm::EPI_STORE, int POST = mm::NORM_NONE>
void launch_register_gemv(const Args& a, int64_t w_rows, const void* nw = nullptr, float eps = 0.f,
                          const void* nb = nullptr, void* hout = nullptr, unsigned* counter = nullptr) {
  if constexpr (HN == 1 && NORM == mm::NORM_NONE && EPI == mm::EPI_STORE) {
    if (w_rows < kRunTimeLoadRows && gemv_one_pass(a, (int64_t(a.N) + 7) / 8))
      return launch_gemv_v<T, 1, kOnePassUnroll, 2, NORM, EPI, POST>(a, nw, eps, nb, hout, counter);
    if (gemv_xs(a)) {
      if (w_rows < kRunTimeLoadRows) return launch_gemv_v<T, 1, kXsUnroll, 2, NORM, EPI, POST, true>(a, nw, eps, nb, hout, counter);
      return launch_gemv_v<T, 1, kXsUnroll, 1, NORM, EPI, POST, true>(a, nw, eps, nb, hout, counter);
    }
  }
  if (w_rows < kRunTimeLoadRows) return launch_gemv_v<T, HN, 4, 2, NORM, EPI, POST>(a, nw, eps, nb, hout, counter);
  launch_gemv_v<T, HN, 4, 1, NORM, EPI, POST>(a, nw, eps, nb, hout, counter);
}

// Whether the dispatch's register GEMV takes a bf16 product of M rows of an aligned X (a scratch block)
// and W [N, K] with an activation in its epilogue (EPI_SWIGLU / EPI_GELU, no norm): the conditions of
// run16's GEMV, the default kernel choice (or the register kernel forced). One launch instead of the
// product and then silu_gate or gelu over it, with the same bits (the activation reads the rounded
// product, as those kernels read the stored one).
bool epilogue_gemv_ok(DType dt, int64_t M, int64_t N, int64_t K, const void* W) {
  const int path = g_gemv_path.load(std::memory_order_relaxed);
  // (Not where the W-as-A tile takes the plain product: the fused form must give the bits of the ops apart.)
  return dt == DType::BF16 && M <= 16 && K % 8 == 0 && aligned16(W) && device_cc() >= 80 &&
         (path == -1 || path == 0 || path == 5 || wide_gemv()) &&
         !(path == -1 && device_cc() == 90 && gemv_on_tile(M, N, K)) &&
         !(device_cc() == 90 && wtile_level(M, N, K) >= 2);
}

// The pipelined GEMV: one block per SM at most (its ring fills most of an SM's shared memory), the
// 8-row tiles split evenly over the blocks. NORM: rmsnorm_matmul's fused form (norm weight nw, eps).
template <typename T, int NW, int UC, int P, bool NORM = false, bool SWIGLU = false>
void launch_gemv_pipe(const Args& a, const void* nw = nullptr, float eps = 0.f) {
  constexpr auto kern = mm::gemv_pipe_kernel<T, NW, UC, P, NORM, SWIGLU>;
  constexpr size_t smem = mm::gemvp_smem<NW, UC, P, SWIGLU ? 2 : 1>();
  set_smem_once<kern>(smem, SWIGLU ? "gemv (rmsnorm, swiglu)" : NORM ? "gemv (rmsnorm)" : "gemv");
  const int ntiles = (a.N + 7) / 8;
  const int grid = std::min(ntiles, device_sms());
  PARALLM_CUDA_CHECK(launch_pdl(kern, dim3(unsigned(grid)), dim3(NW * 32), smem, a.stream, static_cast<const T*>(a.A),
                                static_cast<const T*>(a.B), static_cast<const T*>(a.bias), static_cast<T*>(a.C), a.M,
                                a.N, a.K, a.alpha, a.beta, a.pair_ok, static_cast<const T*>(nw), eps,
                                mm::gemvp_norm_threads(a.K)),
                     PARALLM_MM_WHERE(a, NORM ? "gemv (pipelined, rmsnorm)" : "gemv (pipelined)"));
}

// The pipelined GEMV's shape by the hook (matmul_gemv_path): 2 and 3 are alternatives kept for a sweep
// on the GPU (not yet measured): 8 warps with items of 2 chunks, 12 deep (finer items, 88 KB in flight
// an SM); 16 warps splitting K, items of 4 chunks, 4 deep (96 KB). Otherwise the default: 8 warps, 4
// chunks, 8 deep (112 KB).
template <typename T, bool NORM = false>
void launch_gemv_pipe_any(const Args& a, const void* nw = nullptr, float eps = 0.f) {
  switch (g_gemv_path.load(std::memory_order_relaxed)) {
    case 2: return launch_gemv_pipe<T, 8, 2, 12, NORM>(a, nw, eps);
    case 3: return launch_gemv_pipe<T, 16, 4, 4, NORM>(a, nw, eps);
    default: return launch_gemv_pipe<T, mm::GEMVP_WARPS, mm::GEMVP_UC, mm::GEMVP_P, NORM>(a, nw, eps);
  }
}

// The register kernel on 32 W rows a block (matmul_gemv_path 8: 4 sets of 8, unroll 4; 9: unroll 2; wide_gemv):
// X's two 16-byte loads a lane a chunk serve 4 W loads where the default's serve one, and no K slices (so no
// reduce launch). The same sums in the same order: the same bits. (64 rows a block, unroll 2, was slower at every
// 7B shape: S26-1.)
template <typename T>
void launch_wide_gemv(const Args& a, int path) {
  const bool hinted = a.N < kRunTimeLoadRows;  // the load form launch_register_gemv picks by N
  if (path == 8) return hinted ? launch_gemv_v<T, 4, 4, 2>(a) : launch_gemv_v<T, 4, 4, 1>(a);
  return hinted ? launch_gemv_v<T, 4, 2, 2>(a) : launch_gemv_v<T, 4, 2, 1>(a);
}

template <typename T>
void launch_gemv_t(const Args& a) {
  if (g_gemv_path.load(std::memory_order_relaxed) == 4) return launch_gemv_v<T, 1, 4, 0>(a);
  if (g_gemv_path.load(std::memory_order_relaxed) == 6)  // 16 W rows a block: half the X reads a W byte
    return launch_register_gemv<T, 2>(a, a.N);
  if (wide_gemv()) return launch_wide_gemv<T>(a, g_gemv_path.load(std::memory_order_relaxed));
  if (pipelined_gemv()) return launch_gemv_pipe_any<T>(a);
  // The register kernel at every batch. The pipelined one (its even split over the SMs and deep ring)
  // won at batch 1 against a large W before PDL (S6-4: 1x22016x4096 0.052 ms against 0.060); with PDL and
  // the register kernel's present load (ld_w16) it lost at every shape (S7-5: 1x11008x4096 0.025 against
  // 0.032, 1x22016x4096 0.047 against 0.059; bench/RESULTS.md, fourth session). Of the register kernel's
  // load forms, the run-time one (SEL 1) is faster than the plain load from N = 6144 rows up (S7-6, same
  // call: 1x11008x4096 0.025 against 0.029, 1x22016x4096 0.047 against 0.056) and slower at N = 4096, where
  // the always-hinted one (SEL 2) beats both (S13-4; launch_register_gemv). Every choice here adds in the
  // same order, so it changes no bits. (Also measured and dropped,
  // S6-4/S6-5: a deeper register kernel, unroll 8 or 16 (fewer blocks fit an SM), and a row-per-warp
  // kernel with 512-byte loads of one row and X in shared memory; S7-4: the pipelined kernel's copies laid
  // out as whole 128-byte lines.) Measured on an H100, 1x11008x4096 bf16 (bench/RESULTS.md): 8 rows x
  // unroll 4 gives 2,391 GB/s; 16 rows x 4, 2,162 (a 5.2-wave grid, the last wave a fifth full); 8 rows x
  // 8, 1,993 (registers).
  launch_register_gemv<T, 1>(a, a.N);
}

// Run-time transpose flags -> template instantiations.
template <typename T>
void launch_simt(const Args& a) {
  if (a.transA) {
    if (a.transB) launch_simt_t<T, true, true>(a); else launch_simt_t<T, true, false>(a);
  } else {
    if (a.transB) launch_simt_t<T, false, true>(a); else launch_simt_t<T, false, false>(a);
  }
}

template <typename T, bool AL>
void launch_sm80(const Args& a) {
  if (a.transA) {
    if (a.transB) launch_sm80_t<T, true, true, AL>(a); else launch_sm80_t<T, true, false, AL>(a);
  } else {
    if (a.transB) launch_sm80_t<T, false, true, AL>(a); else launch_sm80_t<T, false, false, AL>(a);
  }
}

template <typename T, int CW, int BN = mm::S90_BN>
void launch_sm90_cw(const Args& a, const CUtensorMap& mA, const CUtensorMap& mB) {
  if (a.transA) {
    if (a.transB) launch_sm90_t<T, true, true, CW, BN>(a, mA, mB);
    else launch_sm90_t<T, true, false, CW, BN>(a, mA, mB);
  } else {
    if (a.transB) launch_sm90_t<T, false, true, CW, BN>(a, mA, mB);
    else launch_sm90_t<T, false, false, CW, BN>(a, mA, mB);
  }
}

// The sm90 path, its tile by M (sm90_consumers); false when a TMA map cannot be made (the sm80 path then).
template <typename T>
bool try_sm90(const Args& a) {
  const int cw = sm90_consumers(a.M);
  const int bm = 64 * cw, bn = cw == 2 ? sm90_width(a) : mm::S90_BN;
  CUtensorMap mA, mB;
  // A: K-major [M][K] in boxes of bm rows x 64 k, or M-major [K][M] in 64 x 64 boxes (cw per tile).
  // B: K-major [N][K] in boxes of bn rows x 64 k, or N-major [K][N] in 64 x 64 boxes (bn / 64 per tile).
  bool ok = a.transA ? make_tensor_map(&mA, a.dt, a.A, a.M, a.K, 64, 64)
                     : make_tensor_map(&mA, a.dt, a.A, a.K, a.M, 64, uint32_t(bm));
  ok = ok && (a.transB ? make_tensor_map(&mB, a.dt, a.B, a.K, a.N, 64, uint32_t(bn))
                       : make_tensor_map(&mB, a.dt, a.B, a.N, a.K, 64, 64));
  if (!ok) return false;
  if (cw == 2 && bn == 192) launch_sm90_cw<T, 2, 192>(a, mA, mB);
  else if (cw == 2) launch_sm90_cw<T, 2>(a, mA, mB);
  else launch_sm90_cw<T, 1>(a, mA, mB);
  return true;
}

// K slices for the W-as-A tile: with t tiles of 128 weight rows, the s in 1..4 (slices of at least four
// k-tiles) that takes the fewest rounds of the grid per unit of work, ceil(t s / SMs) / s, a slice count
// above 1 charged 0.15 of a round for its partials and reduce (LLaMA-7B: qkv's 96 tiles whole, gate+up's 172
// in 3, out's and down's 32 in 4). Timed only through 7B's products and decode (S18-1 … S18-4); matmulSplitK
// forces a count.
int sm90w_splits(int tiles, int nk, int64_t M, int64_t N) {
  const int forced = g_splits.load(std::memory_order_relaxed);
  if (forced >= 1) return clamp_splits(forced, nk, M, N);
  const int sms = device_sms();
  int best = 1;
  double best_cost = 1e30;
  for (int s = 1; s <= 4 && (s == 1 || s <= nk / 4); ++s) {
    const double cost = double((int64_t(tiles) * s + sms - 1) / sms) / s + (s > 1 ? 0.15 : 0.0);
    if (cost < best_cost - 1e-9) best = s, best_cost = cost;
  }
  return clamp_splits(best, nk, M, N);
}

#ifdef PARALLM_PROBES
// PARALLM_WTILE_PROBE=1|2: the W-as-A tile's timing probes (s90w_kernel's PROBE; wrong results), built only with
// PARALLM_PROBES.
int wtile_probe() {
  static const int v = [] {
    const char* e = std::getenv("PARALLM_WTILE_PROBE");
    return (e && (e[0] == '1' || e[0] == '2') && !e[1]) ? e[0] - '0' : 0;
  }();
  return v;
}
#endif

// PARALLM_SKIP (a timing knob, never for results; comma-separated): leaves W-as-A tile launches or their split-K
// reduces out, so `bench generate` measures what each costs inside decode's step as replayed (Nsight Compute times
// kernels one at a time, with no overlap: S26-3; Nsight Systems is not on the device machine, S26-7). A product is
// named by what its reduce carries: "qkv" (the rope), "gateup" (SwiGLU), "out" and "down" (the norm; down's K is
// the larger); "<name>-reduce" or "reduce" (every one) skips the reduce, and a skipped reduce's norm, SwiGLU or
// rope counts as done. Outputs are left unwritten: the tokens are wrong with it set.
bool wtile_skip(const Args& a, bool reduce) {
  static const std::string env = [] {
    const char* e = std::getenv("PARALLM_SKIP");
    return "," + std::string(e ? e : "") + ",";
  }();
  if (env.size() == 2) return false;
  const char* name = a.rope ? "qkv" : a.swiglu ? "gateup" : a.post ? (a.K > a.N ? "down" : "out") : "other";
  const std::string key = "," + std::string(name) + (reduce ? "-reduce," : ",");
  return env.find(key) != std::string::npos || (reduce && env.find(",reduce,") != std::string::npos);
}

template <typename T, int NX>
void launch_sm90w_t(const Args& a, const CUtensorMap& mW, const CUtensorMap& mX) {
  using Sh = mm::WShape<NX>;
#ifdef PARALLM_PROBES
  const int probe = wtile_probe();
  const auto kern = probe == 1 ? mm::s90w_kernel<T, NX, 1> : probe == 2 ? mm::s90w_kernel<T, NX, 2> : mm::s90w_kernel<T, NX>;
  set_smem_once<mm::s90w_kernel<T, NX, 1>>(Sh::SMEM, "sm90 (W-as-A tile, probe 1)");
  set_smem_once<mm::s90w_kernel<T, NX, 2>>(Sh::SMEM, "sm90 (W-as-A tile, probe 2)");
#else
  constexpr auto kern = mm::s90w_kernel<T, NX>;
#endif
  const char* what = "sm90 (W-as-A tile)";
  set_smem_once<mm::s90w_kernel<T, NX>>(Sh::SMEM, what);
  const int tiles = (a.N + Sh::BW - 1) / Sh::BW;
  const int nk = (a.K + mm::S90_BK - 1) / mm::S90_BK;
  const int splits = sm90w_splits(tiles, nk, a.M, a.N);
  const int units = tiles * splits;
  const int grid = std::min(units, device_sms());
  const Workspace w = splitk_workspace(a, splits, what);
  float* ws = static_cast<float*>(w.p);
  const bool pdl = sm90_pdl(1) && pdl_allows(1);
  if (!wtile_skip(a, false))
    PARALLM_CUDA_CHECK(launch_maybe_pdl(pdl && tile_pdl(grid), kern, dim3(unsigned(grid)), dim3(Sh::THREADS), Sh::SMEM,
                                        a.stream, mW, mX, static_cast<const T*>(a.bias), static_cast<T*>(a.C), a.M,
                                        a.N, a.K, a.alpha, a.beta, tiles, splits, ws),
                       PARALLM_MM_WHERE(a, what));
  if (splits > 1 && wtile_skip(a, true)) {  // (timing only: the reduce and what it carries left out)
    if (a.post) a.post->done = true;
    if (a.swiglu) a.swiglu->done = true;
    if (a.rope) a.rope->done = true;
    PARALLM_CUDA_CHECK(workspace_release(a.stream, w), PARALLM_MM_WHERE(a, what), ": split-K workspace free");
    return;
  }
  if (splits > 1) reduce_slices<T, true>(a, w, splits, pdl, what);
}

// The W-as-A tile for X [M][K] (M <= 64) and W [N][K] (transB), X's rows padded to the next of 8, 16, 32, 64;
// false when a TMA map cannot be made.
template <typename T>
bool try_sm90w(const Args& a) {
  const int nx = a.M <= 8 ? 8 : a.M <= 16 ? 16 : a.M <= 32 ? 32 : 64;
  CUtensorMap mW, mX;
  if (!make_tensor_map(&mW, a.dt, a.B, a.K, a.N, 64, uint32_t(mm::WShape<16>::BW)) ||
      !make_tensor_map(&mX, a.dt, a.A, a.K, a.M, 64, uint32_t(nx)))
    return false;
  switch (nx) {
    case 8: launch_sm90w_t<T, 8>(a, mW, mX); break;
    case 16: launch_sm90w_t<T, 16>(a, mW, mX); break;
    case 32: launch_sm90w_t<T, 32>(a, mW, mX); break;
    default: launch_sm90w_t<T, 64>(a, mW, mX); break;
  }
  return true;
}

template <typename T>
void run16(const Args& a) {
  const int cc = device_cc();
  if (cc < 80) return launch_simt<T>(a);
  const int lda = a.transA ? a.M : a.K, ldb = a.transB ? a.K : a.N;
  const bool tiles16 = lda % 8 == 0 && ldb % 8 == 0 && aligned16(a.A) && aligned16(a.B);

  const bool gemv_ok = a.M <= 16 && a.transB && !a.transA && a.K % 8 == 0 && aligned16(a.A) && aligned16(a.B);
  // matmul_gemv_path 7 or PARALLM_GEMV_TILE: those products on the sm90 64-row tile instead.
  const int path = g_gemv_path.load(std::memory_order_relaxed);
  const bool on_tile = (path == 7 || (path == -1 && gemv_on_tile(a.M, a.N, a.K))) && cc == 90 && tiles16;
  // matmulWTile / PARALLM_WTILE: the W-as-A tile for the 64-row tile's products (1), and the GEMV's (2).
  const int wt = cc == 90 && tiles16 && a.transB && !a.transA && a.M <= 64 ? wtile_level(a.M, a.N, a.K) : 0;
  if (gemv_ok && !on_tile && wt < 2) return launch_gemv_t<T>(a);
  if (wt >= 1 && try_sm90w<T>(a)) return;
  if (cc == 90 && tiles16 && try_sm90<T>(a)) return;
  if (tiles16) launch_sm80<T, true>(a); else launch_sm80<T, false>(a);
}

// fn(scratch) with `bytes` of scratch (workspace.h: stream-ordered, or under a capture the capture's buffer for
// this nesting depth), freed once fn's launches are queued, or when fn throws; `what...` names the call in an error.
thread_local int t_scratch_depth = 0;
template <class Fn, class... What>
void with_scratch(cudaStream_t stream, size_t bytes, Fn&& fn, const What&... what) {
  // (past the last slot, capture_workspace declines: the call allocates its own)
  const Workspace w = workspace_acquire(stream, kWsScratch + t_scratch_depth, bytes, what..., " (scratch)");
  struct Depth {
    Depth() { ++t_scratch_depth; }
    ~Depth() { --t_scratch_depth; }
  };
  try {
    Depth d;
    fn(w.p);
  } catch (...) {
    workspace_release(stream, w);
    throw;
  }
  PARALLM_CUDA_CHECK(workspace_release(stream, w), what..., ": scratch free");
}

// C = X B^T + bias, then GELU when asked: in the register GEMV's epilogue where it applies (one launch),
// else matmul then gelu; the same bits.
void linear_gelu(cudaStream_t stream, DType dt, const void* X, const void* B, const void* bias, void* C, int64_t M,
                 int64_t N, int64_t K, bool gelu_after) {
  if (gelu_after && epilogue_gemv_ok(dt, M, N, K, B) && aligned16(X)) {
    Args a{stream, dt, X, B, bias, C, int(M), int(N), int(K), false, true, 1.f, 0.f, 0};
    a.pair_ok = (N % 2 == 0) && (reinterpret_cast<uintptr_t>(C) % 4 == 0);
    return launch_register_gemv<__nv_bfloat16, 1, mm::NORM_NONE, mm::EPI_GELU>(a, N);
  }
  matmul(stream, dt, X, B, bias, C, M, N, K, false, true, 1.f, 0.f);
  if (gelu_after) gelu(stream, dt, C, C, M * N);
}

// C[M, F] = silu(gate) * up of X Wgu^T in the register GEMV's epilogue (X normalized already).
void launch_gemv_swiglu(cudaStream_t stream, DType dt, const void* X, const void* Wgu, void* C, int64_t M, int64_t F,
                        int64_t K) {
  Args a{stream, dt, X, Wgu, nullptr, C, int(M), int(F), int(K), false, true, 1.f, 0.f, 0};
  // (wide_gemv: 2 gate and 2 up sets a block, unroll 2, the faster form at 16x22016x4096 in S26-1; the same sums)
  if (wide_gemv()) return launch_gemv_v<__nv_bfloat16, 4, 2, 1, mm::NORM_NONE, mm::EPI_SWIGLU>(a);
  launch_register_gemv<__nv_bfloat16, 2, mm::NORM_NONE, mm::EPI_SWIGLU>(a, 2 * F);
}

// The matmul's checks and dispatch; post: a norm of C the sm90 64-row tile may run in its split-K reduce
// (matmul_residual_norm), post->done telling the caller whether it did.
void matmul_with(cudaStream_t stream, DType dt, const void* A, const void* B, const void* bias, void* C, int64_t M,
                 int64_t N, int64_t K, bool transA, bool transB, float alpha, float beta, const PostNorm* post,
                 const PostSwiGLU* swiglu = nullptr, const PostRopeKv* rope = nullptr) {
  if (dt != DType::F32 && dt != DType::BF16 && dt != DType::F16)
    fail("matmul: dtype ", dtype_name(dt), " is not supported (f32, bf16, f16)");
  if (M < 0 || N < 0 || K < 0) fail("matmul: negative size M=", M, " N=", N, " K=", K);
  constexpr int64_t kMax = INT32_MAX;
  if (M > kMax || N > kMax || K > kMax)
    fail("matmul: sizes M=", M, " N=", N, " K=", K, " exceed the 2^31-1 limit of the CUDA kernels");
  if (M == 0 || N == 0) return;
  if (!C) fail("matmul: C is null (M=", M, " N=", N, " K=", K, ")");
  if (K > 0 && (!A || !B)) fail("matmul: A or B is null (M=", M, " N=", N, " K=", K, ")");
  const int64_t tiles = ((M + 63) / 64) * ((N + 63) / 64);
  if (tiles > kMax) fail("matmul: M=", M, " N=", N, " needs more blocks than one launch holds");

  Args a{stream, dt, A, B, bias, C, int(M), int(N), int(K), transA, transB, alpha, beta, 0, post, swiglu, rope};
  a.pair_ok = (N % 2 == 0) && (reinterpret_cast<uintptr_t>(C) % 4 == 0);

  if (dt == DType::F32 || K == 0) {
    // K == 0: C = beta*C + bias, which the simt kernel does with an empty k loop (no TMA map of size 0).
    switch (dt) {
      case DType::F32: launch_simt<float>(a); break;
      case DType::BF16: launch_simt<__nv_bfloat16>(a); break;
      default: launch_simt<__half>(a); break;
    }
    return;
  }
  if (dt == DType::BF16) run16<__nv_bfloat16>(a); else run16<__half>(a);
}

}  // namespace

void rmsnorm_matmul(cudaStream_t stream, DType dt, const void* X, const void* norm_w, const void* B, const void* bias,
                    void* C, int64_t M, int64_t N, int64_t K, float eps, float alpha, float beta) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rmsnorm_matmul: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " N=", N, " K=", K, ")");
  if (M < 0 || N < 0 || K < 1) fail("rmsnorm_matmul: bad sizes M=", M, " N=", N, " K=", K);
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    fail("rmsnorm_matmul: sizes M=", M, " N=", N, " K=", K, " exceed the 2^31-1 limit of the CUDA kernels");
  if (M == 0 || N == 0) return;
  if (!X || !norm_w || !B || !C) fail("rmsnorm_matmul: null pointer (M=", M, " N=", N, " K=", K, ")");
  // Fused where the pipelined GEMV runs and norm.cu would take its 16-byte path with at most a block's
  // threads a row (what the kernel reproduces); else rmsnorm into a scratch row block, then matmul.
  const bool fusable = dt == DType::BF16 && M <= 16 && K % 8 == 0 && aligned16(X) && aligned16(B) &&
                       aligned16(norm_w) && mm::gemvp_norm_threads(K) <= 8 * 32 && device_cc() >= 80;
  if (fusable && (pipelined_gemv() || (register_fusion() && M <= kRegisterFusionMaxM))) {
    Args a{stream, dt, X, B, bias, C, int(M), int(N), int(K), false, true, alpha, beta, 0};
    a.pair_ok = (N % 2 == 0) && (reinterpret_cast<uintptr_t>(C) % 4 == 0);
    if (pipelined_gemv()) return launch_gemv_pipe_any<__nv_bfloat16, true>(a, norm_w, eps);
    return launch_register_gemv<__nv_bfloat16, 1, mm::NORM_RMS>(a, N, norm_w, eps);
  }
  with_scratch(stream, size_t(M) * size_t(K) * dtype_size(dt), [&](void* h) {
    rmsnorm(stream, dt, X, norm_w, h, nullptr, M, K, eps);
    matmul(stream, dt, h, B, bias, C, M, N, K, false, true, alpha, beta);
  }, "rmsnorm_matmul (M=", M, " K=", K, ")");
}

void rmsnorm_matmul_swiglu(cudaStream_t stream, DType dt, const void* X, const void* norm_w, const void* Wgu, void* C,
                           int64_t M, int64_t F, int64_t K, float eps) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("rmsnorm_matmul_swiglu: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " F=", F, " K=", K,
         ")");
  if (M < 0 || F < 0 || K < 1) fail("rmsnorm_matmul_swiglu: bad sizes M=", M, " F=", F, " K=", K);
  if (M > INT32_MAX || 2 * F > INT32_MAX || K > INT32_MAX)
    fail("rmsnorm_matmul_swiglu: sizes M=", M, " F=", F, " K=", K, " exceed the 2^31-1 limit of the CUDA kernels");
  if (M == 0 || F == 0) return;
  if (!X || !Wgu || !C) fail("rmsnorm_matmul_swiglu: null pointer (M=", M, " F=", F, " K=", K, ")");
  const bool epi = epilogue_gemv_ok(dt, M, 2 * F, K, Wgu);
  if (!norm_w) {  // X is normalized already: the GEMV with SwiGLU in its epilogue where it applies
    if (epi && aligned16(X)) return launch_gemv_swiglu(stream, dt, X, Wgu, C, M, F, K);
  } else {
    // Fused on rmsnorm_matmul's conditions (the gate and up halves in one item: 8 warps, items of 2 chunks
    // of each half, 8 deep: the default's 128 KB ring and its K split, hence its sums).
    const bool fusable = dt == DType::BF16 && M <= 16 && K % 8 == 0 && aligned16(X) && aligned16(Wgu) &&
                         aligned16(norm_w) && mm::gemvp_norm_threads(K) <= 8 * 32 && device_cc() >= 80;
    if (fusable && (pipelined_gemv() || (register_fusion() && M <= kRegisterFusionMaxM))) {
      Args a{stream, dt, X, Wgu, nullptr, C, int(M), int(F), int(K), false, true, 1.f, 0.f, 0};
      if (pipelined_gemv()) return launch_gemv_pipe<__nv_bfloat16, 8, 2, 8, true, true>(a, norm_w, eps);
      return launch_register_gemv<__nv_bfloat16, 2, mm::NORM_RMS, mm::EPI_SWIGLU>(a, 2 * F, norm_w, eps);
    }
    if (epi)  // rmsnorm into a scratch block, then the GEMV with SwiGLU in its epilogue: two launches
      return with_scratch(stream, size_t(M) * size_t(K) * dtype_size(dt), [&](void* h) {
        rmsnorm(stream, dt, X, norm_w, h, nullptr, M, K, eps);
        launch_gemv_swiglu(stream, dt, h, Wgu, C, M, F, K);
      }, "rmsnorm_matmul_swiglu (M=", M, " K=", K, ")");
  }
  // The ops apart: the (normalized) product into a scratch gate+up block, then silu_gate, unless the product's
  // split-K reduce wrote C with SwiGLU in it (the same bits).
  with_scratch(stream, size_t(M) * size_t(2 * F) * dtype_size(dt), [&](void* gu) {
    const PostSwiGLU sg{C};
    if (norm_w) rmsnorm_matmul(stream, dt, X, norm_w, Wgu, nullptr, gu, M, 2 * F, K, eps, 1.f, 0.f);
    else matmul_with(stream, dt, X, Wgu, nullptr, gu, M, 2 * F, K, false, true, 1.f, 0.f, nullptr, &sg);
    if (!sg.done) silu_gate(stream, dt, gu, static_cast<char*>(gu) + size_t(F) * dtype_size(dt), C, M, F, 2 * F);
  }, "rmsnorm_matmul_swiglu (M=", M, " F=", F, ")");
}

void layernorm_matmul(cudaStream_t stream, DType dt, const void* X, const void* gamma, const void* beta,
                      const void* B, const void* bias, void* C, int64_t M, int64_t N, int64_t K, float eps,
                      bool gelu_after) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("layernorm_matmul: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " N=", N, " K=", K, ")");
  if (M < 0 || N < 0 || K < 1) fail("layernorm_matmul: bad sizes M=", M, " N=", N, " K=", K);
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    fail("layernorm_matmul: sizes M=", M, " N=", N, " K=", K, " exceed the 2^31-1 limit of the CUDA kernels");
  if (M == 0 || N == 0) return;
  if (!X || !B || !C || !gamma != !beta) fail("layernorm_matmul: null pointer (M=", M, " N=", N, " K=", K, ")");
  if (!gamma) return linear_gelu(stream, dt, X, B, bias, C, M, N, K, gelu_after);  // X normalized already
  // Fused in the register GEMV on rmsnorm_matmul's conditions, for the rows the register fusion takes;
  // else layernorm into a scratch row block, then matmul, then gelu in place.
  const bool fused = dt == DType::BF16 && M <= kRegisterFusionMaxM && K % 8 == 0 && aligned16(X) && aligned16(B) &&
                     aligned16(gamma) && aligned16(beta) && mm::gemvp_norm_threads(K) <= 8 * 32 &&
                     device_cc() >= 80 && register_fusion();
  if (fused) {
    Args a{stream, dt, X, B, bias, C, int(M), int(N), int(K), false, true, 1.f, 0.f, 0};
    a.pair_ok = (N % 2 == 0) && (reinterpret_cast<uintptr_t>(C) % 4 == 0);
    if (gelu_after) return launch_register_gemv<__nv_bfloat16, 1, mm::NORM_LN, mm::EPI_GELU>(a, N, gamma, eps, beta);
    return launch_register_gemv<__nv_bfloat16, 1, mm::NORM_LN>(a, N, gamma, eps, beta);
  }
  with_scratch(stream, size_t(M) * size_t(K) * dtype_size(dt), [&](void* h) {
    layernorm(stream, dt, X, gamma, beta, h, nullptr, nullptr, M, K, eps);
    linear_gelu(stream, dt, h, B, bias, C, M, N, K, gelu_after);
  }, "layernorm_matmul (M=", M, " K=", K, ")");
}

void matmul_residual_norm(cudaStream_t stream, DType dt, const void* A, const void* B, const void* bias, void* R,
                          const void* norm_w, const void* norm_b, void* H, uint32_t* counter, int64_t M, int64_t N,
                          int64_t K, float eps) {
  if (dt != DType::F32 && dt != DType::BF16)
    fail("matmul_residual_norm: dtype ", dtype_name(dt), " is not supported (f32, bf16) (M=", M, " N=", N, " K=", K, ")");
  if (M < 0 || N < 1 || K < 1) fail("matmul_residual_norm: bad sizes M=", M, " N=", N, " K=", K);
  if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    fail("matmul_residual_norm: sizes M=", M, " N=", N, " K=", K, " exceed the 2^31-1 limit of the CUDA kernels");
  if (M == 0) return;
  if (!A || !B || !R || !norm_w || !H) fail("matmul_residual_norm: null pointer (M=", M, " N=", N, " K=", K, ")");
  // One launch where the dispatch's register GEMV takes the product of at most kPostNormMaxRows rows (its
  // post-norm epilogue: the last block normalizes the rows, alone, which at 16 rows cost 7B decode 22%:
  // S9-2); the sm90 64-row tile's split-K reduce with the norm in it (splitk_reduce_norm) where the tile
  // cuts K; else the matmul (beta = 1), then the norm. The same bits every way.
  constexpr int64_t kPostNormMaxRows = 4;
  const bool fused = counter && M <= kPostNormMaxRows && epilogue_gemv_ok(dt, M, N, K, B) && aligned16(A) && aligned16(R) && aligned16(H) &&
                     aligned16(norm_w) && (!norm_b || aligned16(norm_b)) && N % 8 == 0 &&
                     mm::gemvp_norm_threads(N) <= mm::GEMV_WARPS * 32;
  if (fused) {
    Args a{stream, dt, A, B, bias, R, int(M), int(N), int(K), false, true, 1.f, 1.f, 0};
    a.pair_ok = (N % 2 == 0) && (reinterpret_cast<uintptr_t>(R) % 4 == 0);
    if (norm_b)
      return launch_register_gemv<__nv_bfloat16, 1, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_LN>(a, N, norm_w, eps, norm_b,
                                                                                                 H, counter);
    return launch_register_gemv<__nv_bfloat16, 1, mm::NORM_NONE, mm::EPI_STORE, mm::NORM_RMS>(a, N, norm_w, eps, nullptr,
                                                                                               H, counter);
  }
  const PostNorm post{norm_w, norm_b, H, eps};
  matmul_with(stream, dt, A, B, bias, R, M, N, K, false, true, 1.f, 1.f, &post);
  if (post.done) return;
  if (norm_b) layernorm(stream, dt, R, norm_w, norm_b, H, nullptr, nullptr, M, N, eps);
  else rmsnorm(stream, dt, R, norm_w, H, nullptr, M, N, eps);
}

void matmul_sm90_splits(int n) { g_splits.store(n, std::memory_order_relaxed); }
void matmul_sm90_tile_rows(int n) { g_tile_rows.store(n, std::memory_order_relaxed); }
void matmul_sm90_tile_cols(int n) { g_tile_cols.store(n, std::memory_order_relaxed); }
void matmul_sm90_tma_store(int on) { g_tma_store.store(on, std::memory_order_relaxed); }
void matmul_gemv_path(int n) { g_gemv_path.store(n, std::memory_order_relaxed); }
void matmul_sm90_wtile(int mode) { g_wtile.store(mode, std::memory_order_relaxed); }
void matmul_sm90_schedule(int mode) { g_schedule.store(mode, std::memory_order_relaxed); }

bool pdl_allows(int level) {
  int v = g_pdl.load(std::memory_order_relaxed);
  if (v < 0) {
    const char* e = std::getenv("PARALLM_PDL");
    v = (e && (e[0] == '0' || e[0] == '2') && !e[1]) ? e[0] - '0' : 1;
    g_pdl.store(v, std::memory_order_relaxed);
  }
  return v >= level && device_cc() >= 90;
}
void set_pdl(int level) { g_pdl.store(level < 0 ? 0 : level > 2 ? 2 : level, std::memory_order_relaxed); }

void matmul(cudaStream_t stream, DType dt, const void* A, const void* B, const void* bias, void* C, int64_t M,
            int64_t N, int64_t K, bool transA, bool transB, float alpha, float beta) {
  matmul_with(stream, dt, A, B, bias, C, M, N, K, transA, transB, alpha, beta, nullptr);
}

void matmul_rope_kv_write(cudaStream_t stream, DType dt, const void* X, const void* W, const void* bias, void* qkv,
                          void* kc, void* vc, const int32_t* pos, int64_t M, int64_t K, int Hq, int Hkv, int D,
                          int rot_dim, float theta, const float* freqs, int64_t kv_bstride, int64_t kv_tstride,
                          int64_t max_len) {
  // rope_kv_write's checks first: the reduce that may take its place runs without them.
  if (M < 0 || M > INT32_MAX || K < 1 || Hq < 1 || Hkv < 1 || D < 1 || kv_bstride < 0 || kv_tstride < 0 ||
      max_len < 1 || rot_dim < 0 || rot_dim % 2 != 0 || rot_dim > D)
    fail("matmul_rope_kv_write: bad sizes M=", M, " K=", K, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rot_dim=", rot_dim,
         " kv strides ", kv_bstride, "/", kv_tstride, " max_len=", max_len);
  if (rot_dim > 0 && !freqs && !(theta > 0.f)) fail("matmul_rope_kv_write: theta=", theta, " must be positive");
  if (dt != DType::F32 && dt != DType::BF16) fail("matmul_rope_kv_write: dtype ", dtype_name(dt), " not supported (f32, bf16)");
  if (M == 0) return;
  if (!qkv || !kc || !vc || !pos) fail("matmul_rope_kv_write: null pointer (M=", M, " Hq=", Hq, " Hkv=", Hkv, ")");
  const int64_t N = int64_t(Hq + 2 * Hkv) * D;
  const PostRopeKv rk{kc, vc, pos, freqs, Hq, Hkv, D, rot_dim, theta, kv_bstride, kv_tstride, max_len};
  matmul_with(stream, dt, X, W, bias, qkv, M, N, K, false, true, 1.f, 0.f, nullptr, nullptr, &rk);
  if (!rk.done) rope_kv_write(stream, dt, qkv, kc, vc, pos, int(M), Hq, Hkv, D, N, rot_dim, theta, freqs, kv_bstride,
                              kv_tstride, max_len);
}

void matmul_rope_kv_attention_decode(cudaStream_t stream, DType dt, const void* X, const void* W, const void* bias,
                                     void* qkv, void* kc, void* vc, const int32_t* pos, const int32_t* lens, void* out,
                                     int64_t M, int64_t K, int Hq, int Hkv, int D, int rot_dim, float theta,
                                     const float* freqs, int64_t kv_bstride, int64_t kv_tstride, int max_len, float scale,
                                     uint32_t* counter) {
  // The checks of the ops it stands for first: the fused attention that may take their place runs without them.
  if (M < 0 || M > 65535 || K < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv != 0 || D < 1 || D > 256 || kv_bstride < 0 ||
      kv_tstride < int64_t(Hkv) * D || max_len < 1 || rot_dim < 0 || rot_dim % 2 != 0 || rot_dim > D)
    fail("matmul_rope_kv_attention_decode: bad sizes M=", M, " K=", K, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rot_dim=",
         rot_dim, " kv strides ", kv_bstride, "/", kv_tstride, " max_len=", max_len,
         " (need Hq a multiple of Hkv, 0 < D <= 256, an even rot_dim <= D)");
  if (rot_dim > 0 && !freqs && !(theta > 0.f))
    fail("matmul_rope_kv_attention_decode: theta=", theta, " must be positive");
  if (dt != DType::F32 && dt != DType::BF16)
    fail("matmul_rope_kv_attention_decode: dtype ", dtype_name(dt), " not supported (f32, bf16)");
  if (M == 0) return;
  if (!qkv || !kc || !vc || !pos || !lens || !out)
    fail("matmul_rope_kv_attention_decode: null pointer (M=", M, " Hq=", Hq, " Hkv=", Hkv, ")");
  const int64_t N = int64_t(Hq + 2 * Hkv) * D;
  PostRopeKv rk{kc, vc, pos, freqs, Hq, Hkv, D, rot_dim, theta, kv_bstride, kv_tstride, max_len};
  rk.lens = lens, rk.att = out, rk.counter = counter, rk.scale = scale;
  matmul_with(stream, dt, X, W, bias, qkv, M, N, K, false, true, 1.f, 0.f, nullptr, nullptr, &rk);
  if (!rk.done) rope_kv_write(stream, dt, qkv, kc, vc, pos, int(M), Hq, Hkv, D, N, rot_dim, theta, freqs, kv_bstride,
                              kv_tstride, max_len);
  if (!rk.attn_done) attention_decode(stream, dt, qkv, kc, vc, lens, out, int(M), Hq, Hkv, D, N, kv_bstride, kv_tstride,
                                      max_len, scale, counter);
}

}  // namespace parallm::cuda
