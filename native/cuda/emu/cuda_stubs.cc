// The CUDA runtime calls the emulated .cu files make, on host memory (see emu.h).
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { *p = std::malloc(n ? n : 1); return cudaSuccess; }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return cudaSuccess; }
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) { std::memmove(d, s, n); return cudaSuccess; }
cudaError_t cudaMemcpy2DAsync(void* d, size_t dpitch, const void* s, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind, cudaStream_t) {
  for (size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(d) + r * dpitch, static_cast<const char*>(s) + r * spitch, width);
  return cudaSuccess;
}
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
const char* cudaGetErrorString(cudaError_t) { return "emulated"; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) { *v = a == cudaDevAttrMultiProcessorCount ? 132 : 0; return cudaSuccess; }

// core/runtime.h's decode setting, which attention.cu's attn_pre reads (the emulation forces the PRE form
// through its test hook instead).
namespace parallm {
bool frozen_weights() { return false; }
}  // namespace parallm

// workspace.h's captured buffers: the emulation never captures, so every call allocates its own.
namespace parallm::cuda {
cudaError_t capture_workspace(cudaStream_t, int, size_t, void**, bool* captured) { *captured = false; return cudaSuccess; }
void capture_workspaces_free(cudaStream_t) {}
}  // namespace parallm::cuda
