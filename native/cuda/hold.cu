// Multiprocessors held by a spinning kernel on a stream of its own, for tests and benchmarks of kernels that share
// the GPU with another stream's work: NCCL's blocks during data-parallel training's overlapped all-reduce hold
// 16-32 SMs, and a persistent grid of one block an SM (the sm90 matmul) must not wait for them (its drawn units:
// matmul_sm90.cuh). Each block takes a whole SM (all of the shared memory a block may have, so no other kernel's
// block fits beside it), marks itself started in host-mapped memory and spins until the host's release flag (or
// 30 s) passes. busy_sms: the same blocks for a fixed time, queued on a stream (a graph can hold it): bench train's
// rehearsal of a data-parallel rank's gradient reductions on one GPU (src/bench/train.ts).
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "check.h"
#include "device_attr.cuh"

namespace parallm::cuda {

namespace {

// flags[0]: the host's release; flags[1]: set by a block that ended at max_ns instead; flags[2 + b]: block b started.
__global__ void hold_kernel(volatile int* flags, unsigned long long max_ns, unsigned poll_ns) {
  if (threadIdx.x != 0) return;
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  flags[2 + blockIdx.x] = 1;
  __threadfence_system();
  do {
    __nanosleep(poll_ns);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (!flags[0] && t - t0 < max_ns);
  if (!flags[0]) flags[1] = 1;
}

// busy_sms' kernel: each block holds its SM (all of its shared memory) for `ns` of the global timer, reading nothing.
__global__ void busy_kernel(unsigned long long ns) {
  if (threadIdx.x != 0) return;
  unsigned long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    __nanosleep(1000);
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

struct Hold {
  cudaStream_t stream = nullptr;
  int* host = nullptr;  // hold_kernel's flags (host-mapped)
  int* dev = nullptr;
  int blocks = 0;       // held now (0: none)
};
std::mutex g_mu;
Hold g_holds[kMaxDevices];

}  // namespace

void hold_sms(int device, int blocks) {
  if (device < 0 || device >= kMaxDevices) fail("holdSms: no device cuda:", device);
  std::lock_guard<std::mutex> lock(g_mu);
  Hold& h = g_holds[device];
  if (h.blocks) fail("holdSms: cuda:", device, " already holds ", h.blocks, " SMs (releaseSms first)");
  PARALLM_CUDA_CHECK(cudaSetDevice(device), "holdSms: cudaSetDevice on cuda:", device);
  const int sms = device_sms("holdSms");
  if (blocks < 1 || blocks >= sms || blocks > 1000)
    fail("holdSms: expected 1 to ", std::min(sms - 1, 1000), " SMs on cuda:", device, ", got ", blocks);
  if (!h.stream) {
    PARALLM_CUDA_CHECK(cudaStreamCreateWithFlags(&h.stream, cudaStreamNonBlocking), "holdSms: a stream on cuda:", device);
    PARALLM_CUDA_CHECK(cudaHostAlloc(&h.host, sizeof(int) * 1024, cudaHostAllocMapped), "holdSms: 4 KB of mapped memory");
    PARALLM_CUDA_CHECK(cudaHostGetDevicePointer(&h.dev, h.host, 0), "holdSms: the mapped memory's device address");
  }
  int smem = 0;
  PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                     "holdSms: the shared memory a block may have on cuda:", device);
  PARALLM_CUDA_CHECK(cudaFuncSetAttribute(hold_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                     "holdSms: ", smem, " bytes of shared memory a block");
  volatile int* flags = h.host;
  for (int i = 0; i < 2 + blocks; ++i) flags[i] = 0;
  // How often each block reads the host's flag, µs (PARALLM_HOLD_POLL_US, 1 to 1000; 500 by default): read every 2 µs
  // by 16 blocks, the host memory slowed every kernel beside them 1.3-20x (the copy, AdamW and attention as well as
  // the matmuls; bench/RESULTS.md S35-2), which every 500 µs it did not.
  const char* poll = std::getenv("PARALLM_HOLD_POLL_US");
  const unsigned poll_ns = 1000u * unsigned(std::clamp(poll ? std::atoi(poll) : 500, 1, 1000));
  hold_kernel<<<blocks, 32, size_t(smem), h.stream>>>(h.dev, 30'000'000'000ull, poll_ns);
  PARALLM_CUDA_CHECK(cudaGetLastError(), "holdSms: launching ", blocks, " blocks of ", smem, " bytes on cuda:", device);
  h.blocks = blocks;
  // Back once every block runs (what the caller launches next finds those SMs taken), or fail after 5 s.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 2; i < 2 + blocks;) {
    if (flags[i]) { ++i; continue; }
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(5)) {
      flags[0] = 1;
      cudaStreamSynchronize(h.stream);
      h.blocks = 0;
      fail("holdSms: ", blocks, " blocks on cuda:", device, " did not all start within 5 s (", i - 2, " did)");
    }
    std::this_thread::yield();
  }
}

void release_sms(int device) {
  if (device < 0 || device >= kMaxDevices) fail("releaseSms: no device cuda:", device);
  std::lock_guard<std::mutex> lock(g_mu);
  Hold& h = g_holds[device];
  if (!h.blocks) return;
  volatile int* flags = h.host;
  flags[0] = 1;
  const int held = h.blocks;
  h.blocks = 0;
  PARALLM_CUDA_CHECK(cudaStreamSynchronize(h.stream), "releaseSms: the holding kernel on cuda:", device);
  // A hold that outlived its 30 s let go of its SMs before the release: what ran meanwhile did not run beside them
  // (a kernel's first launch can wait for every running kernel: lazy module loading), so say so.
  if (flags[1]) fail("releaseSms: the ", held, " SMs held on cuda:", device, " were let go at the 30 s limit, before the release");
}

void busy_sms(cudaStream_t s, int device, int blocks, double microseconds) {
  if (device < 0 || device >= kMaxDevices) fail("busySms: no device cuda:", device);
  const int sms = device_sms("busySms");
  if (blocks < 1 || blocks >= sms || !(microseconds >= 0 && microseconds <= 1e6))
    fail("busySms: expected 1 to ", sms - 1, " SMs for 0 to 1e6 us on cuda:", device, ", got ", blocks, " for ", microseconds);
  // The kernel's shared-memory limit raised once a device (outside any capture, where the first call comes eagerly).
  static std::atomic<int> raised[kMaxDevices];
  int smem = raised[device].load(std::memory_order_acquire);
  if (!smem) {
    PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                       "busySms: the shared memory a block may have on cuda:", device);
    PARALLM_CUDA_CHECK(cudaFuncSetAttribute(busy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem),
                       "busySms: ", smem, " bytes of shared memory a block");
    raised[device].store(smem, std::memory_order_release);
  }
  busy_kernel<<<blocks, 32, size_t(smem), s>>>((unsigned long long)(microseconds * 1e3));
  PARALLM_CUDA_CHECK(cudaGetLastError(), "busySms: launching ", blocks, " blocks of ", smem, " bytes on cuda:", device);
}

}  // namespace parallm::cuda
