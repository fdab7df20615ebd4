// The CUDA backend's kernels: see native/core/kernels.h for what each computes. Each enqueues on the
// stream and returns; the caller has made the tensors' device current.
#pragma once
#include <cuda_runtime_api.h>
#include "../core/dtype.h"

namespace parallm::cuda {

#define PARALLM_KCTX cudaStream_t
#include "../core/kernels.h"
#undef PARALLM_KCTX

}  // namespace parallm::cuda
