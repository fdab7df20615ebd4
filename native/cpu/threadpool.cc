// ThreadPool: persistent workers for one CPU device.
//
// A job is published by bumping `state_` (generation * 2 + open bit). Workers spin briefly on it (ops of a
// decode step come back to back, and waking a sleeping thread costs tens of microseconds), then sleep on a
// condition variable. Chunks are claimed from an atomic counter, so the calling thread and however many
// workers woke up in time share them dynamically; a worker that wakes late simply finds nothing left.
// The caller returns only when every chunk is finished and no worker is still inside the job (`in_job_`),
// so the job's fields can be reused. The first exception is kept and rethrown by the caller; chunks that
// had not started by then are skipped.
#include "threadpool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define PL_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define PL_PAUSE() asm volatile("yield")
#else
#define PL_PAUSE() ((void)0)
#endif

namespace parallm::cpu {

namespace {
// Set while a thread runs chunks of some pool: a nested parallel_for then runs inline instead of
// deadlocking on the pool it is already part of.
thread_local bool t_in_pool = false;

constexpr auto kSpin = std::chrono::microseconds(200);
}  // namespace

struct ThreadPool::Impl {
  int threads = 1;
  std::vector<std::thread> workers;

  std::mutex call_mu;  // serializes parallel_for callers
  std::mutex mu;       // guards sleeping/waking
  std::condition_variable cv_work, cv_done;
  std::atomic<uint64_t> state{0};  // generation * 2 + (job open ? 1 : 0)
  std::atomic<bool> stop{false};

  // The current job; written by the caller before opening it, read-only while open.
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 1, nchunks = 0;
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<int> in_job{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mu;

  void run_chunks() {
    bool was = t_in_pool;
    t_in_pool = true;
    for (;;) {
      int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= nchunks) break;
      if (!failed.load(std::memory_order_relaxed)) {
        int64_t b = c * chunk, e = b + chunk < n ? b + chunk : n;
        try {
          (*fn)(b, e);
        } catch (...) {
          std::lock_guard<std::mutex> lk(error_mu);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == nchunks) {
        std::lock_guard<std::mutex> lk(mu);  // pairs with the caller's predicate check under mu
        cv_done.notify_one();
      }
    }
    t_in_pool = was;
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t s = state.load(std::memory_order_acquire);
      if (!((s & 1) && s != seen) && !stop.load(std::memory_order_acquire)) {
        auto until = std::chrono::steady_clock::now() + kSpin;
        for (int i = 0;; i++) {
          s = state.load(std::memory_order_acquire);
          if (((s & 1) && s != seen) || stop.load(std::memory_order_acquire)) break;
          PL_PAUSE();
          if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) {
            std::unique_lock<std::mutex> lk(mu);
            cv_work.wait(lk, [&] {
              s = state.load(std::memory_order_acquire);
              return ((s & 1) && s != seen) || stop.load(std::memory_order_acquire);
            });
            break;
          }
        }
      }
      if (stop.load(std::memory_order_acquire)) return;
      seen = s;
      // Enter, then confirm the job is still open (seq_cst on both sides: either the caller sees us in
      // in_job and waits, or we see the job closed and back out).
      in_job.fetch_add(1, std::memory_order_seq_cst);
      if (state.load(std::memory_order_seq_cst) == s) run_chunks();
      in_job.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
};

ThreadPool::ThreadPool(int threads) : impl_(new Impl) {
  if (threads <= 0) threads = int(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  impl_->threads = threads;
  try {
    for (int i = 1; i < threads; i++) impl_->workers.emplace_back([p = impl_] { p->worker_loop(); });
  } catch (...) {
    // Could not start every thread: keep those that started (size() reports them all the same, chunks
    // are claimed dynamically so fewer workers only means less parallelism).
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop.store(true, std::memory_order_release);
  }
  impl_->cv_work.notify_all();
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

int ThreadPool::size() const { return impl_->threads; }

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  Impl& p = *impl_;
  // Inline: one thread, too little work, or called from inside a chunk of a pool.
  if (p.workers.empty() || n <= grain || t_in_pool) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call(p.call_mu);
  // A few chunks per thread balance uneven rows without much claiming traffic.
  int64_t chunk = (n + int64_t(p.threads) * 4 - 1) / (int64_t(p.threads) * 4);
  if (chunk < grain) chunk = grain;
  p.fn = &fn;
  p.n = n;
  p.chunk = chunk;
  p.nchunks = (n + chunk - 1) / chunk;
  p.next.store(0, std::memory_order_relaxed);
  p.done.store(0, std::memory_order_relaxed);
  p.failed.store(false, std::memory_order_relaxed);
  p.error = nullptr;
  uint64_t open;
  {
    std::lock_guard<std::mutex> lk(p.mu);
    open = p.state.load(std::memory_order_relaxed) + 1;  // closed states are even, open ones odd
    p.state.store(open, std::memory_order_seq_cst);
  }
  p.cv_work.notify_all();

  p.run_chunks();

  // Wait for chunks other threads are still running.
  if (p.done.load(std::memory_order_acquire) != p.nchunks) {
    auto until = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0; p.done.load(std::memory_order_acquire) != p.nchunks; i++) {
      PL_PAUSE();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) {
        std::unique_lock<std::mutex> lk(p.mu);
        p.cv_done.wait(lk, [&] { return p.done.load(std::memory_order_acquire) == p.nchunks; });
        break;
      }
    }
  }
  // Close the job, then wait for workers still inside it (they have no chunk left, so this is short).
  p.state.store(open + 1, std::memory_order_seq_cst);
  while (p.in_job.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();

  if (p.error) {
    std::exception_ptr e = p.error;
    p.error = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace parallm::cpu
