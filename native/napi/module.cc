// The addon's module init: the wrapped classes' constructors (stored per env: each worker thread loads
// its own copy) and the exports of each part of native/napi/.
#include <napi.h>

#include "napi/args.h"
#include "napi/surface.h"
#include "napi/tensor.h"
#if defined(PARALLM_TRACE) && defined(PARALLM_WITH_CUDA)
#include <cstdio>

#include "cuda/trace.cuh"
#endif

namespace parallm::napi {

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  auto* c = new Constructors();
  env.SetInstanceData<Constructors>(c);  // freed with the env
  c->tensor = Napi::Persistent(NativeTensor::Init(env));
  exports.Set("NativeTensor", c->tensor.Value());
  c->hostRead = Napi::Persistent(NativeHostRead::Init(env));
  export_runtime(env, exports, *c);
  export_ops(env, exports);
  export_comm(env, exports, *c);
  // Hooks for tests and benchmarks only, apart from the public surface (src/native.ts NativeTestingHooks).
  exports.Set("testing", testing_hooks(env));
#if defined(PARALLM_TRACE) && defined(PARALLM_WITH_CUDA)
  // A measurement build: the kernel timeline to $PARALLM_TRACE_OUT as this env goes (cuda/trace.cuh). Cleanup
  // hooks run when the event loop ends, not on process.exit().
  if (napi_add_env_cleanup_hook(env, [](void*) { parallm::cuda::trace_dump(); }, nullptr) != napi_ok)
    std::fprintf(stderr, "parallm trace: napi_add_env_cleanup_hook failed: no trace will be written\n");
#endif
  return exports;
}

}  // namespace parallm::napi

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return parallm::napi::InitModule(env, exports); }
NODE_API_MODULE(parallm, Init)
