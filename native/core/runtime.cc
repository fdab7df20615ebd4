// The device runtime over the backends (core/backend.h): each call picks the backend of the device's
// kind; what is common (range checks, capture bookkeeping, graphs, events and streams as objects) is here.
#include "runtime.h"
#include "host_read.h"

#include <chrono>
#include <cstring>
#include <mutex>

#include "backend.h"
#include "errors.h"

namespace parallm {

// ---------------------------------------------------------------- devices

bool cuda_compiled() { return cuda_backend::compiled(); }
std::string cuda_status() { return cuda_backend::status(); }
int cuda_device_count() { return cuda_backend::device_count(); }
int cpu_device_count() { return cpu_backend::device_count(); }
void configure_cpu_devices(int count) { cpu_backend::configure(count); }

void check_device(DeviceId d) {
  if (d.is_cuda()) cuda_backend::check(d.index);
  else cpu_backend::check(d.index);
}

DeviceInfo device_info(DeviceId d) {
  return d.is_cuda() ? cuda_backend::info(d.index) : cpu_backend::info(d.index);
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  for (int i = 0; i < cuda_device_count(); i++) out.push_back(device_info({DeviceKind::CUDA, i}));
  for (int i = 0; i < cpu_device_count(); i++) out.push_back(device_info({DeviceKind::CPU, i}));
  return out;
}

// ---------------------------------------------------------------- memory

static CachingAllocator& allocator_of(DeviceId d) {
  return d.is_cuda() ? cuda_backend::allocator(d.index) : cpu_backend::allocator(d.index);
}

Block::~Block() {
  try {
    allocator_of(dev).release(ptr);
  } catch (...) {
    // A destructor must not throw; the device is gone, and so is the memory.
  }
}

BlockPtr allocate(DeviceId d, size_t bytes) {
  CachingAllocator& a = allocator_of(d);
  void* p = a.allocate(bytes);
  return std::make_shared<Block>(d, p, bytes);
}

AllocatorStats memory_stats(DeviceId d) { return allocator_of(d).stats(); }
void reset_peak_memory(DeviceId d) { allocator_of(d).reset_peak(); }
void empty_cache(DeviceId d) {
  synchronize(d);
  allocator_of(d).empty_cache();
}

// ---------------------------------------------------------------- copies

static void check_range(const Block& b, size_t off, size_t bytes, const char* what) {
  if (off > b.bytes || bytes > b.bytes - off)
    fail(what, ": range [", off, ", ", off + bytes, ") is outside a block of ", b.bytes, " bytes on ",
         b.dev.str());
}

void copy_from_host(const Block& dst, size_t dst_off, const void* src, size_t bytes) {
  check_range(dst, dst_off, bytes, "copy from host");
  if (!bytes) return;
  char* to = static_cast<char*>(dst.ptr) + dst_off;
  if (dst.dev.is_cuda()) return cuda_backend::copy_from_host(dst.dev.index, to, src, bytes);
  std::memcpy(to, src, bytes);
}

void copy_to_host(void* dst, const Block& src, size_t src_off, size_t bytes) {
  check_range(src, src_off, bytes, "copy to host");
  if (!bytes) return;
  const char* from = static_cast<const char*>(src.ptr) + src_off;
  if (src.dev.is_cuda()) return cuda_backend::copy_to_host(src.dev.index, dst, from, bytes);
  std::memcpy(dst, from, bytes);
}

struct HostRead {
  DeviceId dev;
  size_t bytes = 0;
  bool taken = false;
  std::vector<char> data;  // CPU
  void* pinned = nullptr;  // CUDA: the staging buffer and the event after the copy into it
  CUevent_st* ev = nullptr;
  ~HostRead() {
    if (pinned) cuda_backend::read_release(dev.index, pinned, bytes, ev);
  }
};

std::shared_ptr<HostRead> read_begin(const Block& src, size_t src_off, size_t bytes) {
  check_range(src, src_off, bytes, "read to host");
  auto r = std::make_shared<HostRead>();
  r->dev = src.dev;
  r->bytes = bytes;
  if (!bytes) return r;
  const char* from = static_cast<const char*>(src.ptr) + src_off;
  if (src.dev.is_cuda()) r->pinned = cuda_backend::read_begin(src.dev.index, from, bytes, &r->ev);
  else r->data.assign(from, from + bytes);
  return r;
}

void read_finish(HostRead& r, void* dst) {
  if (r.taken) fail("read of ", r.bytes, " bytes from ", r.dev.str(), ": already finished");
  r.taken = true;
  if (!r.bytes) return;
  if (r.pinned) cuda_backend::read_wait(r.dev.index, r.pinned, r.bytes, r.ev, dst);
  else std::memcpy(dst, r.data.data(), r.bytes);
}

size_t read_bytes(const HostRead& r) { return r.bytes; }

void copy_between(const Block& dst, size_t dst_off, const Block& src, size_t src_off, size_t bytes) {
  check_range(dst, dst_off, bytes, "copy");
  check_range(src, src_off, bytes, "copy");
  if (!bytes) return;
  char* to = static_cast<char*>(dst.ptr) + dst_off;
  const char* from = static_cast<const char*>(src.ptr) + src_off;
  if (!dst.dev.is_cuda() && !src.dev.is_cuda()) {
    // Two CPU devices share the host's memory. Stay in order with work recorded on the destination.
    cpu_submit(dst.dev, [to, from, bytes](const cpu::Ctx&) { std::memcpy(to, from, bytes); });
    return;
  }
  if (!dst.dev.is_cuda()) return copy_to_host(to, src, src_off, bytes);
  if (!src.dev.is_cuda()) return copy_from_host(dst, dst_off, from, bytes);
  if (dst.dev == src.dev) return cuda_backend::copy_device(dst.dev.index, to, from, bytes);
  cuda_backend::copy_peer(dst.dev.index, to, src.dev.index, from, bytes);
}

void synchronize(DeviceId d) {
  if (d.is_cuda()) cuda_backend::synchronize(d.index);
  else cpu_backend::check(d.index);  // CPU ops run when called: nothing is pending
}

// ---------------------------------------------------------------- capture

struct Graph {
  DeviceId dev;
  std::vector<BlockPtr> keep;
  std::vector<std::function<void(const cpu::Ctx&)>> ops;  // CPU
  CUgraph_st* graph = nullptr;                            // CUDA
  CUgraphExec_st* exec = nullptr;
  size_t nodes = 0;
  ~Graph() {
    if (graph || exec) cuda_backend::graph_destroy(graph, exec);
  }
};

static CaptureState& capture_state(DeviceId d) {
  return d.is_cuda() ? cuda_backend::capture(d.index) : cpu_backend::capture(d.index);
}

static std::mutex& capture_mutex(DeviceId d) {
  return d.is_cuda() ? cuda_backend::capture_mutex(d.index) : cpu_backend::capture_mutex(d.index);
}

void capture_begin(DeviceId d) {
  check_device(d);
  std::lock_guard<std::mutex> lock(capture_mutex(d));
  CaptureState& c = capture_state(d);
  if (c.active) fail("capture on ", d.str(), " has already begun");
  if (d.is_cuda()) cuda_backend::capture_begin(d.index);
  c = CaptureState{};
  c.active = true;
}

bool capturing(DeviceId d) {
  std::lock_guard<std::mutex> lock(capture_mutex(d));
  return capture_state(d).active;
}

void capture_keep(DeviceId d, const BlockPtr& b) {
  std::lock_guard<std::mutex> lock(capture_mutex(d));
  CaptureState& c = capture_state(d);
  if (c.active) c.keep.push_back(b);
}

std::shared_ptr<Graph> capture_end(DeviceId d) {
  std::lock_guard<std::mutex> lock(capture_mutex(d));
  CaptureState& c = capture_state(d);
  if (!c.active) fail("end capture on ", d.str(), ": no capture has begun");
  auto g = std::make_shared<Graph>();
  g->dev = d;
  g->keep = std::move(c.keep);
  g->ops = std::move(c.ops);
  c = CaptureState{};
  if (d.is_cuda()) cuda_backend::capture_end(d.index, &g->graph, &g->exec, &g->nodes);
  return g;
}

void graph_replay(Graph& g) {
  if (g.dev.is_cuda()) cuda_backend::graph_launch(g.dev.index, g.exec, g.nodes);
  else cpu_backend::replay(g.dev.index, g.ops);
}

DeviceId graph_device(const Graph& g) { return g.dev; }
size_t graph_ops(const Graph& g) { return g.dev.is_cuda() ? g.nodes : g.ops.size(); }

// ---------------------------------------------------------------- events and streams

struct Event {
  DeviceId dev;
  std::chrono::steady_clock::time_point host_time{};
  bool recorded = false;
  CUevent_st* ev = nullptr;  // CUDA
  ~Event() { cuda_backend::event_destroy(ev); }
};

std::shared_ptr<Event> event_create(DeviceId d) {
  check_device(d);
  auto e = std::make_shared<Event>();
  e->dev = d;
  if (d.is_cuda()) e->ev = cuda_backend::event_create(d.index);
  return e;
}

void event_record(Event& e) {
  e.recorded = true;
  if (e.dev.is_cuda()) return cuda_backend::event_record(e.dev.index, e.ev);
  e.host_time = std::chrono::steady_clock::now();  // CPU ops have finished when they return
}

void event_synchronize(Event& e) {
  if (!e.recorded) fail("synchronize on an event that was never recorded (", e.dev.str(), ")");
  if (e.dev.is_cuda()) cuda_backend::event_synchronize(e.dev.index, e.ev);
}

double event_elapsed_ms(Event& a, Event& b) {
  if (!a.recorded || !b.recorded) fail("elapsed time needs two recorded events");
  if (a.dev != b.dev) fail("elapsed time between events of ", a.dev.str(), " and ", b.dev.str());
  if (a.dev.is_cuda()) return cuda_backend::event_elapsed_ms(a.dev.index, a.ev, b.ev);
  return std::chrono::duration<double, std::milli>(b.host_time - a.host_time).count();
}

struct Stream {
  DeviceId dev;
  CUstream_st* s = nullptr;  // CUDA
  ~Stream() { cuda_backend::stream_destroy(s); }
};

std::shared_ptr<Stream> stream_create(DeviceId d) {
  check_device(d);
  auto st = std::make_shared<Stream>();
  st->dev = d;
  if (d.is_cuda()) st->s = cuda_backend::stream_create(d.index);
  return st;
}

void stream_set_current(DeviceId d, Stream* s) {
  if (s && s->dev != d) fail("stream of ", s->dev.str(), " used as current stream of ", d.str());
  check_device(d);
  if (d.is_cuda()) cuda_backend::stream_set_current(d.index, s ? s->s : nullptr);
}

void stream_synchronize(Stream& s) {
  if (s.dev.is_cuda()) cuda_backend::stream_synchronize(s.dev.index, s.s);
}

void stream_wait_event(Stream& s, Event& e) {
  if (!e.recorded) fail("wait on an event that was never recorded");
  if (s.dev.is_cuda() && e.dev.is_cuda()) cuda_backend::stream_wait_event(s.dev.index, s.s, e.ev);
}

void event_wait_current(Event& e) {
  if (!e.recorded) fail("wait on an event that was never recorded (", e.dev.str(), ")");
  if (e.dev.is_cuda()) cuda_backend::stream_wait_event(e.dev.index, cuda_activate(e.dev), e.ev);
}

namespace {
thread_local bool t_frozen_weights = false;
}
bool set_frozen_weights(bool on) {
  const bool was = t_frozen_weights;
  t_frozen_weights = on;
  return was;
}
bool frozen_weights() { return t_frozen_weights; }

}  // namespace parallm
