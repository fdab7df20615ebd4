// A host emulation of the CUDA execution model, just enough to run this backend's attention kernels on
// the CPU (no GPU on the development machine): each thread of a block is a std::thread (a pool's, reused from
// block to block: EmuPool), __syncthreads a barrier of the block, warp collectives (shuffles, ldmatrix,
// mma.sync in mma_ptx.cuh here) exchange through a barrier of the warp. Blocks run one after another
// (emu_launch3), or, for a cooperative launch whose blocks wait for each other at a grid barrier, all at once
// (emu_launch_coop: every thread of every block a std::thread; keep such grids small). Slow, and for correctness
// only.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>

// Kernels compiled for the emulation see PARALLM_EMU (for the few device helpers with no CUDA C++ form).
#define PARALLM_EMU 1

struct Dim { unsigned x = 0, y = 0, z = 0; };
inline thread_local Dim threadIdx, blockIdx;  // (per thread: a cooperative launch runs its blocks at once)
inline Dim blockDim, gridDim;
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __align__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __shared__
using std::max;
using std::min;
inline thread_local std::barrier<>* g_block_bar;  // the running block's
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }

// Shared memory of the running block: the kernels' `extern __shared__` arrays name these.
namespace parallm::cuda::attn_detail {
alignas(128) inline unsigned char smem_raw[232448];  // the tensor-core kernels'
alignas(128) inline float sm[232448 / 4];             // the CUDA-core kernels'
}  // namespace parallm::cuda::attn_detail

struct WarpEx { std::barrier<>* bar; uint32_t addr[32]; uint32_t a[32][4], b[32][2]; float f[32]; };
inline thread_local WarpEx* g_warp;  // the running block's warps
inline int emu_linear() { return int(threadIdx.x + threadIdx.y * blockDim.x); }
inline float __shfl_xor_sync(unsigned, float v, int m) {
  auto& w = g_warp[emu_linear() >> 5];
  const int l = emu_linear() & 31;
  w.f[l] = v;
  w.bar->arrive_and_wait();
  const float r = w.f[l ^ m];
  w.bar->arrive_and_wait();
  return r;
}
inline float __shfl_sync(unsigned, float v, int src) {
  auto& w = g_warp[emu_linear() >> 5];
  const int l = emu_linear() & 31;
  w.f[l] = v;
  w.bar->arrive_and_wait();
  const float r = w.f[src & 31];
  w.bar->arrive_and_wait();
  return r;
}
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).exchange(v); }
// (nvcc's cuda_runtime.h takes a kernel itself; the host compiler sees only the const void* form)
template <class T> inline cudaError_t cudaFuncSetAttribute(T*, cudaFuncAttribute, int) { return cudaSuccess; }
inline float __log2f(float x) { return std::log2(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }
// Rounded as written (the kernels use them where an fma would change the bits).
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
alignas(128) inline unsigned char emu_dyn_smem[232448];  // `extern __shared__` arrays of the .cu kernels

// The running block's dynamic shared memory (emu_dyn_smem, or the block's own in a cooperative launch).
inline thread_local unsigned char* emu_block_smem = emu_dyn_smem;

// The threads that run blocks one after another (emu_launch3): created once and reused, since creating and
// joining a block's 256 std::threads took ~15 ms a block, most of the emulation's time (60 us a thread on the
// 2-core development machine). run(threads, job) runs job(t) on threads t = 0 .. threads - 1 at once and returns
// when all have returned; the pool grows to the largest block asked for. Every worker, run or not, answers each
// run before the next is set up, so a run's job and size are never read while the next one's are written.
class EmuPool {
 public:
  static EmuPool& get() {
    static EmuPool pool;
    return pool;
  }
  template <class Job>
  void run(int threads, Job& job) {
    while (int(workers_.size()) < threads) {  // (a new worker waits for the generation after this one: this run)
      const int t = int(workers_.size());
      workers_.emplace_back([this, t, g = gen_.load()] { loop(t, g); });
    }
    fn_ = [](void* j, int t) { (*static_cast<Job*>(j))(t); };
    job_ = &job;
    active_ = threads;
    left_.store(int(workers_.size()));
    gen_.fetch_add(1);
    gen_.notify_all();
    for (int n = left_.load(); n != 0; n = left_.load()) left_.wait(n);
  }
  ~EmuPool() {
    stop_ = true;
    gen_.fetch_add(1);
    gen_.notify_all();
    for (auto& w : workers_) w.join();
  }

 private:
  void loop(int t, unsigned seen) {
    for (;;) {
      gen_.wait(seen);
      ++seen;  // (the next run waits for this one's answer, so generations come one at a time)
      if (stop_) return;
      if (t < active_) fn_(job_, t);
      if (left_.fetch_sub(1) == 1) left_.notify_one();
    }
  }
  std::vector<std::thread> workers_;
  std::atomic<unsigned> gen_{0};
  std::atomic<int> left_{0};
  int active_ = 0;
  bool stop_ = false;
  void (*fn_)(void*, int) = nullptr;
  void* job_ = nullptr;
};

// Run `kernel()` over a grid of blocks (x, y), each of bx * by threads; shared memory poisoned first. A
// thread that returns leaves its block's and warp's barriers (as exited threads stop counting on a GPU).
template <class F>
void emu_launch3(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, F kernel) {
  using namespace parallm::cuda::attn_detail;
  const int threads = int(bx * by);
  blockDim.x = bx, blockDim.y = by, blockDim.z = 1;
  gridDim.x = gx, gridDim.y = gy, gridDim.z = gz;
  const int warps = (threads + 31) / 32;
  std::vector<WarpEx> wx(static_cast<size_t>(warps));
  for (unsigned bz_ = 0; bz_ < gz; ++bz_)
  for (unsigned by_ = 0; by_ < gy; ++by_)
    for (unsigned bx_ = 0; bx_ < gx; ++bx_) {
      const Dim bi{bx_, by_, bz_};
      std::memset(smem_raw, 0xff, sizeof(smem_raw));
      std::memset(sm, 0xff, sizeof(sm));
      std::memset(emu_dyn_smem, 0xff, sizeof(emu_dyn_smem));
      std::barrier<> bb(threads);
      for (int w = 0; w < warps; ++w) wx[w].bar = new std::barrier<>(std::min(32, threads - 32 * w));
      auto job = [&](int t) {
        threadIdx.x = unsigned(t) % bx, threadIdx.y = unsigned(t) / bx, threadIdx.z = 0;
        blockIdx = bi;
        g_block_bar = &bb;
        g_warp = wx.data();
        emu_block_smem = emu_dyn_smem;
        kernel();
        g_warp[t >> 5].bar->arrive_and_drop();
        bb.arrive_and_drop();
      };
      EmuPool::get().run(threads, job);
      for (int w = 0; w < warps; ++w) delete wx[w].bar;
    }
}

// A cooperative launch: gx blocks of bx threads (1-D), all running at once, so a kernel may wait at a grid
// barrier for the other blocks; each block has its own `smem` bytes of dynamic shared memory
// (emu_block_smem), poisoned first. Static shared memory (rewrite.py's statics) is NOT per block here:
// kernels run this way must use dynamic shared memory only.
template <class F>
void emu_launch_coop(unsigned gx, unsigned bx, size_t smem, F kernel) {
  const int threads = int(bx);
  blockDim.x = bx, blockDim.y = 1, blockDim.z = 1;
  gridDim.x = gx, gridDim.y = 1, gridDim.z = 1;
  const int warps = (threads + 31) / 32;
  std::vector<std::vector<WarpEx>> wx(gx, std::vector<WarpEx>(size_t(warps)));
  std::vector<std::vector<unsigned char>> mem(gx, std::vector<unsigned char>(smem + 16, 0xff));
  std::vector<std::barrier<>*> bars(gx);
  for (unsigned b = 0; b < gx; ++b) {
    bars[b] = new std::barrier<>(threads);
    for (int w = 0; w < warps; ++w) wx[b][w].bar = new std::barrier<>(std::min(32, threads - 32 * w));
  }
  std::vector<std::thread> th;
  for (unsigned b = 0; b < gx; ++b)
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, b, t] {
        threadIdx.x = unsigned(t), threadIdx.y = 0, threadIdx.z = 0;
        blockIdx = Dim{b, 0, 0};
        g_block_bar = bars[b];
        g_warp = wx[b].data();
        // (16-byte aligned, as the GPU's dynamic shared memory)
        emu_block_smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(mem[b].data()) + 15) & ~uintptr_t(15));
        kernel();
        g_warp[t >> 5].bar->arrive_and_drop();
        g_block_bar->arrive_and_drop();
      });
  for (auto& x : th) x.join();
  for (unsigned b = 0; b < gx; ++b) {
    for (int w = 0; w < warps; ++w) delete wx[b][w].bar;
    delete bars[b];
  }
}
template <class F>
void emu_launch2(unsigned gx, unsigned gy, unsigned bx, unsigned by, F kernel) { emu_launch3(gx, gy, 1, bx, by, kernel); }
template <class F>
void emu_launch(unsigned blocks, int threads, F kernel) { emu_launch2(blocks, 1, unsigned(threads), 1, kernel); }

// `kernel<<<grid, block, smem, stream>>>(args)` in a .cu file, rewritten by run.sh to
// `emu_kernel(grid, block)([&] { kernel(args); })`.
struct EmuDims {
  unsigned x, y, z;
  EmuDims(unsigned v) : x(v), y(1), z(1) {}
  EmuDims(int v) : x(unsigned(v)), y(1), z(1) {}
  EmuDims(int64_t v) : x(unsigned(v)), y(1), z(1) {}
  template <class D3, class = decltype(D3{}.z)> EmuDims(const D3& d) : x(d.x), y(d.y), z(d.z) {}
};
inline auto emu_kernel(EmuDims grid, EmuDims block, ...) {
  return [grid, block](auto&& f) { emu_launch3(grid.x, grid.y, grid.z, block.x, block.y, f); };
}
