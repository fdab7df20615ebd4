// The kernel timeline of a measurement build (cmake option PARALLM_TRACE): every block of every kernel that
// begins with PARALLM_TRACE_SCOPE(tag) leaves one record (its launch, SM, start, PDL wait, end: %globaltimer ns)
// in a device ring, and the addon writes the rings as CSV at the env's teardown when PARALLM_TRACE_OUT names a
// file (napi/module.cc, trace.cc; bench/trace-report.mjs reads it). There is no Nsight Systems on the GPU
// machine: this shows where a decode step's time goes inside its CUDA graph (gaps, ramps, tails, PDL overlap).
//
// Included by pdl.cuh only when PARALLM_TRACE is defined (otherwise pdl.cuh defines PARALLM_TRACE_SCOPE as
// nothing, so the default build is the same code; the host emulation copies pdl.cuh without this file), and by
// napi/module.cc for trace_dump. Records are made on sm_90+ only (the build is sm_90a); elsewhere, and in the
// nvcc host pass, the scope is an empty object.
//
// No relocatable device code: each .cu file (translation unit) has its own ring and counter, and registers a
// reader of them at static initialization; the dump reads every TU's ring through the registry (trace.cc).
//
// Cost inside the kernel: thread 0 reads the timer and writes three shared words, then one __syncthreads (the
// scope is the kernel's first statement, so every thread reaches it); at exit each thread adds one to a shared
// count and the last one out writes the record (so the end is the block's last thread, not thread 0, which in
// the sm90 tiles is the TMA producer and done long before the consumers). 24 bytes of static shared memory
// (the sm90 64-row tile's 230 KB ring leaves ~2 KB) and a few registers (kvcache.cu's kernels: +0 to +8). pdl_wait() also keeps the earliest return of
// griddepcontrol.wait in that shared block (one lane a warp); a kernel that never waits records t_wait 0.
#pragma once
#include <cstdint>
#include <vector>

namespace parallm::cuda {

// One value per kernel family a decode step runs (trace_tag_name gives the CSV's names).
enum class TraceTag : uint32_t {
  Embedding,     // embedding_kernel (embedding.cu)
  Norm,          // norm_kernel: rmsnorm / layernorm (norm.cu)
  Gemv,          // gemv_kernel: the register GEMV, with its fused norm / activation / post-norm forms
  GemvPipe,      // gemv_pipe_kernel: the pipelined GEMV (matmul_gemv.cuh)
  Tile64,        // s90_kernel: the sm90 64/128-row tile (matmul_sm90.cuh)
  TileW,         // s90w_kernel: the sm90 W-as-A tile (matmul_sm90_wtile.cuh)
  Reduce,        // splitk_reduce (matmul_common.cuh)
  ReduceNorm,    // splitk_reduce_norm: the reduce with the next norm (matmul_gemv.cuh)
  ReduceSwiGLU,  // splitk_reduce_swiglu, splitk_reduce_swiglu8 (matmul_common.cuh)
  ReduceRopeKv,  // splitk_rope_kv_kernel: the qkv reduce with rope and the cache write (kvcache.cu)
  RopeKv,        // rope_kv_kernel (kvcache.cu)
  KvWrite,       // kv_write_kernel (kvcache.cu)
  Rope,          // rope_kernel (rope.cu)
  AttnSplit,     // decode_split: decode attention's chunks (attention.cu)
  AttnCombine,   // decode_combine: their merge (attention.cu)
  Add,           // add_rows_kernel, add_mod_kernel (elementwise.cu)
  Activation,    // gelu_kernel, silu_gate_kernel (activation.cu)
  Argmax,        // argmax_kernel, argmax_chunk_kernel, argmax_merge_kernel: greedy sampling (softmax.cu)
  Sample,        // sample_kernel (sampling.cu)
  AllReduce,     // the peer all-reduces, with or without the norm (allreduce.cu)
  Count
};

const char* trace_tag_name(uint32_t tag);

// One block of one launch. gridid: PTX's %gridid, the launch's number in the context (unique per launch).
struct TraceRecord {
  uint64_t gridid;
  uint32_t tag, smid;
  uint64_t t_begin, t_wait, t_end;  // %globaltimer ns; t_wait 0: the block never waited
};

constexpr unsigned long long kTraceCapacity = 1ull << 20;  // records a TU's ring holds (40 MB of device memory)

// A TU's reader: appends the records of its ring on the current device (at most kTraceCapacity, the newest),
// returns how many were ever written there (more than appended when the ring wrapped). Throws parallm::Error.
using TraceReader = unsigned long long (*)(std::vector<TraceRecord>& out);
bool trace_register(const char* tu, TraceReader read);  // (trace.cc) returns true, for a static initializer

// Writes every TU's ring on every device the process opened to $PARALLM_TRACE_OUT as CSV (nothing when it is
// unset): tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end, times in ns from the smallest t_begin, t_wait
// empty where the block never waited. Synchronizes the devices first. Never throws: a failure is one line
// on stderr.
void trace_dump() noexcept;

}  // namespace parallm::cuda

namespace parallm::cuda_backend {
std::vector<int> opened_devices();  // (runtime.cu) the devices this process has used
}

#ifndef __CUDACC__
// A C++ file (napi/module.cc) or the host emulation: no kernels here.
#define PARALLM_TRACE_SCOPE(tag)
#else
#include "check.h"

namespace parallm::cuda {

// The block's shared state. A __shared__ variable of a device function is one per block of each kernel that
// uses it, uninitialized: TraceScope's constructor sets it.
struct TraceBlock {
  unsigned long long t_begin, t_wait;  // t_wait: ~0 until a pdl_wait() returns
  unsigned exited;                     // threads past the scope's end
};
__device__ __forceinline__ TraceBlock& trace_block() {
  __shared__ TraceBlock b;
  return b;
}

__device__ __forceinline__ unsigned long long trace_now() {
  unsigned long long t = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)::"memory");  // (memory: not moved above the kernel's stores)
#endif
  return t;
}

// This TU's ring (static: each TU has its own, there being no relocatable device code).
static __device__ TraceRecord trace_ring[kTraceCapacity];
static __device__ unsigned long long trace_count;

// Called by pdl_wait() after griddepcontrol.wait: the block's earliest return (the first active lane of each
// warp calling, so that divergent callers such as the tiles' producer thread count too).
__device__ __forceinline__ void trace_waited() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned lane;
  asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
  if (int(lane) == __ffs(__activemask()) - 1) atomicMin(&trace_block().t_wait, trace_now());
#endif
}

// Constructed by every thread as the kernel's first statement (PARALLM_TRACE_SCOPE); its destructor runs at
// each thread's return, early ones included.
struct TraceScope {
  TraceTag tag;
  __device__ __forceinline__ explicit TraceScope(TraceTag t) : tag(t) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    TraceBlock& b = trace_block();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
      b.t_begin = trace_now();
      b.t_wait = ~0ull;
      b.exited = 0;
    }
    __syncthreads();  // the count set before any thread can leave
#endif
  }
  __device__ __forceinline__ ~TraceScope() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    TraceBlock& b = trace_block();
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    __threadfence_block();  // this thread's wait time before its count
    if (atomicAdd(&b.exited, 1u) != threads - 1) return;
    __threadfence_block();  // the last one out: every other thread's writes are in
    TraceRecord r;
    asm volatile("mov.u64 %0, %%gridid;" : "=l"(r.gridid));
    asm volatile("mov.u32 %0, %%smid;" : "=r"(r.smid));
    r.tag = uint32_t(tag);
    r.t_begin = b.t_begin;
    r.t_wait = b.t_wait == ~0ull ? 0 : b.t_wait;
    r.t_end = trace_now();
    trace_ring[atomicAdd(&trace_count, 1ull) % kTraceCapacity] = r;
#endif
  }
};

namespace {
unsigned long long trace_read_ring(std::vector<TraceRecord>& out) {
  unsigned long long n = 0;
  PARALLM_CUDA_CHECK(cudaMemcpyFromSymbol(&n, trace_count, sizeof n), "trace: ", __BASE_FILE__, "'s record count");
  const size_t kept = size_t(n < kTraceCapacity ? n : kTraceCapacity), at = out.size();
  out.resize(at + kept);
  PARALLM_CUDA_CHECK(cudaMemcpyFromSymbol(out.data() + at, trace_ring, kept * sizeof(TraceRecord)), "trace: ",
                     __BASE_FILE__, "'s ", kept, " records");
  return n;
}
// (__BASE_FILE__: the .cu file this header is compiled into)
[[maybe_unused]] const bool trace_registered = trace_register(__BASE_FILE__, trace_read_ring);
}  // namespace

}  // namespace parallm::cuda

#define PARALLM_TRACE_SCOPE(tag) \
  ::parallm::cuda::TraceScope parallm_trace_scope_(::parallm::cuda::TraceTag::tag)
#endif
