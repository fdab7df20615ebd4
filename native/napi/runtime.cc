// The runtime part of the addon: devices, memory, tensors' creation, capture into graphs, events and
// streams (core/runtime.h does the work; this file unwraps arguments and wraps results).
#include <memory>

#include "core/runtime.h"
#include "napi/args.h"
#include "napi/surface.h"
#include "napi/tensor.h"

// Versions for buildInfo only, declared here rather than in core/backend.h so that adding them does not
// rebuild every kernel (defined in cuda/runtime.cu, and as 0 in cuda/absent.cc).
namespace parallm::cuda_backend {
int runtime_version();
int driver_version();
}  // namespace parallm::cuda_backend

namespace parallm::napi {

DeviceId parse_device(const std::string& s) {
  DeviceId d;
  std::string kind = s, idx = "0";
  auto colon = s.find(':');
  if (colon != std::string::npos) {
    kind = s.substr(0, colon);
    idx = s.substr(colon + 1);
  }
  if (kind == "cpu") d.kind = DeviceKind::CPU;
  else if (kind == "cuda") d.kind = DeviceKind::CUDA;
  else fail("unknown device '", s, "': expected cpu:N or cuda:N");
  if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos || idx.size() > 4)
    fail("unknown device '", s, "': expected cpu:N or cuda:N");
  d.index = std::stoi(idx);
  return d;
}

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::F32;
  if (s == "bf16") return DType::BF16;
  if (s == "f16") return DType::F16;
  if (s == "i32") return DType::I32;
  fail("unknown dtype '", s, "': expected f32, bf16, f16 or i32");
}

namespace {

// ------------------------------------------------------------ graph, event, stream handles

class NativeGraph : public Napi::ObjectWrap<NativeGraph> {
 public:
  static constexpr const char* kWhat = "a graph";
  static Napi::FunctionReference& ctor(Constructors& c) { return c.graph; }
  std::shared_ptr<Graph> g;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeGraph",
                       {InstanceMethod<&NativeGraph::Replay>("replay"), InstanceMethod<&NativeGraph::Dispose>("dispose"),
                        InstanceAccessor<&NativeGraph::Ops>("ops"), InstanceAccessor<&NativeGraph::Device>("device")});
  }
  explicit NativeGraph(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGraph>(info) {}
  Napi::Value Replay(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!g) fail("replay: graph has been disposed");
      graph_replay(*g);
      return info.Env().Undefined();
    });
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    g.reset();
    return info.Env().Undefined();
  }
  Napi::Value Ops(const Napi::CallbackInfo& info) {
    check_receiver<NativeGraph>(info, "ops");
    return Napi::Number::New(info.Env(), g ? double(graph_ops(*g)) : 0);
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    check_receiver<NativeGraph>(info, "device");
    return g ? Napi::Value(Napi::String::New(info.Env(), graph_device(*g).str())) : info.Env().Null();
  }
};

class NativeEvent : public Napi::ObjectWrap<NativeEvent> {
 public:
  static constexpr const char* kWhat = "an event";
  static Napi::FunctionReference& ctor(Constructors& c) { return c.event; }
  std::shared_ptr<Event> e;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeEvent",
                       {InstanceMethod<&NativeEvent::Record>("record"),
                        InstanceMethod<&NativeEvent::Synchronize>("synchronize"),
                        InstanceMethod<&NativeEvent::Wait>("wait"),
                        InstanceMethod<&NativeEvent::ElapsedMs>("elapsedMs")});
  }
  explicit NativeEvent(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEvent>(info) {}
  Napi::Value Record(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      event_record(*e);
      return info.Env().Undefined();
    });
  }
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      event_synchronize(*e);
      return info.Env().Undefined();
    });
  }
  // wait(): the device's current stream waits for this event (on the device; the host goes on).
  Napi::Value Wait(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      event_wait_current(*e);
      return info.Env().Undefined();
    });
  }
  // start.elapsedMs(end): milliseconds from this event to `end`.
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      NativeEvent* end = Args(info, "elapsedMs").object<NativeEvent>(0, "end");
      return Napi::Number::New(info.Env(), event_elapsed_ms(*e, *end->e));
    });
  }
};

class NativeStream : public Napi::ObjectWrap<NativeStream> {
 public:
  static constexpr const char* kWhat = "a stream";
  static Napi::FunctionReference& ctor(Constructors& c) { return c.stream; }
  std::shared_ptr<Stream> s;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeStream",
                       {InstanceMethod<&NativeStream::Synchronize>("synchronize"),
                        InstanceMethod<&NativeStream::WaitEvent>("waitEvent")});
  }
  explicit NativeStream(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeStream>(info) {}
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      stream_synchronize(*s);
      return info.Env().Undefined();
    });
  }
  Napi::Value WaitEvent(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      stream_wait_event(*s, *Args(info, "waitEvent").object<NativeEvent>(0, "event")->e);
      return info.Env().Undefined();
    });
  }
};

// ------------------------------------------------------------ module functions

// empty(device, dtype, shape)
Napi::Value Empty(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a(info, "empty");
    DeviceId d = a.device(0);
    DType dt = a.dtype(1);
    std::vector<int64_t> shape;
    int64_t n = shape_arg(a, 2, shape);
    if (double(n) * double(dtype_size(dt)) > 9.0e18) fail("empty: ", n, " elements is too many");
    check_device(d);
    BlockPtr b = allocate(d, size_t(n) * dtype_size(dt));
    return NativeTensor::Make(info.Env(), b, 0, dt, shape);
  });
}

Napi::Object device_info_obj(Napi::Env env, const DeviceInfo& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", d.id.str());
  o.Set("kind", d.id.is_cuda() ? "cuda" : "cpu");
  o.Set("index", d.id.index);
  o.Set("name", d.name);
  o.Set("memoryTotal", double(d.memory_total));
  o.Set("memoryFree", double(d.memory_free));
  if (d.id.is_cuda()) {
    Napi::Array cc = Napi::Array::New(env, 2);
    cc.Set(0u, d.cc_major);
    cc.Set(1u, d.cc_minor);
    o.Set("computeCapability", cc);
    o.Set("multiprocessors", d.multiprocessors);
    Napi::Array peers = Napi::Array::New(env, d.peers.size());
    for (size_t i = 0; i < d.peers.size(); i++) peers.Set(uint32_t(i), d.peers[i]);
    o.Set("peers", peers);
  } else {
    o.Set("threads", d.threads);
  }
  return o;
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto list = list_devices();
    Napi::Array a = Napi::Array::New(info.Env(), list.size());
    for (size_t i = 0; i < list.size(); i++) a.Set(uint32_t(i), device_info_obj(info.Env(), list[i]));
    return a;
  });
}

Napi::Value DeviceInfoFn(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    return device_info_obj(info.Env(), device_info(Args(info, "deviceInfo").device(0)));
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("cuda", cuda_compiled());
    o.Set("cudaStatus", cuda_status());
    o.Set("cudaDevices", cuda_device_count());
    o.Set("cudaRuntimeVersion", cuda_backend::runtime_version());
    o.Set("cudaDriverVersion", cuda_backend::driver_version());
    o.Set("cpuDevices", cpu_device_count());
    return o;
  });
}

Napi::Value ConfigureCpu(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    configure_cpu_devices(Args(info, "configureCpuDevices").i32(0, "count"));
    return info.Env().Undefined();
  });
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    synchronize(Args(info, "synchronize").device(0));
    return info.Env().Undefined();
  });
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    AllocatorStats s = memory_stats(Args(info, "memoryStats").device(0));
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("allocated", double(s.allocated));
    o.Set("cached", double(s.cached));
    o.Set("peakAllocated", double(s.peak_allocated));
    o.Set("driverAllocs", double(s.driver_allocs));
    return o;
  });
}

Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    reset_peak_memory(Args(info, "resetPeakMemory").device(0));
    return info.Env().Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    empty_cache(Args(info, "emptyCache").device(0));
    return info.Env().Undefined();
  });
}

Napi::Value CaptureBegin(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    capture_begin(Args(info, "captureBegin").device(0));
    return info.Env().Undefined();
  });
}

Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto g = capture_end(Args(info, "captureEnd").device(0));
    Napi::Object obj = ctors(info.Env()).graph.New({});
    NativeGraph::Unwrap(obj)->g = std::move(g);
    return obj;
  });
}

Napi::Value EventCreate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto e = event_create(Args(info, "eventCreate").device(0));
    Napi::Object obj = ctors(info.Env()).event.New({});
    NativeEvent::Unwrap(obj)->e = std::move(e);
    return obj;
  });
}

Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto s = stream_create(Args(info, "streamCreate").device(0));
    Napi::Object obj = ctors(info.Env()).stream.New({});
    NativeStream::Unwrap(obj)->s = std::move(s);
    return obj;
  });
}

// setStream(device, stream|null): null goes back to the device's default stream.
Napi::Value SetStream(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a(info, "setStream");
    DeviceId d = a.device(0);
    NativeStream* s = a.opt_object<NativeStream>(1, "stream");
    stream_set_current(d, s ? s->s.get() : nullptr);
    return info.Env().Undefined();
  });
}

// frozenWeights(on): decode's frozen-weights setting on this thread (core/runtime.h); returns the one before.
Napi::Value FrozenWeights(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const bool on = Args(info, "frozenWeights").boolean(0, "on");
    return Napi::Boolean::New(info.Env(), set_frozen_weights(on));
  });
}

}  // namespace

void export_runtime(Napi::Env env, Napi::Object exports, Constructors& c) {
  c.graph = Napi::Persistent(NativeGraph::Init(env));
  c.event = Napi::Persistent(NativeEvent::Init(env));
  c.stream = Napi::Persistent(NativeStream::Init(env));
  export_fn(env, exports, "empty", Empty);
  export_fn(env, exports, "devices", Devices);
  export_fn(env, exports, "deviceInfo", DeviceInfoFn);
  export_fn(env, exports, "buildInfo", BuildInfo);
  export_fn(env, exports, "configureCpuDevices", ConfigureCpu);
  export_fn(env, exports, "synchronize", Synchronize);
  export_fn(env, exports, "memoryStats", MemoryStats);
  export_fn(env, exports, "resetPeakMemory", ResetPeak);
  export_fn(env, exports, "emptyCache", EmptyCache);
  export_fn(env, exports, "captureBegin", CaptureBegin);
  export_fn(env, exports, "captureEnd", CaptureEnd);
  export_fn(env, exports, "eventCreate", EventCreate);
  export_fn(env, exports, "streamCreate", StreamCreate);
  export_fn(env, exports, "setStream", SetStream);
  export_fn(env, exports, "frozenWeights", FrozenWeights);
}

}  // namespace parallm::napi
