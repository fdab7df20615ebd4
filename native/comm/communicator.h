// Collective communication between ranks, one rank per worker thread of this process:
//   - CPU devices across processes: TCP sockets between the ranks (tcp.cc), the same results.
//   - CPU devices: ranks meet in process memory (a registry keyed by a string id) and exchange
//     buffers directly. Every wait has a deadline; a rank that aborts, leaves or times out wakes all
//     the others with an error, so nothing hangs.
//   - CUDA devices: NCCL (found at run time, see nccl_api.h), ops queued on the device's current stream.
// Every failure throws parallm::Error naming the op, the rank, the world, the device and the sizes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "../core/device.h"
#include "../core/dtype.h"

namespace parallm {

enum class ReduceOp { Sum, Avg };
// How an all-reduce travels. Auto: NCCL, or on CUDA ranks of one process whose GPUs reach each other
// the peer all-reduce (native/cuda/allreduce.cu) for messages up to 1 MiB (its LL protocol up to
// kLLAutoBytes). The others force one way (benchmarks and tests); a peer path where there is none is an
// error.
enum class AllReducePath { Auto, Nccl, PeerLL, PeerOneShot, PeerTwoShot };

class Communicator {
 public:
  Communicator(int rank, int world, DeviceId dev) : rank_(rank), world_(world), dev_(dev) {}
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int world() const { return world_; }
  DeviceId device() const { return dev_; }

  // In place: buf holds this rank's n elements before, the reduction over all ranks after.
  virtual void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) = 0;
  // all_reduce by the given path (Auto is all_reduce). Only an NCCL communicator has other paths.
  virtual void all_reduce_via(void* buf, int64_t n, DType dt, ReduceOp op, AllReducePath path);
  // residual += the all-reduce of buf (same n and dtype), in one kernel where the peer path takes it:
  // returns false, having done nothing, where it cannot (the caller all-reduces, then adds).
  virtual bool all_reduce_add(void* buf, void* residual, int64_t n, DType dt, AllReducePath path) {
    (void)buf, (void)residual, (void)n, (void)dt, (void)path;
    return false;
  }
  // residual += the all-reduce of buf (rows x cols), then h = rmsnorm(residual, norm_w, eps), in one kernel
  // where the peer path's LL takes it (decode's tensor-parallel layers): false, having done nothing, where
  // it cannot (the caller runs all_reduce_add or the all-reduce and the add, then rmsnorm).
  virtual bool all_reduce_add_norm(void* buf, void* residual, const void* norm_w, void* h, int64_t rows, int64_t cols,
                                   float eps, DType dt) {
    (void)buf, (void)residual, (void)norm_w, (void)h, (void)rows, (void)cols, (void)eps, (void)dt;
    return false;
  }
  // "" when this communicator can take the peer paths, else why not.
  virtual std::string peer_status() const { return "the peer all-reduce is for CUDA ranks (NCCL communicators)"; }
  // root's n elements into every rank's buf.
  virtual void broadcast(void* buf, int64_t n, DType dt, int root) = 0;
  // out (n_per_rank * world elements) gets rank r's `in` at element r * n_per_rank.
  virtual void all_gather(const void* in, void* out, int64_t n_per_rank, DType dt) = 0;
  // in holds world x n_per_rank elements; this rank's out (n_per_rank) gets the reduction over all ranks
  // of their block `rank` (in + rank * n_per_rank). In place when out is exactly that block of in.
  // The default (host memory only) all-reduces a copy of in: correct for any CPU communicator, the
  // in-process one and NCCL override it.
  virtual void reduce_scatter(const void* in, void* out, int64_t n_per_rank, DType dt, ReduceOp op);
  // Point to point; the peer must make the matching call with the same n and dtype, and messages
  // between two ranks arrive in order. send() does not wait for the recv: on CPU it copies the data
  // into a queue (up to 256 MiB per direction), on NCCL it is queued on the stream (but on the GPU
  // a large send waits for its recv: crossing large sends need the recv queued first).
  virtual void send(const void* buf, int64_t n, DType dt, int peer) = 0;
  virtual void recv(void* buf, int64_t n, DType dt, int peer) = 0;
  // Sends and receives between group_start and group_end progress together (NCCL's ncclGroupStart/End),
  // so a rank may send to and receive from a peer that does the same without deadlock. On CPU the
  // sends are queued at once, so a group needs its sends issued before its receives.
  virtual void group_start() {}
  virtual void group_end() {}
  // Returns once every rank has reached it (on CUDA: and this rank's queued work is done).
  virtual void barrier() = 0;
  // Returns once this rank's queued work is done (CPU: at once). On CUDA it polls the stream, so a peer
  // that failed (an NCCL asynchronous error), the timeout or the stop flag ends the wait with an error
  // and the communicator aborted, where a plain stream synchronize would wait on a kernel forever.
  virtual void drain() {}
  // Breaks the communicator: every rank's waiting and later calls fail at once. Idempotent.
  // (Destroying a rank is milder on CPU: only collectives and traffic with that rank fail.)
  virtual void abort() = 0;
  // A flag another thread may set (an int32 in shared memory, e.g. a SharedArrayBuffer's, kept alive by
  // the caller while this communicator lives): once it is non-zero, a wait of this rank stops within
  // kStopPollMs and breaks the communicator, as abort() does. This is how close() and terminate() stop a
  // worker blocked in a wait: nothing else can reach its thread.
  void set_stop_flag(const int32_t* flag) { stop_ = flag; }
  static constexpr int kStopPollMs = 20;

 protected:
  // "allReduce on rank 1 of 3 (cpu:1, 1024 x f32)": the prefix of every error message.
  std::string where(const char* op, int64_t n, DType dt) const;
  void check_peer(const char* op, int peer, int64_t n, DType dt) const;
  bool stop_requested() const { return stop_ && __atomic_load_n(stop_, __ATOMIC_ACQUIRE) != 0; }
  int rank_, world_;
  DeviceId dev_;
  const int32_t* stop_ = nullptr;
};

// CPU: ranks of one id meet in this process. timeout_ms bounds every wait (0: wait forever).
std::shared_ptr<Communicator> make_cpu_communicator(const std::string& id, int rank, int world, DeviceId dev,
                                                    int64_t timeout_ms);

// Across processes, CPU devices: a TCP connection between every two ranks (native/comm/tcp.cc). `id` is
// "tcp:<token>@<host:port of rank 0>,<host:port of rank 1>,...": rank r listens on its address. Blocks
// until every rank has connected (bounded by timeout_ms, which bounds every later wait too, and ended by
// the stop flag, given here because the setup already waits).
std::shared_ptr<Communicator> make_tcp_communicator(const std::string& id, int rank, int world, DeviceId dev,
                                                    int64_t timeout_ms, const int32_t* stop);

// NCCL: `id` is ncclGetUniqueId's 128 bytes, the same on every rank. Blocks until all ranks have joined.
// timeout_ms bounds barrier() (NCCL itself has no deadline on its calls).
std::shared_ptr<Communicator> make_nccl_communicator(const void* id, size_t id_bytes, int rank, int world,
                                                     DeviceId dev, int64_t timeout_ms);
// A fresh NCCL unique id (128 bytes).
std::string nccl_unique_id();

}  // namespace parallm
