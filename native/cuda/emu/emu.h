// A host emulation of the CUDA execution model, just enough to run this backend's attention kernels on
// the CPU (no GPU on the development machine): each thread of a block is a std::thread, __syncthreads a
// barrier of the block, warp collectives (shuffles, ldmatrix, mma.sync in mma_ptx.cuh here) exchange
// through a barrier of the warp. Blocks run one after another. Slow, and for correctness only.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

struct Dim { unsigned x = 0, y = 0, z = 0; };
inline thread_local Dim threadIdx;
inline Dim blockIdx, blockDim;
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
inline std::barrier<>* g_block_bar;
inline void __syncthreads() { g_block_bar->arrive_and_wait(); }

// Shared memory of the running block: the kernels' `extern __shared__` arrays name these.
namespace parallm::cuda::attn_detail {
alignas(128) inline unsigned char smem_raw[232448];  // the tensor-core kernels'
alignas(128) inline float sm[232448 / 4];             // the CUDA-core kernels'
}  // namespace parallm::cuda::attn_detail

struct WarpEx { std::barrier<>* bar; uint32_t addr[32]; uint32_t a[32][4], b[32][2]; float f[32]; };
inline WarpEx g_warp[32];
inline float __shfl_xor_sync(unsigned, float v, int m) {
  auto& w = g_warp[threadIdx.x >> 5];
  const int l = threadIdx.x & 31;
  w.f[l] = v;
  w.bar->arrive_and_wait();
  const float r = w.f[l ^ m];
  w.bar->arrive_and_wait();
  return r;
}
inline float __log2f(float x) { return std::log2(x); }

// Run `kernel()` for blocks 0..blocks-1 with `threads` threads each; shared memory poisoned first.
template <class F>
void emu_launch(unsigned blocks, int threads, F kernel) {
  blockDim.x = unsigned(threads);
  for (unsigned bx = 0; bx < blocks; ++bx) {
    blockIdx.x = bx;
    std::memset(parallm::cuda::attn_detail::smem_raw, 0xff, sizeof(parallm::cuda::attn_detail::smem_raw));
    std::memset(parallm::cuda::attn_detail::sm, 0xff, sizeof(parallm::cuda::attn_detail::sm));
    std::barrier<> bb(threads);
    g_block_bar = &bb;
    for (int w = 0; w < threads / 32; ++w) g_warp[w].bar = new std::barrier<>(32);
    std::vector<std::thread> th;
    for (int t = 0; t < threads; ++t) th.emplace_back([&, t] { threadIdx.x = unsigned(t); kernel(); });
    for (auto& x : th) x.join();
    for (int w = 0; w < threads / 32; ++w) delete g_warp[w].bar;
  }
}
