// Reads to the host begun now and finished later (core/runtime.cc), kept out of runtime.h, which the kernel
// files include, so this part of the runtime changes without rebuilding them.
#pragma once
#include <cstddef>
#include <memory>

#include "runtime.h"

namespace parallm {

// A read to the host begun now and finished later, so the host can queue more work before it waits for the
// bytes: decode's next step while this step's sampled ids come back (src/engine/generate.ts). CUDA: a copy into
// pinned memory on the device's current stream and an event after it; CPU: the bytes copied at once (CPU ops
// have run when they return). read_finish waits for the copy and writes the bytes to dst, once.
struct HostRead;
std::shared_ptr<HostRead> read_begin(const Block& src, size_t src_off, size_t bytes);
void read_finish(HostRead& r, void* dst);
size_t read_bytes(const HostRead& r);

}  // namespace parallm
