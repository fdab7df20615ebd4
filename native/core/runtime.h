// The device runtime: which devices exist, memory blocks on them, copies between any two, and the
// per-device execution context an op runs in (a CUDA stream, or a CPU thread pool), including capture
// of op sequences for replay (CUDA graphs on a GPU, a recorded op list on the CPU).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "allocator.h"
#include "device.h"

struct CUstream_st;

namespace parallm {
namespace cpu {
struct Ctx;
}

struct DeviceInfo {
  DeviceId id;
  std::string name;
  size_t memory_total = 0, memory_free = 0;
  int cc_major = 0, cc_minor = 0, multiprocessors = 0, threads = 0;
  std::vector<int> peers;  // CUDA devices this one can reach directly
};

// Memory owned by a tensor (or several views). Returned to the device's cache when the last owner goes.
struct Block {
  DeviceId dev;
  void* ptr = nullptr;
  size_t bytes = 0;
  Block(DeviceId d, void* p, size_t b) : dev(d), ptr(p), bytes(b) {}
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
};
using BlockPtr = std::shared_ptr<Block>;

// Devices.
bool cuda_compiled();                 // the binary holds the CUDA backend
std::string cuda_status();            // why there are no CUDA devices, if there are none
int cuda_device_count();
int cpu_device_count();
void configure_cpu_devices(int count);  // cpu:0..count-1, each with hardware_threads/count threads
std::vector<DeviceInfo> list_devices();
DeviceInfo device_info(DeviceId d);
void check_device(DeviceId d);  // throws "unknown device"

// Memory.
BlockPtr allocate(DeviceId d, size_t bytes);
AllocatorStats memory_stats(DeviceId d);
void reset_peak_memory(DeviceId d);
void empty_cache(DeviceId d);

// Copies (stream-ordered on the devices involved; to_host waits for the data).
void copy_from_host(const Block& dst, size_t dst_off, const void* src, size_t bytes);
void copy_to_host(void* dst, const Block& src, size_t src_off, size_t bytes);
void copy_between(const Block& dst, size_t dst_off, const Block& src, size_t src_off, size_t bytes);
void synchronize(DeviceId d);

// Capture: between begin and end, ops on the device are recorded (not run); replay runs them again
// on the same memory. The graph keeps every block the ops touched alive.
struct Graph;
void capture_begin(DeviceId d);
bool capturing(DeviceId d);
void capture_keep(DeviceId d, const BlockPtr& b);  // called by ops while capturing
std::shared_ptr<Graph> capture_end(DeviceId d);
void graph_replay(Graph& g);
DeviceId graph_device(const Graph& g);
size_t graph_ops(const Graph& g);

// CPU execution: run `op` now on the device's pool, or record it while the device is capturing.
void cpu_submit(DeviceId d, std::function<void(const cpu::Ctx&)> op);

// CUDA execution: make the device current on this thread and return its current stream.
CUstream_st* cuda_activate(DeviceId d);

// Events: record a point in the device's work; elapsed time between two recorded events.
struct Event;
std::shared_ptr<Event> event_create(DeviceId d);
void event_record(Event& e);
void event_synchronize(Event& e);
double event_elapsed_ms(Event& start, Event& end);

// Streams (CUDA): ops go to the device's current stream; a new stream lets copies overlap compute.
struct Stream;
std::shared_ptr<Stream> stream_create(DeviceId d);
void stream_set_current(DeviceId d, Stream* s);  // nullptr: the device's default stream
void stream_synchronize(Stream& s);
void stream_wait_event(Stream& s, Event& e);
// The device's current stream waits for e (the join after work forked onto another stream; CPU: nothing).
void event_wait_current(Event& e);

// Decode's frozen weights, on the calling thread (withFrozenWeights in src/runtime.ts): while set, the ops it
// enqueues may read the matrices they multiply by before the kernel before them has finished (native/cuda/
// matmul.cu's gemv_wpre), on the caller's word that no kernel of that work writes one. set_ returns the previous
// setting.
bool set_frozen_weights(bool on);
bool frozen_weights();

}  // namespace parallm
