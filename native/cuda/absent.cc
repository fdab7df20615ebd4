// The CUDA backend's part of the device runtime (core/backend.h) in a binary built without CUDA (no nvcc,
// or the node-gyp fallback of binding.gyp): there are no CUDA devices, and every call that names one
// fails saying so. Compiled instead of cuda/runtime.cu, never beside it.
#include "../core/backend.h"
#include "../core/errors.h"

namespace parallm {

namespace {
[[noreturn]] void absent(int index) { fail("unknown device cuda:", index, ": this build has no CUDA backend"); }
}  // namespace

CUstream_st* cuda_activate(DeviceId d) { absent(d.index); }

namespace cuda_backend {

bool compiled() { return false; }
int runtime_version() { return 0; }
int driver_version() { return 0; }
std::string status() { return "this build has no CUDA backend"; }
int device_count() { return 0; }
void check(int index) { absent(index); }
DeviceInfo info(int index) { absent(index); }
CachingAllocator& allocator(int index) { absent(index); }
CaptureState& capture(int index) { absent(index); }
std::mutex& capture_mutex(int index) { absent(index); }
void copy_from_host(int index, void*, const void*, size_t) { absent(index); }
void copy_to_host(int index, void*, const void*, size_t) { absent(index); }
void copy_device(int index, void*, const void*, size_t) { absent(index); }
void copy_peer(int dst_index, void*, int, const void*, size_t) { absent(dst_index); }
void* read_begin(int index, const void*, size_t, CUevent_st**) { absent(index); }
void read_wait(int index, void*, size_t, CUevent_st*, void*) { absent(index); }
void read_release(int, void*, size_t, CUevent_st*) noexcept {}
void synchronize(int index) { absent(index); }
void capture_begin(int index) { absent(index); }
void capture_end(int index, CUgraph_st**, CUgraphExec_st**, size_t*) { absent(index); }
void graph_launch(int index, CUgraphExec_st*, size_t) { absent(index); }
void graph_destroy(CUgraph_st*, CUgraphExec_st*) {}
CUevent_st* event_create(int index) { absent(index); }
void event_destroy(CUevent_st*) {}
void event_record(int index, CUevent_st*) { absent(index); }
void event_synchronize(int index, CUevent_st*) { absent(index); }
float event_elapsed_ms(int index, CUevent_st*, CUevent_st*) { absent(index); }
CUstream_st* stream_create(int index) { absent(index); }
void stream_destroy(CUstream_st*) {}
void stream_set_current(int index, CUstream_st*) { absent(index); }
void stream_synchronize(int index, CUstream_st*) { absent(index); }
void stream_wait_event(int index, CUstream_st*, CUevent_st*) { absent(index); }

}  // namespace cuda_backend
}  // namespace parallm
