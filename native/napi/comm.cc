// The communicator part of the addon (native/comm): NCCL's availability and unique ids, and NativeComm,
// one rank of a communicator.
#include <cstring>
#include <memory>

#include "comm/communicator.h"
#include "comm/nccl_api.h"
#include "core/runtime.h"
#include "napi/args.h"
#include "napi/surface.h"
#include "napi/tensor.h"

namespace parallm::napi {
namespace {

// One rank per worker thread. CPU collectives block the calling thread until every rank has taken part
// (bounded by the communicator's timeout); NCCL ones are queued on the device's current stream.

class NativeComm : public Napi::ObjectWrap<NativeComm> {
 public:
  static constexpr const char* kWhat = "a communicator";
  static Napi::FunctionReference& ctor(Constructors& c) { return c.comm; }
  Napi::ObjectReference stop;  // keeps the stop flag's memory alive (Communicator::set_stop_flag); outlives comm
  std::shared_ptr<Communicator> comm;
  int rank = 0, world = 1;
  DeviceId dev;

  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeComm",
                       {InstanceMethod<&NativeComm::AllReduce>("allReduce"),
                        InstanceMethod<&NativeComm::AllReduceAdd>("allReduceAdd"),
                        InstanceMethod<&NativeComm::AllReduceAddNorm>("allReduceAddNorm"),
                        InstanceMethod<&NativeComm::Broadcast>("broadcast"),
                        InstanceMethod<&NativeComm::AllGather>("allGather"),
                        InstanceMethod<&NativeComm::ReduceScatter>("reduceScatter"),
                        InstanceMethod<&NativeComm::Send>("send"), InstanceMethod<&NativeComm::Recv>("recv"),
                        InstanceMethod<&NativeComm::Barrier>("barrier"), InstanceMethod<&NativeComm::Drain>("drain"), InstanceMethod<&NativeComm::Abort>("abort"),
                        InstanceMethod<&NativeComm::GroupStart>("groupStart"),
                        InstanceMethod<&NativeComm::GroupEnd>("groupEnd"),
                        InstanceMethod<&NativeComm::Destroy>("destroy"), InstanceAccessor<&NativeComm::Rank>("rank"),
                        InstanceAccessor<&NativeComm::World>("world"),
                        InstanceAccessor<&NativeComm::PeerStatus>("peerAllReduce"),
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
    NativeTensor* t = tensor_arg(Args(info, op.c_str()), i, name);
    if (t->dev != dev) fail(op, ": ", name, " is on ", t->dev.str(), " but the communicator is on ", dev.str());
    if (capturing(t->dev)) capture_keep(t->dev, t->block);
    return t;
  }
  int peer_arg(const Napi::CallbackInfo& info, size_t i, const std::string& op, const char* what) {
    int64_t p = Args(info, op.c_str()).i64(i, what);
    if (p < 0 || p >= world) fail(op, ": ", what, " ", p, " is not a rank (0..", world - 1, ")");
    return int(p);
  }

  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("allReduce");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      std::string how = info.Length() > 1 && !info[1].IsUndefined() ? Args(info, op.c_str()).str(1, "op") : "sum";
      if (how != "sum" && how != "avg") fail(op, ": op must be 'sum' or 'avg', got '", how, "'");
      c.all_reduce_via(t->ptr(), t->numel(), t->dtype, how == "avg" ? ReduceOp::Avg : ReduceOp::Sum, path_arg(info, 2, op));
      return info.Env().Undefined();
    });
  }
  // allReduceAdd(t, residual, path?): residual += the sum of t over ranks in one kernel; false (nothing
  // done) where this path cannot fuse them.
  Napi::Value AllReduceAdd(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("allReduceAdd");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      NativeTensor* r = tensor(info, 1, op, "residual");
      if (r->dtype != t->dtype || r->numel() != t->numel())
        fail(op, ": residual is ", r->numel(), " x ", dtype_name(r->dtype), " but tensor is ", t->numel(), " x ",
             dtype_name(t->dtype));
      return Napi::Boolean::New(info.Env(), c.all_reduce_add(t->ptr(), r->ptr(), t->numel(), t->dtype, path_arg(info, 2, op)));
    });
  }
  // allReduceAddNorm(t, residual, normW, h, eps): residual += the sum of t over ranks, then h = rmsnorm(residual,
  // normW, eps), in one kernel; false (nothing done) where the peer path cannot take it. t, residual and h are
  // [rows, cols] alike, normW [cols].
  Napi::Value AllReduceAddNorm(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("allReduceAddNorm");
      Communicator& c = live(op);
      NativeTensor* t = tensor(info, 0, op, "tensor");
      NativeTensor* r = tensor(info, 1, op, "residual");
      NativeTensor* g = tensor(info, 2, op, "normW");
      NativeTensor* h = tensor(info, 3, op, "h");
      const double eps = Args(info, op.c_str()).f64(4, "eps");
      const int64_t cols = g->numel();
      for (NativeTensor* o : {r, h, g})
        if (o->dtype != t->dtype)
          fail(op, ": dtypes differ (tensor ", dtype_name(t->dtype), ", got ", dtype_name(o->dtype), ")");
      if (r->numel() != t->numel() || h->numel() != t->numel() || cols < 1 || t->numel() % cols != 0)
        fail(op, ": tensor ", t->numel(), ", residual ", r->numel(), " and h ", h->numel(),
             " elements must be equal rows of normW's ", cols);
      if (!(eps >= 0)) fail(op, ": eps must be >= 0, got ", eps);
      return Napi::Boolean::New(info.Env(), c.all_reduce_add_norm(t->ptr(), r->ptr(), g->ptr(), h->ptr(), t->numel() / cols,
                                                                  cols, float(eps), t->dtype));
    });
  }
  static AllReducePath path_arg(const Napi::CallbackInfo& info, size_t i, const std::string& op) {
    std::string via = info.Length() > i && !info[i].IsUndefined() ? Args(info, op.c_str()).str(i, "path") : "auto";
    if (via == "auto") return AllReducePath::Auto;
    if (via == "nccl") return AllReducePath::Nccl;
    if (via == "peer-ll") return AllReducePath::PeerLL;
    if (via == "peer-one-shot") return AllReducePath::PeerOneShot;
    if (via == "peer-two-shot") return AllReducePath::PeerTwoShot;
    fail(op, ": path must be 'auto', 'nccl', 'peer-ll', 'peer-one-shot' or 'peer-two-shot', got '", via, "'");
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
  // reduceScatter(out, in, op): in holds world * out.numel elements; out gets the reduction of every
  // rank's block `rank`. In place only as out = in's block `rank` (a view); any other overlap is refused.
  Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      std::string op = label("reduceScatter");
      Communicator& c = live(op);
      NativeTensor* out = tensor(info, 0, op, "out");
      NativeTensor* in = tensor(info, 1, op, "in");
      std::string how = info.Length() > 2 && !info[2].IsUndefined() ? Args(info, op.c_str()).str(2, "op") : "sum";
      if (how != "sum" && how != "avg") fail(op, ": op must be 'sum' or 'avg', got '", how, "'");
      if (out->dtype != in->dtype)
        fail(op, ": out is ", dtype_name(out->dtype), " but in is ", dtype_name(in->dtype));
      if (in->numel() != out->numel() * world)
        fail(op, ": in has ", in->numel(), " elements; it needs world x out = ", world, " x ", out->numel(), " = ",
             out->numel() * world);
      const size_t es = dtype_size(in->dtype);
      const char* ip = static_cast<const char*>(in->ptr());
      const char* op_ = static_cast<const char*>(out->ptr());
      const size_t ob = size_t(out->numel()) * es, ib = size_t(in->numel()) * es;
      bool overlap = ob && op_ < ip + ib && ip < op_ + ob;
      if (overlap && op_ != ip + ob * size_t(rank))
        fail(op, ": out overlaps in other than as its block ", rank, " (in place, out must be in's elements [",
             out->numel() * rank, ", ", out->numel() * (rank + 1), "))");
      c.reduce_scatter(in->ptr(), out->ptr(), out->numel(), in->dtype, how == "avg" ? ReduceOp::Avg : ReduceOp::Sum);
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
  Napi::Value Drain(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      live(label("drain")).drain();
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
  Napi::Value Rank(const Napi::CallbackInfo& info) {
    check_receiver<NativeComm>(info, "rank");
    return Napi::Number::New(info.Env(), rank);
  }
  // "" when the peer all-reduce paths are available, else why not.
  Napi::Value PeerStatus(const Napi::CallbackInfo& info) {
    check_receiver<NativeComm>(info, "peerAllReduce");
    return Napi::String::New(info.Env(), comm ? comm->peer_status() : std::string("the communicator has been destroyed"));
  }
  Napi::Value World(const Napi::CallbackInfo& info) {
    check_receiver<NativeComm>(info, "world");
    return Napi::Number::New(info.Env(), world);
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    check_receiver<NativeComm>(info, "device");
    return Napi::String::New(info.Env(), dev.str());
  }
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

// commCreate(kind 'cpu'|'tcp'|'nccl', id string|Uint8Array, rank, world, device, timeoutMs, stop?: Int32Array
// of one element over a SharedArrayBuffer: see Communicator::set_stop_flag).
Napi::Value CommCreate(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a(info, "commCreate");
    std::string kind = a.str(0, "kind");
    int64_t rank = a.i64(2, "rank"), world = a.i64(3, "world");
    if (world < 1 || world > 4096 || rank < 0 || rank >= world)
      fail("commCreate: rank ", rank, " of world ", world, " (need 0 <= rank < world <= 4096)");
    DeviceId dev = a.device(4);
    int64_t timeout = a.has(5) ? a.i64(5, "timeoutMs") : 60000;
    std::shared_ptr<Communicator> c;
    // The stop flag is checked first: a tcp communicator's setup already waits on it.
    const int32_t* stop = nullptr;
    if (a.has_value(6)) {
      if (!info[6].IsTypedArray() || info[6].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
          info[6].As<Napi::Int32Array>().ElementLength() != 1)
        fail("commCreate: the stop flag must be an Int32Array of one element (over a SharedArrayBuffer)");
      stop = info[6].As<Napi::Int32Array>().Data();
    }
    if (kind == "tcp") {
      c = make_tcp_communicator(a.str(1, "a tcp communicator's id"), int(rank), int(world), dev, timeout, stop);
    } else if (kind == "cpu") {
      c = make_cpu_communicator(a.str(1, "a CPU communicator's id"), int(rank), int(world), dev,
                                timeout);
    } else if (kind == "nccl") {
      if (info.Length() < 2 || !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
        fail("commCreate: an NCCL communicator's id must be the Uint8Array from ncclUniqueId()");
      Napi::Uint8Array id = info[1].As<Napi::Uint8Array>();
      c = make_nccl_communicator(id.Data(), id.ByteLength(), int(rank), int(world), dev, timeout);
    } else {
      fail("commCreate: kind must be 'cpu', 'tcp' or 'nccl', got '", kind, "'");
    }
    Napi::Object obj = ctors(info.Env()).comm.New({});
    NativeComm* w = NativeComm::Unwrap(obj);
    if (stop) {
      Napi::Int32Array flag = info[6].As<Napi::Int32Array>();
      c->set_stop_flag(flag.Data());
      w->stop = Napi::Persistent(flag.As<Napi::Object>());  // the flag's memory lives as long as the comm
    }
    w->comm = std::move(c);
    w->rank = int(rank), w->world = int(world), w->dev = dev;
    return obj;
  });
}

}  // namespace

void export_comm(Napi::Env env, Napi::Object exports, Constructors& c) {
  c.comm = Napi::Persistent(NativeComm::Init(env));
  export_fn(env, exports, "ncclAvailable", NcclAvailable);
  export_fn(env, exports, "ncclUniqueId", NcclUniqueId);
  export_fn(env, exports, "commCreate", CommCreate);
}

}  // namespace parallm::napi
