// The CPU backend's part of the device runtime (core/backend.h): cpu:N devices, each with its share of
// the cores in a thread pool, a caching allocator over host memory, and a recorded op list for capture.
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <unistd.h>

#include "../core/backend.h"
#include "../core/errors.h"
#include "kernels.h"

namespace parallm {

namespace {

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

namespace cpu_backend {

int device_count() {
  std::lock_guard<std::mutex> lock(g_cpu_mu);
  if (g_cpu_count < 0) g_cpu_count = default_cpu_count();
  return g_cpu_count;
}

void configure(int count) {
  if (count < 1 || count > 256) fail("configureCpuDevices: count must be 1..256, got ", count);
  std::lock_guard<std::mutex> lock(g_cpu_mu);
  // Devices already made keep their pools; a larger count adds devices lazily.
  if (count < int(g_cpu.size()))
    for (int i = count; i < int(g_cpu.size()); i++)
      if (g_cpu[i] && g_cpu[i]->alloc.stats().allocated)
        fail("configureCpuDevices(", count, "): cpu:", i, " still holds tensors");
  g_cpu_count = count;
}

void check(int index) { cpu_device(index); }

DeviceInfo info(int index) {
  CpuDevice& dev = cpu_device(index);
  DeviceInfo info;
  info.id = {DeviceKind::CPU, index};
  info.name = "CPU (" + std::to_string(dev.pool.size()) + " threads)";
  info.threads = dev.pool.size();
  long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  info.memory_total = size_t(pages) * size_t(page);
  info.memory_free = size_t(avail) * size_t(page);
  return info;
}

CachingAllocator& allocator(int index) { return cpu_device(index).alloc; }
CaptureState& capture(int index) { return cpu_device(index).capture; }
std::mutex& capture_mutex(int index) { return cpu_device(index).mu; }

void replay(int index, const std::vector<std::function<void(const cpu::Ctx&)>>& ops) {
  CpuDevice& dev = cpu_device(index);
  for (auto& op : ops) op(dev.ctx);
}

}  // namespace cpu_backend
}  // namespace parallm
