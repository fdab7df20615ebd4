// Typed unwrapping of N-API arguments, so each binding is a few lines: `Args a(info, "softmax");` then
// a.tensor(0, "y"), a.i64(2, "R"), a.f32(4, "scale"), ... Every failure throws parallm::Error naming the
// op and the argument; guarded() turns it into a JS Error. Wrapped objects (tensors, events, streams,
// graphs) are checked with InstanceOf against the constructor stored for this env, never unwrapped blind.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "core/device.h"
#include "core/dtype.h"
#include "core/errors.h"

namespace parallm::napi {

// The constructors of the wrapped classes, one set per env (each worker thread has its own).
struct Constructors {
  Napi::FunctionReference tensor, graph, event, stream, comm, hostRead;
};
inline Constructors& ctors(Napi::Env env) { return *env.GetInstanceData<Constructors>(); }

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

// a * b for sizes, or an error naming `what` when the product leaves int64 (a wrapped element count
// would pass every reach check and let a kernel run past its tensor).
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(what, ": ", a, " x ", b, " overflows 64 bits");
  return r;
}
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(what, ": ", a, " + ", b, " overflows 64 bits");
  return r;
}

// V8 checks the receiver of a wrapped class's methods, but not of its accessors: a getter taken off
// one class's prototype and called on another wrapped object would read that object as its own class.
// Each accessor calls this first (a TypeError, before `this` is touched).
template <class W>
void check_receiver(const Napi::CallbackInfo& info, const char* name) {
  Napi::Value self = info.This();
  if (!self.IsObject() || !self.As<Napi::Object>().InstanceOf(W::ctor(ctors(info.Env())).Value()))
    throw Napi::TypeError::New(info.Env(), std::string(name) + ": called on something other than " + W::kWhat);
}

DeviceId parse_device(const std::string& s);
DType parse_dtype(const std::string& s);

class Args {
  const Napi::CallbackInfo& info_;

 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), op(op) {}
  const char* const op;

  Napi::Env env() const { return info_.Env(); }
  size_t size() const { return info_.Length(); }
  Napi::Value operator[](size_t i) const { return info_[i]; }
  // Argument i was given (not missing, not undefined).
  bool has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined(); }
  bool has_value(size_t i) const { return has(i) && !info_[i].IsNull(); }

  int64_t i64(size_t i, const char* name) const {
    double v = number(i, name);
    if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740991.0)
      fail(op, ": ", name, " must be an integer, got ", v);
    return int64_t(v);
  }
  // An integer that fits an int (the kernels' head counts, dimensions, ...).
  int i32(size_t i, const char* name) const {
    int64_t v = i64(i, name);
    if (v < INT32_MIN || v > INT32_MAX) fail(op, ": ", name, " must fit 32 bits, got ", v);
    return int(v);
  }
  double f64(size_t i, const char* name) const { return number(i, name); }
  float f32(size_t i, const char* name) const { return float(number(i, name)); }
  bool flag(size_t i) const { return i < info_.Length() && info_[i].ToBoolean(); }
  // A boolean that must be given as one (flag() takes any value's truth).
  bool boolean(size_t i, const char* name) const {
    if (i >= info_.Length() || !info_[i].IsBoolean()) fail(op, ": ", name, " must be a boolean, got ", type_of(i));
    return info_[i].As<Napi::Boolean>().Value();
  }
  std::string str(size_t i, const char* name) const {
    if (i >= info_.Length() || !info_[i].IsString()) fail(op, ": ", name, " must be a string");
    return info_[i].As<Napi::String>().Utf8Value();
  }
  DeviceId device(size_t i) const { return parse_device(str(i, "device")); }
  DType dtype(size_t i) const { return parse_dtype(str(i, "dtype")); }
  // A 64-bit seed given as two uint32 halves (high at i, low at i + 1): JS numbers hold 53 bits.
  uint64_t seed(size_t i) const {
    return (uint64_t(uint32_t(i64(i, "seed high"))) << 32) | uint32_t(i64(i + 1, "seed low"));
  }

  // An object of the wrapped class W (W::ctor picks its constructor, W::kWhat says "a tensor").
  template <class W>
  W* object(size_t i, const char* name) const {
    if (i < info_.Length() && info_[i].IsObject()) {
      Napi::Object o = info_[i].As<Napi::Object>();
      if (o.InstanceOf(W::ctor(ctors(env())).Value())) return W::Unwrap(o);
    }
    fail(op, ": ", name, " must be ", W::kWhat, ", got ", type_of(i));
  }
  // As object(), or nullptr for null / undefined.
  template <class W>
  W* opt_object(size_t i, const char* name) const {
    return has_value(i) ? object<W>(i, name) : nullptr;
  }

 private:
  double number(size_t i, const char* name) const {
    if (i >= info_.Length() || !info_[i].IsNumber()) fail(op, ": ", name, " must be a number, got ", type_of(i));
    return info_[i].As<Napi::Number>().DoubleValue();
  }
  std::string type_of(size_t i) const {
    if (i >= info_.Length() || info_[i].IsUndefined()) return "undefined";
    Napi::Value v = info_[i];
    if (v.IsNull()) return "null";
    if (v.IsNumber()) return "a number";
    if (v.IsString()) return "a string";
    if (v.IsBoolean()) return "a boolean";
    if (v.IsFunction()) return "a function";
    if (v.IsArray()) return "an array";
    return "another object";
  }
};

}  // namespace parallm::napi
