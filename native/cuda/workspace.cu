// The capture's shared workspaces (workspace.h): one buffer per (capture, stream, slot), freed at the capture's end.
#include "workspace.h"

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace parallm::cuda {
namespace {

struct Held {
  unsigned long long capture;  // cudaStreamGetCaptureInfo's id: every stream forked into one capture shares it
  cudaStream_t stream;
  int slot;
  void* p;
  size_t bytes;
};

std::mutex g_mu;
std::vector<Held> g_held;     // the live buffer of each (capture, stream, slot)
std::vector<Held> g_retired;  // buffers a larger one replaced, used earlier in their capture

// PARALLM_CAPTURE_WORKSPACE: unset, every slot; 0, none; else the slots named (a timing knob): any of splitk, attn,
// rows, argmax, layer, scratch, comma-separated.
bool enabled(int slot) {
  static const unsigned mask = [] {
    const char* e = std::getenv("PARALLM_CAPTURE_WORKSPACE");
    if (!e) return ~0u;
    const std::string v = std::string(",") + e + ",";
    const char* names[] = {"splitk", "attn", "rows", "argmax", "layer", "scratch"};
    unsigned m = 0;
    for (unsigned i = 0; i < sizeof(names) / sizeof(*names); ++i)
      if (v.find(std::string(",") + names[i] + ",") != std::string::npos) m |= 1u << i;
    if (m & (1u << kWsScratch)) m |= ~0u << kWsScratch;  // (every nesting depth)
    return m;
  }();
  return (mask >> slot) & 1u;
}

// Rounded up to a power of two (at least 64 KiB), so a capture whose products grow layer by layer replaces its
// buffer a few times, not at each.
size_t rounded(size_t bytes) {
  size_t r = size_t(64) << 10;
  while (r < bytes) r <<= 1;
  return r;
}

}  // namespace

cudaError_t capture_workspace(cudaStream_t st, int slot, size_t bytes, void** p, bool* captured) {
  *captured = false;
  if (!bytes || slot < 0 || slot >= kWsSlots || !enabled(slot)) return cudaSuccess;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  if (cudaStreamGetCaptureInfo(st, &cs, &id) != cudaSuccess) {
    cudaGetLastError();  // (the caller's own allocation then reports what is wrong with the stream)
    return cudaSuccess;
  }
  if (cs != cudaStreamCaptureStatusActive) return cudaSuccess;
  *captured = true;
  std::lock_guard<std::mutex> lock(g_mu);
  Held* h = nullptr;
  for (Held& x : g_held)
    if (x.capture == id && x.stream == st && x.slot == slot) h = &x;
  if (h && bytes <= h->bytes) return *p = h->p, cudaSuccess;
  const size_t want = rounded(bytes);
  const cudaError_t e = cudaMallocAsync(p, want, st);
  if (e != cudaSuccess) return e;
  if (h) {
    g_retired.push_back(*h);
    h->p = *p, h->bytes = want;
  } else {
    g_held.push_back({id, st, slot, *p, want});
  }
  return cudaSuccess;
}

void capture_workspaces_free(cudaStream_t origin) {
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  if (cudaStreamGetCaptureInfo(origin, &cs, &id) != cudaSuccess) {
    cudaGetLastError();
    return;
  }
  std::lock_guard<std::mutex> lock(g_mu);
  for (auto* list : {&g_held, &g_retired}) {
    std::vector<Held> keep;
    for (const Held& x : *list) {
      if (x.capture != id) {
        keep.push_back(x);
      } else if (cs == cudaStreamCaptureStatusActive && cudaFreeAsync(x.p, origin) != cudaSuccess) {
        cudaGetLastError();  // (an invalidated capture: cudaStreamEndCapture reports it, and its graph is dropped)
      }
    }
    list->swap(keep);
  }
}

}  // namespace parallm::cuda
