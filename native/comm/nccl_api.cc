// Finds NCCL at run time (dlopen), so the addon loads and serves the CPU and single-GPU paths on
// machines without it.
#include "nccl_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "../core/errors.h"

namespace parallm {
namespace nccl {

namespace {

std::once_flag g_once;
Api g_api;
std::string g_error;  // empty when loaded

std::string library_name() {
  const char* e = std::getenv("PARALLM_NCCL_LIBRARY");
  return e && *e ? e : "libnccl.so.2";
}

template <typename F>
bool sym(void* lib, const char* name, F& out, const std::string& path) {
  dlerror();
  void* p = dlsym(lib, name);
  if (!p) {
    const char* why = dlerror();
    g_error = "NCCL: " + path + " has no symbol " + name + " (" + (why ? why : "null") + ")";
    return false;
  }
  out = reinterpret_cast<F>(p);
  return true;
}

void load() {
  std::string path = library_name();
  // RTLD_LOCAL: NCCL's symbols stay out of the global namespace; RTLD_NOW: missing deps fail here.
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    g_error = "NCCL is not available: dlopen(\"" + path + "\") failed: " + (why ? why : "unknown error") +
              " (set PARALLM_NCCL_LIBRARY to the library's path)";
    return;
  }
  Api a;
  bool ok = sym(lib, "ncclGetVersion", a.GetVersion, path) && sym(lib, "ncclGetUniqueId", a.GetUniqueId, path) &&
            sym(lib, "ncclCommInitRank", a.CommInitRank, path) && sym(lib, "ncclCommDestroy", a.CommDestroy, path) &&
            sym(lib, "ncclCommAbort", a.CommAbort, path) &&
            sym(lib, "ncclCommGetAsyncError", a.CommGetAsyncError, path) &&
            sym(lib, "ncclAllReduce", a.AllReduce, path) && sym(lib, "ncclBroadcast", a.Broadcast, path) &&
            sym(lib, "ncclAllGather", a.AllGather, path) &&
            sym(lib, "ncclReduceScatter", a.ReduceScatter, path) && sym(lib, "ncclSend", a.Send, path) &&
            sym(lib, "ncclRecv", a.Recv, path) && sym(lib, "ncclGroupStart", a.GroupStart, path) &&
            sym(lib, "ncclGroupEnd", a.GroupEnd, path) && sym(lib, "ncclGetErrorString", a.GetErrorString, path);
  if (!ok) {
    dlclose(lib);
    return;
  }
  if (a.GetVersion(&a.version) != ncclSuccess) {
    g_error = "NCCL: ncclGetVersion failed in " + path;
    dlclose(lib);
    return;
  }
  // ncclSend/ncclRecv appeared in 2.7, ncclAvg in 2.10 and bf16 in 2.10 (codes below 10000 are 2.8 and older).
  if (a.version < 21000) {
    g_error = "NCCL: " + path + " is version " + std::to_string(a.version) + "; parallm needs 2.10 or newer";
    dlclose(lib);
    return;
  }
  g_api = a;  // the library stays loaded for the life of the process
}

}  // namespace

const Api& api() {
  std::call_once(g_once, load);
  if (!g_error.empty()) throw Error(g_error);
  return g_api;
}

bool available(int* version, std::string* error) {
  std::call_once(g_once, load);
  if (!g_error.empty()) {
    if (error) *error = g_error;
    return false;
  }
  if (version) *version = g_api.version;
  return true;
}

}  // namespace nccl
}  // namespace parallm
