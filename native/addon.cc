// The N-API surface of parallm: tensors, devices, memory, events, streams, graphs, and one function per
// kernel. Each op checks its tensors (alive, one device, dtype, extents) and enqueues the kernel on the
// device's stream (CUDA) or runs it on the device's pool (CPU) — or records it while capturing. C++
// errors become JS exceptions that name the op and the device; nothing here aborts.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/runtime.h"
#include "cpu/kernels.h"
#include "comm/communicator.h"
#include "comm/nccl_api.h"
#ifdef PARALLM_WITH_CUDA
#include "cuda/kernels.h"
namespace parallm::cuda {
void matmul_sm90_splits(int n);      // benchmark hook (native/cuda/matmul.cu)
void matmul_sm90_tma_store(int on);  // test hook (native/cuda/matmul.cu)
}
#endif

using namespace parallm;

namespace {

// ------------------------------------------------------------ argument helpers

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

// Run `fn`, turning C++ exceptions into a pending JS exception.
template <typename F>
Napi::Value guarded(const Napi::Env& env, F&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

int64_t get_i64(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(what, " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740991.0)
    fail(what, " must be an integer, got ", v);
  return int64_t(v);
}
double get_f64(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsNumber()) fail(what, " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}
bool get_bool(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() && info[i].ToBoolean(); }
std::string get_str(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length() || !info[i].IsString()) fail(what, " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

struct Constructors {
  Napi::FunctionReference tensor, graph, event, stream;
};
Constructors& ctors(Napi::Env env) { return *env.GetInstanceData<Constructors>(); }

// ------------------------------------------------------------ Tensor

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  BlockPtr block;
  size_t offset = 0;  // bytes into the block
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  DeviceId dev;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeTensor",
                       {InstanceAccessor<&NativeTensor::Device>("device"),
                        InstanceAccessor<&NativeTensor::Dtype>("dtype"),
                        InstanceAccessor<&NativeTensor::Shape>("shape"),
                        InstanceAccessor<&NativeTensor::Nbytes>("nbytes"),
                        InstanceAccessor<&NativeTensor::Disposed>("disposed"),
                        InstanceMethod<&NativeTensor::Dispose>("dispose"),
                        InstanceMethod<&NativeTensor::ToHost>("toHost"),
                        InstanceMethod<&NativeTensor::WriteHost>("writeHost"),
                        InstanceMethod<&NativeTensor::CopyFrom>("copyFrom"),
                        InstanceMethod<&NativeTensor::View>("view")});
  }
  explicit NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {}

  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  void* ptr() const { return static_cast<char*>(block->ptr) + offset; }
  const Block& live(const char* op) const {
    if (!block) fail(op, ": tensor has been disposed");
    return *block;
  }

  static Napi::Object Make(Napi::Env env, BlockPtr b, size_t off, DType dt, std::vector<int64_t> shape) {
    Napi::Object obj = ctors(env).tensor.New({});
    NativeTensor* t = Unwrap(obj);
    t->dev = b->dev;
    t->block = std::move(b);
    t->offset = off;
    t->dtype = dt;
    t->shape = std::move(shape);
    return obj;
  }

 private:
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dev.str()); }
  Napi::Value Dtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(dtype)); }
  Napi::Value Shape(const Napi::CallbackInfo& info) {
    Napi::Array a = Napi::Array::New(info.Env(), shape.size());
    for (size_t i = 0; i < shape.size(); i++) a.Set(uint32_t(i), Napi::Number::New(info.Env(), double(shape[i])));
    return a;
  }
  Napi::Value Nbytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(nbytes())); }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !block); }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    block.reset();  // memory returns to the device's cache now, unless a view or graph still holds it
    return info.Env().Undefined();
  }
  Napi::Value ToHost(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Block& b = live("toHost");
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), nbytes());
      copy_to_host(ab.Data(), b, offset, nbytes());
      return ab;
    });
  }
  Napi::Value WriteHost(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Block& b = live("writeHost");
      if (info.Length() < 1 || !info[0].IsTypedArray()) fail("writeHost: expected a typed array");
      Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
      size_t bytes = ta.ByteLength();
      if (bytes != nbytes())
        fail("writeHost: ", bytes, " bytes given for a ", dtype_name(dtype), " tensor of ", nbytes(), " bytes");
      const char* src = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      copy_from_host(b, offset, src, bytes);
      return info.Env().Undefined();
    });
  }
  Napi::Value CopyFrom(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Block& b = live("copyFrom");
      if (info.Length() < 1 || !info[0].IsObject()) fail("copyFrom: expected a tensor");
      NativeTensor* src = Unwrap(info[0].As<Napi::Object>());
      const Block& sb = src->live("copyFrom (source)");
      if (src->dtype != dtype || src->nbytes() != nbytes())
        fail("copyFrom: source is ", dtype_name(src->dtype), " of ", src->nbytes(), " bytes, destination ",
             dtype_name(dtype), " of ", nbytes(), " bytes");
      if (capturing(dev)) capture_keep(dev, block), capture_keep(dev, src->block);
      copy_between(b, offset, sb, src->offset, nbytes());
      return info.Env().Undefined();
    });
  }
  // view(elementOffset, shape[, dtype]): a tensor over part of this one's memory.
  Napi::Value View(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      live("view");
      int64_t off = get_i64(info, 0, "view offset");
      if (info.Length() < 2 || !info[1].IsArray()) fail("view: shape must be an array");
      Napi::Array a = info[1].As<Napi::Array>();
      std::vector<int64_t> shp;
      int64_t n = 1;
      for (uint32_t i = 0; i < a.Length(); i++) {
        double v = a.Get(i).As<Napi::Number>().DoubleValue();
        if (v < 0 || v != std::floor(v)) fail("view: bad dimension ", v);
        shp.push_back(int64_t(v));
        n *= int64_t(v);
      }
      if (off < 0 || off + n > numel())
        fail("view: elements [", off, ", ", off + n, ") outside a tensor of ", numel());
      return Make(info.Env(), block, offset + size_t(off) * dtype_size(dtype), dtype, shp);
    });
  }
};

NativeTensor* tensor_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name,
                         bool optional = false) {
  if (i < info.Length() && (info[i].IsNull() || info[i].IsUndefined()) && optional) return nullptr;
  if (i >= info.Length() || !info[i].IsObject()) fail(op, ": ", name, " must be a tensor");
  Napi::Object o = info[i].As<Napi::Object>();
  if (!o.InstanceOf(ctors(info.Env()).tensor.Value())) fail(op, ": ", name, " must be a tensor");
  NativeTensor* t = NativeTensor::Unwrap(o);
  if (!t->block) fail(op, ": ", name, " has been disposed");
  return t;
}

// ------------------------------------------------------------ graph, event, stream handles

class NativeGraph : public Napi::ObjectWrap<NativeGraph> {
 public:
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
    return Napi::Number::New(info.Env(), g ? double(graph_ops(*g)) : 0);
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return g ? Napi::Value(Napi::String::New(info.Env(), graph_device(*g).str())) : info.Env().Null();
  }
};

class NativeEvent : public Napi::ObjectWrap<NativeEvent> {
 public:
  std::shared_ptr<Event> e;
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeEvent",
                       {InstanceMethod<&NativeEvent::Record>("record"),
                        InstanceMethod<&NativeEvent::Synchronize>("synchronize"),
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
  // start.elapsedMs(end): milliseconds from this event to `end`.
  Napi::Value ElapsedMs(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (info.Length() < 1 || !info[0].IsObject()) fail("elapsedMs: expected an event");
      NativeEvent* other = Unwrap(info[0].As<Napi::Object>());
      return Napi::Number::New(info.Env(), event_elapsed_ms(*e, *other->e));
    });
  }
};

class NativeStream : public Napi::ObjectWrap<NativeStream> {
 public:
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
      if (info.Length() < 1 || !info[0].IsObject()) fail("waitEvent: expected an event");
      stream_wait_event(*s, *NativeEvent::Unwrap(info[0].As<Napi::Object>())->e);
      return info.Env().Undefined();
    });
  }
};

// ------------------------------------------------------------ module functions

Napi::Value Empty(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    DeviceId d = parse_device(get_str(info, 0, "device"));
    DType dt = parse_dtype(get_str(info, 1, "dtype"));
    if (info.Length() < 3 || !info[2].IsArray()) fail("empty: shape must be an array");
    Napi::Array a = info[2].As<Napi::Array>();
    std::vector<int64_t> shape;
    double n = 1;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(x >= 0) || x != std::floor(x)) fail("empty: bad dimension ", x, " at ", i);
      shape.push_back(int64_t(x));
      n *= x;
    }
    if (n * double(dtype_size(dt)) > 9.0e18) fail("empty: ", n, " elements is too many");
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
    return device_info_obj(info.Env(), device_info(parse_device(get_str(info, 0, "device"))));
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("cuda", cuda_compiled());
    o.Set("cudaStatus", cuda_status());
    o.Set("cudaDevices", cuda_device_count());
    o.Set("cpuDevices", cpu_device_count());
    return o;
  });
}

Napi::Value ConfigureCpu(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    configure_cpu_devices(int(get_i64(info, 0, "count")));
    return info.Env().Undefined();
  });
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    synchronize(parse_device(get_str(info, 0, "device")));
    return info.Env().Undefined();
  });
}

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    AllocatorStats s = memory_stats(parse_device(get_str(info, 0, "device")));
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
    reset_peak_memory(parse_device(get_str(info, 0, "device")));
    return info.Env().Undefined();
  });
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    empty_cache(parse_device(get_str(info, 0, "device")));
    return info.Env().Undefined();
  });
}

// Benchmark hook: K slices of the sm90 matmul (-1: chosen per call; 1: split-K off). No-op without CUDA.
Napi::Value MatmulSplitK(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) fail("matmulSplitK: expected a number");
    int n = info[0].As<Napi::Number>().Int32Value();
    if (n < -1 || n == 0 || n > 32) fail("matmulSplitK: expected -1 (automatic) or 1..32, got ", n);
#ifdef PARALLM_WITH_CUDA
    cuda::matmul_sm90_splits(n);
#endif
    return info.Env().Undefined();
  });
}

// Test hook: the sm90 matmul stores C through the TMA (true, the default where it applies) or from
// registers (false). No-op without CUDA.
Napi::Value MatmulTmaStore(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsBoolean()) fail("matmulTmaStore: expected a boolean");
#ifdef PARALLM_WITH_CUDA
    cuda::matmul_sm90_tma_store(info[0].As<Napi::Boolean>().Value() ? 1 : 0);
#endif
    return info.Env().Undefined();
  });
}

Napi::Value CaptureBegin(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    capture_begin(parse_device(get_str(info, 0, "device")));
    return info.Env().Undefined();
  });
}

Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto g = capture_end(parse_device(get_str(info, 0, "device")));
    Napi::Object obj = ctors(info.Env()).graph.New({});
    NativeGraph::Unwrap(obj)->g = std::move(g);
    return obj;
  });
}

Napi::Value EventCreate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto e = event_create(parse_device(get_str(info, 0, "device")));
    Napi::Object obj = ctors(info.Env()).event.New({});
    NativeEvent::Unwrap(obj)->e = std::move(e);
    return obj;
  });
}

Napi::Value StreamCreate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto s = stream_create(parse_device(get_str(info, 0, "device")));
    Napi::Object obj = ctors(info.Env()).stream.New({});
    NativeStream::Unwrap(obj)->s = std::move(s);
    return obj;
  });
}

Napi::Value SetStream(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    DeviceId d = parse_device(get_str(info, 0, "device"));
    Stream* s = nullptr;
    if (info.Length() > 1 && info[1].IsObject()) s = NativeStream::Unwrap(info[1].As<Napi::Object>())->s.get();
    stream_set_current(d, s);
    return info.Env().Undefined();
  });
}

// ------------------------------------------------------------ ops

// The tensors of one op call: all on one device, with enough elements for what the kernel will touch.
struct OpCall {
  const char* op;
  DeviceId dev;
  bool have_dev = false;
  std::vector<BlockPtr> blocks;

  explicit OpCall(const char* name) : op(name) {}

  void* use(NativeTensor* t, const char* name, int64_t need_elems, DType want) {
    if (!t) return nullptr;
    if (!have_dev) dev = t->dev, have_dev = true;
    else if (t->dev != dev) fail(op, ": ", name, " is on ", t->dev.str(), " but the op runs on ", dev.str());
    if (t->dtype != want) fail(op, ": ", name, " is ", dtype_name(t->dtype), ", expected ", dtype_name(want));
    if (need_elems < 0 || need_elems > t->numel())
      fail(op, ": ", name, " has ", t->numel(), " elements but the op reaches ", need_elems);
    blocks.push_back(t->block);
    return t->ptr();
  }
  template <typename CpuFn, typename CudaFn>
  void run(CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
    if (!have_dev) fail(op, ": no tensors");
    if (capturing(dev))
      for (auto& b : blocks) capture_keep(dev, b);
    try {
      if (dev.is_cuda()) {
#ifdef PARALLM_WITH_CUDA
        cudaStream_t s = cuda_activate(dev);
        cuda_fn(s);
#else
        (void)cuda_fn;
        cuda_activate(dev);
#endif
      } else {
        cpu_submit(dev, [fn = std::forward<CpuFn>(cpu_fn), keep = blocks](const cpu::Ctx& c) { fn(c); });
      }
    } catch (const Error& e) {
      fail(e.what(), " [on ", dev.str(), "]");
    }
  }
};

#ifdef PARALLM_WITH_CUDA
#define CUDA_CALL(expr) [&](cudaStream_t s) { expr; }
#else
#define CUDA_CALL(expr) [&](int) {}
#endif

bool is_float(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

// matmul(C, A, B, bias|null, M, N, K, transA, transB, alpha, beta)
Napi::Value OpMatmul(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("matmul");
    NativeTensor* C = tensor_arg(info, 0, c.op, "C");
    NativeTensor* A = tensor_arg(info, 1, c.op, "A");
    NativeTensor* B = tensor_arg(info, 2, c.op, "B");
    NativeTensor* bias = tensor_arg(info, 3, c.op, "bias", true);
    int64_t M = get_i64(info, 4, "M"), N = get_i64(info, 5, "N"), K = get_i64(info, 6, "K");
    bool ta = get_bool(info, 7), tb = get_bool(info, 8);
    float alpha = float(get_f64(info, 9, "alpha")), beta = float(get_f64(info, 10, "beta"));
    DType dt = C->dtype;
    if (!is_float(dt)) fail("matmul: dtype must be f32, bf16 or f16, got ", dtype_name(dt));
    if (M < 0 || N < 0 || K < 0) fail("matmul: negative size M=", M, " N=", N, " K=", K);
    void* pc = c.use(C, "C", M * N, dt);
    const void* pa = c.use(A, "A", M * K, dt);
    const void* pb = c.use(B, "B", K * N, dt);
    const void* pbias = c.use(bias, "bias", N, dt);
    c.run([=](const cpu::Ctx& x) { cpu::matmul(x, dt, pa, pb, pbias, pc, M, N, K, ta, tb, alpha, beta); },
          CUDA_CALL(cuda::matmul(s, dt, pa, pb, pbias, pc, M, N, K, ta, tb, alpha, beta)));
    return info.Env().Undefined();
  });
}

// attentionPrefill(out, q, k, v, B, Tq, Tk, Hq, Hkv, D, qB, qT, kvB, kvT, scale)
Napi::Value OpAttentionPrefill(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("attentionPrefill");
    NativeTensor* O = tensor_arg(info, 0, c.op, "out");
    NativeTensor* Q = tensor_arg(info, 1, c.op, "q");
    NativeTensor* Kt = tensor_arg(info, 2, c.op, "k");
    NativeTensor* V = tensor_arg(info, 3, c.op, "v");
    int B = int(get_i64(info, 4, "B")), Tq = int(get_i64(info, 5, "Tq")), Tk = int(get_i64(info, 6, "Tk"));
    int Hq = int(get_i64(info, 7, "Hq")), Hkv = int(get_i64(info, 8, "Hkv")), D = int(get_i64(info, 9, "D"));
    int64_t qB = get_i64(info, 10, "q batch stride"), qT = get_i64(info, 11, "q token stride");
    int64_t kB = get_i64(info, 12, "kv batch stride"), kT = get_i64(info, 13, "kv token stride");
    float scale = float(get_f64(info, 14, "scale"));
    if (B < 1 || Tq < 1 || Tk < Tq || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1)
      fail("attentionPrefill: bad sizes B=", B, " Tq=", Tq, " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
    DType dt = O->dtype;
    void* po = c.use(O, "out", int64_t(B) * Tq * Hq * D, dt);
    const void* pq = c.use(Q, "q", (B - 1) * qB + (Tq - 1) * qT + int64_t(Hq) * D, dt);
    const void* pk = c.use(Kt, "k", (B - 1) * kB + (Tk - 1) * kT + int64_t(Hkv) * D, dt);
    const void* pv = c.use(V, "v", (B - 1) * kB + (Tk - 1) * kT + int64_t(Hkv) * D, dt);
    c.run([=](const cpu::Ctx& x) { cpu::attention_prefill(x, dt, pq, pk, pv, po, B, Tq, Tk, Hq, Hkv, D, qB, qT, kB, kT, scale); },
          CUDA_CALL(cuda::attention_prefill(s, dt, pq, pk, pv, po, B, Tq, Tk, Hq, Hkv, D, qB, qT, kB, kT, scale)));
    return info.Env().Undefined();
  });
}

// attentionDecode(out, q, k, v, lens, B, Hq, Hkv, D, qB, kvB, kvT, maxLen, scale)
Napi::Value OpAttentionDecode(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("attentionDecode");
    NativeTensor* O = tensor_arg(info, 0, c.op, "out");
    NativeTensor* Q = tensor_arg(info, 1, c.op, "q");
    NativeTensor* Kt = tensor_arg(info, 2, c.op, "k");
    NativeTensor* V = tensor_arg(info, 3, c.op, "v");
    NativeTensor* L = tensor_arg(info, 4, c.op, "lens");
    int B = int(get_i64(info, 5, "B")), Hq = int(get_i64(info, 6, "Hq")), Hkv = int(get_i64(info, 7, "Hkv"));
    int D = int(get_i64(info, 8, "D"));
    int64_t qB = get_i64(info, 9, "q batch stride"), kB = get_i64(info, 10, "kv batch stride");
    int64_t kT = get_i64(info, 11, "kv token stride");
    int maxLen = int(get_i64(info, 12, "maxLen"));
    float scale = float(get_f64(info, 13, "scale"));
    if (B < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1 || maxLen < 1)
      fail("attentionDecode: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " maxLen=", maxLen);
    DType dt = O->dtype;
    void* po = c.use(O, "out", int64_t(B) * Hq * D, dt);
    const void* pq = c.use(Q, "q", (B - 1) * qB + int64_t(Hq) * D, dt);
    const void* pk = c.use(Kt, "k", (B - 1) * kB + (maxLen - 1) * kT + int64_t(Hkv) * D, dt);
    const void* pv = c.use(V, "v", (B - 1) * kB + (maxLen - 1) * kT + int64_t(Hkv) * D, dt);
    const int32_t* pl = static_cast<const int32_t*>(c.use(L, "lens", B, DType::I32));
    c.run([=](const cpu::Ctx& x) { cpu::attention_decode(x, dt, pq, pk, pv, pl, po, B, Hq, Hkv, D, qB, kB, kT, maxLen, scale); },
          CUDA_CALL(cuda::attention_decode(s, dt, pq, pk, pv, pl, po, B, Hq, Hkv, D, qB, kB, kT, maxLen, scale)));
    return info.Env().Undefined();
  });
}

// kvWrite(dst, src, pos, B, T, W, srcB, srcT, dstB, dstT, maxLen)
Napi::Value OpKvWrite(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("kvWrite");
    NativeTensor* Dst = tensor_arg(info, 0, c.op, "dst");
    NativeTensor* Src = tensor_arg(info, 1, c.op, "src");
    NativeTensor* P = tensor_arg(info, 2, c.op, "pos");
    int B = int(get_i64(info, 3, "B")), T = int(get_i64(info, 4, "T"));
    int64_t W = get_i64(info, 5, "W"), sB = get_i64(info, 6, "src batch stride"), sT = get_i64(info, 7, "src token stride");
    int64_t dB = get_i64(info, 8, "dst batch stride"), dT = get_i64(info, 9, "dst token stride");
    int64_t maxLen = get_i64(info, 10, "maxLen");
    if (B < 1 || T < 1 || W < 1 || maxLen < T) fail("kvWrite: bad sizes B=", B, " T=", T, " W=", W, " maxLen=", maxLen);
    DType dt = Dst->dtype;
    void* pd = c.use(Dst, "dst", (B - 1) * dB + (maxLen - 1) * dT + W, dt);
    const void* ps = c.use(Src, "src", (B - 1) * sB + (T - 1) * sT + W, dt);
    const int32_t* pp = static_cast<const int32_t*>(c.use(P, "pos", B, DType::I32));
    // Positions live on the device (graphs replay with new ones): the kernels skip a sequence whose
    // rows would fall outside the cache.
    c.run([=](const cpu::Ctx& x) { cpu::kv_write(x, dt, ps, pd, pp, B, T, W, sB, sT, dB, dT, maxLen); },
          CUDA_CALL(cuda::kv_write(s, dt, ps, pd, pp, B, T, W, sB, sT, dB, dT, maxLen)));
    return info.Env().Undefined();
  });
}

// layernorm(y, x, gamma, beta, mean|null, rstd|null, R, C, eps)
Napi::Value OpLayernorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("layernorm");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    NativeTensor* G = tensor_arg(info, 2, c.op, "gamma");
    NativeTensor* Bt = tensor_arg(info, 3, c.op, "beta");
    NativeTensor* Mn = tensor_arg(info, 4, c.op, "mean", true);
    NativeTensor* Rs = tensor_arg(info, 5, c.op, "rstd", true);
    int64_t R = get_i64(info, 6, "R"), C = get_i64(info, 7, "C");
    float eps = float(get_f64(info, 8, "eps"));
    if (R < 0 || C < 1) fail("layernorm: bad sizes R=", R, " C=", C);
    DType dt = Y->dtype;
    void* py = c.use(Y, "y", R * C, dt);
    const void* px = c.use(X, "x", R * C, dt);
    const void* pg = c.use(G, "gamma", C, dt);
    const void* pb = c.use(Bt, "beta", C, dt);
    float* pm = static_cast<float*>(c.use(Mn, "mean", R, DType::F32));
    float* pr = static_cast<float*>(c.use(Rs, "rstd", R, DType::F32));
    c.run([=](const cpu::Ctx& x) { cpu::layernorm(x, dt, px, pg, pb, py, pm, pr, R, C, eps); },
          CUDA_CALL(cuda::layernorm(s, dt, px, pg, pb, py, pm, pr, R, C, eps)));
    return info.Env().Undefined();
  });
}

// rmsnorm(y, x, w, rstd|null, R, C, eps)
Napi::Value OpRmsnorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("rmsnorm");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    NativeTensor* W = tensor_arg(info, 2, c.op, "weight");
    NativeTensor* Rs = tensor_arg(info, 3, c.op, "rstd", true);
    int64_t R = get_i64(info, 4, "R"), C = get_i64(info, 5, "C");
    float eps = float(get_f64(info, 6, "eps"));
    if (R < 0 || C < 1) fail("rmsnorm: bad sizes R=", R, " C=", C);
    DType dt = Y->dtype;
    void* py = c.use(Y, "y", R * C, dt);
    const void* px = c.use(X, "x", R * C, dt);
    const void* pw = c.use(W, "weight", C, dt);
    float* pr = static_cast<float*>(c.use(Rs, "rstd", R, DType::F32));
    c.run([=](const cpu::Ctx& x) { cpu::rmsnorm(x, dt, px, pw, py, pr, R, C, eps); },
          CUDA_CALL(cuda::rmsnorm(s, dt, px, pw, py, pr, R, C, eps)));
    return info.Env().Undefined();
  });
}

// gelu(y, x, n)
Napi::Value OpGelu(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("gelu");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    int64_t n = get_i64(info, 2, "n");
    DType dt = Y->dtype;
    void* py = c.use(Y, "y", n, dt);
    const void* px = c.use(X, "x", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::gelu(x, dt, px, py, n); }, CUDA_CALL(cuda::gelu(s, dt, px, py, n)));
    return info.Env().Undefined();
  });
}

// siluGate(y, gate, up, R, F, inStride)
Napi::Value OpSiluGate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("siluGate");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* G = tensor_arg(info, 1, c.op, "gate");
    NativeTensor* U = tensor_arg(info, 2, c.op, "up");
    int64_t R = get_i64(info, 3, "R"), F = get_i64(info, 4, "F"), st = get_i64(info, 5, "inStride");
    if (R < 0 || F < 1 || st < F) fail("siluGate: bad sizes R=", R, " F=", F, " inStride=", st);
    DType dt = Y->dtype;
    int64_t reach = R ? (R - 1) * st + F : 0;
    void* py = c.use(Y, "y", R * F, dt);
    const void* pg = c.use(G, "gate", reach, dt);
    const void* pu = c.use(U, "up", reach, dt);
    c.run([=](const cpu::Ctx& x) { cpu::silu_gate(x, dt, pg, pu, py, R, F, st); },
          CUDA_CALL(cuda::silu_gate(s, dt, pg, pu, py, R, F, st)));
    return info.Env().Undefined();
  });
}

// rope(x, pos, R, H, D, tstride, rotDim, theta)
Napi::Value OpRope(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("rope");
    NativeTensor* X = tensor_arg(info, 0, c.op, "x");
    NativeTensor* P = tensor_arg(info, 1, c.op, "pos");
    int64_t R = get_i64(info, 2, "R");
    int H = int(get_i64(info, 3, "H")), D = int(get_i64(info, 4, "D"));
    int64_t st = get_i64(info, 5, "tstride");
    int rot = int(get_i64(info, 6, "rotDim"));
    float theta = float(get_f64(info, 7, "theta"));
    if (R < 0 || H < 1 || D < 2 || rot < 2 || rot > D || rot % 2 || st < int64_t(H) * D)
      fail("rope: bad sizes R=", R, " H=", H, " D=", D, " rotDim=", rot, " tstride=", st);
    DType dt = X->dtype;
    void* px = c.use(X, "x", R ? (R - 1) * st + int64_t(H) * D : 0, dt);
    const int32_t* pp = static_cast<const int32_t*>(c.use(P, "pos", R, DType::I32));
    c.run([=](const cpu::Ctx& x) { cpu::rope(x, dt, px, pp, R, H, D, st, rot, theta); },
          CUDA_CALL(cuda::rope(s, dt, px, pp, R, H, D, st, rot, theta)));
    return info.Env().Undefined();
  });
}

// embedding(out, ids, table, N, V, C)
Napi::Value OpEmbedding(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("embedding");
    NativeTensor* O = tensor_arg(info, 0, c.op, "out");
    NativeTensor* I = tensor_arg(info, 1, c.op, "ids");
    NativeTensor* T = tensor_arg(info, 2, c.op, "table");
    int64_t N = get_i64(info, 3, "N"), V = get_i64(info, 4, "V"), C = get_i64(info, 5, "C");
    if (N < 0 || V < 1 || C < 1) fail("embedding: bad sizes N=", N, " V=", V, " C=", C);
    DType dt = O->dtype;
    void* po = c.use(O, "out", N * C, dt);
    const int32_t* pi = static_cast<const int32_t*>(c.use(I, "ids", N, DType::I32));
    const void* pt = c.use(T, "table", V * C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::embedding(x, dt, pi, pt, po, N, V, C); },
          CUDA_CALL(cuda::embedding(s, dt, pi, pt, po, N, V, C)));
    return info.Env().Undefined();
  });
}

// add(y, a, b, n, bPeriod)
Napi::Value OpAdd(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("add");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* A = tensor_arg(info, 1, c.op, "a");
    NativeTensor* Bt = tensor_arg(info, 2, c.op, "b");
    int64_t n = get_i64(info, 3, "n"), per = get_i64(info, 4, "bPeriod");
    if (n < 0 || per < 1) fail("add: bad sizes n=", n, " bPeriod=", per);
    DType dt = Y->dtype;
    void* py = c.use(Y, "y", n, dt);
    const void* pa = c.use(A, "a", n, dt);
    const void* pb = c.use(Bt, "b", per, dt);
    c.run([=](const cpu::Ctx& x) { cpu::add(x, dt, pa, pb, py, n, per); },
          CUDA_CALL(cuda::add(s, dt, pa, pb, py, n, per)));
    return info.Env().Undefined();
  });
}

// cast(y, x, n)
Napi::Value OpCast(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("cast");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    int64_t n = get_i64(info, 2, "n");
    DType dy = Y->dtype, dx = X->dtype;
    if (!is_float(dy) || !is_float(dx)) fail("cast: only between f32, bf16 and f16");
    void* py = c.use(Y, "y", n, dy);
    const void* px = c.use(X, "x", n, dx);
    c.run([=](const cpu::Ctx& x) { cpu::cast(x, dx, px, dy, py, n); }, CUDA_CALL(cuda::cast(s, dx, px, dy, py, n)));
    return info.Env().Undefined();
  });
}

// softmax(y, x, R, C, scale)
Napi::Value OpSoftmax(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("softmax");
    NativeTensor* Y = tensor_arg(info, 0, c.op, "y");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    int64_t R = get_i64(info, 2, "R"), C = get_i64(info, 3, "C");
    float scale = float(get_f64(info, 4, "scale"));
    if (R < 0 || C < 1) fail("softmax: bad sizes R=", R, " C=", C);
    DType dt = Y->dtype;
    void* py = c.use(Y, "y", R * C, dt);
    const void* px = c.use(X, "x", R * C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::softmax(x, dt, px, py, R, C, scale); },
          CUDA_CALL(cuda::softmax(s, dt, px, py, R, C, scale)));
    return info.Env().Undefined();
  });
}

// argmax(out, x, R, C)
Napi::Value OpArgmax(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("argmax");
    NativeTensor* O = tensor_arg(info, 0, c.op, "out");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    int64_t R = get_i64(info, 2, "R"), C = get_i64(info, 3, "C");
    if (R < 0 || C < 1) fail("argmax: bad sizes R=", R, " C=", C);
    DType dt = X->dtype;
    int32_t* po = static_cast<int32_t*>(c.use(O, "out", R, DType::I32));
    const void* px = c.use(X, "x", R * C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::argmax(x, dt, px, po, R, C); }, CUDA_CALL(cuda::argmax(s, dt, px, po, R, C)));
    return info.Env().Undefined();
  });
}

// sample(out, logits, offsets|null, R, V, temperature, topK, topP, seedHi, seedLo)
Napi::Value OpSample(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("sample");
    NativeTensor* O = tensor_arg(info, 0, c.op, "out");
    NativeTensor* X = tensor_arg(info, 1, c.op, "logits");
    NativeTensor* Off = tensor_arg(info, 2, c.op, "offsets", true);
    int64_t R = get_i64(info, 3, "R"), V = get_i64(info, 4, "V");
    float temp = float(get_f64(info, 5, "temperature"));
    int topk = int(get_i64(info, 6, "topK"));
    float topp = float(get_f64(info, 7, "topP"));
    uint64_t seed = (uint64_t(uint32_t(get_i64(info, 8, "seed high"))) << 32) | uint32_t(get_i64(info, 9, "seed low"));
    if (R < 0 || V < 1 || topk < 0 || !(topp > 0 && topp <= 1))
      fail("sample: bad arguments R=", R, " V=", V, " topK=", topk, " topP=", topp);
    DType dt = X->dtype;
    int32_t* po = static_cast<int32_t*>(c.use(O, "out", R, DType::I32));
    const void* px = c.use(X, "logits", R * V, dt);
    const int32_t* poff = static_cast<const int32_t*>(c.use(Off, "offsets", R, DType::I32));
    c.run([=](const cpu::Ctx& x) { cpu::sample(x, dt, px, po, R, V, temp, topk, topp, seed, poff); },
          CUDA_CALL(cuda::sample(s, dt, px, po, R, V, temp, topk, topp, seed, poff)));
    return info.Env().Undefined();
  });
}

// fillUniform(out, n, seedHi, seedLo, low, high)
Napi::Value OpFillUniform(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("fillUniform");
    NativeTensor* O = tensor_arg(info, 0, c.op, "out");
    int64_t n = get_i64(info, 1, "n");
    uint64_t seed = (uint64_t(uint32_t(get_i64(info, 2, "seed high"))) << 32) | uint32_t(get_i64(info, 3, "seed low"));
    float low = float(get_f64(info, 4, "low")), high = float(get_f64(info, 5, "high"));
    DType dt = O->dtype;
    if (!is_float(dt)) fail("fillUniform: dtype must be f32, bf16 or f16, got ", dtype_name(dt));
    void* po = c.use(O, "out", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::fill_uniform(x, dt, po, n, seed, low, high); },
          CUDA_CALL(cuda::fill_uniform(s, dt, po, n, seed, low, high)));
    return info.Env().Undefined();
  });
}

// ---- training ops
// Backward kernels, the fused classifier and the optimizer (native/core/kernels.h, section "training").
// Arguments follow the kernel's order; "+=" gradients are read as well as written.

// sumRows(x, out, R, C, accumulate)
Napi::Value OpSumRows(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("sumRows");
    NativeTensor* X = tensor_arg(info, 0, c.op, "x");
    NativeTensor* O = tensor_arg(info, 1, c.op, "out");
    int64_t R = get_i64(info, 2, "R"), C = get_i64(info, 3, "C");
    bool acc = get_bool(info, 4);
    if (R < 0 || C < 1) fail("sumRows: bad sizes R=", R, " C=", C);
    DType dt = O->dtype;
    const void* px = c.use(X, "x", R * C, dt);
    void* po = c.use(O, "out", C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::sum_rows(x, dt, px, po, R, C, acc); },
          CUDA_CALL(cuda::sum_rows(s, dt, px, po, R, C, acc)));
    return info.Env().Undefined();
  });
}

// layernormBackward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, R, C)
Napi::Value OpLayernormBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("layernormBackward");
    NativeTensor* Dy = tensor_arg(info, 0, c.op, "dy");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    NativeTensor* G = tensor_arg(info, 2, c.op, "gamma");
    NativeTensor* Mn = tensor_arg(info, 3, c.op, "mean");
    NativeTensor* Rs = tensor_arg(info, 4, c.op, "rstd");
    NativeTensor* Dx = tensor_arg(info, 5, c.op, "dx");
    NativeTensor* Dg = tensor_arg(info, 6, c.op, "dgamma");
    NativeTensor* Db = tensor_arg(info, 7, c.op, "dbeta");
    int64_t R = get_i64(info, 8, "R"), C = get_i64(info, 9, "C");
    if (R < 0 || C < 1) fail("layernormBackward: bad sizes R=", R, " C=", C);
    DType dt = Dy->dtype;
    const void* pdy = c.use(Dy, "dy", R * C, dt);
    const void* px = c.use(X, "x", R * C, dt);
    const void* pg = c.use(G, "gamma", C, dt);
    const float* pm = static_cast<const float*>(c.use(Mn, "mean", R, DType::F32));
    const float* pr = static_cast<const float*>(c.use(Rs, "rstd", R, DType::F32));
    void* pdx = c.use(Dx, "dx", R * C, dt);
    void* pdg = c.use(Dg, "dgamma", C, dt);
    void* pdb = c.use(Db, "dbeta", C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::layernorm_backward(x, dt, pdy, px, pg, pm, pr, pdx, pdg, pdb, R, C); },
          CUDA_CALL(cuda::layernorm_backward(s, dt, pdy, px, pg, pm, pr, pdx, pdg, pdb, R, C)));
    return info.Env().Undefined();
  });
}

// rmsnormBackward(dy, x, w, rstd, dx, dw, R, C)
Napi::Value OpRmsnormBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("rmsnormBackward");
    NativeTensor* Dy = tensor_arg(info, 0, c.op, "dy");
    NativeTensor* X = tensor_arg(info, 1, c.op, "x");
    NativeTensor* W = tensor_arg(info, 2, c.op, "weight");
    NativeTensor* Rs = tensor_arg(info, 3, c.op, "rstd");
    NativeTensor* Dx = tensor_arg(info, 4, c.op, "dx");
    NativeTensor* Dw = tensor_arg(info, 5, c.op, "dw");
    int64_t R = get_i64(info, 6, "R"), C = get_i64(info, 7, "C");
    if (R < 0 || C < 1) fail("rmsnormBackward: bad sizes R=", R, " C=", C);
    DType dt = Dy->dtype;
    const void* pdy = c.use(Dy, "dy", R * C, dt);
    const void* px = c.use(X, "x", R * C, dt);
    const void* pw = c.use(W, "weight", C, dt);
    const float* pr = static_cast<const float*>(c.use(Rs, "rstd", R, DType::F32));
    void* pdx = c.use(Dx, "dx", R * C, dt);
    void* pdw = c.use(Dw, "dw", C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::rmsnorm_backward(x, dt, pdy, px, pw, pr, pdx, pdw, R, C); },
          CUDA_CALL(cuda::rmsnorm_backward(s, dt, pdy, px, pw, pr, pdx, pdw, R, C)));
    return info.Env().Undefined();
  });
}

// geluBackward(x, dy, dx, n)
Napi::Value OpGeluBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("geluBackward");
    NativeTensor* X = tensor_arg(info, 0, c.op, "x");
    NativeTensor* Dy = tensor_arg(info, 1, c.op, "dy");
    NativeTensor* Dx = tensor_arg(info, 2, c.op, "dx");
    int64_t n = get_i64(info, 3, "n");
    if (n < 0) fail("geluBackward: bad size n=", n);
    DType dt = X->dtype;
    const void* px = c.use(X, "x", n, dt);
    const void* pdy = c.use(Dy, "dy", n, dt);
    void* pdx = c.use(Dx, "dx", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::gelu_backward(x, dt, px, pdy, pdx, n); },
          CUDA_CALL(cuda::gelu_backward(s, dt, px, pdy, pdx, n)));
    return info.Env().Undefined();
  });
}

// siluGateBackward(gate, up, dy, dgate, dup, R, F, inStride)
Napi::Value OpSiluGateBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("siluGateBackward");
    NativeTensor* G = tensor_arg(info, 0, c.op, "gate");
    NativeTensor* U = tensor_arg(info, 1, c.op, "up");
    NativeTensor* Dy = tensor_arg(info, 2, c.op, "dy");
    NativeTensor* Dg = tensor_arg(info, 3, c.op, "dgate");
    NativeTensor* Du = tensor_arg(info, 4, c.op, "dup");
    int64_t R = get_i64(info, 5, "R"), F = get_i64(info, 6, "F"), st = get_i64(info, 7, "inStride");
    if (R < 0 || F < 1 || st < F) fail("siluGateBackward: bad sizes R=", R, " F=", F, " inStride=", st);
    DType dt = G->dtype;
    int64_t reach = R ? (R - 1) * st + F : 0;
    const void* pg = c.use(G, "gate", reach, dt);
    const void* pu = c.use(U, "up", reach, dt);
    const void* pdy = c.use(Dy, "dy", R * F, dt);
    void* pdg = c.use(Dg, "dgate", reach, dt);
    void* pdu = c.use(Du, "dup", reach, dt);
    c.run([=](const cpu::Ctx& x) { cpu::silu_gate_backward(x, dt, pg, pu, pdy, pdg, pdu, R, F, st); },
          CUDA_CALL(cuda::silu_gate_backward(s, dt, pg, pu, pdy, pdg, pdu, R, F, st)));
    return info.Env().Undefined();
  });
}

// ropeBackward(dx, pos, R, H, D, tstride, rotDim, theta)
Napi::Value OpRopeBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("ropeBackward");
    NativeTensor* X = tensor_arg(info, 0, c.op, "dx");
    NativeTensor* P = tensor_arg(info, 1, c.op, "pos");
    int64_t R = get_i64(info, 2, "R");
    int H = int(get_i64(info, 3, "H")), D = int(get_i64(info, 4, "D"));
    int64_t st = get_i64(info, 5, "tstride");
    int rot = int(get_i64(info, 6, "rotDim"));
    float theta = float(get_f64(info, 7, "theta"));
    if (R < 0 || H < 1 || D < 2 || rot < 2 || rot > D || rot % 2 || st < int64_t(H) * D)
      fail("ropeBackward: bad sizes R=", R, " H=", H, " D=", D, " rotDim=", rot, " tstride=", st);
    DType dt = X->dtype;
    void* px = c.use(X, "dx", R ? (R - 1) * st + int64_t(H) * D : 0, dt);
    const int32_t* pp = static_cast<const int32_t*>(c.use(P, "pos", R, DType::I32));
    c.run([=](const cpu::Ctx& x) { cpu::rope_backward(x, dt, px, pp, R, H, D, st, rot, theta); },
          CUDA_CALL(cuda::rope_backward(s, dt, px, pp, R, H, D, st, rot, theta)));
    return info.Env().Undefined();
  });
}

// attentionForward(q, k, v, out, lse, B, T, Hq, Hkv, D, qB, qT, kvB, kvT, scale)
Napi::Value OpAttentionForward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("attentionForward");
    NativeTensor* Q = tensor_arg(info, 0, c.op, "q");
    NativeTensor* Kt = tensor_arg(info, 1, c.op, "k");
    NativeTensor* V = tensor_arg(info, 2, c.op, "v");
    NativeTensor* O = tensor_arg(info, 3, c.op, "out");
    NativeTensor* L = tensor_arg(info, 4, c.op, "lse");
    int B = int(get_i64(info, 5, "B")), T = int(get_i64(info, 6, "T"));
    int Hq = int(get_i64(info, 7, "Hq")), Hkv = int(get_i64(info, 8, "Hkv")), D = int(get_i64(info, 9, "D"));
    int64_t qB = get_i64(info, 10, "q batch stride"), qT = get_i64(info, 11, "q token stride");
    int64_t kB = get_i64(info, 12, "kv batch stride"), kT = get_i64(info, 13, "kv token stride");
    float scale = float(get_f64(info, 14, "scale"));
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1)
      fail("attentionForward: bad sizes B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
    DType dt = O->dtype;
    const void* pq = c.use(Q, "q", (B - 1) * qB + (T - 1) * qT + int64_t(Hq) * D, dt);
    const void* pk = c.use(Kt, "k", (B - 1) * kB + (T - 1) * kT + int64_t(Hkv) * D, dt);
    const void* pv = c.use(V, "v", (B - 1) * kB + (T - 1) * kT + int64_t(Hkv) * D, dt);
    void* po = c.use(O, "out", int64_t(B) * T * Hq * D, dt);
    float* pl = static_cast<float*>(c.use(L, "lse", int64_t(B) * Hq * T, DType::F32));
    c.run([=](const cpu::Ctx& x) { cpu::attention_forward(x, dt, pq, pk, pv, po, pl, B, T, Hq, Hkv, D, qB, qT, kB, kT, scale); },
          CUDA_CALL(cuda::attention_forward(s, dt, pq, pk, pv, po, pl, B, T, Hq, Hkv, D, qB, qT, kB, kT, scale)));
    return info.Env().Undefined();
  });
}

// attentionBackward(q, k, v, out, dout, lse, dq, dk, dv, workspace, B, T, Hq, Hkv, D, qB, qT, kvB, kvT, scale)
Napi::Value OpAttentionBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("attentionBackward");
    NativeTensor* Q = tensor_arg(info, 0, c.op, "q");
    NativeTensor* Kt = tensor_arg(info, 1, c.op, "k");
    NativeTensor* V = tensor_arg(info, 2, c.op, "v");
    NativeTensor* O = tensor_arg(info, 3, c.op, "out");
    NativeTensor* dO = tensor_arg(info, 4, c.op, "dout");
    NativeTensor* L = tensor_arg(info, 5, c.op, "lse");
    NativeTensor* dQ = tensor_arg(info, 6, c.op, "dq");
    NativeTensor* dK = tensor_arg(info, 7, c.op, "dk");
    NativeTensor* dV = tensor_arg(info, 8, c.op, "dv");
    NativeTensor* Ws = tensor_arg(info, 9, c.op, "workspace");
    int B = int(get_i64(info, 10, "B")), T = int(get_i64(info, 11, "T"));
    int Hq = int(get_i64(info, 12, "Hq")), Hkv = int(get_i64(info, 13, "Hkv")), D = int(get_i64(info, 14, "D"));
    int64_t qB = get_i64(info, 15, "q batch stride"), qT = get_i64(info, 16, "q token stride");
    int64_t kB = get_i64(info, 17, "kv batch stride"), kT = get_i64(info, 18, "kv token stride");
    float scale = float(get_f64(info, 19, "scale"));
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1)
      fail("attentionBackward: bad sizes B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
    DType dt = O->dtype;
    const int64_t qReach = (B - 1) * qB + (T - 1) * qT + int64_t(Hq) * D;
    const int64_t kvReach = (B - 1) * kB + (T - 1) * kT + int64_t(Hkv) * D;
    const int64_t outN = int64_t(B) * T * Hq * D;
    const void* pq = c.use(Q, "q", qReach, dt);
    const void* pk = c.use(Kt, "k", kvReach, dt);
    const void* pv = c.use(V, "v", kvReach, dt);
    const void* po = c.use(O, "out", outN, dt);
    const void* pdo = c.use(dO, "dout", outN, dt);
    const float* pl = static_cast<const float*>(c.use(L, "lse", int64_t(B) * Hq * T, DType::F32));
    void* pdq = c.use(dQ, "dq", qReach, dt);
    void* pdk = c.use(dK, "dk", kvReach, dt);
    void* pdv = c.use(dV, "dv", kvReach, dt);
    float* pw = static_cast<float*>(c.use(Ws, "workspace", cpu::attention_backward_workspace(B, T, Hq, D), DType::F32));
    c.run([=](const cpu::Ctx& x) {
            cpu::attention_backward(x, dt, pq, pk, pv, po, pdo, pl, pdq, pdk, pdv, pw, B, T, Hq, Hkv, D, qB, qT, kB, kT, scale);
          },
          CUDA_CALL(cuda::attention_backward(s, dt, pq, pk, pv, po, pdo, pl, pdq, pdk, pdv, pw, B, T, Hq, Hkv, D, qB, qT,
                                             kB, kT, scale)));
    return info.Env().Undefined();
  });
}

// embeddingBackward(ids, dout, dtable, N, V, C)
Napi::Value OpEmbeddingBackward(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("embeddingBackward");
    NativeTensor* I = tensor_arg(info, 0, c.op, "ids");
    NativeTensor* dO = tensor_arg(info, 1, c.op, "dout");
    NativeTensor* dT = tensor_arg(info, 2, c.op, "dtable");
    int64_t N = get_i64(info, 3, "N"), V = get_i64(info, 4, "V"), C = get_i64(info, 5, "C");
    if (N < 0 || V < 1 || C < 1) fail("embeddingBackward: bad sizes N=", N, " V=", V, " C=", C);
    DType dt = dT->dtype;
    const int32_t* pi = static_cast<const int32_t*>(c.use(I, "ids", N, DType::I32));
    const void* pd = c.use(dO, "dout", N * C, dt);
    void* pt = c.use(dT, "dtable", V * C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::embedding_backward(x, dt, pi, pd, pt, N, V, C); },
          CUDA_CALL(cuda::embedding_backward(s, dt, pi, pd, pt, N, V, C)));
    return info.Env().Undefined();
  });
}

// crossEntropy(logits, targets, losses, dlogits|null, R, V, ignoreIndex, dscale); dlogits may be logits.
Napi::Value OpCrossEntropy(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("crossEntropy");
    NativeTensor* X = tensor_arg(info, 0, c.op, "logits");
    NativeTensor* Tg = tensor_arg(info, 1, c.op, "targets");
    NativeTensor* Ls = tensor_arg(info, 2, c.op, "losses");
    NativeTensor* dX = tensor_arg(info, 3, c.op, "dlogits", true);
    int64_t R = get_i64(info, 4, "R"), V = get_i64(info, 5, "V");
    int64_t ign = get_i64(info, 6, "ignoreIndex");
    float dscale = float(get_f64(info, 7, "dscale"));
    if (R < 0 || V < 1 || ign < INT32_MIN || ign > INT32_MAX)
      fail("crossEntropy: bad sizes R=", R, " V=", V, " ignoreIndex=", ign);
    DType dt = X->dtype;
    const void* px = c.use(X, "logits", R * V, dt);
    const int32_t* pt = static_cast<const int32_t*>(c.use(Tg, "targets", R, DType::I32));
    float* pl = static_cast<float*>(c.use(Ls, "losses", R, DType::F32));
    void* pd = c.use(dX, "dlogits", R * V, dt);
    c.run([=](const cpu::Ctx& x) { cpu::cross_entropy(x, dt, px, pt, pl, pd, R, V, int(ign), dscale); },
          CUDA_CALL(cuda::cross_entropy(s, dt, px, pt, pl, pd, R, V, int(ign), dscale)));
    return info.Env().Undefined();
  });
}

// sumSquares(x, out, n)
Napi::Value OpSumSquares(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("sumSquares");
    NativeTensor* X = tensor_arg(info, 0, c.op, "x");
    NativeTensor* O = tensor_arg(info, 1, c.op, "out");
    int64_t n = get_i64(info, 2, "n");
    if (n < 0) fail("sumSquares: bad size n=", n);
    DType dt = X->dtype;
    const void* px = c.use(X, "x", n, dt);
    float* po = static_cast<float*>(c.use(O, "out", 1, DType::F32));
    c.run([=](const cpu::Ctx& x) { cpu::sum_squares(x, dt, px, po, n); },
          CUDA_CALL(cuda::sum_squares(s, dt, px, po, n)));
    return info.Env().Undefined();
  });
}

// adamw(master, param|null, grad, m, v, n, nDecay, lr, beta1, beta2, eps, weightDecay, gradScale, step)
Napi::Value OpAdamw(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c("adamw");
    NativeTensor* Ms = tensor_arg(info, 0, c.op, "master");
    NativeTensor* P = tensor_arg(info, 1, c.op, "param", true);
    NativeTensor* G = tensor_arg(info, 2, c.op, "grad");
    NativeTensor* M = tensor_arg(info, 3, c.op, "m");
    NativeTensor* Vt = tensor_arg(info, 4, c.op, "v");
    int64_t n = get_i64(info, 5, "n"), nd = get_i64(info, 6, "nDecay");
    float lr = float(get_f64(info, 7, "lr")), b1 = float(get_f64(info, 8, "beta1")), b2 = float(get_f64(info, 9, "beta2"));
    float eps = float(get_f64(info, 10, "eps")), wd = float(get_f64(info, 11, "weightDecay"));
    float gs = float(get_f64(info, 12, "gradScale"));
    int64_t step = get_i64(info, 13, "step");
    if (n < 0 || nd < 0 || nd > n || step < 1 || step > INT32_MAX)
      fail("adamw: bad sizes n=", n, " nDecay=", nd, " step=", step);
    DType dt = G->dtype;
    float* pms = static_cast<float*>(c.use(Ms, "master", n, DType::F32));
    void* pp = c.use(P, "param", n, dt);
    const void* pg = c.use(G, "grad", n, dt);
    float* pm = static_cast<float*>(c.use(M, "m", n, DType::F32));
    float* pv = static_cast<float*>(c.use(Vt, "v", n, DType::F32));
    int st = int(step);
    c.run([=](const cpu::Ctx& x) { cpu::adamw(x, dt, pms, pp, pg, pm, pv, n, nd, lr, b1, b2, eps, wd, gs, st); },
          CUDA_CALL(cuda::adamw(s, dt, pms, pp, pg, pm, pv, n, nd, lr, b1, b2, eps, wd, gs, st)));
    return info.Env().Undefined();
  });
}

// ---- end of training ops

// ------------------------------------------------------------ communicators (native/comm)
// One rank per worker thread. CPU collectives block the calling thread until every rank has taken part
// (bounded by the communicator's timeout); NCCL ones are queued on the device's current stream.

class NativeComm : public Napi::ObjectWrap<NativeComm> {
 public:
  std::shared_ptr<Communicator> comm;
  int rank = 0, world = 1;
  DeviceId dev;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeComm",
                       {InstanceMethod<&NativeComm::AllReduce>("allReduce"),
                        InstanceMethod<&NativeComm::Broadcast>("broadcast"),
                        InstanceMethod<&NativeComm::AllGather>("allGather"),
                        InstanceMethod<&NativeComm::Send>("send"), InstanceMethod<&NativeComm::Recv>("recv"),
                        InstanceMethod<&NativeComm::Barrier>("barrier"), InstanceMethod<&NativeComm::Abort>("abort"),
                        InstanceMethod<&NativeComm::GroupStart>("groupStart"),
                        InstanceMethod<&NativeComm::GroupEnd>("groupEnd"),
                        InstanceMethod<&NativeComm::Destroy>("destroy"), InstanceAccessor<&NativeComm::Rank>("rank"),
                        InstanceAccessor<&NativeComm::World>("world"),
                        InstanceAccessor<&NativeComm::Device>("device")});
  }
  explicit NativeComm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeComm>(info) {}

 private:
  // "allReduce on rank 1 of 2 (cpu:1)": errors about the arguments name the rank and device too.
  std::string label(const char* op) const {
    return std::string(op) + " on rank " + std::to_string(rank) + " of " + std::to_string(world) + " (" + dev.str() + ")";
  }
  Communicator& live(const std::string& op) {
    if (!comm) fail(op, ": the communicator has been destroyed");
    return *comm;
  }
  // A live tensor on the communicator's device (kept by a graph being captured, as kernels do).
  NativeTensor* tensor(const Napi::CallbackInfo& info, size_t i, const std::string& op, const char* name) {
    NativeTensor* t = tensor_arg(info, i, op.c_str(), name);
    if (t->dev != dev) fail(op, ": ", name, " is on ", t->dev.str(), " but the communicator is on ", dev.str());
    if (capturing(t->dev)) capture_keep(t->dev, t->block);
    return t;
  }
  int peer_arg(const Napi::CallbackInfo& info, size_t i, const std::string& op, const char* what) {
    int64_t p = get_i64(info, i, what);
    if (p < 0 || p >= world) fail(op, ": ", what, " ", p, " is not a rank (0..", world - 1, ")");
    return int(p);
  }

  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("allReduce");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      std::string how = info.Length() > 1 && !info[1].IsUndefined() ? get_str(info, 1, "allReduce op") : "sum";
      if (how != "sum" && how != "avg") fail(op, ": op must be 'sum' or 'avg', got '", how, "'");
      c.all_reduce(t->ptr(), t->numel(), t->dtype, how == "avg" ? ReduceOp::Avg : ReduceOp::Sum);
      return info.Env().Undefined();
    });
  }
  Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("broadcast");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      c.broadcast(t->ptr(), t->numel(), t->dtype, peer_arg(info, 1, op, "root"));
      return info.Env().Undefined();
    });
  }
  // allGather(out, in): out holds world * in.numel elements, rank r's `in` at r * in.numel.
  Napi::Value AllGather(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("allGather");
      Communicator& c = live(op);
      NativeTensor* out = tensor(info, 0, op, "out");
      NativeTensor* in = tensor(info, 1, op, "in");
      if (out->dtype != in->dtype)
        fail(op, ": out is ", dtype_name(out->dtype), " but in is ", dtype_name(in->dtype));
      if (out->numel() != in->numel() * world)
        fail(op, ": out has ", out->numel(), " elements; it needs world x in = ", world, " x ", in->numel(), " = ",
             in->numel() * world);
      c.all_gather(in->ptr(), out->ptr(), in->numel(), in->dtype);
      return info.Env().Undefined();
    });
  }
  Napi::Value Send(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("send");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      c.send(t->ptr(), t->numel(), t->dtype, peer_arg(info, 1, op, "peer"));
      return info.Env().Undefined();
    });
  }
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("recv");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      c.recv(t->ptr(), t->numel(), t->dtype, peer_arg(info, 1, op, "peer"));
      return info.Env().Undefined();
    });
  }
  Napi::Value GroupStart(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      live(label("groupStart")).group_start();
      return info.Env().Undefined();
    });
  }
  Napi::Value GroupEnd(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      live(label("groupEnd")).group_end();
      return info.Env().Undefined();
    });
  }
  Napi::Value Barrier(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      live(label("barrier")).barrier();
      return info.Env().Undefined();
    });
  }
  // abort(): peers fail at once; this object stays, its calls fail. destroy(): also frees it now
  // (a CPU rank's destruction is an abort to its peers that are still waiting).
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (comm) comm->abort();
      return info.Env().Undefined();
    });
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      comm.reset();
      return info.Env().Undefined();
    });
  }
  Napi::Value Rank(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rank); }
  Napi::Value World(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), world); }
  Napi::Value Device(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dev.str()); }
};

// ncclAvailable(): {ok, version} or {ok: false, error}.
Napi::Value NcclAvailable(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    int version = 0;
    std::string error;
    bool ok = nccl::available(&version, &error);
    if (ok && !cuda_compiled()) {
      ok = false;
      error = "NCCL " + std::to_string(version) + " was found but this build has no CUDA backend";
    }
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("ok", ok);
    if (version) o.Set("version", version);
    if (!ok) o.Set("error", error);
    return o;
  });
}

// ncclUniqueId(): the 128 bytes every rank of a new NCCL communicator is given.
Napi::Value NcclUniqueId(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::string id = nccl_unique_id();
    Napi::Uint8Array a = Napi::Uint8Array::New(info.Env(), id.size());
    std::memcpy(a.Data(), id.data(), id.size());
    return a;
  });
}

// commCreate(kind 'cpu'|'nccl', id string|Uint8Array, rank, world, device, timeoutMs). The NativeComm
// constructor comes as the function's data (one per env: each worker thread has its own).
Napi::Value CommCreate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::string kind = get_str(info, 0, "commCreate: kind");
    int64_t rank = get_i64(info, 2, "commCreate: rank"), world = get_i64(info, 3, "commCreate: world");
    if (world < 1 || world > 4096 || rank < 0 || rank >= world)
      fail("commCreate: rank ", rank, " of world ", world, " (need 0 <= rank < world <= 4096)");
    DeviceId dev = parse_device(get_str(info, 4, "commCreate: device"));
    int64_t timeout = info.Length() > 5 && !info[5].IsUndefined() ? get_i64(info, 5, "commCreate: timeoutMs") : 60000;
    std::shared_ptr<Communicator> c;
    if (kind == "cpu") {
      c = make_cpu_communicator(get_str(info, 1, "commCreate: a CPU communicator's id"), int(rank), int(world), dev,
                                timeout);
    } else if (kind == "nccl") {
      if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        fail("commCreate: an NCCL communicator's id must be the Uint8Array from ncclUniqueId()");
      Napi::Uint8Array id = info[1].As<Napi::Uint8Array>();
      c = make_nccl_communicator(id.Data(), id.ByteLength(), int(rank), int(world), dev, timeout);
    } else {
      fail("commCreate: kind must be 'cpu' or 'nccl', got '", kind, "'");
    }
    Napi::Object obj = static_cast<Napi::FunctionReference*>(info.Data())->New({});
    NativeComm* w = NativeComm::Unwrap(obj);
    w->comm = std::move(c);
    w->rank = int(rank), w->world = int(world), w->dev = dev;
    return obj;
  });
}

}  // namespace

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  auto* c = new Constructors();
  c->tensor = Napi::Persistent(NativeTensor::Init(env));
  c->graph = Napi::Persistent(NativeGraph::Init(env));
  c->event = Napi::Persistent(NativeEvent::Init(env));
  c->stream = Napi::Persistent(NativeStream::Init(env));
  env.SetInstanceData<Constructors>(c);
  exports.Set("NativeTensor", c->tensor.Value());
  auto fn = [&](const char* name, Napi::Value (*f)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, f, name));
  };
  fn("empty", Empty);
  fn("devices", Devices);
  fn("deviceInfo", DeviceInfoFn);
  fn("buildInfo", BuildInfo);
  fn("configureCpuDevices", ConfigureCpu);
  fn("synchronize", Synchronize);
  fn("memoryStats", MemoryStats);
  fn("resetPeakMemory", ResetPeak);
  fn("emptyCache", EmptyCache);
  fn("matmulSplitK", MatmulSplitK);
  fn("matmulTmaStore", MatmulTmaStore);
  fn("captureBegin", CaptureBegin);
  fn("captureEnd", CaptureEnd);
  fn("eventCreate", EventCreate);
  fn("streamCreate", StreamCreate);
  fn("setStream", SetStream);
  fn("matmul", OpMatmul);
  fn("attentionPrefill", OpAttentionPrefill);
  fn("attentionDecode", OpAttentionDecode);
  fn("kvWrite", OpKvWrite);
  fn("layernorm", OpLayernorm);
  fn("rmsnorm", OpRmsnorm);
  fn("gelu", OpGelu);
  fn("siluGate", OpSiluGate);
  fn("rope", OpRope);
  fn("embedding", OpEmbedding);
  fn("add", OpAdd);
  fn("cast", OpCast);
  fn("softmax", OpSoftmax);
  fn("argmax", OpArgmax);
  fn("sample", OpSample);
  fn("fillUniform", OpFillUniform);
  // ---- training ops
  fn("sumRows", OpSumRows);
  fn("layernormBackward", OpLayernormBackward);
  fn("rmsnormBackward", OpRmsnormBackward);
  fn("geluBackward", OpGeluBackward);
  fn("siluGateBackward", OpSiluGateBackward);
  fn("ropeBackward", OpRopeBackward);
  fn("attentionForward", OpAttentionForward);
  fn("attentionBackward", OpAttentionBackward);
  fn("embeddingBackward", OpEmbeddingBackward);
  fn("crossEntropy", OpCrossEntropy);
  fn("sumSquares", OpSumSquares);
  fn("adamw", OpAdamw);
  // Communicators (native/comm).
  fn("ncclAvailable", NcclAvailable);
  fn("ncclUniqueId", NcclUniqueId);
  auto* comm_ctor = new Napi::FunctionReference(Napi::Persistent(NativeComm::Init(env)));
  Napi::Function comm_create = Napi::Function::New(env, CommCreate, "commCreate", comm_ctor);
  comm_create.AddFinalizer([](Napi::Env, Napi::FunctionReference* r) { delete r; }, comm_ctor);
  exports.Set("commCreate", comm_create);
  return exports;
}

NODE_API_MODULE(parallm, InitModule)
