// Programmatic dependent launch (PDL, sm_90+), for decode's kernels. Back-to-back in a decode graph,
// each GEMV paid a fixed ~6 µs a call (the third session's S6-4 timings of 1x11008x4096 and 1x22016x4096
// fit time = bytes / 3.95 TB/s + 6.4 µs; cuBLAS's fit the same ~6 µs): the launch gap, the ramp until the
// first weights arrive, and the tail of the slowest block. PDL took back 0.2-3 µs of it (S7-3,
// bench/RESULTS.md, fourth session). A kernel launched with PDL starts while the kernel before it in the stream
// drains; until griddepcontrol.wait it may only touch what no earlier kernel writes.
//
// The contract here, kept by every kernel launched through launch_pdl (native/cuda/launch.cuh):
//   - before pdl_wait(), read nothing and write nothing in global memory, with two exceptions. One is
//     prefetch_l2, which only asks L2 (the device's point of coherence) for lines: a later load after the
//     wait sees the last write whatever the prefetch found, so even weights rewritten by the kernel before
//     (a training step's AdamW, then a batch-1 matmul) stay correct. The other is taken on the caller's
//     word: under decode's frozen weights (core/runtime.h's frozen_weights, set by src/runtime.ts's
//     withFrozenWeights) the register GEMV loads its first pass of W before the wait (its WPRE instance,
//     matmul.cu's gemv_wpre), and the plain fused decode attention its first cached keys below the new
//     position (decode_split's PRE instance, attention.cu's attn_pre). A PDL launch overlaps only the kernel
//     just before it (every kernel here triggers after its own wait), no decode kernel writes a weight, and
//     the one before that attention (the qkv projection) writes no cache row;
//   - pdl_trigger() may come anywhere: it only lets the next PDL kernel's blocks start early. The next
//     grid starts only once every block of this one has triggered (so all of them are resident), which
//     is why blocks parked in a wait can never keep an earlier kernel's blocks off the SMs.
// Who does what: the pipelined GEMV triggers, prefetches and waits at its start; the register GEMV waits (in
// decode after loading its first weights), then triggers, and by default prefetches nothing (matmul.cu's
// gemv_prefetch, gemv_late_trigger and gemv_wpre); the sm90 64-row and W-as-A tiles (matmul.cu's sm90_pdl) wait,
// then trigger, with no prefetch (prefetches there cost decode 3-13%, S19-1 ... S19-4; their first weights loaded
// before the wait gained nothing, S20-4); the small decode kernels (norms, rope + KV write, decode attention, adds,
// activations, the embedding, the peer all-reduce, the split-K reduces) begin with pdl_begin: for them PDL only
// hides the launch, and they launch with it only at PARALLM_PDL=2 (launch.cuh; the reduces with their tile),
// except decode attention's PRE instance, which loads before its wait and so launches with it at level 1. On
// the host emulation (native/cuda/emu, no __CUDA_ARCH__) all of these are no-ops.
#pragma once
#include <cstdint>

// The kernel timeline of a measurement build (trace.cuh: PARALLM_TRACE_SCOPE, and pdl_wait's time). Without
// PARALLM_TRACE the scope is nothing and this file the same code (the host emulation copies it alone).
#ifdef PARALLM_TRACE
#include "trace.cuh"
#else
#define PARALLM_TRACE_SCOPE(tag)
#endif

namespace parallm::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#ifdef PARALLM_TRACE
  trace_waited();
#endif
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The first statement of a small PDL-launched kernel: wait for the kernel before, then let the next one
// launch (after the wait, so at most one kernel's blocks are parked behind this one).
__device__ __forceinline__ void pdl_begin() {
  pdl_wait();
  pdl_trigger();
}

// Ask L2 for [p, p + bytes) with one bulk prefetch (p 16-byte aligned, bytes a multiple of 16); no data
// reaches the SM, so nothing can be stale.
__device__ __forceinline__ void prefetch_l2(const void* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (bytes) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p, (void)bytes;
#endif
}

}  // namespace parallm::cuda
