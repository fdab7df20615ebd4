// The CUDA backend's part of the device runtime (core/backend.h): cuda:N devices, each with its
// properties, a default and a current stream, a caching allocator over cudaMalloc, and stream capture
// into CUDA graphs. Every failing runtime call throws parallm::Error naming the device.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "../core/backend.h"
#include "../core/errors.h"
#include "check.h"
#include "workspace.h"

namespace parallm {

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
      // The runtime says "driver version is insufficient" also when there is no driver at all: tell the
      // two apart by looking for the driver library.
      void* driver = e == cudaErrorInsufficientDriver ? dlopen("libcuda.so.1", RTLD_LAZY) : nullptr;
      if (e == cudaErrorInsufficientDriver && !driver)
        g_cuda_status = "no CUDA devices: no NVIDIA driver is installed (libcuda.so.1 not found)";
      else
        g_cuda_status = std::string("no CUDA devices: ") + cudaGetErrorString(e);
      if (driver) dlclose(driver);
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

std::string name_of(int index) { return "cuda:" + std::to_string(index); }

}  // namespace

CUstream_st* cuda_activate(DeviceId d) {
  CudaDevice& dev = cuda_device(d.index);
  PARALLM_CUDA_CHECK(cudaSetDevice(d.index), "cudaSetDevice on ", d.str());
  return dev.current;
}

namespace cuda_backend {

bool compiled() { return true; }

// The CUDA runtime this addon links (e.g. 13000 for 13.0) and the newest CUDA the driver supports (0
// without a driver), for `parallm bench`'s record of what ran. Neither needs a device.
int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();  // clear it: the next CUDA call must not see this one's error
    return 0;
  }
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

std::string status() {
  probe_cuda();
  return g_cuda_status;
}

int device_count() {
  probe_cuda();
  return g_cuda_count;
}

void check(int index) { cuda_device(index); }

#ifdef PARALLM_TRACE
// The devices opened so far (cuda_device), for the kernel timeline's dump (trace.cc).
std::vector<int> opened_devices() {
  std::lock_guard<std::mutex> lock(g_cuda_mu);
  std::vector<int> v;
  for (size_t i = 0; i < g_cuda.size(); i++)
    if (g_cuda[i]) v.push_back(int(i));
  return v;
}
#endif

DeviceInfo info(int index) {
  CudaDevice& dev = cuda_device(index);
  DeviceInfo info;
  info.id = {DeviceKind::CUDA, index};
  std::string name = name_of(index);
  PARALLM_CUDA_CHECK(cudaSetDevice(index), "cudaSetDevice on ", name);
  info.name = dev.prop.name;
  PARALLM_CUDA_CHECK(cudaMemGetInfo(&info.memory_free, &info.memory_total), "cudaMemGetInfo on ", name);
  info.cc_major = dev.prop.major;
  info.cc_minor = dev.prop.minor;
  info.multiprocessors = dev.prop.multiProcessorCount;
  for (int j = 0; j < g_cuda_count; j++) {
    if (j == index) continue;
    int can = 0;
    if (cudaDeviceCanAccessPeer(&can, index, j) == cudaSuccess && can) info.peers.push_back(j);
  }
  return info;
}

CachingAllocator& allocator(int index) { return *cuda_device(index).alloc; }
CaptureState& capture(int index) { return cuda_device(index).capture; }
std::mutex& capture_mutex(int index) { return cuda_device(index).mu; }

void copy_from_host(int index, void* dst, const void* src, size_t bytes) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "copy of ", bytes,
                     " bytes from host to ", name_of(index));
  // The host buffer belongs to JS and may move once we return: wait until it has been read.
  PARALLM_CUDA_CHECK(cudaStreamSynchronize(s), "copy of ", bytes, " bytes from host to ", name_of(index));
}

void copy_to_host(int index, void* dst, const void* src, size_t bytes) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "copy of ", bytes,
                     " bytes from ", name_of(index), " to host");
  PARALLM_CUDA_CHECK(cudaStreamSynchronize(s), "copy of ", bytes, " bytes from ", name_of(index), " to host");
}

// read_begin's staging buffers and events, kept for reuse: a decode step reads its sampled ids back every
// step, and cudaMallocHost takes far longer than the step. Buffers are pooled by their rounded size (the
// pool of the process: pinned memory serves every device), events by device.
namespace {
struct ReadPool {
  std::mutex mu;
  std::vector<std::pair<size_t, void*>> buffers;
  std::vector<std::pair<int, cudaEvent_t>> events;
};
ReadPool& read_pool() {
  static ReadPool* p = new ReadPool();  // never destroyed: releases can come from finalizers at exit
  return *p;
}
size_t read_rounded(size_t bytes) {
  size_t r = 256;
  while (r < bytes) r *= 2;
  return r;
}
}  // namespace

void* read_begin(int index, const void* src, size_t bytes, CUevent_st** ev) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  const size_t cap = read_rounded(bytes);
  void* buf = nullptr;
  cudaEvent_t e = nullptr;
  {
    ReadPool& p = read_pool();
    std::lock_guard<std::mutex> lock(p.mu);
    for (size_t i = 0; i < p.buffers.size(); ++i)
      if (p.buffers[i].first == cap) {
        buf = p.buffers[i].second;
        p.buffers.erase(p.buffers.begin() + i);
        break;
      }
    for (size_t i = 0; i < p.events.size(); ++i)
      if (p.events[i].first == index) {
        e = p.events[i].second;
        p.events.erase(p.events.begin() + i);
        break;
      }
  }
  try {
    if (!buf)
      PARALLM_CUDA_CHECK(cudaMallocHost(&buf, cap), "read of ", bytes, " bytes from ", name_of(index),
                         ": pinned staging buffer of ", cap, " bytes");
    if (!e)
      PARALLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "read of ", bytes, " bytes from ",
                         name_of(index), ": event");
    PARALLM_CUDA_CHECK(cudaMemcpyAsync(buf, src, bytes, cudaMemcpyDeviceToHost, s), "read of ", bytes, " bytes from ",
                       name_of(index), " to host");
    PARALLM_CUDA_CHECK(cudaEventRecord(e, s), "read of ", bytes, " bytes from ", name_of(index), ": event record");
  } catch (...) {
    if (buf) cudaFreeHost(buf);
    if (e) cudaEventDestroy(e);
    throw;
  }
  *ev = e;
  return buf;
}

void read_wait(int index, void* pinned, size_t bytes, CUevent_st* ev, void* dst) {
  PARALLM_CUDA_CHECK(cudaEventSynchronize(ev), "read of ", bytes, " bytes from ", name_of(index), " to host");
  std::memcpy(dst, pinned, bytes);
}

void read_release(int index, void* pinned, size_t bytes, CUevent_st* ev) noexcept {
  // The copy may still be running (a read dropped unfinished): the buffer is reused only once it is done.
  if (cudaEventSynchronize(ev) != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(pinned);
    cudaEventDestroy(ev);
    return;
  }
  try {
    ReadPool& p = read_pool();
    std::lock_guard<std::mutex> lock(p.mu);
    p.buffers.emplace_back(read_rounded(bytes), pinned);
    p.events.emplace_back(index, ev);
  } catch (...) {
    cudaFreeHost(pinned);
    cudaEventDestroy(ev);
  }
}

void copy_device(int index, void* dst, const void* src, size_t bytes) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "copy of ", bytes,
                     " bytes on ", name_of(index));
}

void copy_peer(int di, void* dst, int si, const void* src, size_t bytes) {
  std::string dn = name_of(di), sn = name_of(si);
  // Order after the source's queued work, then copy on the destination's stream (peer-to-peer when the
  // devices can reach each other; the driver stages through the host if not).
  cudaStream_t ss = cuda_activate({DeviceKind::CUDA, si});
  cudaEvent_t ready;
  PARALLM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "copy ", sn, " -> ", dn);
  PARALLM_CUDA_CHECK(cudaEventRecord(ready, ss), "copy ", sn, " -> ", dn);
  cudaStream_t ds = cuda_activate({DeviceKind::CUDA, di});
  int can = 0;
  if (cudaDeviceCanAccessPeer(&can, di, si) == cudaSuccess && can) {
    cudaError_t e = cudaDeviceEnablePeerAccess(si, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled) cudaGetLastError();
    else PARALLM_CUDA_CHECK(e, "enable peer access ", dn, " -> ", sn);
  }
  PARALLM_CUDA_CHECK(cudaStreamWaitEvent(ds, ready, 0), "copy ", sn, " -> ", dn);
  PARALLM_CUDA_CHECK(cudaMemcpyPeerAsync(dst, di, src, si, bytes, ds), "copy of ", bytes, " bytes from ", sn,
                     " to ", dn);
  cudaEventDestroy(ready);
}

void synchronize(int index) {
  cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaDeviceSynchronize(), "synchronize ", name_of(index));
}

void capture_begin(int index) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  // Relaxed: our caching allocator may call cudaMalloc while a capture is open.
  PARALLM_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "begin capture on ", name_of(index));
}

void capture_end(int index, CUgraph_st** graph, CUgraphExec_st** exec, size_t* nodes) {
  std::string name = name_of(index);
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  cuda::capture_workspaces_free(s);  // (the graph owns the workspaces its kernels shared: workspace.h)
  const cudaError_t e = cudaStreamEndCapture(s, graph);
  // A capture an op invalidated also leaves its error as the thread's last one: clear it, or the next
  // launch's check would report it.
  if (e != cudaSuccess) cudaGetLastError();
  PARALLM_CUDA_CHECK(e, "end capture on ", name);
  PARALLM_CUDA_CHECK(cudaGraphGetNodes(*graph, nullptr, nodes), "graph nodes on ", name);
  PARALLM_CUDA_CHECK(cudaGraphInstantiate(exec, *graph, 0), "instantiate graph of ", *nodes, " nodes on ", name);
}

void graph_launch(int index, CUgraphExec_st* exec, size_t nodes) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaGraphLaunch(exec, s), "replay graph of ", nodes, " nodes on ", name_of(index));
}

void graph_destroy(CUgraph_st* graph, CUgraphExec_st* exec) {
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
}

CUevent_st* event_create(int index) {
  cuda_activate({DeviceKind::CUDA, index});
  cudaEvent_t e = nullptr;
  PARALLM_CUDA_CHECK(cudaEventCreate(&e), "create event on ", name_of(index));
  return e;
}

void event_destroy(CUevent_st* e) {
  if (e) cudaEventDestroy(e);
}

void event_record(int index, CUevent_st* e) {
  cudaStream_t s = cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaEventRecord(e, s), "record event on ", name_of(index));
}

void event_synchronize(int index, CUevent_st* e) {
  PARALLM_CUDA_CHECK(cudaEventSynchronize(e), "synchronize event on ", name_of(index));
}

float event_elapsed_ms(int index, CUevent_st* start, CUevent_st* end) {
  float ms = 0;
  PARALLM_CUDA_CHECK(cudaEventSynchronize(end), "synchronize event on ", name_of(index));
  PARALLM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, end), "elapsed time on ", name_of(index));
  return ms;
}

CUstream_st* stream_create(int index) {
  cuda_activate({DeviceKind::CUDA, index});
  cudaStream_t s = nullptr;
  PARALLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "create stream on ", name_of(index));
  return s;
}

void stream_destroy(CUstream_st* s) {
  if (s) cudaStreamDestroy(s);
}

void stream_set_current(int index, CUstream_st* s) {
  CudaDevice& dev = cuda_device(index);
  dev.current = s ? s : dev.stream;
}

void stream_synchronize(int index, CUstream_st* s) {
  PARALLM_CUDA_CHECK(cudaStreamSynchronize(s), "synchronize stream on ", name_of(index));
}

void stream_wait_event(int index, CUstream_st* s, CUevent_st* e) {
  cuda_activate({DeviceKind::CUDA, index});
  PARALLM_CUDA_CHECK(cudaStreamWaitEvent(s, e, 0), "stream wait on ", name_of(index));
}

}  // namespace cuda_backend
}  // namespace parallm
