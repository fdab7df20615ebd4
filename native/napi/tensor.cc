// The NativeTensor class of the addon (napi/tensor.h) and the helpers ops use to take tensor arguments.
#include "napi/tensor.h"

namespace parallm::napi {

Napi::Function NativeTensor::Init(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {InstanceAccessor<&NativeTensor::Device>("device"), InstanceAccessor<&NativeTensor::Dtype>("dtype"),
                      InstanceAccessor<&NativeTensor::Shape>("shape"), InstanceAccessor<&NativeTensor::Nbytes>("nbytes"),
                      InstanceAccessor<&NativeTensor::Disposed>("disposed"),
                      InstanceMethod<&NativeTensor::Dispose>("dispose"), InstanceMethod<&NativeTensor::ToHost>("toHost"),
                      InstanceMethod<&NativeTensor::ReadBegin>("readBegin"),
                      InstanceMethod<&NativeTensor::WriteHost>("writeHost"),
                      InstanceMethod<&NativeTensor::CopyFrom>("copyFrom"), InstanceMethod<&NativeTensor::View>("view")});
}

Napi::Object NativeTensor::Make(Napi::Env env, BlockPtr b, size_t off, DType dt, std::vector<int64_t> shape) {
  Napi::Object obj = ctors(env).tensor.New({});
  NativeTensor* t = Unwrap(obj);
  t->dev = b->dev;
  t->block = std::move(b);
  t->offset = off;
  t->dtype = dt;
  t->shape = std::move(shape);
  return obj;
}

Napi::Value NativeTensor::Device(const Napi::CallbackInfo& info) {
  check_receiver<NativeTensor>(info, "device");
  return Napi::String::New(info.Env(), dev.str());
}
Napi::Value NativeTensor::Dtype(const Napi::CallbackInfo& info) {
  check_receiver<NativeTensor>(info, "dtype");
  return Napi::String::New(info.Env(), dtype_name(dtype));
}
Napi::Value NativeTensor::Shape(const Napi::CallbackInfo& info) {
  check_receiver<NativeTensor>(info, "shape");
  Napi::Array a = Napi::Array::New(info.Env(), shape.size());
  for (size_t i = 0; i < shape.size(); i++) a.Set(uint32_t(i), Napi::Number::New(info.Env(), double(shape[i])));
  return a;
}
Napi::Value NativeTensor::Nbytes(const Napi::CallbackInfo& info) {
  check_receiver<NativeTensor>(info, "nbytes");
  return Napi::Number::New(info.Env(), double(nbytes()));
}
Napi::Value NativeTensor::Disposed(const Napi::CallbackInfo& info) {
  check_receiver<NativeTensor>(info, "disposed");
  return Napi::Boolean::New(info.Env(), !block);
}

Napi::Value NativeTensor::Dispose(const Napi::CallbackInfo& info) {
  block.reset();  // memory returns to the device's cache now, unless a view or graph still holds it
  return info.Env().Undefined();
}

Napi::Value NativeTensor::ToHost(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Block& b = live("toHost");
    not_capturing("toHost");
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), nbytes());
    copy_to_host(ab.Data(), b, offset, nbytes());
    return ab;
  });
}

Napi::Value NativeTensor::ReadBegin(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Block& b = live("readBegin");
    not_capturing("readBegin");
    Napi::Object obj = ctors(info.Env()).hostRead.New({});
    NativeHostRead::Unwrap(obj)->r = read_begin(b, offset, nbytes());
    return obj;
  });
}

Napi::Function NativeHostRead::Init(Napi::Env env) {
  return DefineClass(env, "NativeHostRead", {InstanceMethod<&NativeHostRead::Wait>("wait")});
}

Napi::Value NativeHostRead::Wait(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!r) fail("wait: this read has no bytes left (wait() returns them once)");
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(info.Env(), read_bytes(*r));
    read_finish(*r, ab.Data());
    r.reset();  // the staging buffer goes back to its pool now, not when the collector runs
    return ab;
  });
}

Napi::Value NativeTensor::WriteHost(const Napi::CallbackInfo& info) {
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

Napi::Value NativeTensor::CopyFrom(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Block& b = live("copyFrom");
    NativeTensor* src = Args(info, "copyFrom").object<NativeTensor>(0, "source");
    const Block& sb = src->live("copyFrom (source)");
    if (src->dtype != dtype || src->nbytes() != nbytes())
      fail("copyFrom: source is ", dtype_name(src->dtype), " of ", src->nbytes(), " bytes, destination ",
           dtype_name(dtype), " of ", nbytes(), " bytes");
    if (capturing(dev)) capture_keep(dev, block), capture_keep(dev, src->block);
    copy_between(b, offset, sb, src->offset, nbytes());
    return info.Env().Undefined();
  });
}

// view(elementOffset, shape): a tensor over part of this one's memory.
Napi::Value NativeTensor::View(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Args a(info, "view");
    live("view");
    int64_t off = a.i64(0, "offset");
    std::vector<int64_t> shp;
    int64_t n = shape_arg(a, 1, shp);
    if (off < 0 || off > numel() || n > numel() - off)
      fail("view: elements [", off, ", ", off, " + ", n, ") outside a tensor of ", numel());
    return Make(info.Env(), block, offset + size_t(off) * dtype_size(dtype), dtype, shp);
  });
}

NativeTensor* tensor_arg(const Args& a, size_t i, const char* name) {
  NativeTensor* t = a.object<NativeTensor>(i, name);
  if (!t->block) fail(a.op, ": ", name, " has been disposed");
  return t;
}

NativeTensor* opt_tensor_arg(const Args& a, size_t i, const char* name) {
  return a.has_value(i) ? tensor_arg(a, i, name) : nullptr;
}

int64_t shape_arg(const Args& a, size_t i, std::vector<int64_t>& shape) {
  if (i >= a.size() || !a[i].IsArray()) fail(a.op, ": shape must be an array");
  Napi::Array arr = a[i].As<Napi::Array>();
  int64_t n = 1;
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(x >= 0) || x != std::floor(x) || x > 9007199254740991.0) fail(a.op, ": bad dimension ", x, " at ", k);
    shape.push_back(int64_t(x));
    n = checked_mul(n, int64_t(x), a.op);
  }
  return n;
}

}  // namespace parallm::napi
