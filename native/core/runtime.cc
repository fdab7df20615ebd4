#include "runtime.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "../cpu/kernels.h"
#include "errors.h"

#ifdef PARALLM_WITH_CUDA
#include <cuda_runtime_api.h>

#include "../cuda/check.h"
#endif

namespace parallm {

// ---------------------------------------------------------------- CPU devices

namespace {

struct CaptureState {
  bool active = false;
  std::vector<BlockPtr> keep;
  std::vector<std::function<void(const cpu::Ctx&)>> ops;  // CPU only
};

struct CpuDevice {
  int index;
  cpu::ThreadPool pool;
  cpu::Ctx ctx;
  CachingAllocator alloc;
  CaptureState capture;
  std::mutex mu;  // guards capture
  CpuDevice(int i, int threads)
      : index(i), pool(threads), ctx{&pool},
        alloc("cpu:" + std::to_string(i),
              [](size_t n) -> void* {
                void* p = nullptr;
                // 64-byte alignment: whole cache lines and aligned SIMD loads.
                if (posix_memalign(&p, 64, n) != 0) return nullptr;
                return p;
              },
              [](void* p) { std::free(p); },
              [] { return std::string("host memory exhausted"); }) {}
};

std::mutex g_cpu_mu;
int g_cpu_count = -1;
std::vector<std::unique_ptr<CpuDevice>> g_cpu;

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

int default_cpu_count() {
  if (const char* e = std::getenv("PARALLM_CPU_DEVICES")) {
    int n = std::atoi(e);
    if (n >= 1 && n <= 256) return n;
  }
  return 1;
}

CpuDevice& cpu_device(int i) {
  std::lock_guard<std::mutex> lock(g_cpu_mu);
  if (g_cpu_count < 0) g_cpu_count = default_cpu_count();
  if (i < 0 || i >= g_cpu_count)
    fail("unknown device cpu:", i, ": there are ", g_cpu_count,
         " CPU devices (configure more with configureCpuDevices or PARALLM_CPU_DEVICES)");
  if (g_cpu.size() < size_t(g_cpu_count)) g_cpu.resize(g_cpu_count);
  if (!g_cpu[i]) {
    int threads = hardware_threads() / g_cpu_count;
    g_cpu[i] = std::make_unique<CpuDevice>(i, threads < 1 ? 1 : threads);
  }
  return *g_cpu[i];
}

}  // namespace

int cpu_device_count() {
  std::lock_guard<std::mutex> lock(g_cpu_mu);
  if (g_cpu_count < 0) g_cpu_count = default_cpu_count();
  return g_cpu_count;
}

void configure_cpu_devices(int count) {
  if (count < 1 || count > 256) fail("configureCpuDevices: count must be 1..256, got ", count);
  std::lock_guard<std::mutex> lock(g_cpu_mu);
  // Devices already made keep their pools; a larger count adds devices lazily.
  if (count < int(g_cpu.size()))
    for (int i = count; i < int(g_cpu.size()); i++)
      if (g_cpu[i] && g_cpu[i]->alloc.stats().allocated)
        fail("configureCpuDevices(", count, "): cpu:", i, " still holds tensors");
  g_cpu_count = count;
}

void cpu_submit(DeviceId d, std::function<void(const cpu::Ctx&)> op) {
  CpuDevice& dev = cpu_device(d.index);
  {
    std::lock_guard<std::mutex> lock(dev.mu);
    if (dev.capture.active) {
      dev.capture.ops.push_back(std::move(op));
      return;
    }
  }
  op(dev.ctx);
}

// ---------------------------------------------------------------- CUDA devices

#ifdef PARALLM_WITH_CUDA
namespace {

struct CudaDevice {
  int index;
  cudaDeviceProp prop{};
  cudaStream_t stream = nullptr;   // the default compute stream
  cudaStream_t current = nullptr;  // where ops go now
  std::unique_ptr<CachingAllocator> alloc;
  CaptureState capture;
  std::mutex mu;
};

std::once_flag g_cuda_once;
int g_cuda_count = 0;
std::string g_cuda_status = "not probed";
std::vector<std::unique_ptr<CudaDevice>> g_cuda;
std::mutex g_cuda_mu;

void probe_cuda() {
  std::call_once(g_cuda_once, [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      g_cuda_status = std::string("no CUDA devices: ") + cudaGetErrorString(e);
      cudaGetLastError();
      n = 0;
    } else {
      g_cuda_status = n ? "ok" : "no CUDA devices";
    }
    g_cuda_count = n;
    g_cuda.resize(n);
  });
}

CudaDevice& cuda_device(int i) {
  probe_cuda();
  if (i < 0 || i >= g_cuda_count)
    fail("unknown device cuda:", i, ": ", g_cuda_count ? "" : g_cuda_status.c_str(),
         g_cuda_count ? "there are " + std::to_string(g_cuda_count) + " CUDA devices" : "");
  std::lock_guard<std::mutex> lock(g_cuda_mu);
  if (!g_cuda[i]) {
    auto d = std::make_unique<CudaDevice>();
    d->index = i;
    std::string name = "cuda:" + std::to_string(i);
    PARALLM_CUDA_CHECK(cudaSetDevice(i), "cudaSetDevice on ", name);
    PARALLM_CUDA_CHECK(cudaGetDeviceProperties(&d->prop, i), "cudaGetDeviceProperties on ", name);
    PARALLM_CUDA_CHECK(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking), "cudaStreamCreate on ", name);
    d->current = d->stream;
    d->alloc = std::make_unique<CachingAllocator>(
        name,
        [i](size_t n) -> void* {
          void* p = nullptr;
          cudaSetDevice(i);
          cudaError_t e = cudaMalloc(&p, n);
          if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();  // clear the sticky-free error so later calls work
            return nullptr;
          }
          if (e != cudaSuccess) fail("cudaMalloc of ", n, " bytes on cuda:", i, ": ", cudaGetErrorString(e));
          return p;
        },
        [i](void* p) {
          cudaSetDevice(i);
          cudaFree(p);
        },
        [i] {
          size_t fr = 0, tot = 0;
          cudaSetDevice(i);
          cudaMemGetInfo(&fr, &tot);
          return std::to_string(fr) + " of " + std::to_string(tot) + " bytes free on the device";
        });
    g_cuda[i] = std::move(d);
  }
  return *g_cuda[i];
}

}  // namespace

CUstream_st* cuda_activate(DeviceId d) {
  CudaDevice& dev = cuda_device(d.index);
  PARALLM_CUDA_CHECK(cudaSetDevice(d.index), "cudaSetDevice on ", d.str());
  return dev.current;
}
#else
CUstream_st* cuda_activate(DeviceId d) { fail("unknown device ", d.str(), ": this build has no CUDA backend"); }
#endif

bool cuda_compiled() {
#ifdef PARALLM_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_status() {
#ifdef PARALLM_WITH_CUDA
  probe_cuda();
  return g_cuda_status;
#else
  return "this build has no CUDA backend";
#endif
}

int cuda_device_count() {
#ifdef PARALLM_WITH_CUDA
  probe_cuda();
  return g_cuda_count;
#else
  return 0;
#endif
}

// ---------------------------------------------------------------- devices

void check_device(DeviceId d) {
  if (d.is_cuda()) {
#ifdef PARALLM_WITH_CUDA
    cuda_device(d.index);
#else
    cuda_activate(d);
#endif
  } else {
    cpu_device(d.index);
  }
}

DeviceInfo device_info(DeviceId d) {
  DeviceInfo info;
  info.id = d;
  if (!d.is_cuda()) {
    CpuDevice& dev = cpu_device(d.index);
    info.name = "CPU (" + std::to_string(dev.pool.size()) + " threads)";
    info.threads = dev.pool.size();
    long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    info.memory_total = size_t(pages) * size_t(page);
    info.memory_free = size_t(avail) * size_t(page);
    return info;
  }
#ifdef PARALLM_WITH_CUDA
  CudaDevice& dev = cuda_device(d.index);
  PARALLM_CUDA_CHECK(cudaSetDevice(d.index), "cudaSetDevice on ", d.str());
  info.name = dev.prop.name;
  PARALLM_CUDA_CHECK(cudaMemGetInfo(&info.memory_free, &info.memory_total), "cudaMemGetInfo on ", d.str());
  info.cc_major = dev.prop.major;
  info.cc_minor = dev.prop.minor;
  info.multiprocessors = dev.prop.multiProcessorCount;
  for (int j = 0; j < g_cuda_count; j++) {
    if (j == d.index) continue;
    int can = 0;
    if (cudaDeviceCanAccessPeer(&can, d.index, j) == cudaSuccess && can) info.peers.push_back(j);
  }
#endif
  return info;
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  for (int i = 0; i < cuda_device_count(); i++) out.push_back(device_info({DeviceKind::CUDA, i}));
  for (int i = 0; i < cpu_device_count(); i++) out.push_back(device_info({DeviceKind::CPU, i}));
  return out;
}

// ---------------------------------------------------------------- memory

static CachingAllocator& allocator_of(DeviceId d) {
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) return *cuda_device(d.index).alloc;
#endif
  if (d.is_cuda()) cuda_activate(d);  // throws: no CUDA backend
  return cpu_device(d.index).alloc;
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
  if (!dst.dev.is_cuda()) {
    std::memcpy(to, src, bytes);
    return;
  }
#ifdef PARALLM_WITH_CUDA
  cudaStream_t s = cuda_activate(dst.dev);
  PARALLM_CUDA_CHECK(cudaMemcpyAsync(to, src, bytes, cudaMemcpyHostToDevice, s), "copy of ", bytes,
                     " bytes from host to ", dst.dev.str());
  // The host buffer belongs to JS and may move once we return: wait until it has been read.
  PARALLM_CUDA_CHECK(cudaStreamSynchronize(s), "copy of ", bytes, " bytes from host to ", dst.dev.str());
#endif
}

void copy_to_host(void* dst, const Block& src, size_t src_off, size_t bytes) {
  check_range(src, src_off, bytes, "copy to host");
  if (!bytes) return;
  const char* from = static_cast<const char*>(src.ptr) + src_off;
  if (!src.dev.is_cuda()) {
    std::memcpy(dst, from, bytes);
    return;
  }
#ifdef PARALLM_WITH_CUDA
  cudaStream_t s = cuda_activate(src.dev);
  PARALLM_CUDA_CHECK(cudaMemcpyAsync(dst, from, bytes, cudaMemcpyDeviceToHost, s), "copy of ", bytes,
                     " bytes from ", src.dev.str(), " to host");
  PARALLM_CUDA_CHECK(cudaStreamSynchronize(s), "copy of ", bytes, " bytes from ", src.dev.str(), " to host");
#endif
}

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
#ifdef PARALLM_WITH_CUDA
  if (dst.dev == src.dev) {
    cudaStream_t s = cuda_activate(dst.dev);
    PARALLM_CUDA_CHECK(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice, s), "copy of ", bytes,
                       " bytes on ", dst.dev.str());
    return;
  }
  // GPU to GPU: order after the source's queued work, then copy on the destination's stream
  // (peer-to-peer when the devices can reach each other; the driver stages through the host if not).
  cudaStream_t ss = cuda_activate(src.dev);
  cudaEvent_t ready;
  PARALLM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "copy ", src.dev.str(), " -> ",
                     dst.dev.str());
  PARALLM_CUDA_CHECK(cudaEventRecord(ready, ss), "copy ", src.dev.str(), " -> ", dst.dev.str());
  cudaStream_t ds = cuda_activate(dst.dev);
  int can = 0;
  if (cudaDeviceCanAccessPeer(&can, dst.dev.index, src.dev.index) == cudaSuccess && can) {
    cudaError_t e = cudaDeviceEnablePeerAccess(src.dev.index, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();
    else PARALLM_CUDA_CHECK(e, "enable peer access ", dst.dev.str(), " -> ", src.dev.str());
  }
  PARALLM_CUDA_CHECK(cudaStreamWaitEvent(ds, ready, 0), "copy ", src.dev.str(), " -> ", dst.dev.str());
  PARALLM_CUDA_CHECK(cudaMemcpyPeerAsync(to, dst.dev.index, from, src.dev.index, bytes, ds), "copy of ", bytes,
                     " bytes from ", src.dev.str(), " to ", dst.dev.str());
  cudaEventDestroy(ready);
#endif
}

void synchronize(DeviceId d) {
  if (!d.is_cuda()) {
    cpu_device(d.index);  // CPU ops run when called: nothing is pending
    return;
  }
#ifdef PARALLM_WITH_CUDA
  cuda_activate(d);
  PARALLM_CUDA_CHECK(cudaDeviceSynchronize(), "synchronize ", d.str());
#else
  cuda_activate(d);
#endif
}

// ---------------------------------------------------------------- capture

struct Graph {
  DeviceId dev;
  std::vector<BlockPtr> keep;
  std::vector<std::function<void(const cpu::Ctx&)>> ops;
#ifdef PARALLM_WITH_CUDA
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  size_t nodes = 0;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
#endif
};

static CaptureState& capture_state(DeviceId d) {
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) return cuda_device(d.index).capture;
#endif
  if (d.is_cuda()) cuda_activate(d);
  return cpu_device(d.index).capture;
}

static std::mutex& capture_mutex(DeviceId d) {
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) return cuda_device(d.index).mu;
#endif
  return cpu_device(d.index).mu;
}

void capture_begin(DeviceId d) {
  check_device(d);
  std::lock_guard<std::mutex> lock(capture_mutex(d));
  CaptureState& c = capture_state(d);
  if (c.active) fail("capture on ", d.str(), " has already begun");
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) {
    cudaStream_t s = cuda_activate(d);
    // Relaxed: our caching allocator may call cudaMalloc while a capture is open.
    PARALLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "begin capture on ", d.str());
  }
#endif
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
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) {
    cudaStream_t s = cuda_activate(d);
    PARALLM_CUDA_CHECK(cudaStreamEndCapture(s, &g->graph), "end capture on ", d.str());
    PARALLM_CUDA_CHECK(cudaGraphGetNodes(g->graph, nullptr, &g->nodes), "graph nodes on ", d.str());
    PARALLM_CUDA_CHECK(cudaGraphInstantiate(&g->exec, g->graph, 0), "instantiate graph of ", g->nodes,
                       " nodes on ", d.str());
  }
#endif
  return g;
}

void graph_replay(Graph& g) {
  if (!g.dev.is_cuda()) {
    CpuDevice& dev = cpu_device(g.dev.index);
    for (auto& op : g.ops) op(dev.ctx);
    return;
  }
#ifdef PARALLM_WITH_CUDA
  cudaStream_t s = cuda_activate(g.dev);
  PARALLM_CUDA_CHECK(cudaGraphLaunch(g.exec, s), "replay graph of ", g.nodes, " nodes on ", g.dev.str());
#endif
}

DeviceId graph_device(const Graph& g) { return g.dev; }
size_t graph_ops(const Graph& g) {
#ifdef PARALLM_WITH_CUDA
  if (g.dev.is_cuda()) return g.nodes;
#endif
  return g.ops.size();
}

// ---------------------------------------------------------------- events and streams

struct Event {
  DeviceId dev;
  std::chrono::steady_clock::time_point host_time{};
  bool recorded = false;
#ifdef PARALLM_WITH_CUDA
  cudaEvent_t ev = nullptr;
  ~Event() {
    if (ev) cudaEventDestroy(ev);
  }
#endif
};

std::shared_ptr<Event> event_create(DeviceId d) {
  check_device(d);
  auto e = std::make_shared<Event>();
  e->dev = d;
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) {
    cuda_activate(d);
    PARALLM_CUDA_CHECK(cudaEventCreate(&e->ev), "create event on ", d.str());
  }
#endif
  return e;
}

void event_record(Event& e) {
  e.recorded = true;
  if (!e.dev.is_cuda()) {
    e.host_time = std::chrono::steady_clock::now();  // CPU ops have finished when they return
    return;
  }
#ifdef PARALLM_WITH_CUDA
  cudaStream_t s = cuda_activate(e.dev);
  PARALLM_CUDA_CHECK(cudaEventRecord(e.ev, s), "record event on ", e.dev.str());
#endif
}

void event_synchronize(Event& e) {
  if (!e.recorded) fail("synchronize on an event that was never recorded (", e.dev.str(), ")");
#ifdef PARALLM_WITH_CUDA
  if (e.dev.is_cuda()) PARALLM_CUDA_CHECK(cudaEventSynchronize(e.ev), "synchronize event on ", e.dev.str());
#endif
}

double event_elapsed_ms(Event& a, Event& b) {
  if (!a.recorded || !b.recorded) fail("elapsed time needs two recorded events");
  if (a.dev != b.dev) fail("elapsed time between events of ", a.dev.str(), " and ", b.dev.str());
  if (!a.dev.is_cuda()) return std::chrono::duration<double, std::milli>(b.host_time - a.host_time).count();
#ifdef PARALLM_WITH_CUDA
  float ms = 0;
  PARALLM_CUDA_CHECK(cudaEventSynchronize(b.ev), "synchronize event on ", b.dev.str());
  PARALLM_CUDA_CHECK(cudaEventElapsedTime(&ms, a.ev, b.ev), "elapsed time on ", a.dev.str());
  return ms;
#else
  return 0;
#endif
}

struct Stream {
  DeviceId dev;
#ifdef PARALLM_WITH_CUDA
  cudaStream_t s = nullptr;
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
#endif
};

std::shared_ptr<Stream> stream_create(DeviceId d) {
  check_device(d);
  auto st = std::make_shared<Stream>();
  st->dev = d;
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) {
    cuda_activate(d);
    PARALLM_CUDA_CHECK(cudaStreamCreateWithFlags(&st->s, cudaStreamNonBlocking), "create stream on ", d.str());
  }
#endif
  return st;
}

void stream_set_current(DeviceId d, Stream* s) {
  if (s && s->dev != d) fail("stream of ", s->dev.str(), " used as current stream of ", d.str());
  check_device(d);
#ifdef PARALLM_WITH_CUDA
  if (d.is_cuda()) {
    CudaDevice& dev = cuda_device(d.index);
    dev.current = s ? s->s : dev.stream;
  }
#endif
}

void stream_synchronize(Stream& s) {
#ifdef PARALLM_WITH_CUDA
  if (s.dev.is_cuda()) PARALLM_CUDA_CHECK(cudaStreamSynchronize(s.s), "synchronize stream on ", s.dev.str());
#endif
  (void)s;
}

void stream_wait_event(Stream& s, Event& e) {
  if (!e.recorded) fail("wait on an event that was never recorded");
#ifdef PARALLM_WITH_CUDA
  if (s.dev.is_cuda() && e.dev.is_cuda()) {
    cuda_activate(s.dev);
    PARALLM_CUDA_CHECK(cudaStreamWaitEvent(s.s, e.ev, 0), "stream wait on ", s.dev.str());
  }
#endif
}

}  // namespace parallm
