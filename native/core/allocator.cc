#include "allocator.h"

#include "errors.h"

namespace parallm {

CachingAllocator::CachingAllocator(std::string device, RawAlloc a, RawFree f,
                                   std::function<std::string()> describe_oom)
    : device_(std::move(device)), raw_alloc_(std::move(a)), raw_free_(std::move(f)),
      describe_oom_(std::move(describe_oom)) {}

CachingAllocator::~CachingAllocator() {
  // Process teardown: the driver may already be gone, so leak rather than call into it.
}

// Small sizes round to 512 B, large ones to 2 MiB, so a cached block fits many nearby requests.
size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t small = 512, large = size_t(2) << 20;
  if (bytes < (size_t(1) << 20)) return (bytes + small - 1) / small * small;
  return (bytes + large - 1) / large * large;
}

void* CachingAllocator::allocate(size_t bytes) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  // Best fit, but never hand out a block more than twice the request (it would waste memory).
  auto it = free_.lower_bound(size);
  if (it != free_.end() && it->first <= size * 2) {
    void* p = it->second;
    size_t got = it->first;
    free_.erase(it);
    stats_.cached -= got;
    live_[p] = got;
    stats_.allocated += got;
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    return p;
  }
  void* p = raw_alloc_(size);
  if (!p) {
    empty_cache_locked();
    p = raw_alloc_(size);
  }
  if (!p)
    fail("out of memory on ", device_, ": asked for ", bytes, " bytes (", size, " rounded); ",
         stats_.allocated, " bytes held by live tensors; ", describe_oom_());
  stats_.driver_allocs++;
  live_[p] = size;
  stats_.allocated += size;
  if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
  return p;
}

void CachingAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;  // not ours: ignore rather than corrupt the cache
  size_t size = it->second;
  live_.erase(it);
  stats_.allocated -= size;
  free_.emplace(size, p);
  stats_.cached += size;
}

void CachingAllocator::empty_cache_locked() {
  for (auto& [size, p] : free_) raw_free_(p);
  free_.clear();
  stats_.cached = 0;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  empty_cache_locked();
}

AllocatorStats CachingAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
}

}  // namespace parallm
