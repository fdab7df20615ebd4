// Launching a kernel with programmatic dependent launch (pdl.cuh) when the device and the switch allow.
#pragma once
#include <cuda_runtime.h>

#include <utility>

namespace parallm::cuda {

// PDL for the GEMVs that keep pdl.cuh's contract: on for sm_90+ unless PARALLM_PDL=0 or the test /
// benchmark hook (set_pdl, the addon's testing.pdl) turned it off. Defined in matmul.cu.
bool pdl_enabled();
void set_pdl(int on);

// kern<<<grid, block, smem, stream>>>(args...), with the PDL attribute when pdl_enabled(). The caller
// checks the returned error (PARALLM_CUDA_CHECK), as it would cudaGetLastError after <<<...>>>.
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args&&... args) {
  cudaLaunchAttribute attr[1] = {};
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kern, std::forward<Args>(args)...);
}

}  // namespace parallm::cuda
