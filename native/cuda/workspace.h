// Scratch memory for one call of a kernel family: split-K partials (matmul.cu), decode attention's chunk
// partials and row copy (attention.cu), argmax's chunk winners (softmax.cu), the persistent decode layer's buffers
// (decode_layer.cu), a norm's rows before their matmul (matmul.cu's with_scratch).
//
// Outside a graph capture each call allocates and frees stream-ordered (cudaMallocAsync / cudaFreeAsync), as
// before. Inside one, the calls on one stream with the same slot share a buffer that the capture allocates at the
// slot's first use and frees at its end (capture_workspaces_free, from runtime.cu's capture_end), so the graph still
// owns its memory. Why: an allocation or free node between two kernels of a graph joins them by a full edge, and
// PDL (pdl.cuh) only starts a kernel beside the one before it across a kernel-to-kernel edge. Every W-as-A tile of
// 7B's batch-16 decode started ~1.35 µs after the kernel before it ended (S29-5's timeline), one free and one or
// two allocations standing between them.
//
// Sharing is safe because a slot has one user at a time: calls on one stream run in order, and a kernel launched
// with PDL touches no workspace before its griddepcontrol.wait, which returns once the kernel before it (and so
// every earlier one) has ended. Calls that nest hold different slots (with_scratch: kWsScratch + its depth).
// PARALLM_CAPTURE_WORKSPACE=0: every call allocates and frees, captured or not; =splitk,attn,...: only the slots named
// are shared (a timing knob: workspace.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "check.h"

namespace parallm::cuda {

enum WsSlot : int {
  kWsSplitK = 0,        // a split-K product's f32 partials, read by its reduce (or by decode attention)
  kWsAttnPartials = 1,  // decode attention's per-chunk outputs and maxima
  kWsAttnRows = 2,      // rope_kv_attention_decode's copy of the qkv rows
  kWsArgmax = 3,        // argmax's per-chunk winners
  kWsDecodeLayer = 4,   // the persistent decode layer's q, activations, partials and flags
  kWsScratch = 5,       // with_scratch, plus its nesting depth
  kWsSlots = 12,
};

// Into *p the capture's buffer of at least `bytes` for (stream, slot), allocated (stream-ordered, inside the capture)
// at the first call or when a larger one is asked; *captured false (and nothing done) when `st` is not capturing or
// the slot is not shared. Returns the allocation's error.
cudaError_t capture_workspace(cudaStream_t st, int slot, size_t bytes, void** p, bool* captured);
// Frees (stream-ordered on `origin`, the stream the capture began on, after every forked stream joined it) each
// buffer capture_workspace gave the capture `origin` is in; before cudaStreamEndCapture. Errors are left for
// cudaStreamEndCapture to report.
void capture_workspaces_free(cudaStream_t origin);

struct Workspace {
  void* p = nullptr;
  bool owned = false;  // allocated for this call alone: workspace_release frees it
};

// `bytes` of scratch on `st` for slot `slot` (none when 0); `what...` names the call in an error, with the device.
template <class... What>
Workspace workspace_acquire(cudaStream_t st, int slot, size_t bytes, const What&... what) {
  Workspace w;
  if (!bytes) return w;
  bool captured = false;
  cudaError_t e = capture_workspace(st, slot, bytes, &w.p, &captured);
  if (!captured) e = cudaMallocAsync(&w.p, bytes, st), w.owned = true;
  if (e != cudaSuccess) {
    int dev = -1;
    cudaGetDevice(&dev);
    PARALLM_CUDA_CHECK(e, what..., ": ", captured ? "the captured " : "", "workspace of ", bytes, " bytes on cuda:", dev);
  }
  return w;
}

// The error of freeing w once the call's launches are queued (cudaSuccess when the capture holds it).
inline cudaError_t workspace_release(cudaStream_t st, const Workspace& w) {
  return w.owned ? cudaFreeAsync(w.p, st) : cudaSuccess;
}

}  // namespace parallm::cuda
