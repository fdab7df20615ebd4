// The kernel timeline's host side (trace.cuh): the registry of the .cu files' rings and their dump to CSV. Built
// only with the cmake option PARALLM_TRACE (CMakeLists.txt); plain C++ on the CUDA runtime API, so it has no
// ring of its own.
#include "trace.cuh"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>

#include "check.h"

namespace parallm::cuda {

namespace {
struct Ring {
  std::string tu;  // the .cu file's name
  TraceReader read;
};
// Function-local statics: the .cu files register during static initialization, in any order.
std::vector<Ring>& rings() {
  static std::vector<Ring> r;
  return r;
}
std::mutex& rings_mu() {
  static std::mutex m;
  return m;
}
}  // namespace

const char* trace_tag_name(uint32_t tag) {
  static const char* const names[] = {"embedding",    "norm",       "gemv",        "gemv_pipe",  "tile64",
                                      "tile_w",       "reduce",     "reduce_norm", "reduce_swiglu",
                                      "reduce_rope_kv", "rope_kv",  "kv_write",    "rope",       "attn_split",
                                      "attn_combine", "add",        "activation",  "argmax",     "sample",
                                      "allreduce"};
  static_assert(sizeof names / sizeof *names == size_t(TraceTag::Count), "a name for every tag");
  return tag < uint32_t(TraceTag::Count) ? names[tag] : "unknown";
}

bool trace_register(const char* tu, TraceReader read) {
  const char* slash = std::strrchr(tu, '/');
  std::lock_guard<std::mutex> lock(rings_mu());
  rings().push_back({slash ? slash + 1 : tu, read});
  return true;
}

void trace_dump() noexcept {
  const char* path = std::getenv("PARALLM_TRACE_OUT");
  if (!path || !*path) return;
  // Each env (a worker thread's too) dumps as it goes: one at a time, the last one's file stays.
  static std::mutex dump_mu;
  std::lock_guard<std::mutex> lock(dump_mu);
  try {
    struct Row {
      std::string tu;
      TraceRecord r;
    };
    std::vector<Row> rows;
    // Only the devices the process opened: reading another's ring would create a context there.
    const std::vector<int> devs = cuda_backend::opened_devices();
    if (!devs.empty()) {
      int cur = 0;
      PARALLM_CUDA_CHECK(cudaGetDevice(&cur), "trace: cudaGetDevice");
      std::vector<TraceRecord> recs;
      std::lock_guard<std::mutex> rlock(rings_mu());
      for (int d : devs) {
        PARALLM_CUDA_CHECK(cudaSetDevice(d), "trace: cudaSetDevice(", d, ")");
        PARALLM_CUDA_CHECK(cudaDeviceSynchronize(), "trace: synchronizing cuda:", d);
        for (const Ring& g : rings()) {
          recs.clear();
          const unsigned long long n = g.read(recs);
          // (a tu name per device where there are several: gridid counts launches per context)
          const std::string tu = devs.size() > 1 ? g.tu + "@cuda:" + std::to_string(d) : g.tu;
          if (n > recs.size())
            std::fprintf(stderr, "parallm trace: %s's ring wrapped: the oldest %llu of %llu block records are gone\n",
                         tu.c_str(), n - recs.size(), n);
          for (const TraceRecord& r : recs) rows.push_back({tu, r});
        }
      }
      PARALLM_CUDA_CHECK(cudaSetDevice(cur), "trace: cudaSetDevice(", cur, ")");
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.r.t_begin < b.r.t_begin; });
    const uint64_t t0 = rows.empty() ? 0 : rows.front().r.t_begin;
    FILE* f = std::fopen(path, "w");
    if (!f) fail("trace: cannot open ", path, ": ", std::strerror(errno));
    std::fprintf(f, "tu,gridid,tag,tag_name,smid,t_begin,t_wait,t_end\n");
    for (const Row& w : rows) {
      const TraceRecord& r = w.r;
      char wait[24] = "";  // empty: the block never waited
      if (r.t_wait) std::snprintf(wait, sizeof wait, "%lld", (long long)(r.t_wait - t0));
      std::fprintf(f, "%s,%llu,%u,%s,%u,%llu,%s,%lld\n", w.tu.c_str(), (unsigned long long)r.gridid, r.tag,
                   trace_tag_name(r.tag), r.smid, (unsigned long long)(r.t_begin - t0), wait,
                   (long long)(r.t_end - t0));
    }
    const bool bad = std::ferror(f) != 0;
    if (std::fclose(f) != 0 || bad) fail("trace: writing ", path, " failed");
    std::fprintf(stderr, "parallm trace: %zu block records written to %s\n", rows.size(), path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parallm trace: the trace was not written to %s: %s\n", path, e.what());
  } catch (...) {
    std::fprintf(stderr, "parallm trace: the trace was not written to %s\n", path);
  }
}

}  // namespace parallm::cuda
