// Stand-in for ../launch.cuh on the host emulation (found first on its include path): launch_pdl runs the
// kernel through emu_kernel, as run.sh's rewrite does for <<<...>>> launches; there is no PDL to ask for.
#pragma once
#include <utility>

#include "emu.h"

namespace parallm::cuda {

inline bool pdl_allows(int) { return false; }
inline void set_pdl(int) {}

template <typename... KArgs, typename... Args>
cudaError_t launch_pdl(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t, cudaStream_t, Args&&... args) {
  emu_kernel(EmuDims(grid), EmuDims(block))([&] { kern(KArgs(args)...); });
  return cudaSuccess;
}
template <typename... KArgs, typename... Args>
cudaError_t launch_maybe_pdl(bool, void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                             Args&&... args) {
  return launch_pdl(kern, grid, block, smem, s, std::forward<Args>(args)...);
}
template <typename... KArgs, typename... Args>
cudaError_t launch_pdl_small(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                             Args&&... args) {
  return launch_pdl(kern, grid, block, smem, s, std::forward<Args>(args)...);
}

// A cooperative launch: all blocks at once (emu_launch_coop), so a grid barrier can be passed.
template <typename... KArgs, typename... Args>
cudaError_t launch_cooperative(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t,
                               Args&&... args) {
  emu_launch_coop(grid.x, block.x, smem, [&] { kern(KArgs(args)...); });
  return cudaSuccess;
}
// Every block is a std::thread per thread here: a small grid (EMU_COOP_BLOCKS, default 6).
#ifndef EMU_COOP_BLOCKS
#define EMU_COOP_BLOCKS 6
#endif
template <typename... KArgs>
cudaError_t max_coresident_blocks(void (*)(KArgs...), int, size_t, int, int* blocks) {
  *blocks = EMU_COOP_BLOCKS;
  return cudaSuccess;
}

}  // namespace parallm::cuda
