// What the device runtime (core/runtime.cc) needs from a backend: its devices, their memory and
// capture state, copies, graphs, events and streams. The CPU backend implements cpu_backend in
// cpu/runtime.cc; the CUDA backend implements cuda_backend in cuda/runtime.cu, or cuda/absent.cc when the
// binary is built without CUDA (no devices; every call names the device and says so). The hot-path
// functions of runtime.h (cpu_submit, cuda_activate) are implemented by the backends directly.
//
// Core includes no backend header: it picks a backend by the device's kind with a plain call (no
// virtual call or allocation on the op launch path). Backend handles (streams, events, graphs) are the
// CUDA runtime's own opaque pointer types, declared here without the CUDA headers.
#pragma once
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "allocator.h"
#include "runtime.h"

struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;

namespace parallm {

// A device's capture: while active, ops are recorded (the CPU's in `ops`, CUDA's in the stream's graph)
// and the blocks they touch kept alive for the graph.
struct CaptureState {
  bool active = false;
  std::vector<BlockPtr> keep;
  std::vector<std::function<void(const cpu::Ctx&)>> ops;  // CPU only
};

namespace cpu_backend {
int device_count();
void configure(int count);  // see configure_cpu_devices
void check(int index);      // throws "unknown device cpu:N"
DeviceInfo info(int index);
CachingAllocator& allocator(int index);
CaptureState& capture(int index);
std::mutex& capture_mutex(int index);  // guards capture(index)
void replay(int index, const std::vector<std::function<void(const cpu::Ctx&)>>& ops);
}  // namespace cpu_backend

namespace cuda_backend {
bool compiled();
std::string status();  // why there are no CUDA devices, if there are none
int device_count();
void check(int index);  // throws "unknown device cuda:N"
DeviceInfo info(int index);
CachingAllocator& allocator(int index);
CaptureState& capture(int index);
std::mutex& capture_mutex(int index);
// Copies on the device's current stream; to and from the host they wait for the data (the host buffer
// belongs to JS). copy_peer orders after the source's queued work and copies on the destination's stream.
void copy_from_host(int index, void* dst, const void* src, size_t bytes);
void copy_to_host(int index, void* dst, const void* src, size_t bytes);
void copy_device(int index, void* dst, const void* src, size_t bytes);
void copy_peer(int dst_index, void* dst, int src_index, const void* src, size_t bytes);
// A read to the host in two halves (core/runtime.h's read_begin): the copy into a pinned staging buffer of
// the process's pool and an event after it (returns the buffer, *ev the event); read_wait waits for the
// event and copies the bytes out; read_release (never throws) waits too, then returns both to the pool.
void* read_begin(int index, const void* src, size_t bytes, CUevent_st** ev);
void read_wait(int index, void* pinned, size_t bytes, CUevent_st* ev, void* dst);
void read_release(int index, void* pinned, size_t bytes, CUevent_st* ev) noexcept;
void synchronize(int index);
void capture_begin(int index);
void capture_end(int index, CUgraph_st** graph, CUgraphExec_st** exec, size_t* nodes);
void graph_launch(int index, CUgraphExec_st* exec, size_t nodes);
void graph_destroy(CUgraph_st* graph, CUgraphExec_st* exec);
CUevent_st* event_create(int index);
void event_destroy(CUevent_st* e);
void event_record(int index, CUevent_st* e);
void event_synchronize(int index, CUevent_st* e);
float event_elapsed_ms(int index, CUevent_st* start, CUevent_st* end);
CUstream_st* stream_create(int index);
void stream_destroy(CUstream_st* s);
void stream_set_current(int index, CUstream_st* s);  // nullptr: the device's default stream
void stream_synchronize(int index, CUstream_st* s);
void stream_wait_event(int index, CUstream_st* s, CUevent_st* e);
}  // namespace cuda_backend

}  // namespace parallm
