// Communicators: the in-process CPU implementation (shared memory between worker threads) and NCCL.
#include "communicator.h"

#include <cstdio>
#include <cstdlib>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "../core/errors.h"
#include "../core/runtime.h"
#include "nccl_api.h"

#ifdef PARALLM_WITH_CUDA
#include <cuda_runtime_api.h>

#include "../cuda/allreduce.h"
#include "../cuda/check.h"
#endif

namespace parallm {

std::string Communicator::where(const char* op, int64_t n, DType dt) const {
  std::ostringstream os;
  os << op << " on rank " << rank_ << " of " << world_ << " (" << dev_.str() << ", " << n << " x " << dtype_name(dt)
     << ")";
  return os.str();
}

void Communicator::check_peer(const char* op, int peer, int64_t n, DType dt) const {
  if (peer < 0 || peer >= world_ || peer == rank_)
    fail(where(op, n, dt), ": peer ", peer, " is not another rank (ranks are 0..", world_ - 1, ")");
}

void Communicator::all_reduce_via(void* buf, int64_t n, DType dt, ReduceOp op, AllReducePath path) {
  if (path != AllReducePath::Auto && path != AllReducePath::Nccl)
    fail(where("allReduce", n, dt), ": no peer path here: ", peer_status());
  all_reduce(buf, n, dt, op);
}

void Communicator::reduce_scatter(const void* in, void* out, int64_t n, DType dt, ReduceOp op) {
  if (dev_.is_cuda()) fail(where("reduceScatter", n, dt), ": this communicator has no reduceScatter on a GPU");
  size_t bytes = size_t(n) * dtype_size(dt);
  std::vector<char> tmp(static_cast<const char*>(in), static_cast<const char*>(in) + bytes * size_t(world_));
  all_reduce(tmp.data(), n * world_, dt, op);
  if (bytes) std::memmove(out, tmp.data() + bytes * size_t(rank_), bytes);
}

namespace {

using Clock = std::chrono::steady_clock;

void check_membership(const char* what, int rank, int world) {
  if (world < 1 || world > 4096) fail(what, ": world must be 1..4096, got ", world);
  if (rank < 0 || rank >= world) fail(what, ": rank must be 0..", world - 1, ", got ", rank);
}

// ================================================================ CPU: shared memory between threads

enum class Kind { AllReduce, Broadcast, AllGather, ReduceScatter, Barrier };

// What one rank brought to the current collective. The last rank to arrive compares them all.
struct Slot {
  Kind kind = Kind::Barrier;
  ReduceOp op = ReduceOp::Sum;
  int64_t n = 0;
  DType dt = DType::F32;
  int root = 0;
  const void* in = nullptr;
  void* out = nullptr;
  bool here = false;
};

std::string describe(const Slot& s) {
  std::ostringstream os;
  switch (s.kind) {
    case Kind::AllReduce: os << "allReduce(" << (s.op == ReduceOp::Sum ? "sum" : "avg") << ")"; break;
    case Kind::Broadcast: os << "broadcast(root " << s.root << ")"; break;
    case Kind::AllGather: os << "allGather"; break;
    case Kind::ReduceScatter: os << "reduceScatter(" << (s.op == ReduceOp::Sum ? "sum" : "avg") << ")"; break;
    case Kind::Barrier: return "barrier";
  }
  os << " of " << s.n << " x " << dtype_name(s.dt);
  return os.str();
}

// One direction of point-to-point traffic: a queue of copied messages. send() copies and returns
// (like NCCL's, it does not wait for the matching recv unless the queue is full), so two ranks that
// send to each other before receiving, as a pipeline does, do not deadlock.
struct Message {
  std::vector<char> data;
  int64_t n;
  DType dt;
};
struct Channel {
  std::deque<Message> q;
  size_t bytes = 0;
};
constexpr size_t kMaxQueuedBytes = size_t(256) << 20;  // beyond this, send waits for the receiver

struct Group {
  int world;
  std::mutex mu;
  std::condition_variable cv;  // one for everything: worlds are small, waits are rare and short

  // Collectives: a reusable barrier (arrive), the work, then a second barrier (depart) so no rank
  // returns, and lets its buffers go, while another still reads them.
  uint64_t gen = 0, gen2 = 0;
  int arrived = 0, arrived2 = 0;
  std::vector<Slot> slots;
  std::string round_error;  // set by the last arriver when the ranks disagree
  std::vector<char> scratch;  // all-reduce results (f32 or i32), each rank writes its slice

  std::vector<Channel> chan;  // [src * world + dst]

  std::vector<bool> joined;
  int joined_count = 0;

  // Set once, by the first rank that aborts or times out: every wait then fails.
  int broken_by = -1;
  std::string broken_why;
  // Ranks destroyed: collectives and traffic with them fail; the others may still talk to each other.
  std::vector<bool> gone;
  int first_gone = -1;  // named by failed collectives: the first to leave is the likely cause

  explicit Group(int w) : world(w), slots(w), chan(size_t(w) * w), joined(w, false), gone(w, false) {}
};

// Groups still waiting for ranks to join, by id. A group leaves the registry once all its ranks have
// joined (they hold it), so an id can be used again afterwards.
std::mutex g_registry_mu;
std::map<std::string, std::shared_ptr<Group>> g_registry;

std::shared_ptr<Group> join_group(const std::string& id, int rank, int world) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto it = g_registry.find(id);
  std::shared_ptr<Group> g;
  if (it == g_registry.end()) {
    g = std::make_shared<Group>(world);
    if (world > 1) g_registry[id] = g;
  } else {
    g = it->second;
  }
  std::lock_guard<std::mutex> glock(g->mu);
  if (g->world != world)
    fail("commCreate: rank ", rank, " joins communicator '", id, "' with world ", world, " but it was created with world ",
         g->world);
  if (g->joined[rank]) fail("commCreate: rank ", rank, " of communicator '", id, "' has already joined");
  g->joined[rank] = true;
  if (++g->joined_count == world) g_registry.erase(id);
  return g;
}

class CpuComm : public Communicator {
 public:
  CpuComm(std::shared_ptr<Group> g, int rank, DeviceId dev, int64_t timeout_ms)
      : Communicator(rank, g->world, dev), g_(std::move(g)), timeout_ms_(timeout_ms) {}
  ~CpuComm() override {
    std::lock_guard<std::mutex> lk(g_->mu);
    g_->gone[rank_] = true;
    if (g_->first_gone < 0) g_->first_gone = rank_;
    g_->cv.notify_all();
  }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    Slot s;
    s.kind = Kind::AllReduce, s.op = op, s.n = n, s.dt = dt, s.in = buf, s.out = buf;
    std::string w = where("allReduce", n, dt);
    arrive(s, w);
    // This rank reduces its slice over every rank's buffer, in rank order (so every rank's result is
    // bit-identical), into the shared scratch; after depart() every slice is there.
    int64_t per = (n + world_ - 1) / world_, lo = std::min(n, per * rank_), hi = std::min(n, lo + per);
    reduce_slice(lo, hi, dt, op);
    depart();
    copy_result(buf, n, dt);
    // No third barrier: the scratch is only written again after every rank arrives at the next op.
  }

  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    std::string w = where("broadcast", n, dt);
    if (root < 0 || root >= world_) fail(w, ": root ", root, " is not a rank (0..", world_ - 1, ")");
    Slot s;
    s.kind = Kind::Broadcast, s.n = n, s.dt = dt, s.root = root, s.in = buf, s.out = buf;
    arrive(s, w);
    if (rank_ != root && n) std::memcpy(buf, g_->slots[root].in, size_t(n) * dtype_size(dt));
    depart();
  }

  void all_gather(const void* in, void* out, int64_t n, DType dt) override {
    Slot s;
    s.kind = Kind::AllGather, s.n = n, s.dt = dt, s.in = in, s.out = out;
    arrive(s, where("allGather", n, dt));
    size_t bytes = size_t(n) * dtype_size(dt);
    for (int r = 0; r < world_; r++) {
      char* dst = static_cast<char*>(out) + size_t(r) * bytes;
      if (bytes && dst != g_->slots[r].in) std::memcpy(dst, g_->slots[r].in, bytes);
    }
    depart();
  }

  // Each rank reduces its own block straight from every rank's `in` into its `out`, in rank order with
  // the same f32 arithmetic as all_reduce, so the two give bit-identical blocks. In place is safe: a
  // rank writes only its own block, which no other rank reads.
  void reduce_scatter(const void* in, void* out, int64_t n, DType dt, ReduceOp op) override {
    Slot s;
    s.kind = Kind::ReduceScatter, s.op = op, s.n = n, s.dt = dt, s.in = in, s.out = out;
    arrive(s, where("reduceScatter", n, dt));
    const std::vector<Slot>& sl = g_->slots;
    const int64_t base = n * rank_;
    if (dt == DType::I32) {
      int32_t* o = static_cast<int32_t*>(out);
      for (int64_t i = 0; i < n; i++) {
        uint32_t acc = 0;  // unsigned: overflow wraps instead of being undefined
        for (int r = 0; r < world_; r++) acc += uint32_t(static_cast<const int32_t*>(sl[r].in)[base + i]);
        o[i] = op == ReduceOp::Avg ? int32_t(acc) / world_ : int32_t(acc);
      }
    } else {
      float inv = 1.0f / float(world_);
      for (int64_t i = 0; i < n; i++) {
        float acc = load_f32(sl[0].in, base + i, dt);
        for (int r = 1; r < world_; r++) acc += load_f32(sl[r].in, base + i, dt);
        store(out, i, dt, op == ReduceOp::Avg ? acc * inv : acc);
      }
    }
    depart();
  }

  void barrier() override {
    Slot s;
    arrive(s, where("barrier", 0, DType::F32));
  }

  void send(const void* buf, int64_t n, DType dt, int peer) override {
    std::string w = where("send", n, dt);
    check_peer("send", peer, n, dt);
    size_t bytes = size_t(n) * dtype_size(dt);
    Message m{std::vector<char>(static_cast<const char*>(buf), static_cast<const char*>(buf) + bytes), n, dt};
    std::unique_lock<std::mutex> lk(g_->mu);
    Channel& c = g_->chan[size_t(rank_) * world_ + peer];
    Clock::time_point deadline = start_deadline();
    for (;;) {
      throw_if_broken(w, peer);  // a destroyed peer will never receive
      if (c.q.empty() || c.bytes + bytes <= kMaxQueuedBytes) break;
      if (!wait_step(lk, deadline))
        timed_out(lk, w, "rank " + std::to_string(peer) + " to recv (" + std::to_string(c.bytes) + " bytes queued)");
    }
    c.bytes += bytes;
    c.q.push_back(std::move(m));
    g_->cv.notify_all();
  }

  void recv(void* buf, int64_t n, DType dt, int peer) override {
    std::string w = where("recv", n, dt);
    check_peer("recv", peer, n, dt);
    std::unique_lock<std::mutex> lk(g_->mu);
    Channel& c = g_->chan[size_t(peer) * world_ + rank_];
    Clock::time_point deadline = start_deadline();
    for (;;) {
      throw_if_broken(w, kNoPeer);
      if (!c.q.empty()) break;  // what a peer sent before it was destroyed still arrives
      throw_if_broken(w, peer);
      if (!wait_step(lk, deadline)) timed_out(lk, w, "rank " + std::to_string(peer) + " to send");
    }
    Message m = std::move(c.q.front());
    c.q.pop_front();
    c.bytes -= m.data.size();
    g_->cv.notify_all();  // room for a sender waiting on a full queue
    lk.unlock();
    if (m.n != n || m.dt != dt)
      fail(w, ": rank ", peer, " sent ", m.n, " x ", dtype_name(m.dt), " but rank ", rank_, " receives ", n, " x ",
           dtype_name(dt));
    if (n) std::memcpy(buf, m.data.data(), m.data.size());
  }

  void abort() override {
    std::lock_guard<std::mutex> lk(g_->mu);
    if (g_->broken_by < 0) g_->broken_by = rank_, g_->broken_why = "abort() was called";
    g_->cv.notify_all();
  }

 private:
  std::shared_ptr<Group> g_;
  int64_t timeout_ms_;

  Clock::time_point start_deadline() const { return Clock::now() + std::chrono::milliseconds(timeout_ms_); }
  // Wait for a notification; false once the deadline has passed (never, without a timeout). With a stop
  // flag, the wait wakes every kStopPollMs to look at it, and a set flag breaks the group. The flag is
  // looked at before waiting, not after: the caller first re-checks what it waits for, so a round that
  // completed while this rank slept counts even if the flag was set meanwhile. (Throwing after such a
  // wake left a peer that had completed the round waiting in depart() for this rank forever.)
  bool wait_step(std::unique_lock<std::mutex>& lk, Clock::time_point deadline) {
    if (stop_requested()) stopped(lk);
    if (timeout_ms_ > 0 && Clock::now() >= deadline) return false;
    Clock::time_point until = timeout_ms_ > 0 ? deadline : Clock::time_point::max();
    if (stop_) until = std::min(until, Clock::now() + std::chrono::milliseconds(kStopPollMs));
    if (until == Clock::time_point::max()) g_->cv.wait(lk);
    else g_->cv.wait_until(lk, until);
    return true;
  }

  [[noreturn]] void stopped(std::unique_lock<std::mutex>&) {
    if (g_->broken_by < 0) g_->broken_by = rank_, g_->broken_why = "stopped by close() or terminate()";
    g_->cv.notify_all();
    throw Error("rank " + std::to_string(rank_) + " on " + dev_.str() + ": a communicator wait was stopped (close() or terminate())");
  }

  // Fail if the group is broken, or if `peer` (any rank for kAnyPeer, none for kNoPeer) has been
  // destroyed. Lock held.
  static constexpr int kAnyPeer = -1, kNoPeer = -2;
  void throw_if_broken(const std::string& w, int peer) {
    if (g_->broken_by == rank_) throw Error(w + ": this rank's communicator is closed (" + g_->broken_why + ")");
    if (g_->broken_by >= 0)
      throw Error(w + ": peer rank " + std::to_string(g_->broken_by) + " aborted (" + g_->broken_why + ")");
    int r = peer == kAnyPeer ? g_->first_gone : peer >= 0 && g_->gone[peer] ? peer : -1;
    if (r >= 0) throw Error(w + ": peer rank " + std::to_string(r) + " aborted (its communicator was destroyed)");
  }

  // A rank that waited too long breaks the group: the others wake at once with its reason, instead of
  // each waiting out its own deadline on a collective that can no longer complete.
  [[noreturn]] void timed_out(std::unique_lock<std::mutex>&, const std::string& w, const std::string& waited_for) {
    std::string why = "timed out after " + std::to_string(timeout_ms_) + " ms in " + w.substr(0, w.find(' ')) +
                      " waiting for " + waited_for;
    if (g_->broken_by < 0) g_->broken_by = rank_, g_->broken_why = "rank " + std::to_string(rank_) + " " + why;
    g_->cv.notify_all();
    throw Error(w + ": " + why + "; the communicator is now unusable");
  }

  void arrive(const Slot& mine, const std::string& w) {
    if (capturing(dev_)) fail(w, ": collectives cannot be captured on a CPU device");
    std::unique_lock<std::mutex> lk(g_->mu);
    Group& g = *g_;
    throw_if_broken(w, kAnyPeer);
    uint64_t my_gen = g.gen;
    g.slots[rank_] = mine;
    g.slots[rank_].here = true;
    if (++g.arrived == world_) {
      finish_round(g);
      g.arrived = 0;
      g.gen++;
      g.cv.notify_all();
    } else {
      Clock::time_point deadline = start_deadline();
      while (g.gen == my_gen) {  // completion first: a round that finished before a break still counts
        throw_if_broken(w, kAnyPeer);
        if (!wait_step(lk, deadline)) {
          std::string missing;
          for (int r = 0; r < world_; r++)
            if (!g.slots[r].here) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
          timed_out(lk, w, "rank(s) " + missing + " to arrive");
        }
      }
    }
    if (!g.round_error.empty()) throw Error(w + ": " + g.round_error);
  }

  // Called by the last rank to arrive, under the lock: check that every rank called the same
  // collective with the same sizes, and size the scratch.
  static void finish_round(Group& g) {
    g.round_error.clear();
    const Slot& s0 = g.slots[0];
    std::string differ;
    for (int r = 1; r < g.world; r++) {
      const Slot& s = g.slots[r];
      if (s.kind != s0.kind || s.n != s0.n || s.dt != s0.dt || s.root != s0.root || s.op != s0.op)
        differ += (differ.empty() ? "" : ", ") + std::to_string(r);
    }
    if (!differ.empty()) {
      std::ostringstream os;
      os << "ranks disagree on the collective: rank(s) " << differ << " differ from rank 0 (";
      for (int r = 0; r < g.world; r++) os << (r ? "; " : "") << "rank " << r << ": " << describe(g.slots[r]);
      os << ")";
      g.round_error = os.str();
    } else if (s0.kind == Kind::AllReduce) {
      try {
        if (g.scratch.size() < size_t(s0.n) * 4) g.scratch.resize(size_t(s0.n) * 4);
      } catch (const std::exception&) {
        g.round_error = "cannot allocate " + std::to_string(s0.n * 4) + " bytes of scratch";
      }
    }
    for (auto& s : g.slots) s.here = false;
  }

  // The second barrier. Not bounded and not interruptible: every rank that passed arrive() reaches it
  // after a finite copy, and leaving early would free buffers another rank is still reading.
  void depart() {
    std::unique_lock<std::mutex> lk(g_->mu);
    uint64_t my = g_->gen2;
    if (++g_->arrived2 == world_) {
      g_->arrived2 = 0;
      g_->gen2++;
      g_->cv.notify_all();
    } else {
      while (g_->gen2 == my) g_->cv.wait(lk);
    }
  }

  void reduce_slice(int64_t lo, int64_t hi, DType dt, ReduceOp op) {
    const std::vector<Slot>& sl = g_->slots;
    float inv = 1.0f / float(world_);
    if (dt == DType::I32) {
      int32_t* acc = reinterpret_cast<int32_t*>(g_->scratch.data());
      for (int64_t i = lo; i < hi; i++) {
        uint32_t s = 0;  // unsigned: overflow wraps instead of being undefined
        for (int r = 0; r < world_; r++) s += uint32_t(static_cast<const int32_t*>(sl[r].in)[i]);
        acc[i] = op == ReduceOp::Avg ? int32_t(s) / world_ : int32_t(s);
      }
      return;
    }
    float* acc = reinterpret_cast<float*>(g_->scratch.data());
    for (int64_t i = lo; i < hi; i++) {
      float s = load_f32(sl[0].in, i, dt);
      for (int r = 1; r < world_; r++) s += load_f32(sl[r].in, i, dt);
      acc[i] = op == ReduceOp::Avg ? s * inv : s;
    }
  }

  static void store(void* p, int64_t i, DType dt, float x) {
    if (dt == DType::F32) static_cast<float*>(p)[i] = x;
    else static_cast<uint16_t*>(p)[i] = dt == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x);
  }

  void copy_result(void* buf, int64_t n, DType dt) {
    const float* acc = reinterpret_cast<const float*>(g_->scratch.data());
    if (dt == DType::F32 || dt == DType::I32) {
      if (n) std::memcpy(buf, acc, size_t(n) * 4);
    } else {
      uint16_t* o = static_cast<uint16_t*>(buf);
      for (int64_t i = 0; i < n; i++) o[i] = dt == DType::BF16 ? f32_to_bf16(acc[i]) : f32_to_f16(acc[i]);
    }
  }
};

// ================================================================ NCCL

#ifdef PARALLM_WITH_CUDA
nccl::ncclDataType_t nccl_dtype(DType dt) {
  switch (dt) {
    case DType::F32: return nccl::ncclFloat32;
    case DType::BF16: return nccl::ncclBfloat16;
    case DType::F16: return nccl::ncclFloat16;
    case DType::I32: return nccl::ncclInt32;
  }
  return nccl::ncclFloat32;
}

// The ranks of one NCCL communicator that are threads of this process, found by the NCCL id: each
// registers its receive area, flags and control block here before the constructor's barrier, so after
// it every local rank sees all the others. The group owns that memory (freed when its last rank goes),
// so abort() can reach every rank's control block whichever rank is destroyed first.
struct PeerGroup {
  struct Member {
    int dev = -1;
    char* slots = nullptr;
    cuda::PeerFlags* flags = nullptr;
    cuda::PeerControl* control = nullptr;  // mapped host memory
  };
  std::mutex mu;
  std::vector<Member> members;
  int joined = 0;
  explicit PeerGroup(int world) : members(size_t(world)) {}
  ~PeerGroup() {
    int cur = -1;
    cudaGetDevice(&cur);
    for (Member& m : members) {
      if (m.dev < 0) continue;
      cudaSetDevice(m.dev);
      if (m.slots) cudaFree(m.slots);
      if (m.flags) cudaFree(m.flags);
      if (m.control) cudaFreeHost(const_cast<cuda::PeerControl*>(m.control));
    }
    if (cur >= 0) cudaSetDevice(cur);
  }
  void abort_all() {
    std::lock_guard<std::mutex> lock(mu);
    for (Member& m : members)
      if (m.control) m.control->abort = 1;
  }
};

std::mutex g_peer_mu;
std::map<std::string, std::weak_ptr<PeerGroup>> g_peer_groups;

std::shared_ptr<PeerGroup> peer_group(const std::string& key, int world) {
  std::lock_guard<std::mutex> lock(g_peer_mu);
  for (auto it = g_peer_groups.begin(); it != g_peer_groups.end();)
    it = it->second.expired() ? g_peer_groups.erase(it) : std::next(it);
  std::shared_ptr<PeerGroup> g = g_peer_groups[key].lock();
  if (!g || int(g->members.size()) != world) {
    g = std::make_shared<PeerGroup>(world);
    g_peer_groups[key] = g;
  }
  return g;
}

// Ops are queued on the device's current stream and return at once, like kernels. NCCL cannot check
// that the ranks agree on sizes (a mismatch hangs or corrupts); the caller (the device pool) checks
// shapes on the host before it issues a collective.
class NcclComm : public Communicator {
 public:
  NcclComm(const void* id, int rank, int world, DeviceId dev, int64_t timeout_ms)
      : Communicator(rank, world, dev), api_(nccl::api()), timeout_ms_(timeout_ms) {
    nccl::ncclUniqueId uid;
    std::memcpy(uid.internal, id, nccl::kUniqueIdBytes);
    cuda_activate(dev_);  // ncclCommInitRank binds the current device
    check(api_.CommInitRank(&comm_, world, uid, rank), where("commCreate", 0, DType::F32));
    one_ = allocate(dev_, 4);
    peer_join(std::string(static_cast<const char*>(id), nccl::kUniqueIdBytes));
    // NCCL connects to its peers for an algorithm on the first operation that uses it (runtime
    // connect, the default since 2.22), and that first call blocks the host thread until the peers
    // connect too: a barrier whose peer never came would hang inside ncclAllReduce, before any timeout
    // could fire. So the barrier's own all-reduce runs once here, while every rank is known to be
    // present (they have just joined), and later barriers only enqueue and poll.
    barrier();
    peer_agree();
  }
  // Recent NCCL synchronizes a node's ranks when freeing a communicator (destroy, and even abort),
  // so every rank should destroy (or abort) its communicator, each from its own thread.
  ~NcclComm() override {
    if (comm_) {
      cudaSetDevice(dev_.index);
      api_.CommDestroy(comm_);
    }
  }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    all_reduce_via(buf, n, dt, op, AllReducePath::Auto);
  }
  std::string peer_status() const override { return peer_ ? "" : peer_why_; }

  bool all_reduce_add(void* buf, void* residual, int64_t n, DType dt, AllReducePath path) override {
    std::string w = where("allReduceAdd", n, dt);
    CUstream_st* s = stream(w);
    return peer_route(w, buf, residual, n, dt, ReduceOp::Sum, path, s);
  }

  bool all_reduce_add_norm(void* buf, void* residual, const void* norm_w, void* h, int64_t rows, int64_t cols, float eps,
                           DType dt) override {
    std::string w = where("allReduceAddNorm", rows * cols, dt);
    const size_t bytes = size_t(rows) * size_t(cols) * dtype_size(dt);
    auto al = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
    if (!peer_ || (dt != DType::BF16 && dt != DType::F32) || !al(buf) || !al(residual) || !al(norm_w) || !al(h) ||
        (size_t(cols) * dtype_size(dt)) % 16 != 0 || bytes > kLLAutoBytes || bytes > cuda::kPeerMaxBytes / 2)
      return false;
    CUstream_st* s = stream(w);
    peer_check(w);
    cuda::peer_all_reduce_norm(peer_ranks_, buf, residual, norm_w, h, rows, cols, eps, dt, s);
    return true;
  }

  // The peer path for this call, if it takes one (then queued here, returning true). Auto takes LL up
  // to kLLAutoBytes, then one exchange (two ranks, or up to 64 KiB) or two up to 1 MiB, and leaves the
  // rest to NCCL. A residual needs LL or one-shot.
  bool peer_route(const std::string& w, void* buf, void* residual, int64_t n, DType dt, ReduceOp op,
                  AllReducePath path, CUstream_st* s) {
    const size_t bytes = size_t(n) * dtype_size(dt);
    const bool floating = dt == DType::F32 || dt == DType::BF16 || dt == DType::F16;
    const bool aligned = (reinterpret_cast<uintptr_t>(buf) & 15) == 0 && (reinterpret_cast<uintptr_t>(residual) & 15) == 0;
    const bool packs = bytes % 16 == 0;
    const bool forced = path == AllReducePath::PeerLL || path == AllReducePath::PeerOneShot || path == AllReducePath::PeerTwoShot;
    cuda::PeerAlgo algo = cuda::PeerAlgo::OneShot;
    if (forced) {
      if (!peer_) fail(w, ": no peer path: ", peer_why_);
      algo = path == AllReducePath::PeerLL ? cuda::PeerAlgo::LL : path == AllReducePath::PeerOneShot ? cuda::PeerAlgo::OneShot : cuda::PeerAlgo::TwoShot;
      const size_t cap = algo == cuda::PeerAlgo::LL ? cuda::kPeerMaxBytes / 2 : cuda::kPeerMaxBytes;
      if (!floating || !aligned || bytes > cap)
        fail(w, ": the peer all-reduce (", cuda::peer_algo_name(algo), ") takes f32, bf16 or f16 buffers of at most ", cap,
             " bytes, 16-byte aligned");
      if (residual && algo == cuda::PeerAlgo::TwoShot) return false;
    } else {
      if (path != AllReducePath::Auto || !peer_ || !floating || !aligned) return false;
      if (packs && bytes <= kLLAutoBytes) algo = cuda::PeerAlgo::LL;
      else if (world_ <= 2 || bytes <= (size_t(64) << 10) || !packs) algo = cuda::PeerAlgo::OneShot;
      else algo = cuda::PeerAlgo::TwoShot;
      // Two ranks send each other the same bytes either way, so one exchange wins; with more ranks
      // two-shot sends 2 (world - 1) / world of the buffer instead of world - 1 times it (not measured:
      // only 2-GPU machines are lent so far).
      if (bytes > cuda::kPeerMaxBytes || (residual && algo == cuda::PeerAlgo::TwoShot)) return false;
    }
    peer_check(w);
    cuda::peer_all_reduce(peer_ranks_, buf, residual, n, dt, op == ReduceOp::Avg, algo, s);
    return true;
  }

  void all_reduce_via(void* buf, int64_t n, DType dt, ReduceOp op, AllReducePath path) override {
    std::string w = where("allReduce", n, dt);
    CUstream_st* s = stream(w);
    if (peer_route(w, buf, nullptr, n, dt, op, path, s)) return;
    check(api_.AllReduce(buf, buf, size_t(n), nccl_dtype(dt), op == ReduceOp::Avg ? nccl::ncclAvg : nccl::ncclSum,
                         comm_, s),
          w);
  }
  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    std::string w = where("broadcast", n, dt);
    if (root < 0 || root >= world_) fail(w, ": root ", root, " is not a rank (0..", world_ - 1, ")");
    CUstream_st* s = stream(w);
    check(api_.Broadcast(buf, buf, size_t(n), nccl_dtype(dt), root, comm_, s), w);
  }
  void all_gather(const void* in, void* out, int64_t n, DType dt) override {
    std::string w = where("allGather", n, dt);
    CUstream_st* s = stream(w);
    check(api_.AllGather(in, out, size_t(n), nccl_dtype(dt), comm_, s), w);
  }
  // in place when out == in + rank * n (NCCL's rule for in-place reduce-scatter)
  void reduce_scatter(const void* in, void* out, int64_t n, DType dt, ReduceOp op) override {
    std::string w = where("reduceScatter", n, dt);
    CUstream_st* s = stream(w);
    check(api_.ReduceScatter(in, out, size_t(n), nccl_dtype(dt), op == ReduceOp::Avg ? nccl::ncclAvg : nccl::ncclSum,
                             comm_, s),
          w);
  }
  void send(const void* buf, int64_t n, DType dt, int peer) override {
    std::string w = where("send", n, dt);
    check_peer("send", peer, n, dt);
    CUstream_st* s = stream(w);
    check(api_.Send(buf, size_t(n), nccl_dtype(dt), peer, comm_, s), w);
  }
  void recv(void* buf, int64_t n, DType dt, int peer) override {
    std::string w = where("recv", n, dt);
    check_peer("recv", peer, n, dt);
    CUstream_st* s = stream(w);
    check(api_.Recv(buf, size_t(n), nccl_dtype(dt), peer, comm_, s), w);
  }

  void group_start() override {
    std::string w = where("groupStart", 0, DType::F32);
    stream(w);
    check(api_.GroupStart(), w);
  }
  void group_end() override {
    std::string w = where("groupEnd", 0, DType::F32);
    stream(w);
    check(api_.GroupEnd(), w);
  }

  // A one-element all-reduce, then wait for the stream, polling so that a peer that never arrives
  // ends in a timeout (the communicator is aborted) rather than a hang.
  void barrier() override {
    std::string w = where("barrier", 1, DType::F32);
    CUstream_st* s = stream(w);
    check(api_.AllReduce(one_->ptr, one_->ptr, 1, nccl::ncclFloat32, nccl::ncclSum, comm_, s), w);
    wait_stream(s, w, true);
  }

  // No timeout here: the queued work may be a whole run's. A failed peer shows as an NCCL asynchronous
  // error, or through the stop flag, which the caller sets for every rank when one fails.
  void drain() override {
    std::string w = where("drain", 0, DType::F32);
    wait_stream(stream(w), w, false);
  }

  // Wait for the stream, polling: an NCCL asynchronous error, the timeout (with `timed`) or the stop
  // flag aborts the communicator (which ends its kernels still waiting for peers) and fails.
  void wait_stream(CUstream_st* s, const std::string& w, bool timed) {
    Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
    for (;;) {
      cudaError_t e = cudaStreamQuery(s);
      if (e == cudaSuccess) return peer_check(w);
      if (e != cudaErrorNotReady) PARALLM_CUDA_CHECK(e, w);
      peer_check(w);
      nccl::ncclResult_t ae = nccl::ncclSuccess;
      api_.CommGetAsyncError(comm_, &ae);
      if (ae != nccl::ncclSuccess && ae != nccl::ncclInProgress) {
        abort();
        fail(w, ": NCCL asynchronous error ", api_.GetErrorString(ae), "; the communicator was aborted");
      }
      if (timed && timeout_ms_ > 0 && Clock::now() >= deadline) {
        abort();
        fail(w, ": timed out after ", timeout_ms_, " ms waiting for the other ranks; the communicator was aborted");
      }
      if (stop_requested()) {
        if (std::getenv("PARALLM_TRACE")) std::fprintf(stderr, "[parallm trace] %s: stop flag seen\n", w.c_str());
        abort();
        fail(w, ": stopped by close() or terminate(); the communicator was aborted");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  // ncclCommAbort also ends NCCL kernels still waiting for peers, but may wait for the node's other
  // ranks (NCCL 2.28). So the abort runs on a thread of its own and the caller gets its error at once;
  // the communicator is unusable from here on either way.
  void abort() override {
    if (peer_group_) peer_group_->abort_all();  // ends every rank's spinning peer all-reduce
    if (!comm_) return;
    nccl::ncclComm_t c = comm_;
    comm_ = nullptr;
    const nccl::Api* api = &api_;  // the process-wide table (nccl::api()), never freed
    const int dev = dev_.index;
    const bool tracing = std::getenv("PARALLM_TRACE") != nullptr;
    if (tracing) std::fprintf(stderr, "[parallm trace] rank %d on cuda:%d: ncclCommAbort started\n", rank_, dev);
    std::thread([api, c, dev, tracing] {
      cudaSetDevice(dev);
      api->CommAbort(c);
      if (tracing) std::fprintf(stderr, "[parallm trace] cuda:%d: ncclCommAbort returned\n", dev);
    }).detach();
  }

 private:
  const nccl::Api& api_;
  nccl::ncclComm_t comm_ = nullptr;
  BlockPtr one_;  // the barrier's element (its value is never read)
  int64_t timeout_ms_;
  // Auto sends messages up to this size by LL (bench comm measures where it stops winning).
  static constexpr size_t kLLAutoBytes = size_t(256) << 10;
  // The peer all-reduce (native/cuda/allreduce.cu), when every rank is a thread of this process on
  // GPUs that reach each other and each set up its memory; every rank agrees (peer_agree).
  std::shared_ptr<PeerGroup> peer_group_;
  cuda::PeerRanks peer_ranks_{};
  bool peer_ = false;
  std::string peer_why_;

  // Allocate and register this rank's receive area, flags and control block (before the barrier).
  void peer_join(const std::string& key) {
    const char* env = std::getenv("PARALLM_PEER_ALLREDUCE");
    if (env && std::string(env) == "0") return void(peer_why_ = "turned off by PARALLM_PEER_ALLREDUCE=0");
    if (world_ < 2 || world_ > cuda::kPeerMaxRanks)
      return void(peer_why_ = "it takes 2.." + std::to_string(cuda::kPeerMaxRanks) + " ranks, this communicator has " + std::to_string(world_));
    PeerGroup::Member m;
    m.dev = dev_.index;
    const size_t slot_bytes = cuda::peer_slot_bytes(world_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, slot_bytes);
    if (e == cudaSuccess) m.slots = static_cast<char*>(p), e = cudaMemset(m.slots, 0, slot_bytes);  // LL flags start at 0
    if (e == cudaSuccess) e = cudaMalloc(&p, sizeof(cuda::PeerFlags));
    if (e == cudaSuccess) m.flags = static_cast<cuda::PeerFlags*>(p), e = cudaMemset(m.flags, 0, sizeof(cuda::PeerFlags));
    if (e == cudaSuccess) e = cudaHostAlloc(&p, sizeof(cuda::PeerControl), cudaHostAllocMapped | cudaHostAllocPortable);
    if (e == cudaSuccess) m.control = static_cast<cuda::PeerControl*>(p), std::memset(p, 0, sizeof(cuda::PeerControl));
    if (e == cudaSuccess) e = cudaDeviceSynchronize();  // the flags' memset is done before any peer writes them
    if (e != cudaSuccess) {
      cudaGetLastError();
      peer_why_ = std::string("could not allocate its ") + std::to_string(slot_bytes) + " bytes on " + dev_.str() + ": " + cudaGetErrorString(e);
      if (m.slots) cudaFree(m.slots);
      if (m.flags) cudaFree(m.flags);
      if (m.control) cudaFreeHost(const_cast<cuda::PeerControl*>(m.control));
      return;
    }
    peer_group_ = peer_group(key, world_);
    std::lock_guard<std::mutex> lock(peer_group_->mu);
    peer_group_->members[size_t(rank_)] = m;
    peer_group_->joined++;
  }

  // After the barrier: every local rank has joined. Take the peer path only if every rank can, which
  // an NCCL all-reduce of "can't" counts (a rank of another process never joined the group, so none
  // can; a rank whose peer access failed says so), so the ranks never take different paths.
  void peer_agree() {
    bool can = false;
    if (peer_group_) {
      std::lock_guard<std::mutex> lock(peer_group_->mu);
      if (peer_group_->joined != world_) {
        peer_why_ = "only " + std::to_string(peer_group_->joined) + " of the " + std::to_string(world_) +
                    " ranks are threads of this process (NCCL's all-reduce goes across processes)";
      } else {
        can = true;
        for (int q = 0; q < world_ && can; q++) {
          const PeerGroup::Member& m = peer_group_->members[size_t(q)];
          peer_ranks_.slots[q] = m.slots;
          peer_ranks_.flags[q] = m.flags;
          if (q == rank_) continue;
          int ok = 0;
          if (m.dev == dev_.index) {
            can = false, peer_why_ = "two ranks share " + dev_.str();
          } else if (cudaDeviceCanAccessPeer(&ok, dev_.index, m.dev) != cudaSuccess || !ok) {
            cudaGetLastError();
            can = false, peer_why_ = dev_.str() + " cannot reach cuda:" + std::to_string(m.dev) + " (no peer access)";
          } else {
            cudaError_t e = cudaDeviceEnablePeerAccess(m.dev, 0);
            if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();
            else if (e != cudaSuccess)
              cudaGetLastError(), can = false,
                                  peer_why_ = "enabling peer access " + dev_.str() + " -> cuda:" + std::to_string(m.dev) + " failed: " + cudaGetErrorString(e);
          }
        }
        void* dctl = nullptr;
        if (can && cudaHostGetDevicePointer(&dctl, const_cast<cuda::PeerControl*>(peer_group_->members[size_t(rank_)].control), 0) != cudaSuccess) {
          cudaGetLastError();
          can = false, peer_why_ = "the control block is not mapped on " + dev_.str();
        }
        peer_ranks_.control = static_cast<cuda::PeerControl*>(dctl);
      }
    }
    std::string w = where("commCreate (peer all-reduce)", 1, DType::F32);
    CUstream_st* s = stream(w);
    float cant = can ? 0.f : 1.f;
    PARALLM_CUDA_CHECK(cudaMemcpyAsync(one_->ptr, &cant, sizeof cant, cudaMemcpyHostToDevice, s), w);
    check(api_.AllReduce(one_->ptr, one_->ptr, 1, nccl::ncclFloat32, nccl::ncclSum, comm_, s), w);
    PARALLM_CUDA_CHECK(cudaMemcpyAsync(&cant, one_->ptr, sizeof cant, cudaMemcpyDeviceToHost, s), w);
    wait_stream(s, w, true);
    if (can && cant != 0.f) can = false, peer_why_ = "another rank cannot take it";
    peer_ = can;
    peer_ranks_.rank = rank_, peer_ranks_.world = world_;
    peer_ranks_.timeout_ns = (unsigned long long)(timeout_ms_) * 1000000ull;
  }

  // A peer all-reduce that gave up (timed out, or stopped by abort) left its reason in the control block.
  void peer_check(const std::string& w) {
    if (!peer_) return;
    const cuda::PeerControl* c = peer_group_->members[size_t(rank_)].control;
    if (!c->error) return;
    const int peer = c->peer, why = c->error;
    peer_ = false;
    peer_why_ = "the communicator was aborted";
    abort();
    if (why == 2) fail(w, ": stopped by abort() while a peer all-reduce waited for rank ", peer, "; the communicator was aborted");
    fail(w, ": a peer all-reduce waited more than ", timeout_ms_, " ms for rank ", peer,
         " (which never made the matching call); the communicator was aborted");
  }

  CUstream_st* stream(const std::string& w) {
    if (!comm_) fail(w, ": the communicator was aborted or destroyed");
    return cuda_activate(dev_);
  }
  void check(nccl::ncclResult_t r, const std::string& w) {
    if (r == nccl::ncclSuccess) return;
    std::string extra;
    if (comm_) {
      nccl::ncclResult_t ae = nccl::ncclSuccess;
      if (api_.CommGetAsyncError(comm_, &ae) == nccl::ncclSuccess && ae != nccl::ncclSuccess)
        extra = std::string("; asynchronous error: ") + api_.GetErrorString(ae);
    }
    fail(w, ": NCCL error ", int(r), " (", api_.GetErrorString(r), ")", extra,
         " (NCCL_DEBUG=WARN in the environment says more)");
  }
};
#endif

}  // namespace

std::shared_ptr<Communicator> make_cpu_communicator(const std::string& id, int rank, int world, DeviceId dev,
                                                    int64_t timeout_ms) {
  check_membership("commCreate", rank, world);
  if (dev.is_cuda()) fail("commCreate: a CPU communicator needs a cpu:N device, got ", dev.str());
  if (id.empty()) fail("commCreate: the id must not be empty");
  if (timeout_ms < 0) fail("commCreate: timeoutMs must be >= 0 (0: no timeout), got ", timeout_ms);
  check_device(dev);
  return std::make_shared<CpuComm>(join_group(id, rank, world), rank, dev, timeout_ms);
}

std::shared_ptr<Communicator> make_nccl_communicator(const void* id, size_t id_bytes, int rank, int world,
                                                     DeviceId dev, int64_t timeout_ms) {
  check_membership("commCreate", rank, world);
  if (!dev.is_cuda()) fail("commCreate: an NCCL communicator needs a cuda:N device, got ", dev.str());
  if (id_bytes != nccl::kUniqueIdBytes)
    fail("commCreate: an NCCL id is ", nccl::kUniqueIdBytes, " bytes (ncclUniqueId()), got ", id_bytes);
  if (timeout_ms < 0) fail("commCreate: timeoutMs must be >= 0 (0: no timeout), got ", timeout_ms);
#ifdef PARALLM_WITH_CUDA
  check_device(dev);
  return std::make_shared<NcclComm>(id, rank, world, dev, timeout_ms);
#else
  (void)id;
  fail("commCreate: this build has no CUDA backend, so no NCCL communicator on ", dev.str());
#endif
}

std::string nccl_unique_id() {
  const nccl::Api& api = nccl::api();
  nccl::ncclUniqueId uid;
  nccl::ncclResult_t r = api.GetUniqueId(&uid);
  if (r != nccl::ncclSuccess) fail("ncclUniqueId: ncclGetUniqueId failed: ", api.GetErrorString(r));
  return std::string(uid.internal, nccl::kUniqueIdBytes);
}

}  // namespace parallm
