// One binding per kernel of core/kernels.h. Each unwraps its arguments (napi/args.h), checks every
// tensor (alive, on the op's device, of the dtype the kernel expects, holding every element the kernel
// will reach: sizes multiplied with overflow checks), and launches the kernel on both backends through
// core/dispatch.h. Adding an op is one function here plus one line in export_ops:
//
//   // gelu(y, x, n)
//   Napi::Value OpGelu(const Napi::CallbackInfo& info) {
//     return op(info, "gelu", [](OpCall& c) {
//       int64_t n = c.i64(2, "n");
//       DType dt = c.dtype_of(0, "y");
//       void* py = c.use(0, "y", n, dt);
//       const void* px = c.use(1, "x", n, dt);
//       c.run([=](const cpu::Ctx& x) { cpu::gelu(x, dt, px, py, n); }, ON_CUDA(gelu(s, dt, px, py, n)));
//     });
//   }
//
// c.use<T>(i, name, elements, dtype) returns tensor argument i's device pointer as T*; c.opt<T>(...) the
// same or nullptr for null; c.mul(a, b, ...) multiplies sizes, failing on overflow; c.strided(...) checks
// a strided access (signed strides) against its tensor. ON_CUDA(call) is the CUDA backend's call with
// the stream `s` (nothing in a build without CUDA, where a cuda:N tensor cannot exist).
#include <array>
#include <cmath>
#include <initializer_list>
#include <vector>

#include "core/dispatch.h"
#include "core/split_rule.h"
#include "core/runtime.h"
#include "cpu/kernels.h"
#include "napi/args.h"
#include "napi/surface.h"
#include "napi/tensor.h"

#ifdef PARALLM_WITH_CUDA
#include "cuda/kernels.h"
namespace parallm::cuda {
void matmul_sm90_splits(int n);      // benchmark hook (native/cuda/matmul.cu)
void matmul_sm90_tma_store(int on);  // test hook (native/cuda/matmul.cu)
void matmul_sm90_tile_rows(int n);   // test / benchmark hook (native/cuda/matmul.cu)
void matmul_sm90_tile_cols(int n);   // test / benchmark hook (native/cuda/matmul.cu)
void matmul_gemv_path(int n);       // test and benchmark hook (native/cuda/matmul.cu)
void matmul_sm90_wtile(int mode);   // test and benchmark hook (native/cuda/matmul.cu)
void set_pdl(int level);            // benchmark hook (native/cuda/launch.cuh)
void attention_decode_splits(int n);  // test and benchmark hook (native/cuda/attention.cu)
void attention_prefill_kernel(int n);  // test and benchmark hook (native/cuda/attention.cu)
void decode_layer_grid(int n);        // test and benchmark hook (native/cuda/decode_layer.cu)
void matmul_sm90_schedule(int mode);  // test and benchmark hook (native/cuda/matmul.cu)
void hold_sms(int device, int blocks);  // test and benchmark hook (native/cuda/hold.cu)
void release_sms(int device);           // test and benchmark hook (native/cuda/hold.cu)
void busy_sms(cudaStream_t s, int device, int blocks, double microseconds);  // benchmark hook (native/cuda/hold.cu)
}  // namespace parallm::cuda
#define ON_CUDA(call) [&](cudaStream_t s) { cuda::call; }
#else
#define ON_CUDA(call) [&](CUstream_st*) {}
#endif

namespace parallm::napi {
namespace {

bool is_float(DType d) { return d == DType::F32 || d == DType::BF16 || d == DType::F16; }

// One op call: its arguments, and the tensors it uses (all on one device, kept alive while it runs).
class OpCall : public Args {
 public:
  using Args::Args;

  // The live tensor at argument i (unwrapped once per call: dtype_of and use ask for it again).
  NativeTensor* tensor(size_t i, const char* name) {
    if (i < seen_.size()) return seen_[i] ? seen_[i] : (seen_[i] = tensor_arg(*this, i, name));
    return tensor_arg(*this, i, name);
  }
  // The element type of tensor argument i (the op's dtype when it is the output).
  DType dtype_of(size_t i, const char* name) { return tensor(i, name)->dtype; }

  // Tensor argument i as a device pointer, after checking it: on the op's device, of dtype `want`,
  // with at least `need` elements.
  template <class T = void>
  T* use(size_t i, const char* name, int64_t need, DType want) {
    return static_cast<T*>(check(tensor(i, name), name, need, want));
  }
  // As use(), or nullptr when argument i is null or undefined.
  template <class T = void>
  T* opt(size_t i, const char* name, int64_t need, DType want) {
    return has_value(i) ? use<T>(i, name, need, want) : nullptr;
  }

  int64_t mul(int64_t a, int64_t b) const { return checked_mul(a, b, op); }
  int64_t mul(int64_t a, int64_t b, int64_t c) const { return mul(mul(a, b), c); }
  int64_t mul(int64_t a, int64_t b, int64_t c, int64_t d) const { return mul(mul(a, b, c), d); }

  // The elements a strided access reaches: offsets sum_k i_k * stride_k for 0 <= i_k < count_k, each
  // followed by `inner` contiguous elements. Strides may be negative, so both extremes are checked: the
  // lowest offset must not fall before the tensor (fails naming `name`); the result is one past the
  // highest element (0 when some count is 0: nothing is touched).
  struct Dim {
    int64_t count, stride;
  };
  int64_t strided(const char* name, std::initializer_list<Dim> dims, int64_t inner) const {
    int64_t lo = 0, hi = 0;
    for (const Dim& d : dims) {
      if (d.count <= 0) return 0;
      int64_t span = mul(d.count - 1, d.stride);
      if (span < 0) lo = checked_add(lo, span, op);
      else hi = checked_add(hi, span, op);
    }
    if (lo < 0) fail(op, ": the strides reach ", lo, " elements before the start of ", name);
    return inner > 0 ? checked_add(hi, inner, op) : 0;
  }

  template <typename CpuFn, typename CudaFn>
  void run(CpuFn&& cpu_fn, CudaFn&& cuda_fn) {
    if (!have_dev_) fail(op, ": no tensors");
    launch(dev_, blocks_, std::forward<CpuFn>(cpu_fn), std::forward<CudaFn>(cuda_fn));
  }

 private:
  DeviceId dev_;
  bool have_dev_ = false;
  std::vector<BlockPtr> blocks_;
  std::array<NativeTensor*, 16> seen_{};

  void* check(NativeTensor* t, const char* name, int64_t need, DType want) {
    if (!have_dev_) dev_ = t->dev, have_dev_ = true;
    else if (t->dev != dev_) fail(op, ": ", name, " is on ", t->dev.str(), " but the op runs on ", dev_.str());
    if (t->dtype != want) fail(op, ": ", name, " is ", dtype_name(t->dtype), ", expected ", dtype_name(want));
    if (need < 0 || need > t->numel()) fail(op, ": ", name, " has ", t->numel(), " elements but the op reaches ", need);
    blocks_.push_back(t->block);
    return t->ptr();
  }
};

// Run one binding's body under guarded(): C++ errors become JS exceptions.
template <typename Body>
Napi::Value op(const Napi::CallbackInfo& info, const char* name, Body&& body) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpCall c(info, name);
    body(c);
    return info.Env().Undefined();
  });
}

// matmul(C, A, B, bias|null, M, N, K, transA, transB, alpha, beta)
Napi::Value OpMatmul(const Napi::CallbackInfo& info) {
  return op(info, "matmul", [](OpCall& c) {
    int64_t M = c.i64(4, "M"), N = c.i64(5, "N"), K = c.i64(6, "K");
    bool ta = c.flag(7), tb = c.flag(8);
    float alpha = c.f32(9, "alpha"), beta = c.f32(10, "beta");
    DType dt = c.dtype_of(0, "C");
    if (!is_float(dt)) fail("matmul: dtype must be f32, bf16 or f16, got ", dtype_name(dt));
    if (M < 0 || N < 0 || K < 0) fail("matmul: negative size M=", M, " N=", N, " K=", K);
    void* pc = c.use(0, "C", c.mul(M, N), dt);
    const void* pa = c.use(1, "A", c.mul(M, K), dt);
    const void* pb = c.use(2, "B", c.mul(K, N), dt);
    const void* pbias = c.opt(3, "bias", N, dt);
    c.run([=](const cpu::Ctx& x) { cpu::matmul(x, dt, pa, pb, pbias, pc, M, N, K, ta, tb, alpha, beta); },
          ON_CUDA(matmul(s, dt, pa, pb, pbias, pc, M, N, K, ta, tb, alpha, beta)));
  });
}

// attentionPrefill(out, q, k, v, B, Tq, Tk, Hq, Hkv, D, qB, qT, kvB, kvT, scale)
Napi::Value OpAttentionPrefill(const Napi::CallbackInfo& info) {
  return op(info, "attentionPrefill", [](OpCall& c) {
    int B = c.i32(4, "B"), Tq = c.i32(5, "Tq"), Tk = c.i32(6, "Tk");
    int Hq = c.i32(7, "Hq"), Hkv = c.i32(8, "Hkv"), D = c.i32(9, "D");
    int64_t qB = c.i64(10, "q batch stride"), qT = c.i64(11, "q token stride");
    int64_t kB = c.i64(12, "kv batch stride"), kT = c.i64(13, "kv token stride");
    float scale = c.f32(14, "scale");
    if (B < 1 || Tq < 1 || Tk < Tq || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1)
      fail("attentionPrefill: bad sizes B=", B, " Tq=", Tq, " Tk=", Tk, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
    DType dt = c.dtype_of(0, "out");
    int64_t kv = c.strided("k and v", {{B, kB}, {Tk, kT}}, c.mul(Hkv, D));
    void* po = c.use(0, "out", c.mul(B, Tq, Hq, D), dt);
    const void* pq = c.use(1, "q", c.strided("q", {{B, qB}, {Tq, qT}}, c.mul(Hq, D)), dt);
    const void* pk = c.use(2, "k", kv, dt);
    const void* pv = c.use(3, "v", kv, dt);
    c.run([=](const cpu::Ctx& x) { cpu::attention_prefill(x, dt, pq, pk, pv, po, B, Tq, Tk, Hq, Hkv, D, qB, qT, kB, kT, scale); },
          ON_CUDA(attention_prefill(s, dt, pq, pk, pv, po, B, Tq, Tk, Hq, Hkv, D, qB, qT, kB, kT, scale)));
  });
}

// attentionDecode(out, q, k, v, lens, B, Hq, Hkv, D, qB, kvB, kvT, maxLen, scale, counter|null): counter an
// i32 [>= B*Hq] of zeros on the device (the CUDA split kernel's last blocks merge the key chunks and rearm it)
Napi::Value OpAttentionDecode(const Napi::CallbackInfo& info) {
  return op(info, "attentionDecode", [](OpCall& c) {
    int B = c.i32(5, "B"), Hq = c.i32(6, "Hq"), Hkv = c.i32(7, "Hkv"), D = c.i32(8, "D");
    int64_t qB = c.i64(9, "q batch stride"), kB = c.i64(10, "kv batch stride"), kT = c.i64(11, "kv token stride");
    int maxLen = c.i32(12, "maxLen");
    float scale = c.f32(13, "scale");
    if (B < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1 || maxLen < 1)
      fail("attentionDecode: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " maxLen=", maxLen);
    DType dt = c.dtype_of(0, "out");
    int64_t kv = c.strided("k and v", {{B, kB}, {maxLen, kT}}, c.mul(Hkv, D));
    void* po = c.use(0, "out", c.mul(B, Hq, D), dt);
    const void* pq = c.use(1, "q", c.strided("q", {{B, qB}}, c.mul(Hq, D)), dt);
    const void* pk = c.use(2, "k", kv, dt);
    const void* pv = c.use(3, "v", kv, dt);
    const int32_t* pl = c.use<int32_t>(4, "lens", B, DType::I32);
    uint32_t* pc = c.opt<uint32_t>(14, "counter", c.mul(B, Hq), DType::I32);
    c.run([=](const cpu::Ctx& x) { cpu::attention_decode(x, dt, pq, pk, pv, pl, po, B, Hq, Hkv, D, qB, kB, kT, maxLen, scale); },
          ON_CUDA(attention_decode(s, dt, pq, pk, pv, pl, po, B, Hq, Hkv, D, qB, kB, kT, maxLen, scale, pc)));
  });
}

// kvWrite(dst, src, pos, B, T, W, srcB, srcT, dstB, dstT, maxLen)
Napi::Value OpKvWrite(const Napi::CallbackInfo& info) {
  return op(info, "kvWrite", [](OpCall& c) {
    int B = c.i32(3, "B"), T = c.i32(4, "T");
    int64_t W = c.i64(5, "W"), sB = c.i64(6, "src batch stride"), sT = c.i64(7, "src token stride");
    int64_t dB = c.i64(8, "dst batch stride"), dT = c.i64(9, "dst token stride");
    int64_t maxLen = c.i64(10, "maxLen");
    if (B < 1 || T < 1 || W < 1 || maxLen < T) fail("kvWrite: bad sizes B=", B, " T=", T, " W=", W, " maxLen=", maxLen);
    DType dt = c.dtype_of(0, "dst");
    void* pd = c.use(0, "dst", c.strided("dst", {{B, dB}, {maxLen, dT}}, W), dt);
    const void* ps = c.use(1, "src", c.strided("src", {{B, sB}, {T, sT}}, W), dt);
    const int32_t* pp = c.use<int32_t>(2, "pos", B, DType::I32);
    // Positions live on the device (graphs replay with new ones): the kernels skip a sequence whose
    // rows would fall outside the cache.
    c.run([=](const cpu::Ctx& x) { cpu::kv_write(x, dt, ps, pd, pp, B, T, W, sB, sT, dB, dT, maxLen); },
          ON_CUDA(kv_write(s, dt, ps, pd, pp, B, T, W, sB, sT, dB, dT, maxLen)));
  });
}

// rmsnormMatmul(c, x, normW, b, bias|null, M, N, K, eps, alpha, beta): c = alpha rmsnorm(x) b^T + beta c + bias
Napi::Value OpRmsnormMatmul(const Napi::CallbackInfo& info) {
  return op(info, "rmsnormMatmul", [](OpCall& c) {
    int64_t M = c.i64(5, "M"), N = c.i64(6, "N"), K = c.i64(7, "K");
    float eps = c.f32(8, "eps"), alpha = c.f32(9, "alpha"), beta = c.f32(10, "beta");
    if (M < 0 || N < 0 || K < 1) fail("rmsnormMatmul: bad sizes M=", M, " N=", N, " K=", K);
    DType dt = c.dtype_of(0, "c");
    void* pc = c.use(0, "c", c.mul(M, N), dt);
    const void* px = c.use(1, "x", c.mul(M, K), dt);
    const void* pw = c.use(2, "normW", K, dt);
    const void* pb = c.use(3, "b", c.mul(N, K), dt);
    const void* pbias = c.opt(4, "bias", N, dt);
    c.run([=](const cpu::Ctx& x) { cpu::rmsnorm_matmul(x, dt, px, pw, pb, pbias, pc, M, N, K, eps, alpha, beta); },
          ON_CUDA(rmsnorm_matmul(s, dt, px, pw, pb, pbias, pc, M, N, K, eps, alpha, beta)));
  });
}

// layernormMatmul(c, x, gamma|null, beta|null, b, bias|null, M, N, K, eps, gelu): c = layernorm(x) b^T + bias
// (x b^T + bias with gamma and beta null), then gelu in place when asked
Napi::Value OpLayernormMatmul(const Napi::CallbackInfo& info) {
  return op(info, "layernormMatmul", [](OpCall& c) {
    int64_t M = c.i64(6, "M"), N = c.i64(7, "N"), K = c.i64(8, "K");
    float eps = c.f32(9, "eps");
    bool gelu = c.flag(10);
    if (M < 0 || N < 0 || K < 1) fail("layernormMatmul: bad sizes M=", M, " N=", N, " K=", K);
    DType dt = c.dtype_of(0, "c");
    void* pc = c.use(0, "c", c.mul(M, N), dt);
    const void* px = c.use(1, "x", c.mul(M, K), dt);
    const void* pg = c.opt(2, "gamma", K, dt);  // gamma and beta null: x is normalized already
    const void* pbeta = c.opt(3, "beta", K, dt);
    if (!pg != !pbeta) fail("layernormMatmul: gamma and beta must both be given or both be null");
    const void* pb = c.use(4, "b", c.mul(N, K), dt);
    const void* pbias = c.opt(5, "bias", N, dt);
    c.run([=](const cpu::Ctx& x) { cpu::layernorm_matmul(x, dt, px, pg, pbeta, pb, pbias, pc, M, N, K, eps, gelu); },
          ON_CUDA(layernorm_matmul(s, dt, px, pg, pbeta, pb, pbias, pc, M, N, K, eps, gelu)));
  });
}

// matmulResidualNorm(h, r, a, b, bias|null, normW, normB|null, counter|null, M, N, K, eps): r += a b^T + bias,
// then h = rmsnorm(r, normW) (layernorm with normB); counter: an i32 [1] zero on the device (the CUDA
// kernel's block count; null runs the ops apart)
Napi::Value OpMatmulResidualNorm(const Napi::CallbackInfo& info) {
  return op(info, "matmulResidualNorm", [](OpCall& c) {
    int64_t M = c.i64(8, "M"), N = c.i64(9, "N"), K = c.i64(10, "K");
    float eps = c.f32(11, "eps");
    if (M < 0 || N < 1 || K < 1) fail("matmulResidualNorm: bad sizes M=", M, " N=", N, " K=", K);
    DType dt = c.dtype_of(0, "h");
    void* ph = c.use(0, "h", c.mul(M, N), dt);
    void* pr = c.use(1, "r", c.mul(M, N), dt);
    const void* pa = c.use(2, "a", c.mul(M, K), dt);
    const void* pb = c.use(3, "b", c.mul(N, K), dt);
    const void* pbias = c.opt(4, "bias", N, dt);
    const void* pw = c.use(5, "normW", N, dt);
    const void* pnb = c.opt(6, "normB", N, dt);
    uint32_t* pcount = c.opt<uint32_t>(7, "counter", 1, DType::I32);
    if (ph == pr || ph == pa) fail("matmulResidualNorm: h must not be r or a");
    c.run([=](const cpu::Ctx& x) { cpu::matmul_residual_norm(x, dt, pa, pb, pbias, pr, pw, pnb, ph, pcount, M, N, K, eps); },
          ON_CUDA(matmul_residual_norm(s, dt, pa, pb, pbias, pr, pw, pnb, ph, pcount, M, N, K, eps)));
  });
}

// rmsnormMatmulSwiglu(c, x, normW|null, wGateUp, M, F, K, eps): c = silu(gate) * up of rmsnorm(x) wGateUp^T
// (of x wGateUp^T with normW null)
Napi::Value OpRmsnormMatmulSwiglu(const Napi::CallbackInfo& info) {
  return op(info, "rmsnormMatmulSwiglu", [](OpCall& c) {
    int64_t M = c.i64(4, "M"), F = c.i64(5, "F"), K = c.i64(6, "K");
    float eps = c.f32(7, "eps");
    if (M < 0 || F < 0 || K < 1) fail("rmsnormMatmulSwiglu: bad sizes M=", M, " F=", F, " K=", K);
    DType dt = c.dtype_of(0, "c");
    void* pc = c.use(0, "c", c.mul(M, F), dt);
    const void* px = c.use(1, "x", c.mul(M, K), dt);
    const void* pw = c.opt(2, "normW", K, dt);  // null: x is normalized already
    const void* pg = c.use(3, "wGateUp", c.mul(2, F, K), dt);
    c.run([=](const cpu::Ctx& x) { cpu::rmsnorm_matmul_swiglu(x, dt, px, pw, pg, pc, M, F, K, eps); },
          ON_CUDA(rmsnorm_matmul_swiglu(s, dt, px, pw, pg, pc, M, F, K, eps)));
  });
}

// ropeKvWrite(qkv, kCache, vCache, pos, freqs|null, B, Hq, Hkv, D, qkvStride, rotDim, theta, kvB, kvT, maxLen)
Napi::Value OpRopeKvWrite(const Napi::CallbackInfo& info) {
  return op(info, "ropeKvWrite", [](OpCall& c) {
    int B = c.i32(5, "B"), Hq = c.i32(6, "Hq"), Hkv = c.i32(7, "Hkv"), D = c.i32(8, "D");
    int64_t qs = c.i64(9, "qkv stride");
    int rot = c.i32(10, "rotDim");
    float theta = c.f32(11, "theta");
    int64_t kB = c.i64(12, "cache batch stride"), kT = c.i64(13, "cache token stride"), maxLen = c.i64(14, "maxLen");
    if (B < 1 || Hq < 1 || Hkv < 1 || D < 1 || maxLen < 1 || rot < 0 || rot > D || rot % 2 ||
        qs < c.mul(Hq + int64_t(2) * Hkv, D) || kT < c.mul(Hkv, D))
      fail("ropeKvWrite: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " qkvStride=", qs, " rotDim=", rot,
           " cache token stride=", kT, " maxLen=", maxLen);
    DType dt = c.dtype_of(0, "qkv");
    void* pq = c.use(0, "qkv", c.strided("qkv", {{B, qs}}, c.mul(Hq + int64_t(2) * Hkv, D)), dt);
    void* pk = c.use(1, "kCache", c.strided("kCache", {{B, kB}, {maxLen, kT}}, c.mul(Hkv, D)), dt);
    void* pv = c.use(2, "vCache", c.strided("vCache", {{B, kB}, {maxLen, kT}}, c.mul(Hkv, D)), dt);
    const int32_t* pp = c.use<int32_t>(3, "pos", B, DType::I32);
    const float* pf = rot ? c.opt<float>(4, "freqs", rot / 2, DType::F32) : nullptr;
    if (!rot && c.has_value(4)) fail("ropeKvWrite: freqs given with rotDim 0 (no rotation)");
    // Positions live on the device: a sequence whose row falls outside the cache writes nothing there.
    c.run([=](const cpu::Ctx& x) { cpu::rope_kv_write(x, dt, pq, pk, pv, pp, B, Hq, Hkv, D, qs, rot, theta, pf, kB, kT, maxLen); },
          ON_CUDA(rope_kv_write(s, dt, pq, pk, pv, pp, B, Hq, Hkv, D, qs, rot, theta, pf, kB, kT, maxLen)));
  });
}

// matmulRopeKvWrite(qkv, x, w, bias|null, kCache, vCache, pos, freqs|null, M, K, Hq, Hkv, D, rotDim, theta, kvB, kvT,
// maxLen): qkv [M, (Hq + 2 Hkv) D] = x [M, K] w^T + bias, then ropeKvWrite of it (qkv dense)
Napi::Value OpMatmulRopeKvWrite(const Napi::CallbackInfo& info) {
  return op(info, "matmulRopeKvWrite", [](OpCall& c) {
    int64_t M = c.i64(8, "M"), K = c.i64(9, "K");
    int Hq = c.i32(10, "Hq"), Hkv = c.i32(11, "Hkv"), D = c.i32(12, "D"), rot = c.i32(13, "rotDim");
    float theta = c.f32(14, "theta");
    int64_t kB = c.i64(15, "cache batch stride"), kT = c.i64(16, "cache token stride"), maxLen = c.i64(17, "maxLen");
    if (M < 1 || M > INT32_MAX || K < 1 || Hq < 1 || Hkv < 1 || D < 1 || maxLen < 1 || rot < 0 || rot > D || rot % 2 ||
        kT < c.mul(Hkv, D))
      fail("matmulRopeKvWrite: bad sizes M=", M, " K=", K, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rotDim=", rot,
           " cache token stride=", kT, " maxLen=", maxLen);
    DType dt = c.dtype_of(0, "qkv");
    if (dt != DType::F32 && dt != DType::BF16) fail("matmulRopeKvWrite: dtype must be f32 or bf16, got ", dtype_name(dt));
    const int64_t N = c.mul(Hq + int64_t(2) * Hkv, D);
    void* pq = c.use(0, "qkv", c.mul(M, N), dt);
    const void* px = c.use(1, "x", c.mul(M, K), dt);
    const void* pw = c.use(2, "w", c.mul(N, K), dt);
    const void* pb = c.opt(3, "bias", N, dt);
    void* pk = c.use(4, "kCache", c.strided("kCache", {{M, kB}, {maxLen, kT}}, c.mul(Hkv, D)), dt);
    void* pv = c.use(5, "vCache", c.strided("vCache", {{M, kB}, {maxLen, kT}}, c.mul(Hkv, D)), dt);
    const int32_t* pp = c.use<int32_t>(6, "pos", M, DType::I32);
    const float* pf = rot ? c.opt<float>(7, "freqs", rot / 2, DType::F32) : nullptr;
    if (!rot && c.has_value(7)) fail("matmulRopeKvWrite: freqs given with rotDim 0 (no rotation)");
    c.run([=](const cpu::Ctx& x) {
            cpu::matmul_rope_kv_write(x, dt, px, pw, pb, pq, pk, pv, pp, M, K, Hq, Hkv, D, rot, theta, pf, kB, kT, maxLen);
          },
          ON_CUDA(matmul_rope_kv_write(s, dt, px, pw, pb, pq, pk, pv, pp, M, K, Hq, Hkv, D, rot, theta, pf, kB, kT, maxLen)));
  });
}

// matmulRopeKvAttentionDecode(out, qkv, x, w, bias|null, kCache, vCache, pos, lens, freqs|null, counter|null, M, K, Hq,
// Hkv, D, rotDim, theta, kvB, kvT, maxLen, scale): matmulRopeKvWrite into qkv (scratch, left unspecified), then
// attentionDecode of its q heads into out [M, Hq, D]
Napi::Value OpMatmulRopeKvAttentionDecode(const Napi::CallbackInfo& info) {
  return op(info, "matmulRopeKvAttentionDecode", [](OpCall& c) {
    int64_t M = c.i64(11, "M"), K = c.i64(12, "K");
    int Hq = c.i32(13, "Hq"), Hkv = c.i32(14, "Hkv"), D = c.i32(15, "D"), rot = c.i32(16, "rotDim");
    float theta = c.f32(17, "theta");
    int64_t kB = c.i64(18, "cache batch stride"), kT = c.i64(19, "cache token stride");
    int maxLen = c.i32(20, "maxLen");
    float scale = c.f32(21, "scale");
    if (M < 1 || M > 65535 || K < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1 || D > 256 || maxLen < 1 || rot < 0 ||
        rot > D || rot % 2 || kT < c.mul(Hkv, D))
      fail("matmulRopeKvAttentionDecode: bad sizes M=", M, " K=", K, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " rotDim=", rot,
           " cache token stride=", kT, " maxLen=", maxLen, " (need Hq a multiple of Hkv, D <= 256)");
    DType dt = c.dtype_of(0, "out");
    if (dt != DType::F32 && dt != DType::BF16)
      fail("matmulRopeKvAttentionDecode: dtype must be f32 or bf16, got ", dtype_name(dt));
    const int64_t N = c.mul(Hq + int64_t(2) * Hkv, D);
    const int64_t kv = c.strided("kCache and vCache", {{M, kB}, {maxLen, kT}}, c.mul(Hkv, D));
    void* po = c.use(0, "out", c.mul(M, Hq, D), dt);
    void* pq = c.use(1, "qkv", c.mul(M, N), dt);
    const void* px = c.use(2, "x", c.mul(M, K), dt);
    const void* pw = c.use(3, "w", c.mul(N, K), dt);
    const void* pb = c.opt(4, "bias", N, dt);
    void* pk = c.use(5, "kCache", kv, dt);
    void* pv = c.use(6, "vCache", kv, dt);
    const int32_t* pp = c.use<int32_t>(7, "pos", M, DType::I32);
    const int32_t* pl = c.use<int32_t>(8, "lens", M, DType::I32);
    const float* pf = rot ? c.opt<float>(9, "freqs", rot / 2, DType::F32) : nullptr;
    if (!rot && c.has_value(9)) fail("matmulRopeKvAttentionDecode: freqs given with rotDim 0 (no rotation)");
    uint32_t* pc = c.opt<uint32_t>(10, "counter", c.mul(M, Hq), DType::I32);
    c.run([=](const cpu::Ctx& x) {
            cpu::matmul_rope_kv_attention_decode(x, dt, px, pw, pb, pq, pk, pv, pp, pl, po, M, K, Hq, Hkv, D, rot, theta,
                                                 pf, kB, kT, maxLen, scale, pc);
          },
          ON_CUDA(matmul_rope_kv_attention_decode(s, dt, px, pw, pb, pq, pk, pv, pp, pl, po, M, K, Hq, Hkv, D, rot, theta,
                                                  pf, kB, kT, maxLen, scale, pc)));
  });
}

// ropeKvAttentionDecode(out, qkv, kCache, vCache, pos, lens, freqs|null, counter|null, B, Hq, Hkv, D, qkvStride,
// rotDim, theta, kvB, kvT, maxLen, scale): ropeKvWrite on a copy of qkv's rows, then attentionDecode of its q
// heads (qkv only read; CUDA: one launch)
Napi::Value OpRopeKvAttentionDecode(const Napi::CallbackInfo& info) {
  return op(info, "ropeKvAttentionDecode", [](OpCall& c) {
    int B = c.i32(8, "B"), Hq = c.i32(9, "Hq"), Hkv = c.i32(10, "Hkv"), D = c.i32(11, "D");
    int64_t qs = c.i64(12, "qkv stride");
    int rot = c.i32(13, "rotDim");
    float theta = c.f32(14, "theta");
    int64_t kB = c.i64(15, "cache batch stride"), kT = c.i64(16, "cache token stride");
    int maxLen = c.i32(17, "maxLen");
    float scale = c.f32(18, "scale");
    if (B < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1 || maxLen < 1 || rot < 0 || rot > D || rot % 2 ||
        qs < c.mul(Hq + int64_t(2) * Hkv, D) || kT < c.mul(Hkv, D))
      fail("ropeKvAttentionDecode: bad sizes B=", B, " Hq=", Hq, " Hkv=", Hkv, " D=", D, " qkvStride=", qs,
           " rotDim=", rot, " cache token stride=", kT, " maxLen=", maxLen);
    DType dt = c.dtype_of(0, "out");
    int64_t kv = c.strided("kCache and vCache", {{B, kB}, {maxLen, kT}}, c.mul(Hkv, D));
    void* po = c.use(0, "out", c.mul(B, Hq, D), dt);
    const void* pq = c.use(1, "qkv", c.strided("qkv", {{B, qs}}, c.mul(Hq + int64_t(2) * Hkv, D)), dt);
    void* pk = c.use(2, "kCache", kv, dt);
    void* pv = c.use(3, "vCache", kv, dt);
    const int32_t* pp = c.use<int32_t>(4, "pos", B, DType::I32);
    const int32_t* pl = c.use<int32_t>(5, "lens", B, DType::I32);
    const float* pf = rot ? c.opt<float>(6, "freqs", rot / 2, DType::F32) : nullptr;
    if (!rot && c.has_value(6)) fail("ropeKvAttentionDecode: freqs given with rotDim 0 (no rotation)");
    uint32_t* pc = c.opt<uint32_t>(7, "counter", c.mul(B, Hq), DType::I32);
    c.run([=](const cpu::Ctx& x) {
            cpu::rope_kv_attention_decode(x, dt, pq, pk, pv, pp, pl, po, B, Hq, Hkv, D, qs, rot, theta, pf, kB, kT, maxLen,
                                          scale);
          },
          ON_CUDA(rope_kv_attention_decode(s, dt, pq, pk, pv, pp, pl, po, B, Hq, Hkv, D, qs, rot, theta, pf, kB, kT,
                                           maxLen, scale, pc)));
  });
}

// decodeLayerGpt2(x, g1, b1, wqkv, bqkv|null, wout, bout|null, g2, b2, wup, bup|null, wdown, bdown|null, kCache,
// vCache, pos, lens, counter|null, B, C, H, D, kvB, kvT, maxLen, eps): one GPT-2 decode layer, x updated in
// place (native/core/kernels.h); counter: an i32 [>= 1] whose low 31 bits are zero, on the device (CUDA's
// grid barrier; may be null on the CPU)
Napi::Value OpDecodeLayerGpt2(const Napi::CallbackInfo& info) {
  return op(info, "decodeLayerGpt2", [](OpCall& c) {
    int B = c.i32(18, "B"), C = c.i32(19, "C"), H = c.i32(20, "H"), D = c.i32(21, "D");
    int64_t kB = c.i64(22, "cache batch stride"), kT = c.i64(23, "cache token stride");
    int maxLen = c.i32(24, "maxLen");
    float eps = c.f32(25, "eps");
    if (B < 1 || H < 1 || D < 1 || int64_t(H) * D != C || maxLen < 1 || kT < C)
      fail("decodeLayerGpt2: bad sizes B=", B, " C=", C, " H=", H, " D=", D, " maxLen=", maxLen,
           " cache token stride=", kT, " (need C = H x D, token stride >= C)");
    DType dt = c.dtype_of(0, "x");
    const int64_t C3 = c.mul(3, C), C4 = c.mul(4, C);
    void* px = c.use(0, "x", c.mul(B, C), dt);
    const void* pg1 = c.use(1, "norm1", C, dt);
    const void* pb1 = c.use(2, "norm1Bias", C, dt);
    const void* pwq = c.use(3, "qkv", c.mul(C3, C), dt);
    const void* pbq = c.opt(4, "qkvBias", C3, dt);
    const void* pwo = c.use(5, "out", c.mul(C, C), dt);
    const void* pbo = c.opt(6, "outBias", C, dt);
    const void* pg2 = c.use(7, "norm2", C, dt);
    const void* pb2 = c.use(8, "norm2Bias", C, dt);
    const void* pwu = c.use(9, "up", c.mul(C4, C), dt);
    const void* pbu = c.opt(10, "upBias", C4, dt);
    const void* pwd = c.use(11, "down", c.mul(C, C4), dt);
    const void* pbd = c.opt(12, "downBias", C, dt);
    const int64_t kv = c.strided("kCache and vCache", {{B, kB}, {maxLen, kT}}, C);
    void* pk = c.use(13, "kCache", kv, dt);
    void* pv = c.use(14, "vCache", kv, dt);
    const int32_t* pp = c.use<int32_t>(15, "pos", B, DType::I32);
    const int32_t* pl = c.use<int32_t>(16, "lens", B, DType::I32);
    uint32_t* pc = c.opt<uint32_t>(17, "counter", 1, DType::I32);
    if (px == pk || px == pv || pk == pv) fail("decodeLayerGpt2: x, kCache and vCache must be three tensors");
    // Positions and lengths live on the device: a pos outside the cache writes nothing there.
    c.run([=](const cpu::Ctx& x) {
            cpu::decode_layer_gpt2(x, dt, px, pg1, pb1, pwq, pbq, pwo, pbo, pg2, pb2, pwu, pbu, pwd, pbd, pk, pv, pp,
                                   pl, pc, B, C, H, D, kB, kT, maxLen, eps);
          },
          ON_CUDA(decode_layer_gpt2(s, dt, px, pg1, pb1, pwq, pbq, pwo, pbo, pg2, pb2, pwu, pbu, pwd, pbd, pk, pv, pp,
                                    pl, pc, B, C, H, D, kB, kT, maxLen, eps)));
  });
}

// layernorm(y, x, gamma, beta, mean|null, rstd|null, R, C, eps)
Napi::Value OpLayernorm(const Napi::CallbackInfo& info) {
  return op(info, "layernorm", [](OpCall& c) {
    int64_t R = c.i64(6, "R"), C = c.i64(7, "C");
    float eps = c.f32(8, "eps");
    if (R < 0 || C < 1) fail("layernorm: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(0, "y");
    void* py = c.use(0, "y", c.mul(R, C), dt);
    const void* px = c.use(1, "x", c.mul(R, C), dt);
    const void* pg = c.use(2, "gamma", C, dt);
    const void* pb = c.use(3, "beta", C, dt);
    float* pm = c.opt<float>(4, "mean", R, DType::F32);
    float* pr = c.opt<float>(5, "rstd", R, DType::F32);
    c.run([=](const cpu::Ctx& x) { cpu::layernorm(x, dt, px, pg, pb, py, pm, pr, R, C, eps); },
          ON_CUDA(layernorm(s, dt, px, pg, pb, py, pm, pr, R, C, eps)));
  });
}

// rmsnorm(y, x, w, rstd|null, R, C, eps)
Napi::Value OpRmsnorm(const Napi::CallbackInfo& info) {
  return op(info, "rmsnorm", [](OpCall& c) {
    int64_t R = c.i64(4, "R"), C = c.i64(5, "C");
    float eps = c.f32(6, "eps");
    if (R < 0 || C < 1) fail("rmsnorm: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(0, "y");
    void* py = c.use(0, "y", c.mul(R, C), dt);
    const void* px = c.use(1, "x", c.mul(R, C), dt);
    const void* pw = c.use(2, "weight", C, dt);
    float* pr = c.opt<float>(3, "rstd", R, DType::F32);
    c.run([=](const cpu::Ctx& x) { cpu::rmsnorm(x, dt, px, pw, py, pr, R, C, eps); },
          ON_CUDA(rmsnorm(s, dt, px, pw, py, pr, R, C, eps)));
  });
}

// gelu(y, x, n)
Napi::Value OpGelu(const Napi::CallbackInfo& info) {
  return op(info, "gelu", [](OpCall& c) {
    int64_t n = c.i64(2, "n");
    DType dt = c.dtype_of(0, "y");
    void* py = c.use(0, "y", n, dt);
    const void* px = c.use(1, "x", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::gelu(x, dt, px, py, n); }, ON_CUDA(gelu(s, dt, px, py, n)));
  });
}

// siluGate(y, gate, up, R, F, inStride)
Napi::Value OpSiluGate(const Napi::CallbackInfo& info) {
  return op(info, "siluGate", [](OpCall& c) {
    int64_t R = c.i64(3, "R"), F = c.i64(4, "F"), st = c.i64(5, "inStride");
    if (R < 0 || F < 1 || st < F) fail("siluGate: bad sizes R=", R, " F=", F, " inStride=", st);
    DType dt = c.dtype_of(0, "y");
    int64_t reach = c.strided("gate and up", {{R, st}}, F);
    void* py = c.use(0, "y", c.mul(R, F), dt);
    const void* pg = c.use(1, "gate", reach, dt);
    const void* pu = c.use(2, "up", reach, dt);
    c.run([=](const cpu::Ctx& x) { cpu::silu_gate(x, dt, pg, pu, py, R, F, st); },
          ON_CUDA(silu_gate(s, dt, pg, pu, py, R, F, st)));
  });
}

// rope(x, pos, R, H, D, tstride, rotDim, theta, freqs?) and ropeBackward(dx, ...): the same arguments, the
// rotation or its transpose applied in place.
Napi::Value RopeOp(const Napi::CallbackInfo& info, const char* name, const char* xname, bool backward) {
  return op(info, name, [name, xname, backward](OpCall& c) {
    int64_t R = c.i64(2, "R");
    int H = c.i32(3, "H"), D = c.i32(4, "D");
    int64_t st = c.i64(5, "tstride");
    int rot = c.i32(6, "rotDim");
    float theta = c.f32(7, "theta");
    if (R < 0 || H < 1 || D < 2 || rot < 2 || rot > D || rot % 2 || st < int64_t(H) * D)
      fail(name, ": bad sizes R=", R, " H=", H, " D=", D, " rotDim=", rot, " tstride=", st);
    DType dt = c.dtype_of(0, xname);
    void* px = c.use(0, xname, c.strided(xname, {{R, st}}, c.mul(H, D)), dt);
    const int32_t* pp = c.use<int32_t>(1, "pos", R, DType::I32);
    const float* pf = c.opt<float>(8, "freqs", rot / 2, DType::F32);
    if (backward)
      c.run([=](const cpu::Ctx& x) { cpu::rope_backward(x, dt, px, pp, R, H, D, st, rot, theta, pf); },
            ON_CUDA(rope_backward(s, dt, px, pp, R, H, D, st, rot, theta, pf)));
    else
      c.run([=](const cpu::Ctx& x) { cpu::rope(x, dt, px, pp, R, H, D, st, rot, theta, pf); },
            ON_CUDA(rope(s, dt, px, pp, R, H, D, st, rot, theta, pf)));
  });
}
Napi::Value OpRope(const Napi::CallbackInfo& info) { return RopeOp(info, "rope", "x", false); }

// embedding(out, ids, table, N, V, C)
Napi::Value OpEmbedding(const Napi::CallbackInfo& info) {
  return op(info, "embedding", [](OpCall& c) {
    int64_t N = c.i64(3, "N"), V = c.i64(4, "V"), C = c.i64(5, "C");
    if (N < 0 || V < 1 || C < 1) fail("embedding: bad sizes N=", N, " V=", V, " C=", C);
    DType dt = c.dtype_of(0, "out");
    void* po = c.use(0, "out", c.mul(N, C), dt);
    const int32_t* pi = c.use<int32_t>(1, "ids", N, DType::I32);
    const void* pt = c.use(2, "table", c.mul(V, C), dt);
    c.run([=](const cpu::Ctx& x) { cpu::embedding(x, dt, pi, pt, po, N, V, C); },
          ON_CUDA(embedding(s, dt, pi, pt, po, N, V, C)));
  });
}

// add(y, a, b, n, bPeriod)
Napi::Value OpAdd(const Napi::CallbackInfo& info) {
  return op(info, "add", [](OpCall& c) {
    int64_t n = c.i64(3, "n"), per = c.i64(4, "bPeriod");
    if (n < 0 || per < 1) fail("add: bad sizes n=", n, " bPeriod=", per);
    DType dt = c.dtype_of(0, "y");
    void* py = c.use(0, "y", n, dt);
    const void* pa = c.use(1, "a", n, dt);
    const void* pb = c.use(2, "b", per, dt);
    c.run([=](const cpu::Ctx& x) { cpu::add(x, dt, pa, pb, py, n, per); }, ON_CUDA(add(s, dt, pa, pb, py, n, per)));
  });
}

// cast(y, x, n)
Napi::Value OpCast(const Napi::CallbackInfo& info) {
  return op(info, "cast", [](OpCall& c) {
    int64_t n = c.i64(2, "n");
    DType dy = c.dtype_of(0, "y"), dx = c.dtype_of(1, "x");
    if (!is_float(dy) || !is_float(dx)) fail("cast: only between f32, bf16 and f16");
    void* py = c.use(0, "y", n, dy);
    const void* px = c.use(1, "x", n, dx);
    c.run([=](const cpu::Ctx& x) { cpu::cast(x, dx, px, dy, py, n); }, ON_CUDA(cast(s, dx, px, dy, py, n)));
  });
}

// softmax(y, x, R, C, scale)
Napi::Value OpSoftmax(const Napi::CallbackInfo& info) {
  return op(info, "softmax", [](OpCall& c) {
    int64_t R = c.i64(2, "R"), C = c.i64(3, "C");
    float scale = c.f32(4, "scale");
    if (R < 0 || C < 1) fail("softmax: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(0, "y");
    void* py = c.use(0, "y", c.mul(R, C), dt);
    const void* px = c.use(1, "x", c.mul(R, C), dt);
    c.run([=](const cpu::Ctx& x) { cpu::softmax(x, dt, px, py, R, C, scale); },
          ON_CUDA(softmax(s, dt, px, py, R, C, scale)));
  });
}

// argmax(out, x, R, C)
Napi::Value OpArgmax(const Napi::CallbackInfo& info) {
  return op(info, "argmax", [](OpCall& c) {
    int64_t R = c.i64(2, "R"), C = c.i64(3, "C");
    if (R < 0 || C < 1) fail("argmax: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(1, "x");
    int32_t* po = c.use<int32_t>(0, "out", R, DType::I32);
    const void* px = c.use(1, "x", c.mul(R, C), dt);
    c.run([=](const cpu::Ctx& x) { cpu::argmax(x, dt, px, po, R, C); }, ON_CUDA(argmax(s, dt, px, po, R, C)));
  });
}

// sample(out, logits, offsets|null, rows|null, R, V, temperature, topK, topP, seedHi, seedLo)
Napi::Value OpSample(const Napi::CallbackInfo& info) {
  return op(info, "sample", [](OpCall& c) {
    int64_t R = c.i64(4, "R"), V = c.i64(5, "V");
    float temp = c.f32(6, "temperature");
    int topk = c.i32(7, "topK");
    float topp = c.f32(8, "topP");
    uint64_t seed = c.seed(9);
    if (R < 0 || V < 1 || topk < 0 || !(topp > 0 && topp <= 1))
      fail("sample: bad arguments R=", R, " V=", V, " topK=", topk, " topP=", topp);
    DType dt = c.dtype_of(1, "logits");
    int32_t* po = c.use<int32_t>(0, "out", R, DType::I32);
    const void* px = c.use(1, "logits", c.mul(R, V), dt);
    const int32_t* poff = c.opt<int32_t>(2, "offsets", R, DType::I32);
    const int32_t* prow = c.opt<int32_t>(3, "rows", R, DType::I32);
    c.run([=](const cpu::Ctx& x) { cpu::sample(x, dt, px, po, R, V, temp, topk, topp, seed, poff, prow); },
          ON_CUDA(sample(s, dt, px, po, R, V, temp, topk, topp, seed, poff, prow)));
  });
}

// fillUniform(out, n, seedHi, seedLo, low, high)
Napi::Value OpFillUniform(const Napi::CallbackInfo& info) {
  return op(info, "fillUniform", [](OpCall& c) {
    int64_t n = c.i64(1, "n");
    uint64_t seed = c.seed(2);
    float low = c.f32(4, "low"), high = c.f32(5, "high");
    DType dt = c.dtype_of(0, "out");
    if (!is_float(dt)) fail("fillUniform: dtype must be f32, bf16 or f16, got ", dtype_name(dt));
    void* po = c.use(0, "out", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::fill_uniform(x, dt, po, n, seed, low, high); },
          ON_CUDA(fill_uniform(s, dt, po, n, seed, low, high)));
  });
}

// ------------------------------------------------------------ training ops
// Backward kernels, the fused classifier and the optimizer (core/kernels.h, section "training").
// Arguments follow the kernel's order; "+=" gradients are read as well as written.

// sumRows(x, out, R, C, accumulate)
Napi::Value OpSumRows(const Napi::CallbackInfo& info) {
  return op(info, "sumRows", [](OpCall& c) {
    int64_t R = c.i64(2, "R"), C = c.i64(3, "C");
    bool acc = c.flag(4);
    if (R < 0 || C < 1) fail("sumRows: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(1, "out");
    const void* px = c.use(0, "x", c.mul(R, C), dt);
    void* po = c.use(1, "out", C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::sum_rows(x, dt, px, po, R, C, acc); },
          ON_CUDA(sum_rows(s, dt, px, po, R, C, acc)));
  });
}

// layernormBackward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, R, C[, dxSum, accumulate])
Napi::Value OpLayernormBackward(const Napi::CallbackInfo& info) {
  return op(info, "layernormBackward", [](OpCall& c) {
    int64_t R = c.i64(8, "R"), C = c.i64(9, "C");
    if (R < 0 || C < 1) fail("layernormBackward: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(0, "dy");
    int64_t n = c.mul(R, C);
    const void* pdy = c.use(0, "dy", n, dt);
    const void* px = c.use(1, "x", n, dt);
    const void* pg = c.use(2, "gamma", C, dt);
    const float* pm = c.use<float>(3, "mean", R, DType::F32);
    const float* pr = c.use<float>(4, "rstd", R, DType::F32);
    void* pdx = c.use(5, "dx", n, dt);
    void* pdg = c.use(6, "dgamma", C, dt);
    void* pdb = c.use(7, "dbeta", C, dt);
    void* pds = c.opt(10, "dxSum", C, dt);  // with it, the rows' sum of the dx left
    bool acc = pds && c.flag(11);
    c.run([=](const cpu::Ctx& x) { cpu::layernorm_backward_dsum(x, dt, pdy, px, pg, pm, pr, pdx, pdg, pdb, pds, acc, R, C); },
          ON_CUDA(layernorm_backward_dsum(s, dt, pdy, px, pg, pm, pr, pdx, pdg, pdb, pds, acc, R, C)));
  });
}

// rmsnormBackward(dy, x, w, rstd, dx, dw, R, C)
Napi::Value OpRmsnormBackward(const Napi::CallbackInfo& info) {
  return op(info, "rmsnormBackward", [](OpCall& c) {
    int64_t R = c.i64(6, "R"), C = c.i64(7, "C");
    if (R < 0 || C < 1) fail("rmsnormBackward: bad sizes R=", R, " C=", C);
    DType dt = c.dtype_of(0, "dy");
    int64_t n = c.mul(R, C);
    const void* pdy = c.use(0, "dy", n, dt);
    const void* px = c.use(1, "x", n, dt);
    const void* pw = c.use(2, "weight", C, dt);
    const float* pr = c.use<float>(3, "rstd", R, DType::F32);
    void* pdx = c.use(4, "dx", n, dt);
    void* pdw = c.use(5, "dw", C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::rmsnorm_backward(x, dt, pdy, px, pw, pr, pdx, pdw, R, C); },
          ON_CUDA(rmsnorm_backward(s, dt, pdy, px, pw, pr, pdx, pdw, R, C)));
  });
}

// geluBackward(x, dy, dx, n)
Napi::Value OpGeluBackward(const Napi::CallbackInfo& info) {
  return op(info, "geluBackward", [](OpCall& c) {
    int64_t n = c.i64(3, "n");
    if (n < 0) fail("geluBackward: bad size n=", n);
    DType dt = c.dtype_of(0, "x");
    const void* px = c.use(0, "x", n, dt);
    const void* pdy = c.use(1, "dy", n, dt);
    void* pdx = c.use(2, "dx", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::gelu_backward(x, dt, px, pdy, pdx, n); },
          ON_CUDA(gelu_backward(s, dt, px, pdy, pdx, n)));
  });
}

// geluBackwardBias(x, dy, dx, dbias, R, C, accumulate)
Napi::Value OpGeluBackwardBias(const Napi::CallbackInfo& info) {
  return op(info, "geluBackward", [](OpCall& c) {
    int64_t R = c.i64(4, "R"), C = c.i64(5, "C");
    bool acc = c.flag(6);
    if (R < 0 || C < 1) fail("geluBackward: bad sizes R=", R, " C=", C, " (with the bias gradient)");
    DType dt = c.dtype_of(0, "x");
    int64_t n = c.mul(R, C);
    const void* px = c.use(0, "x", n, dt);
    const void* pdy = c.use(1, "dy", n, dt);
    void* pdx = c.use(2, "dx", n, dt);
    void* pdb = c.use(3, "biasGrad", C, dt);
    c.run([=](const cpu::Ctx& x) { cpu::gelu_backward_bias(x, dt, px, pdy, pdx, pdb, R, C, acc); },
          ON_CUDA(gelu_backward_bias(s, dt, px, pdy, pdx, pdb, R, C, acc)));
  });
}

// siluGateBackward(gate, up, dy, dgate, dup, R, F, inStride)
Napi::Value OpSiluGateBackward(const Napi::CallbackInfo& info) {
  return op(info, "siluGateBackward", [](OpCall& c) {
    int64_t R = c.i64(5, "R"), F = c.i64(6, "F"), st = c.i64(7, "inStride");
    if (R < 0 || F < 1 || st < F) fail("siluGateBackward: bad sizes R=", R, " F=", F, " inStride=", st);
    DType dt = c.dtype_of(0, "gate");
    int64_t reach = c.strided("gate, up, dgate and dup", {{R, st}}, F);
    const void* pg = c.use(0, "gate", reach, dt);
    const void* pu = c.use(1, "up", reach, dt);
    const void* pdy = c.use(2, "dy", c.mul(R, F), dt);
    void* pdg = c.use(3, "dgate", reach, dt);
    void* pdu = c.use(4, "dup", reach, dt);
    c.run([=](const cpu::Ctx& x) { cpu::silu_gate_backward(x, dt, pg, pu, pdy, pdg, pdu, R, F, st); },
          ON_CUDA(silu_gate_backward(s, dt, pg, pu, pdy, pdg, pdu, R, F, st)));
  });
}

Napi::Value OpRopeBackward(const Napi::CallbackInfo& info) { return RopeOp(info, "ropeBackward", "dx", true); }

// attentionForward(q, k, v, out, lse, B, T, Hq, Hkv, D, qB, qT, kvB, kvT, scale)
Napi::Value OpAttentionForward(const Napi::CallbackInfo& info) {
  return op(info, "attentionForward", [](OpCall& c) {
    int B = c.i32(5, "B"), T = c.i32(6, "T");
    int Hq = c.i32(7, "Hq"), Hkv = c.i32(8, "Hkv"), D = c.i32(9, "D");
    int64_t qB = c.i64(10, "q batch stride"), qT = c.i64(11, "q token stride");
    int64_t kB = c.i64(12, "kv batch stride"), kT = c.i64(13, "kv token stride");
    float scale = c.f32(14, "scale");
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1)
      fail("attentionForward: bad sizes B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
    DType dt = c.dtype_of(3, "out");
    int64_t qReach = c.strided("q", {{B, qB}, {T, qT}}, c.mul(Hq, D));
    int64_t kvReach = c.strided("k and v", {{B, kB}, {T, kT}}, c.mul(Hkv, D));
    int64_t outN = c.mul(B, T, Hq, D);
    const void* pq = c.use(0, "q", qReach, dt);
    const void* pk = c.use(1, "k", kvReach, dt);
    const void* pv = c.use(2, "v", kvReach, dt);
    void* po = c.use(3, "out", outN, dt);
    float* pl = c.use<float>(4, "lse", c.mul(B, Hq, T), DType::F32);
    c.run([=](const cpu::Ctx& x) { cpu::attention_forward(x, dt, pq, pk, pv, po, pl, B, T, Hq, Hkv, D, qB, qT, kB, kT, scale); },
          ON_CUDA(attention_forward(s, dt, pq, pk, pv, po, pl, B, T, Hq, Hkv, D, qB, qT, kB, kT, scale)));
  });
}

// attentionBackward(q, k, v, out, dout, lse, dq, dk, dv, workspace, B, T, Hq, Hkv, D, qB, qT, kvB, kvT, scale)
Napi::Value OpAttentionBackward(const Napi::CallbackInfo& info) {
  return op(info, "attentionBackward", [](OpCall& c) {
    int B = c.i32(10, "B"), T = c.i32(11, "T");
    int Hq = c.i32(12, "Hq"), Hkv = c.i32(13, "Hkv"), D = c.i32(14, "D");
    int64_t qB = c.i64(15, "q batch stride"), qT = c.i64(16, "q token stride");
    int64_t kB = c.i64(17, "kv batch stride"), kT = c.i64(18, "kv token stride");
    float scale = c.f32(19, "scale");
    if (B < 1 || T < 1 || Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1)
      fail("attentionBackward: bad sizes B=", B, " T=", T, " Hq=", Hq, " Hkv=", Hkv, " D=", D);
    DType dt = c.dtype_of(3, "out");
    // q and dq share q's strides, k, v, dk and dv the kv strides.
    int64_t qReach = c.strided("q and dq", {{B, qB}, {T, qT}}, c.mul(Hq, D));
    int64_t kvReach = c.strided("k, v, dk and dv", {{B, kB}, {T, kT}}, c.mul(Hkv, D));
    int64_t outN = c.mul(B, T, Hq, D);
    // cpu::attention_backward_workspace(B, T, Hq, D), its product overflow-checked.
    int64_t wsN = c.mul(B, Hq, T, int64_t(D) + 1);
    const void* pq = c.use(0, "q", qReach, dt);
    const void* pk = c.use(1, "k", kvReach, dt);
    const void* pv = c.use(2, "v", kvReach, dt);
    const void* po = c.use(3, "out", outN, dt);
    const void* pdo = c.use(4, "dout", outN, dt);
    const float* pl = c.use<float>(5, "lse", c.mul(B, Hq, T), DType::F32);
    void* pdq = c.use(6, "dq", qReach, dt);
    void* pdk = c.use(7, "dk", kvReach, dt);
    void* pdv = c.use(8, "dv", kvReach, dt);
    float* pw = c.use<float>(9, "workspace", wsN, DType::F32);
    c.run([=](const cpu::Ctx& x) {
            cpu::attention_backward(x, dt, pq, pk, pv, po, pdo, pl, pdq, pdk, pdv, pw, B, T, Hq, Hkv, D, qB, qT, kB, kT, scale);
          },
          ON_CUDA(attention_backward(s, dt, pq, pk, pv, po, pdo, pl, pdq, pdk, pdv, pw, B, T, Hq, Hkv, D, qB, qT, kB, kT,
                                     scale)));
  });
}

// embeddingBackward(ids, dout, dtable, N, V, C, scale)
Napi::Value OpEmbeddingBackward(const Napi::CallbackInfo& info) {
  return op(info, "embeddingBackward", [](OpCall& c) {
    int64_t N = c.i64(3, "N"), V = c.i64(4, "V"), C = c.i64(5, "C");
    const float scale = c.f32(6, "scale");
    if (!std::isfinite(scale)) fail("embeddingBackward: scale must be finite, got ", scale);
    if (N < 0 || V < 1 || C < 1) fail("embeddingBackward: bad sizes N=", N, " V=", V, " C=", C);
    DType dt = c.dtype_of(2, "dtable");
    const int32_t* pi = c.use<int32_t>(0, "ids", N, DType::I32);
    const void* pd = c.use(1, "dout", c.mul(N, C), dt);
    void* pt = c.use(2, "dtable", c.mul(V, C), dt);
    c.run([=](const cpu::Ctx& x) { cpu::embedding_backward(x, dt, pi, pd, pt, N, V, C, scale); },
          ON_CUDA(embedding_backward(s, dt, pi, pd, pt, N, V, C, scale)));
  });
}

// crossEntropy(logits, targets, losses, dlogits|null, R, V, ignoreIndex, dscale, ld); dlogits may be
// logits; rows of ld >= V elements, the first V of them logits.
Napi::Value OpCrossEntropy(const Napi::CallbackInfo& info) {
  return op(info, "crossEntropy", [](OpCall& c) {
    int64_t R = c.i64(4, "R"), V = c.i64(5, "V");
    int ign = c.i32(6, "ignoreIndex");
    float dscale = c.f32(7, "dscale");
    int64_t ld = c.i64(8, "ld");
    if (R < 0 || V < 1 || ld < V) fail("crossEntropy: bad sizes R=", R, " V=", V, " ld=", ld, " ignoreIndex=", ign);
    DType dt = c.dtype_of(0, "logits");
    int64_t n = c.mul(R, ld);
    const void* px = c.use(0, "logits", n, dt);
    const int32_t* pt = c.use<int32_t>(1, "targets", R, DType::I32);
    float* pl = c.use<float>(2, "losses", R, DType::F32);
    void* pd = c.opt(3, "dlogits", n, dt);
    c.run([=](const cpu::Ctx& x) { cpu::cross_entropy(x, dt, px, pt, pl, pd, R, V, ld, ign, dscale); },
          ON_CUDA(cross_entropy(s, dt, px, pt, pl, pd, R, V, ld, ign, dscale)));
  });
}

// sumSquares(x, out, n)
Napi::Value OpSumSquares(const Napi::CallbackInfo& info) {
  return op(info, "sumSquares", [](OpCall& c) {
    int64_t n = c.i64(2, "n");
    if (n < 0) fail("sumSquares: bad size n=", n);
    DType dt = c.dtype_of(0, "x");
    const void* px = c.use(0, "x", n, dt);
    float* po = c.use<float>(1, "out", 1, DType::F32);
    c.run([=](const cpu::Ctx& x) { cpu::sum_squares(x, dt, px, po, n); }, ON_CUDA(sum_squares(s, dt, px, po, n)));
  });
}

// adamw(master, param|null, grad, m, v, n, nDecay, lr, beta1, beta2, eps, weightDecay, gradScale, step)
Napi::Value OpAdamw(const Napi::CallbackInfo& info) {
  return op(info, "adamw", [](OpCall& c) {
    int64_t n = c.i64(5, "n"), nd = c.i64(6, "nDecay");
    float lr = c.f32(7, "lr"), b1 = c.f32(8, "beta1"), b2 = c.f32(9, "beta2");
    float eps = c.f32(10, "eps"), wd = c.f32(11, "weightDecay"), gs = c.f32(12, "gradScale");
    int step = c.i32(13, "step");
    if (n < 0 || nd < 0 || nd > n || step < 1) fail("adamw: bad sizes n=", n, " nDecay=", nd, " step=", step);
    DType dt = c.dtype_of(2, "grad");
    float* pms = c.use<float>(0, "master", n, DType::F32);
    void* pp = c.opt(1, "param", n, dt);
    const void* pg = c.use(2, "grad", n, dt);
    float* pm = c.use<float>(3, "m", n, DType::F32);
    float* pv = c.use<float>(4, "v", n, DType::F32);
    c.run([=](const cpu::Ctx& x) { cpu::adamw(x, dt, pms, pp, pg, pm, pv, n, nd, lr, b1, b2, eps, wd, gs, step); },
          ON_CUDA(adamw(s, dt, pms, pp, pg, pm, pv, n, nd, lr, b1, b2, eps, wd, gs, step)));
  });
}

// ------------------------------------------------------------ testing hooks (the addon's `testing`)

// An integer testing hook: argument 0 read as `what`, refused with "<name>: expected <expected>, got n"
// unless `ok`, then handed to the CUDA setter (CUDA_SET: none in a build without CUDA).
#ifdef PARALLM_WITH_CUDA
#define CUDA_SET(setter) [](int n) { cuda::setter(n); }
#else
#define CUDA_SET(setter) [](int) {}
#endif
template <class Ok, class Set>
Napi::Value int_hook(const Napi::CallbackInfo& info, const char* name, const char* what, Ok ok, const char* expected, Set set) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int n = Args(info, name).i32(0, what);
    if (!ok(n)) fail(name, ": expected ", expected, ", got ", n);
    set(n);
    return info.Env().Undefined();
  });
}

// The slices sm90_splits' wave rule picks for a GEMM of `tiles` 128 x 256 tiles and nk k-tiles of 64, M x N,
// on `sms` SMs (core/split_rule.h): a pure function, so the CPU build's tests hold the rule to its cases.
Napi::Value MatmulWaveSplits(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Args a(info, "matmulWaveSplits");
    const int tiles = a.i32(0, "tiles"), nk = a.i32(1, "k-tiles"), sms = a.i32(4, "SMs");
    const int64_t M = a.i64(2, "M"), N = a.i64(3, "N");
    if (tiles < 1 || nk < 1 || M < 1 || N < 1 || sms < 1)
      fail("matmulWaveSplits: expected positive sizes, got tiles=", tiles, " k-tiles=", nk, " M=", M, " N=", N,
           " SMs=", sms);
    return Napi::Number::New(info.Env(), sm90_wave_splits(tiles, nk, M, N, sms));
  });
}

// The width sm90_tile_width gives the 128-row tile of an M x N product of nk k-tiles on `sms` SMs, with s256 and s192
// K slices for each width (core/split_rule.h): a pure function, so the CPU build's tests hold the rule to its cases.
Napi::Value MatmulTileWidth(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Args a(info, "matmulTileWidth");
    const int64_t M = a.i64(0, "M"), N = a.i64(1, "N");
    const int nk = a.i32(2, "k-tiles"), sms = a.i32(3, "SMs");
    const int s256 = a.i32(4, "slices at 256"), s192 = a.i32(5, "slices at 192");
    if (M < 1 || N < 1 || nk < 1 || sms < 1 || s256 < 1 || s192 < 1)
      fail("matmulTileWidth: expected positive sizes, got M=", M, " N=", N, " k-tiles=", nk, " SMs=", sms, " slices ",
           s256, " and ", s192);
    return Napi::Number::New(info.Env(), sm90_tile_width(M, N, nk, sms, s256, s192));
  });
}

// K slices of the sm90 matmul (-1: chosen per call; 1: split-K off), for benchmarks.
Napi::Value MatmulSplitK(const Napi::CallbackInfo& info) {
  return int_hook(info, "matmulSplitK", "slices", [](int n) { return n == -1 || (n >= 1 && n <= 32); },
                  "-1 (automatic) or 1..32", CUDA_SET(matmul_sm90_splits));
}

// The sm90 matmul stores C through the TMA (true, the default where it applies) or from registers
// (false), for tests of both epilogues. No-op without CUDA.
Napi::Value MatmulTmaStore(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsBoolean()) fail("matmulTmaStore: expected a boolean");
#ifdef PARALLM_WITH_CUDA
    cuda::matmul_sm90_tma_store(info[0].As<Napi::Boolean>().Value() ? 1 : 0);
#endif
    return info.Env().Undefined();
  });
}

// The 128-row tile's width: -1 by the product (sm90_tile_width), 192 or 256 forced; for tests of both widths and
// benchmarks side by side. No-op without CUDA.
Napi::Value MatmulTileCols(const Napi::CallbackInfo& info) {
  return int_hook(info, "matmulTileCols", "columns", [](int n) { return n == -1 || n == 192 || n == 256; },
                  "-1 (automatic), 192 or 256", CUDA_SET(matmul_sm90_tile_cols));
}

// The sm90 matmul's tile: -1 by M (64 rows up to M = 64, else 128), 64 or 128 forced; for tests of both
// tiles at every M and benchmarks side by side.
Napi::Value MatmulTileRows(const Napi::CallbackInfo& info) {
  return int_hook(info, "matmulTileRows", "rows", [](int n) { return n == -1 || n == 64 || n == 128; },
                  "-1 (automatic), 64 or 128", CUDA_SET(matmul_sm90_tile_rows));
}

// Which products the sm90 W-as-A tile takes (native/cuda/matmul_sm90_wtile.cuh): -1 the dispatch's choice
// (PARALLM_WTILE's setting where set, else products of 9-16 rows, K >= 4096, N x K >= 2^24), 0 none, 1 those of at most 64 rows the 64-row
// tile would take, 2 also the GEMV's; for tests and benchmarks.
Napi::Value MatmulWTile(const Napi::CallbackInfo& info) {
  return int_hook(info, "matmulWTile", "mode", [](int n) { return n >= -1 && n <= 2; },
                  "-1 (automatic), 0 (off), 1 (the 64-row tile's products) or 2 (also the GEMV's)",
                  CUDA_SET(matmul_sm90_wtile));
}

// Which GEMV kernel M <= 16 takes: -1 chosen (the register kernel, its load form by N), 0 the same, 1 the
// pipelined one, 2 and 3 the pipelined one in alternative shapes, 4 the register kernel's single-plain-load
// form, 5 as -1 with the norms (and SwiGLU, GELU) fused into the register kernel, 6 the register kernel on
// 16 rows a block, 7 the sm90 GEMM's 64-row tile, 8 and 9 the register kernel on 32 rows a block
// (native/cuda/matmul.cu's launch_wide_gemv); for tests of each and benchmarks side by side.
Napi::Value MatmulGemv(const Napi::CallbackInfo& info) {
  return int_hook(info, "matmulGemv", "path", [](int n) { return n >= -1 && n <= 9; },
                  "-1 (automatic), 0 (register kernel), 1 (pipelined), 2, 3 (its other shapes), 4 (the register kernel "
                  "with one plain load), 5 (automatic, norms fused into the register kernel), 6 (the register kernel on "
                  "16 rows a block), 7 (the sm90 GEMM's 64-row tile) or 8, 9 (32 rows a block, unroll 4 or 2)",
                  CUDA_SET(matmul_gemv_path));
}

// How the 128-row sm90 tile's blocks take their tiles: -1 PARALLM_GEMM_SCHEDULE's setting (unset: strided), 0 strided
// (block b: b, b + grid, ...), 1 drawn from a counter (native/cuda/matmul.cu's tile_counter), 2 drawn after each
// block's own first; for tests of each and benchmarks side by side. No-op without CUDA.
Napi::Value MatmulSchedule(const Napi::CallbackInfo& info) {
  return int_hook(info, "matmulSchedule", "mode", [](int n) { return n >= -1 && n <= 2; },
                  "-1 (automatic), 0 (strided), 1 (drawn) or 2 (drawn after its own)", CUDA_SET(matmul_sm90_schedule));
}

// holdSms(device, blocks): `blocks` SMs of cuda:<device> taken by a spinning kernel on a stream of its own until
// releaseSms(device) (or 30 s), as NCCL's blocks take them beside the backward in data-parallel training
// (native/cuda/hold.cu); back once they all run. For tests and benchmarks of kernels beside such work. Without
// CUDA: an error.
Napi::Value HoldSms(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Args a(info, "holdSms");
    const int device = a.i32(0, "device"), blocks = a.i32(1, "blocks");
#ifdef PARALLM_WITH_CUDA
    cuda::hold_sms(device, blocks);
#else
    fail("holdSms: this build has no CUDA (device ", device, ", ", blocks, " blocks)");
#endif
    return info.Env().Undefined();
  });
}

Napi::Value ReleaseSms(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int device = Args(info, "releaseSms").i32(0, "device");
#ifdef PARALLM_WITH_CUDA
    cuda::release_sms(device);
#else
    (void)device;
#endif
    return info.Env().Undefined();
  });
}

// busySms(device, blocks, microseconds): `blocks` SMs of a CUDA device held for that long by a kernel queued on its
// current stream (native/cuda/hold.cu's busy_sms; a graph being captured holds it): bench train's rehearsal of a
// data-parallel rank's gradient reductions on one GPU. A CPU device, or no CUDA: an error.
Napi::Value BusySms(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Args a(info, "busySms");
    const DeviceId d = a.device(0);
    const int blocks = a.i32(1, "blocks");
    const double us = a.f64(2, "microseconds");
    if (!d.is_cuda()) fail("busySms: holds SMs of a CUDA device, got ", d.str());
#ifdef PARALLM_WITH_CUDA
    cuda::busy_sms(cuda_activate(d), d.index, blocks, us);
#else
    fail("busySms: this build has no CUDA (", d.str(), ", ", blocks, " blocks, ", us, " us)");
#endif
    return info.Env().Undefined();
  });
}

// Programmatic dependent launch on sm_90+ (native/cuda/launch.cuh): 0 none, 1 the GEMVs (the default;
// PARALLM_PDL sets the start), 2 the small decode kernels too; for benchmarks side by side.
Napi::Value Pdl(const Napi::CallbackInfo& info) {
  return int_hook(info, "pdl", "level", [](int n) { return n >= 0 && n <= 2; },
                  "0 (off), 1 (the GEMVs) or 2 (every decode kernel)", CUDA_SET(set_pdl));
}

// Key chunks of decode attention (-1: chosen per call; n >= 1: n, at most one per 32 keys), so tests
// reach the combine step at any length.
Napi::Value AttentionDecodeSplits(const Napi::CallbackInfo& info) {
  return int_hook(info, "attentionDecodeSplits", "splits", [](int n) { return n == -1 || (n >= 1 && n <= 4096); },
                  "-1 (automatic) or 1..4096", CUDA_SET(attention_decode_splits));
}

// Which bf16 prefill kernel attentionPrefill and attentionForward take where both apply (D 64 or 128 on
// compute capability 9.0, layouts the TMA can express): 0 automatic (PARALLM_ATTN_PREFILL, else the wgmma
// kernel for D 128 and the mma.sync one for D 64), 1 the mma.sync kernel, 2 the wgmma kernel, 3 it with
// the intra-warpgroup overlap, 4 with the inter-warpgroup ping-pong, 5 with both (native/cuda/attention.cu);
// for tests of each and benchmarks side by side.
Napi::Value AttentionPrefillKernel(const Napi::CallbackInfo& info) {
  return int_hook(info, "attentionPrefillKernel", "kernel", [](int n) { return n >= 0 && n <= 5; },
                  "0 (automatic), 1 (the mma.sync kernel), 2 (the sm90 kernel), 3 (it with the intra-warpgroup "
                  "overlap), 4 (with the ping-pong) or 5 (with both)",
                  CUDA_SET(attention_prefill_kernel));
}

// Blocks of decodeLayerGpt2's persistent kernel (0: one a multiprocessor, the default; n >= 1: n, at most
// what fits at once), so tests run its row loops over several chunks a warp and benchmarks try grids.
Napi::Value DecodeLayerGrid(const Napi::CallbackInfo& info) {
  return int_hook(info, "decodeLayerGrid", "blocks", [](int n) { return n >= 0 && n <= 65535; },
                  "0 (one block a multiprocessor) or 1..65535 blocks", CUDA_SET(decode_layer_grid));
}
#undef CUDA_SET

}  // namespace

void export_ops(Napi::Env env, Napi::Object exports) {
  export_fn(env, exports, "matmul", OpMatmul);
  export_fn(env, exports, "attentionPrefill", OpAttentionPrefill);
  export_fn(env, exports, "attentionDecode", OpAttentionDecode);
  export_fn(env, exports, "ropeKvAttentionDecode", OpRopeKvAttentionDecode);
  export_fn(env, exports, "kvWrite", OpKvWrite);
  export_fn(env, exports, "ropeKvWrite", OpRopeKvWrite);
  export_fn(env, exports, "matmulRopeKvWrite", OpMatmulRopeKvWrite);
  export_fn(env, exports, "matmulRopeKvAttentionDecode", OpMatmulRopeKvAttentionDecode);
  export_fn(env, exports, "rmsnormMatmul", OpRmsnormMatmul);
  export_fn(env, exports, "layernormMatmul", OpLayernormMatmul);
  export_fn(env, exports, "matmulResidualNorm", OpMatmulResidualNorm);
  export_fn(env, exports, "decodeLayerGpt2", OpDecodeLayerGpt2);
  export_fn(env, exports, "rmsnormMatmulSwiglu", OpRmsnormMatmulSwiglu);
  export_fn(env, exports, "layernorm", OpLayernorm);
  export_fn(env, exports, "rmsnorm", OpRmsnorm);
  export_fn(env, exports, "gelu", OpGelu);
  export_fn(env, exports, "siluGate", OpSiluGate);
  export_fn(env, exports, "rope", OpRope);
  export_fn(env, exports, "embedding", OpEmbedding);
  export_fn(env, exports, "add", OpAdd);
  export_fn(env, exports, "cast", OpCast);
  export_fn(env, exports, "softmax", OpSoftmax);
  export_fn(env, exports, "argmax", OpArgmax);
  export_fn(env, exports, "sample", OpSample);
  export_fn(env, exports, "fillUniform", OpFillUniform);
  // training ops
  export_fn(env, exports, "sumRows", OpSumRows);
  export_fn(env, exports, "layernormBackward", OpLayernormBackward);
  export_fn(env, exports, "rmsnormBackward", OpRmsnormBackward);
  export_fn(env, exports, "geluBackward", OpGeluBackward);
  export_fn(env, exports, "geluBackwardBias", OpGeluBackwardBias);
  export_fn(env, exports, "siluGateBackward", OpSiluGateBackward);
  export_fn(env, exports, "ropeBackward", OpRopeBackward);
  export_fn(env, exports, "attentionForward", OpAttentionForward);
  export_fn(env, exports, "attentionBackward", OpAttentionBackward);
  export_fn(env, exports, "embeddingBackward", OpEmbeddingBackward);
  export_fn(env, exports, "crossEntropy", OpCrossEntropy);
  export_fn(env, exports, "sumSquares", OpSumSquares);
  export_fn(env, exports, "adamw", OpAdamw);
}

Napi::Object testing_hooks(Napi::Env env) {
  Napi::Object t = Napi::Object::New(env);
  export_fn(env, t, "matmulSplitK", MatmulSplitK);
  export_fn(env, t, "matmulWaveSplits", MatmulWaveSplits);
  export_fn(env, t, "matmulTileWidth", MatmulTileWidth);
  export_fn(env, t, "matmulTileCols", MatmulTileCols);
  export_fn(env, t, "matmulTmaStore", MatmulTmaStore);
  export_fn(env, t, "matmulTileRows", MatmulTileRows);
  export_fn(env, t, "matmulWTile", MatmulWTile);
  export_fn(env, t, "matmulGemv", MatmulGemv);
  export_fn(env, t, "attentionDecodeSplits", AttentionDecodeSplits);
  export_fn(env, t, "attentionPrefillKernel", AttentionPrefillKernel);
  export_fn(env, t, "pdl", Pdl);
  export_fn(env, t, "decodeLayerGrid", DecodeLayerGrid);
  export_fn(env, t, "matmulSchedule", MatmulSchedule);
  export_fn(env, t, "holdSms", HoldSms);
  export_fn(env, t, "releaseSms", ReleaseSms);
  export_fn(env, t, "busySms", BusySms);
  return t;
}

}  // namespace parallm::napi
