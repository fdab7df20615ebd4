// Launching a kernel with programmatic dependent launch (pdl.cuh) when the device and the switch allow.
#pragma once
#include <cuda_runtime.h>

#include <utility>

namespace parallm::cuda {

// Which kernels launch with PDL, on sm_90+ (defined in matmul.cu): 1 (the default) the GEMVs, timed on
// H200s (bench/RESULTS.md, S7-3); 2 also the small decode kernels (launch_pdl_small: norms, rope + KV
// write, decode attention, adds, activations, the embedding, the peer all-reduce), not yet timed or tested
// on a GPU; 0 none. PARALLM_PDL=0|1|2, or the test / benchmark hook (set_pdl, the addon's testing.pdl).
// pdl_allows(level): PARALLM_PDL is at least `level` and the current device is sm_90+ (the device is
// asked only then, so a small kernel's launch at the default level costs one atomic load).
bool pdl_allows(int level);
void set_pdl(int level);

// kern<<<grid, block, smem, stream>>>(args...) with launch attribute `attr` (none when null). The caller
// checks the returned error (PARALLM_CUDA_CHECK), as it would cudaGetLastError after <<<...>>>.
template <typename... KArgs, typename... Args>
cudaError_t launch_with(cudaLaunchAttribute* attr, void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem,
                        cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = attr ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kern, std::forward<Args>(args)...);
}

// With the PDL attribute when `on`.
template <typename... KArgs, typename... Args>
cudaError_t launch_maybe_pdl(bool on, void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem,
                             cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  return launch_with(on ? &attr : nullptr, kern, grid, block, smem, stream, std::forward<Args>(args)...);
}

// A GEMV (pdl level 1 and up).
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  return launch_maybe_pdl(pdl_allows(1), kern, grid, block, smem, stream, std::forward<Args>(args)...);
}

// A cooperative launch (cudaLaunchAttributeCooperative): every block of the grid is resident at once, so
// the blocks may wait for each other (a grid barrier); the runtime refuses a grid larger than
// max_coresident_blocks. The attribute is valid for graph kernel nodes, so the launch may be captured.
template <typename... KArgs, typename... Args>
cudaError_t launch_cooperative(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                               Args&&... args) {
  cudaLaunchAttribute attr = {};
  attr.id = cudaLaunchAttributeCooperative;
  attr.val.cooperative = 1;
  return launch_with(&attr, kern, grid, block, smem, stream, std::forward<Args>(args)...);
}

// The most blocks of `kern` (`threads` a block, `smem` bytes of dynamic shared memory) that device `dev`
// holds at once (the occupancy per multiprocessor times the multiprocessors), into *blocks; 0 when the
// device cannot launch cooperatively. The caller checks the returned error.
template <typename... KArgs>
cudaError_t max_coresident_blocks(void (*kern)(KArgs...), int threads, size_t smem, int dev, int* blocks) {
  *blocks = 0;
  int coop = 0, sms = 0, per_sm = 0;
  cudaError_t e = cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
  if (e != cudaSuccess || !coop) return e;
  if ((e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
  if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, threads, smem)) != cudaSuccess) return e;
  *blocks = sms * per_sm;
  return cudaSuccess;
}

// A small decode kernel that begins with pdl_begin() (pdl level 2).
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl_small(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             Args&&... args) {
  return launch_maybe_pdl(pdl_allows(2), kern, grid, block, smem, stream, std::forward<Args>(args)...);
}

}  // namespace parallm::cuda
