// A caching allocator for one device: freed blocks go to a size-keyed cache and are handed out again
// without touching the driver, so the hot path never calls cudaMalloc/cudaFree. On a miss that the
// driver cannot satisfy, the cache is released and the allocation retried once.
//
// CUDA safety: blocks are reused in stream order on the device's compute stream, so a block freed
// while kernels that read it are still queued is only rewritten by work queued after them.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace parallm {

struct AllocatorStats {
  size_t allocated = 0;       // bytes in live blocks (rounded sizes)
  size_t cached = 0;          // bytes in free cached blocks
  size_t peak_allocated = 0;  // high-water mark of `allocated`
  size_t driver_allocs = 0;   // calls that reached the driver
};

class CachingAllocator {
 public:
  // raw_alloc returns nullptr on out-of-memory (and only then); raw_free releases.
  using RawAlloc = std::function<void*(size_t)>;
  using RawFree = std::function<void(void*)>;
  // describe_oom tells what was free, for the error message.
  CachingAllocator(std::string device, RawAlloc a, RawFree f, std::function<std::string()> describe_oom);
  ~CachingAllocator();

  void* allocate(size_t bytes);  // throws parallm::Error on out-of-memory
  void release(void* p);
  void empty_cache();
  AllocatorStats stats();
  void reset_peak();
  static size_t round_size(size_t bytes);

 private:
  std::string device_;
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  std::function<std::string()> describe_oom_;
  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // size -> block
  std::map<void*, size_t> live_;       // block -> size
  AllocatorStats stats_;
  void empty_cache_locked();
};

}  // namespace parallm
