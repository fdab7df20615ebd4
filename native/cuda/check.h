// Checks for CUDA runtime calls and kernel launches: a failure throws parallm::Error naming the op, the
// sizes given, and the runtime's message. Never aborts.
#pragma once
#include <cuda_runtime_api.h>
#include "../core/errors.h"

#define PARALLM_CUDA_CHECK(expr, ...)                                                          \
  do {                                                                                         \
    cudaError_t parallm_err_ = (expr);                                                         \
    if (parallm_err_ != cudaSuccess)                                                           \
      ::parallm::fail(__VA_ARGS__, ": ", cudaGetErrorName(parallm_err_), " (",                 \
                      cudaGetErrorString(parallm_err_), ")");                                  \
  } while (0)

// After a <<<...>>> launch: catches bad configurations (too much shared memory, grid too large).
#define PARALLM_LAUNCH_CHECK(...) PARALLM_CUDA_CHECK(cudaGetLastError(), __VA_ARGS__)
