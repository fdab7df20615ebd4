// The current device's compute capability and multiprocessor count, each read once per device and cached
// (the kernels' host sides ask on every launch). Inline, so every translation unit shares one cache. `op`
// names the caller in an error.
#pragma once
#include <cuda_runtime.h>

#include <atomic>

#include "check.h"

namespace parallm::cuda {

constexpr int kMaxDevices = 64;

namespace detail {
// attr of the current device through `read`, cached per device (0 = not read yet; devices past kMaxDevices
// are read every time).
template <class Read>
int cached_device_attr(std::atomic<int> (&cache)[kMaxDevices], const char* op, Read read) {
  int dev = 0;
  PARALLM_CUDA_CHECK(cudaGetDevice(&dev), op, ": cudaGetDevice");
  if (dev >= 0 && dev < kMaxDevices) {
    const int v = cache[dev].load(std::memory_order_relaxed);
    if (v) return v;
  }
  const int v = read(dev);
  if (dev >= 0 && dev < kMaxDevices) cache[dev].store(v, std::memory_order_relaxed);
  return v;
}
}  // namespace detail

// Compute capability of the current device as major*10+minor.
inline int device_cc(const char* op) {
  static std::atomic<int> cache[kMaxDevices];
  return detail::cached_device_attr(cache, op, [op](int dev) {
    int major = 0, minor = 0;
    PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
                       op, ": reading the compute capability of device ", dev);
    PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev),
                       op, ": reading the compute capability of device ", dev);
    return major * 10 + minor;
  });
}

// Multiprocessors of the current device.
inline int device_sms(const char* op) {
  static std::atomic<int> cache[kMaxDevices];
  return detail::cached_device_attr(cache, op, [op](int dev) {
    int v = 0;
    PARALLM_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev),
                       op, ": reading the multiprocessor count of device ", dev);
    return v;
  });
}

}  // namespace parallm::cuda
