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

#include <algorithm>

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
  PARALLM_TRACE_SCOPE(AllReduce);
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

// LL with the residual add and then RMSNorm of the result (decode's tensor-parallel layers: the row-parallel
// projection's partial sums, the residual stream x, and the next projection's normalized input h), so
// the norm needs no launch of its own. A block owns whole rows (row m: block m % kPeerBlocks; the fixed
// grid still runs every block, so the call counters agree) and sends, sums and adds them as ll_kernel
// does; then the first ntx threads reread the row's new x and normalize it in norm.cu's arrangement
// (norm_kernel: pack v = tid + i * ntx summed in order, a warp butterfly, the warps' partials in order,
// rsqrtf(mean of squares + eps), x * rstd * w rounded), so h has the bits rmsnorm would write.
template <typename T, int W>
__global__ void __launch_bounds__(kPeerThreads) ll_norm_kernel(PeerRanks r, const T* buf, T* x, const T* nw, T* h,
                                                               int rows, int cols, float eps, int ntx) {
  PARALLM_TRACE_SCOPE(AllReduce);
  pdl_begin();  // launched with PDL: wait for the kernel before, then let the next start (pdl.cuh)
  constexpr int E = 16 / sizeof(T);
  __shared__ float s_part[kPeerThreads / 32];
  const Call c = begin_call(r, 0);
  const uint32_t value = c.value;
  const int parity = c.parity;
  const int64_t P = cols / E;  // packs a row
  const uint4* in = reinterpret_cast<const uint4*>(buf);
  for (int m = blockIdx.x; m < rows; m += kPeerBlocks)
    for (int64_t i = m * P + threadIdx.x; i < (m + 1) * P; i += kPeerThreads) {
      const uint4 v = in[i];
#pragma unroll
      for (int q = 0; q < W; q++)
        if (q != r.rank) {
          uint4* line = reinterpret_cast<uint4*>(slot(r, q, parity, r.rank, true)) + 2 * i;
          st_ll(line, v.x, v.y, value);
          st_ll(line + 1, v.z, v.w, value);
        }
    }
  uint4* xo = reinterpret_cast<uint4*>(x);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5, nwarps = ntx / 32;
  const float inv_c = 1.f / float(cols);
  for (int m = blockIdx.x; m < rows; m += kPeerBlocks) {
    for (int64_t i = m * P + tid; i < (m + 1) * P; i += kPeerThreads) {
      float acc[E] = {};
#pragma unroll
      for (int q = 0; q < W; q++)
        add_pack<T>(acc, q == r.rank ? in[i] : recv_ll(r, reinterpret_cast<const uint4*>(slot(r, r.rank, parity, q, true)) + 2 * i, value, q));
      xo[i] = finish<T, true>(acc, 1.f, xo + i);
    }
    __syncthreads();  // the row's new x, written by every thread, is read back below
    float ss = 0.f;
    if (tid < ntx)
      for (int64_t v = tid; v < P; v += ntx) {
        const uint4 pk = xo[m * P + v];
        const T* e = reinterpret_cast<const T*>(&pk);
#pragma unroll
        for (int j = 0; j < E; j++) {
          const float a = f32(e[j]);
          ss += a * a;
        }
      }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if (lane == 0 && warp < nwarps) s_part[warp] = ss;
    __syncthreads();
    float t = s_part[0];
    if (nwarps > 1) {
      t = 0.f;
      for (int i = 0; i < nwarps; ++i) t += s_part[i];
    }
    const float rstd = rsqrtf(__fmaf_rn(t, inv_c, eps));  // (norm.cu's rounding)
    for (int64_t v = tid; v < P; v += kPeerThreads) {
      const uint4 pk = xo[m * P + v], wk = reinterpret_cast<const uint4*>(nw)[v];
      const T* e = reinterpret_cast<const T*>(&pk);
      const T* g = reinterpret_cast<const T*>(&wk);
      float o[E];
#pragma unroll
      for (int j = 0; j < E; j++) o[j] = f32(e[j]) * rstd * f32(g[j]);
      reinterpret_cast<uint4*>(h)[m * P + v] = to_pack<T>(o, 1.f);
    }
    __syncthreads();  // s_part is free for the next row
  }
  end_call(r, value);
}

template <typename T, int W, bool RESIDUAL>
__global__ void __launch_bounds__(kPeerThreads) one_shot_kernel(PeerRanks r, T* buf, T* dst, int64_t n, float scale) {
  PARALLM_TRACE_SCOPE(AllReduce);
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
  PARALLM_TRACE_SCOPE(AllReduce);
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

// norm.cu's threads for a row of `cols` elements of E to a 16-byte pack (launch_norm: 4 packs a thread
// kept in registers, a multiple of 32, 32..512), which sets the order of its sum.
int norm_threads(int64_t cols, int E) {
  const int64_t want = (cols + 4 * E - 1) / (4 * E);
  return int(std::min<int64_t>(512, std::max<int64_t>(32, (want + 31) / 32 * 32)));
}

template <typename T>
void launch_norm_world(const PeerRanks& r, const void* buf, void* x, const void* nw, void* h, int rows, int cols,
                       float eps, cudaStream_t s) {
  const int ntx = norm_threads(cols, 16 / int(sizeof(T)));
  auto go = [&](auto kernel) {
    return launch_pdl_small(kernel, dim3(kPeerBlocks), dim3(kPeerThreads), 0, s, r, static_cast<const T*>(buf),
                            static_cast<T*>(x), static_cast<const T*>(nw), static_cast<T*>(h), rows, cols, eps, ntx);
  };
  cudaError_t e = cudaErrorInvalidValue;
  switch (r.world) {
    case 2: e = go(ll_norm_kernel<T, 2>); break;
    case 3: e = go(ll_norm_kernel<T, 3>); break;
    case 4: e = go(ll_norm_kernel<T, 4>); break;
    case 5: e = go(ll_norm_kernel<T, 5>); break;
    case 6: e = go(ll_norm_kernel<T, 6>); break;
    case 7: e = go(ll_norm_kernel<T, 7>); break;
    case 8: e = go(ll_norm_kernel<T, 8>); break;
  }
  PARALLM_CUDA_CHECK(e, "peer all-reduce + rmsnorm: launch (", rows, " x ", cols, ", ", r.world, " ranks)");
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

void peer_all_reduce_norm(const PeerRanks& r, const void* buf, void* x, const void* nw, void* h, int64_t rows,
                          int64_t cols, float eps, DType dt, cudaStream_t stream) {
  const size_t es = dtype_size(dt);
  if (r.world < 2 || r.world > kPeerMaxRanks)
    fail("peer all-reduce + rmsnorm: world ", r.world, " is outside 2..", kPeerMaxRanks);
  if (rows < 0 || cols < 1 || size_t(rows) * size_t(cols) * es > kPeerMaxBytes / 2)
    fail("peer all-reduce + rmsnorm: ", rows, " x ", cols, " x ", dtype_name(dt), " is more than ", kPeerMaxBytes / 2,
         " bytes (LL)");
  if ((size_t(cols) * es) % 16 != 0)
    fail("peer all-reduce + rmsnorm: a row of ", cols, " x ", dtype_name(dt), " is not a whole number of 16-byte packs");
  if (!aligned16(buf) || !aligned16(x) || !aligned16(nw) || !aligned16(h))
    fail("peer all-reduce + rmsnorm: a buffer is not 16-byte aligned (", rows, " x ", cols, ")");
  if (rows == 0) return;
  switch (dt) {
    case DType::F32: launch_norm_world<float>(r, buf, x, nw, h, int(rows), int(cols), eps, stream); break;
    case DType::BF16: launch_norm_world<__nv_bfloat16>(r, buf, x, nw, h, int(rows), int(cols), eps, stream); break;
    default: fail("peer all-reduce + rmsnorm: ", dtype_name(dt), " is not f32 or bf16");
  }
  PARALLM_LAUNCH_CHECK("peer all-reduce + rmsnorm of ", rows, " x ", cols, " x ", dtype_name(dt), " on rank ", r.rank,
                       " of ", r.world);
}

}  // namespace parallm::cuda
