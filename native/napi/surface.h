// The parts of the addon's exports, one per file of native/napi/, put together by napi/module.cc.
#pragma once
#include <napi.h>

#include "napi/args.h"

namespace parallm::napi {

void export_runtime(Napi::Env env, Napi::Object exports, Constructors& c);  // napi/runtime.cc
void export_ops(Napi::Env env, Napi::Object exports);                       // napi/ops.cc
Napi::Object testing_hooks(Napi::Env env);                                  // napi/ops.cc
void export_comm(Napi::Env env, Napi::Object exports, Constructors& c);     // napi/comm.cc

// exports[name] = a function of the addon.
inline void export_fn(Napi::Env env, Napi::Object exports, const char* name,
                      Napi::Value (*f)(const Napi::CallbackInfo&)) {
  exports.Set(name, Napi::Function::New(env, f, name));
}

}  // namespace parallm::napi
