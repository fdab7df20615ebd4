// The CPU backend's kernels: see native/core/kernels.h for what each computes.
#pragma once
#include "../core/dtype.h"
#include "threadpool.h"

namespace parallm::cpu {

// What a CPU kernel runs on: the thread pool of its device (cpu:N has its share of the cores).
struct Ctx {
  ThreadPool* pool;
};

#define PARALLM_KCTX const Ctx&
#include "../core/kernels.h"
#undef PARALLM_KCTX

}  // namespace parallm::cpu
