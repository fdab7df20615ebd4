// The cross-process CPU communicator ('tcp'): one TCP connection between every two ranks, POSIX
// sockets, every wait a poll() bounded by the timeout and woken every kStopPollMs for the stop flag.
//
// Wire: frames of a fixed header (Hdr) and a payload, on one connection per pair of ranks, in order.
// Two channels share a connection: point-to-point messages and collectives, each with its own queue
// on the receiving side, so a send() not yet received never gets in the way of a collective.
// Sockets are non-blocking; whenever a rank waits (to write, or for a frame), it reads whatever any
// peer has sent into its queues. So a send never waits for the matching recv (as the in-process
// communicator's), crossing sends cannot deadlock, and neither can the all-to-all phases below.
//
// all-reduce: every rank sends slice p of its buffer to rank p (the in-process communicator's slices),
// rank p reduces its slice over the ranks in rank order and sends the result to every rank. The sums
// are the in-process communicator's, operation for operation, so results are bit-identical to it.
//
// Connection setup: rank r listens on its address, connects to every rank below it, and accepts every
// rank above it. A connecting rank says hello (magic, rank, world, the communicator's token); the
// acceptor checks them and answers one byte. A connection with a wrong token is closed and remembered
// (named if the setup times out); the token is part of the id, which the rendezvous hands out.
// Header fields are in host byte order: every rank runs the same build on little-endian machines.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <new>
#include <sstream>
#include <thread>
#include <vector>

#include "../core/errors.h"
#include "../core/runtime.h"
#include "communicator.h"

namespace parallm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kFrameMagic = 0x544d4c50;  // "PLMT"
constexpr uint32_t kHelloMagic = 0x484d4c50;  // "PLMH"
constexpr int64_t kMaxFrameBytes = int64_t(1) << 40;

enum Channel : uint8_t { kP2P = 0, kColl = 1 };
enum Kind : uint8_t { kSend = 0, kAllReduce = 1, kAllReduceResult = 2, kBroadcast = 3, kAllGather = 4, kBarrier = 5 };

struct Hdr {
  uint32_t magic = kFrameMagic;
  uint8_t channel = 0, kind = 0, dt = 0, op = 0;
  int32_t aux = 0;      // broadcast's root
  uint32_t pad = 0;     // explicit, so no uninitialized byte goes on the wire
  int64_t n = 0;        // the elements of the whole call (what the ranks must agree on)
  int64_t bytes = 0;    // this frame's payload
};

static_assert(sizeof(Hdr) == 32, "Hdr has no implicit padding");

struct Frame {
  Hdr h;
  std::vector<char> data;
};

std::string sys_error(int e) { return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")"; }

const char* kind_name(uint8_t k) {
  switch (k) {
    case kSend: return "send";
    case kAllReduce: return "allReduce";
    case kAllReduceResult: return "allReduce";
    case kBroadcast: return "broadcast";
    case kAllGather: return "allGather";
    case kBarrier: return "barrier";
  }
  return "an unknown frame";
}

std::string describe(const Hdr& h) {
  std::ostringstream os;
  os << kind_name(h.kind);
  if (h.kind == kAllReduce || h.kind == kAllReduceResult) os << "(" << (h.op ? "avg" : "sum") << ")";
  if (h.kind == kBroadcast) os << "(root " << h.aux << ")";
  if (h.kind != kBarrier)
    os << " of " << h.n << " x " << (h.dt <= 3 ? dtype_name(DType(h.dt)) : "?");
  return os.str();
}

struct Addr {
  std::string host, port;
  std::string str() const { return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port; }
};

// "host:port" or "[v6]:port".
Addr parse_addr(const std::string& s, const std::string& what) {
  Addr a;
  size_t colon;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
      fail(what, ": address '", s, "' is not [host]:port");
    a.host = s.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0) fail(what, ": address '", s, "' is not host:port");
    a.host = s.substr(0, colon);
  }
  a.port = s.substr(colon + 1);
  char* end = nullptr;
  long p = std::strtol(a.port.c_str(), &end, 10);
  if (a.port.empty() || *end || p < 1 || p > 65535) fail(what, ": address '", s, "' has no port 1..65535");
  return a;
}

// A resolved address (numeric hosts and names both), for bind() and connect().
struct Resolved {
  sockaddr_storage sa{};
  socklen_t len = 0;
  int family = AF_INET;
};
Resolved resolve(const Addr& a, const std::string& what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(a.host.c_str(), a.port.c_str(), &hints, &res);
  if (rc != 0 || !res) fail(what, ": cannot resolve ", a.str(), ": ", gai_strerror(rc));
  Resolved r;
  std::memcpy(&r.sa, res->ai_addr, res->ai_addrlen);
  r.len = socklen_t(res->ai_addrlen);
  r.family = res->ai_family;
  freeaddrinfo(res);
  return r;
}

void set_nonblocking(int fd, const std::string& what) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) fail(what, ": fcntl(O_NONBLOCK): ", sys_error(errno));
}

void set_nodelay(int fd, const std::string& what) {
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
    fail(what, ": setsockopt(TCP_NODELAY): ", sys_error(errno));
}

struct Peer {
  int fd = -1;
  bool eof = false;
  std::string gone_why;  // set when the connection ended (EOF or an error)
  std::deque<Frame> q[2];
  // the frame being read
  Hdr hdr;
  size_t hdr_got = 0;
  Frame cur;
  size_t body_got = 0;
};

class TcpComm : public Communicator {
 public:
  TcpComm(const std::string& id, int rank, int world, DeviceId dev, int64_t timeout_ms, const int32_t* stop)
      : Communicator(rank, world, dev), timeout_ms_(timeout_ms), peers_(size_t(world)) {
    set_stop_flag(stop);
    try {
      connect_all(id);
    } catch (...) {
      close_all();
      throw;
    }
  }
  ~TcpComm() override { close_all(); }

  void all_reduce(void* buf, int64_t n, DType dt, ReduceOp op) override {
    std::string w = where("allReduce", n, dt);
    begin(w);
    Deadline dl = deadline();
    size_t es = dtype_size(dt);
    int64_t per = (n + world_ - 1) / world_;
    auto lo = [&](int r) { return std::min(n, per * r); };
    auto hi = [&](int r) { return std::min(n, lo(r) + per); };
    Hdr h = desc(kAllReduce, dt, n);
    h.op = op == ReduceOp::Avg ? 1 : 0;
    char* b = static_cast<char*>(buf);
    // Phase 1: slice p of this rank's buffer to rank p.
    for (int k = 1; k < world_; k++) {
      int p = (rank_ + k) % world_;
      write_frame(w, dl, p, h, b + size_t(lo(p)) * es, size_t(hi(p) - lo(p)) * es);
    }
    int64_t mlo = lo(rank_), mhi = hi(rank_), m = mhi - mlo;
    std::vector<std::vector<char>> parts(static_cast<size_t>(world_));
    std::vector<const void*> in(static_cast<size_t>(world_));
    for (int p = 0; p < world_; p++) {
      if (p == rank_) {
        in[size_t(p)] = b + size_t(mlo) * es;
        continue;
      }
      parts[size_t(p)] = take(w, dl, p, h, size_t(m) * es);
      in[size_t(p)] = parts[size_t(p)].data();
    }
    reduce(in, b + size_t(mlo) * es, m, dt, op);
    // Phase 2: this rank's reduced slice to every rank; theirs into place.
    Hdr h2 = h;
    h2.kind = kAllReduceResult;
    for (int k = 1; k < world_; k++) {
      int p = (rank_ + k) % world_;
      write_frame(w, dl, p, h2, b + size_t(mlo) * es, size_t(m) * es);
    }
    for (int p = 0; p < world_; p++) {
      if (p == rank_) continue;
      std::vector<char> got = take(w, dl, p, h2, size_t(hi(p) - lo(p)) * es);
      if (!got.empty()) std::memcpy(b + size_t(lo(p)) * es, got.data(), got.size());
    }
  }

  void broadcast(void* buf, int64_t n, DType dt, int root) override {
    std::string w = where("broadcast", n, dt);
    if (root < 0 || root >= world_) fail(w, ": root ", root, " is not a rank (0..", world_ - 1, ")");
    begin(w);
    Deadline dl = deadline();
    Hdr h = desc(kBroadcast, dt, n);
    h.aux = root;
    size_t bytes = size_t(n) * dtype_size(dt);
    if (rank_ == root) {
      for (int k = 1; k < world_; k++) write_frame(w, dl, (rank_ + k) % world_, h, buf, bytes);
    } else {
      std::vector<char> got = take(w, dl, root, h, bytes);
      if (bytes) std::memcpy(buf, got.data(), bytes);
    }
  }

  void all_gather(const void* in, void* out, int64_t n, DType dt) override {
    std::string w = where("allGather", n, dt);
    begin(w);
    Deadline dl = deadline();
    Hdr h = desc(kAllGather, dt, n);
    size_t bytes = size_t(n) * dtype_size(dt);
    for (int k = 1; k < world_; k++) write_frame(w, dl, (rank_ + k) % world_, h, in, bytes);
    char* o = static_cast<char*>(out);
    if (bytes && o + size_t(rank_) * bytes != in) std::memmove(o + size_t(rank_) * bytes, in, bytes);
    for (int p = 0; p < world_; p++) {
      if (p == rank_) continue;
      std::vector<char> got = take(w, dl, p, h, bytes);
      if (bytes) std::memcpy(o + size_t(p) * bytes, got.data(), bytes);
    }
  }

  void barrier() override {
    std::string w = where("barrier", 0, DType::F32);
    begin(w);
    Deadline dl = deadline();
    Hdr h = desc(kBarrier, DType::F32, 0);
    for (int k = 1; k < world_; k++) write_frame(w, dl, (rank_ + k) % world_, h, nullptr, 0);
    for (int p = 0; p < world_; p++)
      if (p != rank_) take(w, dl, p, h, 0);
  }

  void send(const void* buf, int64_t n, DType dt, int peer) override {
    std::string w = where("send", n, dt);
    check_peer("send", peer, n, dt);
    begin(w);
    Hdr h = desc(kSend, dt, n);
    h.channel = kP2P;
    write_frame(w, deadline(), peer, h, buf, size_t(n) * dtype_size(dt));
  }

  void recv(void* buf, int64_t n, DType dt, int peer) override {
    std::string w = where("recv", n, dt);
    check_peer("recv", peer, n, dt);
    begin(w);
    Frame f = next_frame(w, deadline(), peer, kP2P);
    if (f.h.n != n || f.h.dt != uint8_t(dt))
      fail(w, ": rank ", peer, " sent ", f.h.n, " x ", f.h.dt <= 3 ? dtype_name(DType(f.h.dt)) : "?", " but rank ", rank_,
           " receives ", n, " x ", dtype_name(dt));
    if (n) std::memcpy(buf, f.data.data(), f.data.size());
  }

  // Peers blocked on this rank see their connection end at once and fail naming it.
  void abort() override {
    if (broken_.empty()) broken_ = "abort() was called";
    for (Peer& p : peers_)
      if (p.fd >= 0) shutdown(p.fd, SHUT_RDWR);
  }

 private:
  using Deadline = Clock::time_point;
  int64_t timeout_ms_;
  std::vector<Peer> peers_;
  std::string broken_;  // why this rank's communicator is unusable; empty while it works

  Deadline deadline() const {
    return timeout_ms_ > 0 ? Clock::now() + std::chrono::milliseconds(timeout_ms_) : Deadline::max();
  }
  Hdr desc(Kind k, DType dt, int64_t n) const {
    Hdr h;
    h.channel = kColl, h.kind = k, h.dt = uint8_t(dt), h.n = n;
    return h;
  }
  void begin(const std::string& w) {
    if (!broken_.empty()) fail(w, ": this rank's communicator is closed (", broken_, ")");
    if (capturing(dev_)) fail(w, ": collectives cannot be captured on a CPU device");
  }

  // A failure of the transport: this rank's communicator is unusable from here on, and its peers learn
  // it at once (their connections to it end), instead of each waiting out its own timeout.
  [[noreturn]] void broken(const std::string& msg) {
    if (broken_.empty()) broken_ = msg;
    for (Peer& p : peers_)
      if (p.fd >= 0) shutdown(p.fd, SHUT_RDWR);
    throw Error(msg);
  }

  void close_all() {
    for (Peer& p : peers_)
      if (p.fd >= 0) {
        close(p.fd);
        p.fd = -1;
      }
  }

  void check_wait(const std::string& w, Deadline dl, const std::string& waiting_for) {
    if (stop_requested()) broken(w + ": stopped by close() or terminate() while waiting for " + waiting_for);
    if (Clock::now() >= dl)
      broken(w + ": timed out after " + std::to_string(timeout_ms_) + " ms waiting for " + waiting_for +
             "; the communicator is now unusable");
  }

  [[noreturn]] void peer_gone(const std::string& w, int p) {
    broken(w + ": peer rank " + std::to_string(p) + " closed its connection (" + peers_[size_t(p)].gone_why +
           "): its process ended, or it failed, aborted or destroyed its communicator");
  }

  // Waits up to the deadline (and kStopPollMs at a time) for any peer's data, or for room to write to
  // `write_peer` (-1: none), and reads everything that arrived into the peers' queues.
  void wait_io(const std::string& w, Deadline dl, int write_peer) {
    std::vector<pollfd> fds;
    std::vector<int> who;
    for (int p = 0; p < world_; p++) {
      Peer& pr = peers_[size_t(p)];
      if (p == rank_ || pr.fd < 0 || pr.eof) continue;
      short ev = POLLIN;
      if (p == write_peer) ev |= POLLOUT;
      fds.push_back(pollfd{pr.fd, ev, 0});
      who.push_back(p);
    }
    int ms = kStopPollMs;
    if (dl != Deadline::max()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(dl - Clock::now()).count() + 1;
      ms = int(std::max<int64_t>(0, std::min<int64_t>(ms, left)));
    }
    int rc = poll(fds.data(), nfds_t(fds.size()), ms);
    if (rc < 0) {
      if (errno == EINTR) return;
      broken(w + ": poll: " + sys_error(errno));
    }
    for (size_t i = 0; i < fds.size(); i++)
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) pump(w, who[i]);
  }

  // Reads what peer p has sent, without blocking, into its queues.
  void pump(const std::string& w, int p) {
    Peer& pr = peers_[size_t(p)];
    while (!pr.eof) {
      char* dst;
      size_t want;
      if (pr.hdr_got < sizeof(Hdr)) {
        dst = reinterpret_cast<char*>(&pr.hdr) + pr.hdr_got;
        want = sizeof(Hdr) - pr.hdr_got;
      } else {
        dst = pr.cur.data.data() + pr.body_got;
        want = pr.cur.data.size() - pr.body_got;
      }
      ssize_t got = want ? ::recv(pr.fd, dst, want, MSG_DONTWAIT) : 0;
      if (want && got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        pr.eof = true;
        pr.gone_why = "recv: " + sys_error(errno);
        return;
      }
      if (want && got == 0) {
        pr.eof = true;
        pr.gone_why = "end of stream";
        return;
      }
      if (pr.hdr_got < sizeof(Hdr)) {
        pr.hdr_got += size_t(got);
        if (pr.hdr_got < sizeof(Hdr)) continue;
        if (pr.hdr.magic != kFrameMagic || pr.hdr.bytes < 0 || pr.hdr.bytes > kMaxFrameBytes || pr.hdr.channel > kColl)
          broken(w + ": rank " + std::to_string(p) + " sent a malformed frame (not a parallm tcp communicator peer?)");
        pr.cur.h = pr.hdr;
        try {
          pr.cur.data.assign(size_t(pr.hdr.bytes), 0);
        } catch (const std::bad_alloc&) {
          broken(w + ": cannot allocate " + std::to_string(pr.hdr.bytes) + " bytes for a frame from rank " + std::to_string(p));
        }
        pr.body_got = 0;
      } else {
        pr.body_got += size_t(got);
      }
      if (pr.body_got == pr.cur.data.size()) {
        pr.q[pr.cur.h.channel].push_back(std::move(pr.cur));
        pr.cur = Frame();
        pr.hdr_got = 0;
        pr.body_got = 0;
      }
    }
  }

  void write_frame(const std::string& w, Deadline dl, int p, const Hdr& h0, const void* data, size_t bytes) {
    Peer& pr = peers_[size_t(p)];
    Hdr h = h0;
    h.bytes = int64_t(bytes);
    size_t total = sizeof(Hdr) + bytes, done = 0;
    while (done < total) {
      if (pr.eof) peer_gone(w, p);  // it will never read this
      iovec iov[2];
      int n = 0;
      if (done < sizeof(Hdr)) iov[n++] = {reinterpret_cast<char*>(&h) + done, sizeof(Hdr) - done};
      size_t off = done > sizeof(Hdr) ? done - sizeof(Hdr) : 0;
      if (bytes > off) iov[n++] = {const_cast<char*>(static_cast<const char*>(data)) + off, bytes - off};
      msghdr m{};
      m.msg_iov = iov;
      m.msg_iovlen = size_t(n);
      ssize_t sent = sendmsg(pr.fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) {
        done += size_t(sent);
        continue;
      }
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        pr.eof = true;
        pr.gone_why = "send: " + sys_error(errno);
        peer_gone(w, p);
      }
      check_wait(w, dl, "rank " + std::to_string(p) + " to take data (" + std::to_string(total - done) + " bytes left to send)");
      wait_io(w, dl, p);
    }
  }

  Frame next_frame(const std::string& w, Deadline dl, int p, Channel ch) {
    Peer& pr = peers_[size_t(p)];
    for (;;) {
      if (!pr.q[ch].empty()) {
        Frame f = std::move(pr.q[ch].front());
        pr.q[ch].pop_front();
        return f;
      }
      if (pr.eof) peer_gone(w, p);
      check_wait(w, dl, "rank " + std::to_string(p) + (ch == kP2P ? " to send" : " to arrive"));
      wait_io(w, dl, -1);
    }
  }

  // The next collective frame from p, which must be the same call as this rank's, with `bytes` of payload.
  std::vector<char> take(const std::string& w, Deadline dl, int p, const Hdr& want, size_t bytes) {
    Frame f = next_frame(w, dl, p, kColl);
    const Hdr& h = f.h;
    if (h.kind != want.kind || h.dt != want.dt || h.op != want.op || h.aux != want.aux || h.n != want.n)
      broken(w + ": ranks disagree on the collective: rank " + std::to_string(p) + " called " + describe(h) +
             " but rank " + std::to_string(rank_) + " called " + describe(want));
    if (f.data.size() != bytes)
      broken(w + ": rank " + std::to_string(p) + " sent " + std::to_string(f.data.size()) + " bytes, expected " +
             std::to_string(bytes));
    return std::move(f.data);
  }

  // The in-process communicator's reduction (communicator.cc CpuComm::reduce_slice / copy_result):
  // in rank order, in f32 (i32 for i32, wrapping), then converted back.
  void reduce(const std::vector<const void*>& in, void* out, int64_t m, DType dt, ReduceOp op) const {
    if (dt == DType::I32) {
      int32_t* o = static_cast<int32_t*>(out);
      for (int64_t i = 0; i < m; i++) {
        uint32_t s = 0;
        for (int r = 0; r < world_; r++) s += uint32_t(static_cast<const int32_t*>(in[size_t(r)])[i]);
        o[i] = op == ReduceOp::Avg ? int32_t(s) / world_ : int32_t(s);
      }
      return;
    }
    float inv = 1.0f / float(world_);
    std::vector<float> acc(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; i++) {
      float s = load_f32(in[0], i, dt);
      for (int r = 1; r < world_; r++) s += load_f32(in[size_t(r)], i, dt);
      acc[size_t(i)] = op == ReduceOp::Avg ? s * inv : s;
    }
    if (dt == DType::F32) {
      if (m) std::memcpy(out, acc.data(), size_t(m) * 4);
    } else {
      uint16_t* o = static_cast<uint16_t*>(out);
      for (int64_t i = 0; i < m; i++) o[i] = dt == DType::BF16 ? f32_to_bf16(acc[size_t(i)]) : f32_to_f16(acc[size_t(i)]);
    }
  }

  // ---------------------------------------------------------------- setup

  struct Hello {
    uint32_t magic = kHelloMagic;
    int32_t rank = 0, world = 0;
    uint32_t token_len = 0;
  };

  // Blocking-style I/O on one fd during setup, bounded by the deadline and the stop flag.
  bool io_wait(int fd, short ev, Deadline dl) {
    for (;;) {
      if (stop_requested()) fail("stopped by close() or terminate()");
      int ms = kStopPollMs;
      if (dl != Deadline::max()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(dl - Clock::now()).count();
        if (left <= 0) return false;
        ms = int(std::min<int64_t>(ms, left + 1));
      }
      pollfd pf{fd, ev, 0};
      int rc = poll(&pf, 1, ms);
      if (rc < 0 && errno != EINTR) fail("poll: ", sys_error(errno));
      if (rc > 0) return true;
    }
  }
  // false on a timeout; throws on a closed or failed connection.
  bool write_all(int fd, const void* p, size_t n, Deadline dl) {
    const char* c = static_cast<const char*>(p);
    while (n) {
      ssize_t s = ::send(fd, c, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (s > 0) {
        c += s, n -= size_t(s);
        continue;
      }
      if (s < 0 && errno == EINTR) continue;
      if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK) fail("send: ", sys_error(errno));
      if (!io_wait(fd, POLLOUT, dl)) return false;
    }
    return true;
  }
  bool read_all(int fd, void* p, size_t n, Deadline dl) {
    char* c = static_cast<char*>(p);
    while (n) {
      ssize_t s = ::recv(fd, c, n, MSG_DONTWAIT);
      if (s > 0) {
        c += s, n -= size_t(s);
        continue;
      }
      if (s == 0) fail("the connection was closed");
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail("recv: ", sys_error(errno));
      if (!io_wait(fd, POLLIN, dl)) return false;
    }
    return true;
  }

  void connect_all(const std::string& id) {
    std::string w = where("commCreate", 0, DType::F32);
    // id: "tcp:<token>@<addr of rank 0>,<addr of rank 1>,..."
    if (id.compare(0, 4, "tcp:") != 0 || id.find('@') == std::string::npos)
      fail(w, ": a tcp communicator id is 'tcp:<token>@<host:port>,...' (one address per rank), got '", id, "'");
    size_t at = id.find('@');
    std::string token = id.substr(4, at - 4);
    if (token.empty() || token.size() > 1024) fail(w, ": the id's token must be 1..1024 characters");
    std::vector<Addr> addrs;
    std::string list = id.substr(at + 1);
    for (size_t pos = 0;;) {
      size_t comma = list.find(',', pos);
      addrs.push_back(parse_addr(list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos), w));
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (int(addrs.size()) != world_)
      fail(w, ": the id lists ", addrs.size(), " addresses but the world is ", world_, " (one per rank)");
    if (world_ == 1) return;
    Deadline dl = deadline();

    // Listen first, so that higher ranks can connect while this one connects to the lower ones.
    int lfd = -1;
    const Addr& me = addrs[size_t(rank_)];
    if (rank_ < world_ - 1) {
      Resolved r = resolve(me, w);
      lfd = socket(r.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (lfd < 0) fail(w, ": socket: ", sys_error(errno));
      int one = 1;
      if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        int e = errno;
        close(lfd);
        fail(w, ": setsockopt(SO_REUSEADDR): ", sys_error(e));
      }
      if (bind(lfd, reinterpret_cast<sockaddr*>(&r.sa), r.len) < 0 || listen(lfd, world_) < 0) {
        int e = errno;
        close(lfd);
        fail(w, ": cannot listen on ", me.str(), ": ", sys_error(e));
      }
    }
    try {
      Hello hello;
      hello.rank = rank_, hello.world = world_, hello.token_len = uint32_t(token.size());
      for (int p = 0; p < rank_; p++) connect_to(w, p, addrs[size_t(p)], hello, token, dl);
      accept_from(w, lfd, token, dl);
    } catch (...) {
      if (lfd >= 0) close(lfd);
      throw;
    }
    if (lfd >= 0) close(lfd);
  }

  void connect_to(const std::string& w, int p, const Addr& a, const Hello& hello, const std::string& token, Deadline dl) {
    Resolved r = resolve(a, w);
    std::string last = "no attempt";
    std::string ctx = w + ": connecting to rank " + std::to_string(p) + " at " + a.str();
    for (;;) {
      if (stop_requested()) fail(ctx, ": stopped by close() or terminate()");
      if (Clock::now() >= dl) fail(ctx, ": timed out after ", timeout_ms_, " ms (last error: ", last, ")");
      int fd = socket(r.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) fail(ctx, ": socket: ", sys_error(errno));
      try {
        set_nonblocking(fd, ctx);
        int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&r.sa), r.len);
        int err = rc == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
          if (!io_wait(fd, POLLOUT, dl)) {
            close(fd);
            continue;  // the deadline check above reports it
          }
          socklen_t len = sizeof err;
          if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        }
        if (err == ECONNREFUSED || err == ETIMEDOUT || err == ECONNRESET || err == EHOSTUNREACH || err == ENETUNREACH ||
            err == EAGAIN) {
          // not listening yet: try again shortly
          last = sys_error(err);
          close(fd);
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        if (err) fail("connect: ", sys_error(err));
        set_nodelay(fd, ctx);
        if (!write_all(fd, &hello, sizeof hello, dl) || !write_all(fd, token.data(), token.size(), dl)) {
          close(fd);
          continue;
        }
        uint8_t ack = 0;
        if (!read_all(fd, &ack, 1, dl)) {
          close(fd);
          continue;
        }
        if (ack != 1) fail("rank ", p, " refused the connection");
        peers_[size_t(p)].fd = fd;
        return;
      } catch (const Error& e) {
        close(fd);
        std::string m = e.what();
        if (m.rfind(w, 0) == 0) throw;
        fail(ctx, ": ", m, " (a different communicator id or world on rank ", p, "?)");
      }
    }
  }

  void accept_from(const std::string& w, int lfd, const std::string& token, Deadline dl) {
    int want = world_ - 1 - rank_;
    std::string rejected;  // connections refused, for the timeout's message
    while (want > 0) {
      std::string missing;
      for (int p = rank_ + 1; p < world_; p++)
        if (peers_[size_t(p)].fd < 0) missing += (missing.empty() ? "" : ", ") + std::to_string(p);
      std::string ctx = w + ": waiting for rank(s) " + missing + " to connect";
      bool ready;
      try {
        ready = io_wait(lfd, POLLIN, dl);
      } catch (const Error& e) {
        fail(ctx, ": ", e.what());
      }
      if (!ready) fail(ctx, ": timed out after ", timeout_ms_, " ms", rejected.empty() ? "" : " (refused: " + rejected + ")");
      sockaddr_storage from{};
      socklen_t flen = sizeof from;
      int fd = accept4(lfd, reinterpret_cast<sockaddr*>(&from), &flen, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
        fail(ctx, ": accept: ", sys_error(errno));
      }
      // A stranger's connection costs at most a second of the setup, and never ends it.
      Deadline hello_dl = std::min(dl, Clock::now() + std::chrono::seconds(1));
      Hello h;
      std::string why;
      try {
        if (!read_all(fd, &h, sizeof h, hello_dl)) why = "sent no hello";
        else if (h.magic != kHelloMagic) why = "not a parallm peer";
        else if (h.world != world_) why = "world " + std::to_string(h.world) + " is not " + std::to_string(world_);
        else if (h.rank <= rank_ || h.rank >= world_ || peers_[size_t(h.rank)].fd >= 0)
          why = "rank " + std::to_string(h.rank) + " is not an expected peer";
        else if (h.token_len != token.size()) why = "wrong communicator token";
        else {
          std::string t(token.size(), '\0');
          if (!read_all(fd, &t[0], t.size(), hello_dl)) why = "sent no token";
          else if (t != token) why = "wrong communicator token";
        }
        if (why.empty()) {
          uint8_t ack = 1;
          if (!write_all(fd, &ack, 1, hello_dl)) why = "took no answer";
        }
      } catch (const Error& e) {
        why = e.what();
      }
      if (!why.empty()) {
        close(fd);
        rejected += (rejected.empty() ? "" : "; ") + why;
        continue;
      }
      set_nodelay(fd, ctx);
      peers_[size_t(h.rank)].fd = fd;
      want--;
    }
  }
};

}  // namespace

std::shared_ptr<Communicator> make_tcp_communicator(const std::string& id, int rank, int world, DeviceId dev,
                                                    int64_t timeout_ms, const int32_t* stop) {
  if (world < 1 || world > 4096) fail("commCreate: world must be 1..4096, got ", world);
  if (rank < 0 || rank >= world) fail("commCreate: rank must be 0..", world - 1, ", got ", rank);
  if (dev.is_cuda()) fail("commCreate: a tcp communicator needs a cpu:N device, got ", dev.str());
  if (timeout_ms < 0) fail("commCreate: timeoutMs must be >= 0 (0: no timeout), got ", timeout_ms);
  check_device(dev);
  return std::make_shared<TcpComm>(id, rank, world, dev, timeout_ms, stop);
}

}  // namespace parallm
