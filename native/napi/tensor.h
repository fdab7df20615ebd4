// NativeTensor: a block of device memory (shared by views) with an offset, a dtype and a shape.
#pragma once
#include <napi.h>

#include <vector>

#include "core/host_read.h"
#include "core/runtime.h"
#include "napi/args.h"

namespace parallm::napi {

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static constexpr const char* kWhat = "a tensor";
  static Napi::FunctionReference& ctor(Constructors& c) { return c.tensor; }
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Make(Napi::Env env, BlockPtr b, size_t off, DType dt, std::vector<int64_t> shape);
  explicit NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {}

  BlockPtr block;     // null once disposed
  size_t offset = 0;  // bytes into the block
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // its element count fits int64 (checked where shapes are made)
  DeviceId dev;

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
  // A read back is an error while the device captures: ops are recorded then, not run, so the values read
  // would be whatever the memory held.
  void not_capturing(const char* op) const {
    if (capturing(dev))
      fail(op, ": cannot read a tensor of ", dev.str(), " back while ", dev.str(),
           " is capturing (its ops run when the graph replays)");
  }

 private:
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Nbytes(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value ToHost(const Napi::CallbackInfo& info);
  Napi::Value ReadBegin(const Napi::CallbackInfo& info);
  Napi::Value WriteHost(const Napi::CallbackInfo& info);
  Napi::Value CopyFrom(const Napi::CallbackInfo& info);
  Napi::Value View(const Napi::CallbackInfo& info);
};

// A read to the host begun by NativeTensor.readBegin (core/runtime.h's read_begin): wait() returns its bytes
// (an ArrayBuffer) once the copy is done, and only once.
class NativeHostRead : public Napi::ObjectWrap<NativeHostRead> {
 public:
  static constexpr const char* kWhat = "a host read";
  static Napi::FunctionReference& ctor(Constructors& c) { return c.hostRead; }
  static Napi::Function Init(Napi::Env env);
  explicit NativeHostRead(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeHostRead>(info) {}
  std::shared_ptr<HostRead> r;

 private:
  Napi::Value Wait(const Napi::CallbackInfo& info);
};

// A live tensor at argument i of an op (`name` in its errors), or nullptr for null / undefined (opt_).
NativeTensor* tensor_arg(const Args& a, size_t i, const char* name);
NativeTensor* opt_tensor_arg(const Args& a, size_t i, const char* name);

// The element count of a shape given as a JS array at argument i: each dimension a non-negative
// integer, the product checked against int64 overflow.
int64_t shape_arg(const Args& a, size_t i, std::vector<int64_t>& shape);

}  // namespace parallm::napi
