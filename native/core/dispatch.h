// Op dispatch: run a kernel on its device. A CUDA kernel is enqueued on the device's current stream
// (made current on this thread first); a CPU kernel runs on the device's pool, or is recorded while the
// device captures. The blocks an op touches are kept by the graph being captured, and by a recorded CPU
// op itself. Both callables are instantiated inline (no virtual call); the CUDA one takes the stream.
#pragma once
#include <utility>
#include <vector>

#include "errors.h"
#include "runtime.h"

namespace parallm {

template <typename CpuFn, typename CudaFn>
void launch(DeviceId dev, const std::vector<BlockPtr>& blocks, CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
  if (capturing(dev))
    for (auto& b : blocks) capture_keep(dev, b);
  try {
    if (dev.is_cuda()) {
      cuda_fn(cuda_activate(dev));
    } else {
      cpu_submit(dev, [fn = std::forward<CpuFn>(cpu_fn), keep = blocks](const cpu::Ctx& c) { fn(c); });
    }
  } catch (const Error& e) {
    fail(e.what(), " [on ", dev.str(), "]");
  }
}

}  // namespace parallm
