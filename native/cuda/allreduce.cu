// The peer all-reduce: ranks that are worker threads of one process, on GPUs with peer access, add
// their buffers by writing straight into each other's memory, with no NCCL in between (the way vLLM's
// and TensorRT-LLM's custom all-reduces do it for decode-sized messages).
//
// Push, then sum locally: block b of each rank stores its slice of buf into every rank's receive slot
// for it (remote stores are posted, so no round trip waits on them), then raises its flag in every
// rank's flags with a system-scope release; it waits until every rank's block b has raised the same
// value in its own flags (acquire), and sums the slots in rank order. Two-shot splits each block's slice
// into world parts: rank r receives only part r from the others, sums it, and pushes the sum back out.
//
// LL (small messages): no exchange at all. Each 4 bytes of data travel with the call's flag value in one
// 8-byte store, so a word whose flag reads `value` is this call's (8-byte stores are single-copy atomic),
// and a reader polls its own memory for exactly the words it sums. The slots start zeroed and values start
// at 1 and grow by one a call, LL lines have memory of their own, so nothing stale ever matches.
//
// Why no barrier at the end: the receive slots are double-buffered by the call's parity, and every call
// uses the same fixed grid, so a block's counter (the flag value) agrees on every rank. A rank's call
// k + 2 reuses call k's slots; it begins only after its call k + 1 finished, which waited for every
// peer's call k + 1 to start, which (same stream, no programmatic overlap) began after the peer's call k
// had read everything it would.
//
// A peer that never comes: the waiting threads give up after the communicator's timeout (globaltimer)
// or when the host sets the abort flag, record why in the mapped control block, and the host turns that
// into an error at its next wait (native/comm/communicator.cc). The sums are then wrong, and the
// communicator is broken, as with NCCL's abort.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "allreduce.h"
#include "check.h"
#include "common.cuh"
#include "launch.cuh"

namespace parallm::cuda {
namespace {

__device__ __forceinline__ void st_release_sys(uint32_t* p, uint32_t v) {
  asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ uint32_t ld_acquire_sys(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ unsigned long long globaltimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Threads 0..W-1 raise this block's flag `value` in rank t's `which` array, then wait for rank t's flag
// in ours; the block then proceeds together. A timeout or abort records itself in the control block and
// lets the block go on (its sums are garbage; the host reports the error).
// (The control block is host memory: it is read only every 256 spins, never on the fast path.)
__device__ __forceinline__ uint32_t* flag(PeerFlags* f, bool mid, int rank) {
  return mid ? &f->mid[blockIdx.x][rank] : &f->start[blockIdx.x][rank];
}
template <int W>
__device__ void exchange(const PeerRanks& r, bool mid, uint32_t value) {
  __syncthreads();  // every thread's stores of this phase come before the release below
  const int t = threadIdx.x;
  if (t < W) {
    st_release_sys(flag(r.flags[t], mid, r.rank), value);
    const uint32_t* mine = flag(r.flags[r.rank], mid, t);
    if (ld_acquire_sys(mine) < value) {
      const unsigned long long t0 = globaltimer();
      for (unsigned spins = 0; ld_acquire_sys(mine) < value; spins++) {
        if ((spins & 255) == 255) {
          if (r.control->abort) {
            r.control->peer = t, r.control->error = 2;
            break;
          }
          if (r.control->error) break;  // another block already gave up
          if (r.timeout_ns && globaltimer() - t0 > r.timeout_ns) {
            r.control->peer = t, r.control->error = 1;
            break;
          }
        }
      }
    }
  }
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ void add_pack(float* acc, const uint4& v) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int j = 0; j < int(16 / sizeof(T)); j++) acc[j] += f32(e[j]);
}
template <typename T>
__device__ __forceinline__ uint4 to_pack(const float* acc, float scale) {
  uint4 v;
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int j = 0; j < int(16 / sizeof(T)); j++) e[j] = from_f32<T>(acc[j] * scale);
  return v;
}

// A call's flag value (this block's call count + 1: the same on every rank, since every call runs the
// same grid), the parity of the slots it uses, and the block's share [p0, p1) of `packs` 16-byte packs.
struct Call {
  uint32_t value;
  int parity;
  int64_t p0, p1;
};
__device__ __forceinline__ Call begin_call(const PeerRanks& r, int64_t packs) {
  __shared__ uint32_t s_value;
  if (threadIdx.x == 0) s_value = r.flags[r.rank]->counter[blockIdx.x] + 1;
  __syncthreads();
  const uint32_t v = s_value;
  return {v, int(v & 1), packs * blockIdx.x / kPeerBlocks, packs * (blockIdx.x + 1) / kPeerBlocks};
}
// The next call of this block counts from here (the next kernel on the stream reads it).
__device__ __forceinline__ void end_call(const PeerRanks& r, uint32_t value) {
  if (threadIdx.x == 0) r.flags[r.rank]->counter[blockIdx.x] = value;
}

// Slot `from` of rank `to`'s receive area for this call's parity (LL: in the LL half).
__device__ __forceinline__ char* slot(const PeerRanks& r, int to, int parity, int from, bool ll = false) {
  return r.slots[to] + ((size_t(ll) * 2 + parity) * r.world + from) * kPeerMaxBytes;
}

// The result `acc * scale` stored to dst: plain, or (residual) rounded to T, then added to dst's own
// value in f32 and rounded again: the bits of an add kernel after the all-reduce.
template <typename T, bool RESIDUAL>
__device__ __forceinline__ uint4 finish(const float* acc, float scale, const uint4* dst) {
  constexpr int E = 16 / sizeof(T);
  uint4 v = to_pack<T>(acc, scale);
  if (RESIDUAL) {
    const uint4 old = *dst;
    const T* s = reinterpret_cast<const T*>(&v);
    const T* o = reinterpret_cast<const T*>(&old);
    float sum[E];
#pragma unroll
    for (int j = 0; j < E; j++) sum[j] = f32(o[j]) + f32(s[j]);
    v = to_pack<T>(sum, 1.f);
  }
  return v;
}

// Per-16-byte-pack LL: two 16-byte stores of {word, flag, word, flag}.
__device__ __forceinline__ void st_ll(uint4* p, uint32_t a, uint32_t b, uint32_t flag) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(a), "r"(flag), "r"(b), "r"(flag) : "memory");
}
__device__ __forceinline__ uint4 ld_ll(const uint4* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}

// Poll one pack's two LL lines until both carry `value` (or give up: timeout, abort, another block's error).
__device__ __forceinline__ uint4 recv_ll(const PeerRanks& r, const uint4* line, uint32_t value, int from) {
  uint4 a = ld_ll(line), b = ld_ll(line + 1);
  if (a.y != value || a.w != value || b.y != value || b.w != value) {
    const unsigned long long t0 = globaltimer();
    for (unsigned spins = 1;; spins++) {
      a = ld_ll(line), b = ld_ll(line + 1);
      if (a.y == value && a.w == value && b.y == value && b.w == value) break;
      if ((spins & 1023) == 0) {
        if (r.control->error) break;
        if (r.control->abort) {
          r.control->peer = from, r.control->error = 2;
          break;
        }
        if (r.timeout_ns && globaltimer() - t0 > r.timeout_ns) {
          r.control->peer = from, r.control->error = 1;
          break;
        }
      }
    }
  }
  return make_uint4(a.x, a.z, b.x, b.z);
}

// LL one-shot: n is whole 16-byte packs (the host checks). Slot lines: 32 bytes a pack.
template <typename T, int W, bool RESIDUAL>
__global__ void __launch_bounds__(kPeerThreads) ll_kernel(PeerRanks r, const T* buf, T* dst, int64_t n, float scale) {
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  constexpr int E = 16 / sizeof(T);
  const Call c = begin_call(r, n / E);
  const uint32_t value = c.value;
  const int parity = c.parity;
  const int64_t p0 = c.p0, p1 = c.p1;
  const uint4* in = reinterpret_cast<const uint4*>(buf);
  // Send every pack first (the stores are posted), then sum: a peer's words are on their way meanwhile.
  for (int64_t i = p0 + threadIdx.x; i < p1; i += kPeerThreads) {
    const uint4 v = in[i];
#pragma unroll
    for (int q = 0; q < W; q++)
      if (q != r.rank) {
        uint4* line = reinterpret_cast<uint4*>(slot(r, q, parity, r.rank, true)) + 2 * i;
        st_ll(line, v.x, v.y, value);
        st_ll(line + 1, v.z, v.w, value);
      }
  }
  uint4* out = reinterpret_cast<uint4*>(dst);
  for (int64_t i = p0 + threadIdx.x; i < p1; i += kPeerThreads) {
    float acc[E] = {};
#pragma unroll
    for (int q = 0; q < W; q++)
      add_pack<T>(acc, q == r.rank ? in[i] : recv_ll(r, reinterpret_cast<const uint4*>(slot(r, r.rank, parity, q, true)) + 2 * i, value, q));
    out[i] = finish<T, RESIDUAL>(acc, scale, out + i);
  }
  end_call(r, value);
}

template <typename T, int W, bool RESIDUAL>
__global__ void __launch_bounds__(kPeerThreads) one_shot_kernel(PeerRanks r, T* buf, T* dst, int64_t n, float scale) {
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  constexpr int E = 16 / sizeof(T);
  const Call c = begin_call(r, n / E);
  const uint32_t value = c.value;
  const int parity = c.parity;
  const int64_t packs = n / E, p0 = c.p0, p1 = c.p1;
  const bool tail_block = blockIdx.x == kPeerBlocks - 1;
  const int64_t tail0 = packs * E;  // the last n % E elements, one by one, in the last block

  const uint4* in = reinterpret_cast<const uint4*>(buf);
  for (int64_t i = p0 + threadIdx.x; i < p1; i += kPeerThreads) {
    const uint4 v = in[i];
#pragma unroll
    for (int q = 0; q < W; q++) reinterpret_cast<uint4*>(slot(r, q, parity, r.rank))[i] = v;
  }
  if (tail_block)
    for (int64_t i = tail0 + threadIdx.x; i < n; i += kPeerThreads)
#pragma unroll
      for (int q = 0; q < W; q++) reinterpret_cast<T*>(slot(r, q, parity, r.rank))[i] = buf[i];

  exchange<W>(r, false, value);

  uint4* out = reinterpret_cast<uint4*>(dst);
  for (int64_t i = p0 + threadIdx.x; i < p1; i += kPeerThreads) {
    float acc[E] = {};
#pragma unroll
    for (int q = 0; q < W; q++) add_pack<T>(acc, __ldcg(reinterpret_cast<const uint4*>(slot(r, r.rank, parity, q)) + i));
    out[i] = finish<T, RESIDUAL>(acc, scale, out + i);
  }
  if (tail_block)
    for (int64_t i = tail0 + threadIdx.x; i < n; i += kPeerThreads) {
      float acc = 0.f;
#pragma unroll
      for (int q = 0; q < W; q++) acc += f32(reinterpret_cast<const volatile T*>(slot(r, r.rank, parity, q))[i]);
      const T v = from_f32<T>(acc * scale);
      dst[i] = RESIDUAL ? from_f32<T>(f32(dst[i]) + f32(v)) : v;
    }
  end_call(r, value);
}

// n is a multiple of E here (the host checks).
template <typename T, int W>
__global__ void __launch_bounds__(kPeerThreads) two_shot_kernel(PeerRanks r, T* buf, int64_t n, float scale) {
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  constexpr int E = 16 / sizeof(T);
  const Call c = begin_call(r, n / E);
  const uint32_t value = c.value;
  const int parity = c.parity;
  const int64_t p0 = c.p0, p1 = c.p1;
  // Part q of this block's slice is reduced by rank q.
  auto part = [&](int q, int64_t& a, int64_t& b) {
    a = p0 + (p1 - p0) * q / W;
    b = p0 + (p1 - p0) * (q + 1) / W;
  };
  uint4* data = reinterpret_cast<uint4*>(buf);
#pragma unroll
  for (int q = 0; q < W; q++) {
    int64_t a, b;
    part(q, a, b);
    uint4* dst = reinterpret_cast<uint4*>(slot(r, q, parity, r.rank));
    for (int64_t i = a + threadIdx.x; i < b; i += kPeerThreads) dst[i] = data[i];
  }
  exchange<W>(r, false, value);

  // Sum part `rank` from every sender's slot; write it to buf and push it into every peer's slot
  // `rank` at the same offsets (part `rank` of those slots was not written in the first phase).
  int64_t a, b;
  part(r.rank, a, b);
  for (int64_t i = a + threadIdx.x; i < b; i += kPeerThreads) {
    float acc[E] = {};
#pragma unroll
    for (int q = 0; q < W; q++) add_pack<T>(acc, __ldcg(reinterpret_cast<const uint4*>(slot(r, r.rank, parity, q)) + i));
    const uint4 v = to_pack<T>(acc, scale);
    data[i] = v;
#pragma unroll
    for (int q = 0; q < W; q++)
      if (q != r.rank) reinterpret_cast<uint4*>(slot(r, q, parity, r.rank))[i] = v;
  }
  exchange<W>(r, true, value);

#pragma unroll
  for (int q = 0; q < W; q++) {
    if (q == r.rank) continue;
    part(q, a, b);
    const uint4* src = reinterpret_cast<const uint4*>(slot(r, r.rank, parity, q));
    for (int64_t i = a + threadIdx.x; i < b; i += kPeerThreads) data[i] = __ldcg(src + i);
  }
  end_call(r, value);
}

template <typename T, int W>
void launch(const PeerRanks& r, void* buf, void* residual, int64_t n, float scale, PeerAlgo algo, cudaStream_t s) {
  T* b = static_cast<T*>(buf);
  T* res = static_cast<T*>(residual);
  // (PDL: each kernel waits for the kernel before it first thing, so launch_pdl only hides the launch.)
  const dim3 grid(kPeerBlocks), block(kPeerThreads);
  cudaError_t e;
  if (algo == PeerAlgo::LL)
    e = res ? launch_pdl_small(ll_kernel<T, W, true>, grid, block, 0, s, r, b, res, n, scale)
            : launch_pdl_small(ll_kernel<T, W, false>, grid, block, 0, s, r, b, b, n, scale);
  else if (algo == PeerAlgo::OneShot)
    e = res ? launch_pdl_small(one_shot_kernel<T, W, true>, grid, block, 0, s, r, b, res, n, scale)
            : launch_pdl_small(one_shot_kernel<T, W, false>, grid, block, 0, s, r, b, b, n, scale);
  else
    e = launch_pdl_small(two_shot_kernel<T, W>, grid, block, 0, s, r, b, n, scale);
  PARALLM_CUDA_CHECK(e, "peer all-reduce: launch (", n, " elements, ", W, " ranks)");
}

template <typename T>
void launch_world(const PeerRanks& r, void* buf, void* residual, int64_t n, float scale, PeerAlgo algo, cudaStream_t s) {
  switch (r.world) {
    case 2: return launch<T, 2>(r, buf, residual, n, scale, algo, s);
    case 3: return launch<T, 3>(r, buf, residual, n, scale, algo, s);
    case 4: return launch<T, 4>(r, buf, residual, n, scale, algo, s);
    case 5: return launch<T, 5>(r, buf, residual, n, scale, algo, s);
    case 6: return launch<T, 6>(r, buf, residual, n, scale, algo, s);
    case 7: return launch<T, 7>(r, buf, residual, n, scale, algo, s);
    case 8: return launch<T, 8>(r, buf, residual, n, scale, algo, s);
  }
}

}  // namespace

const char* peer_algo_name(PeerAlgo a) {
  return a == PeerAlgo::LL ? "LL" : a == PeerAlgo::OneShot ? "one-shot" : "two-shot";
}

void peer_all_reduce(const PeerRanks& r, void* buf, void* residual, int64_t n, DType dt, bool avg, PeerAlgo algo,
                     cudaStream_t stream) {
  const char* how = peer_algo_name(algo);
  const size_t es = dtype_size(dt);
  const size_t cap = algo == PeerAlgo::LL ? kPeerMaxBytes / 2 : kPeerMaxBytes;
  if (r.world < 2 || r.world > kPeerMaxRanks)
    fail("peer all-reduce (", how, "): world ", r.world, " is outside 2..", kPeerMaxRanks);
  if (n < 0 || size_t(n) * es > cap)
    fail("peer all-reduce (", how, "): ", n, " x ", dtype_name(dt), " is more than ", cap, " bytes");
  if (!aligned16(buf) || (residual && !aligned16(residual)))
    fail("peer all-reduce (", how, "): the buffer is not 16-byte aligned");
  if (algo != PeerAlgo::OneShot && (size_t(n) * es) % 16 != 0)
    fail("peer all-reduce (", how, "): ", n, " x ", dtype_name(dt), " is not a whole number of 16-byte packs");
  if (residual && algo == PeerAlgo::TwoShot) fail("peer all-reduce (two-shot): no residual form");
  if (n == 0) return;
  const float scale = avg ? 1.f / float(r.world) : 1.f;
  switch (dt) {
    case DType::F32: launch_world<float>(r, buf, residual, n, scale, algo, stream); break;
    case DType::BF16: launch_world<__nv_bfloat16>(r, buf, residual, n, scale, algo, stream); break;
    case DType::F16: launch_world<__half>(r, buf, residual, n, scale, algo, stream); break;
    default: fail("peer all-reduce (", how, "): ", dtype_name(dt), " is not f32, bf16 or f16");
  }
  PARALLM_LAUNCH_CHECK("peer all-reduce (", how, ") of ", n, " x ", dtype_name(dt), " on rank ", r.rank, " of ",
                       r.world);
}

}  // namespace parallm::cuda
