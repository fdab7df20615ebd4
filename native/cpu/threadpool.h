// A fixed pool of threads for one CPU device. parallel_for splits [0, n) into chunks of at least `grain`
// and runs them on the pool, the calling thread taking part; it returns when all are done and rethrows
// the first exception a chunk threw. Calls from several threads into one pool are serialized.
#pragma once
#include <cstdint>
#include <functional>

namespace parallm::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  int size() const;
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn, int64_t grain = 1);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace parallm::cpu
