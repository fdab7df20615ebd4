// The kernel surface: one signature per op, implemented by the CPU backend (native/cpu/<op>.cc, namespace
// parallm::cpu, first argument `const cpu::Ctx&`) and the CUDA backend (native/cuda/<op>.cu, namespace
// parallm::cuda, first argument `cudaStream_t`). Both compute the same function; tests hold them to it.
//
// Conventions: pointers are device pointers of the backend; all tensors row-major; strides are in
// elements; `dt` is the element type of every floating tensor argument of the call (F32 or BF16; matmul
// on CUDA also F16); index tensors are int32. Arithmetic accumulates in f32. Kernels check their
// arguments and launches and throw parallm::Error naming the op and sizes; they never abort.
//
// This file is included twice by the backends' headers with PARALLM_KCTX defined to the context type.
#ifndef PARALLM_KCTX
#error "include native/cpu/kernels.h or native/cuda/kernels.h"
#endif
// (dtype.h and <cstdint> are included by the backend header before its namespace opens.)

// C[M,N] = alpha * A'[M,K] B'[K,N] + beta * C + bias[N]   (bias may be null; beta == 0 ignores C's contents)
// A' = A (stored [M,K]) or, with transA, A^T (A stored [K,M]); B' = B (stored [K,N]) or, with transB, B^T
// (B stored [N,K], the layout of a torch Linear weight). M <= 16 with transB takes the GEMV path.
void matmul(PARALLM_KCTX ctx, DType dt, const void* A, const void* B, const void* bias, void* C, int64_t M,
            int64_t N, int64_t K, bool transA, bool transB, float alpha, float beta);

// C[M,N] = alpha * H B^T + beta * C + bias[N] with H = rmsnorm(X [M,K], norm_w [K], eps) rounded to dt as
// rmsnorm writes it (B stored [N,K]): decode's norm and the projection after it (on CUDA one launch where
// the GEMV path applies; the same bits as rmsnorm then matmul). C must not overlap X.
void rmsnorm_matmul(PARALLM_KCTX ctx, DType dt, const void* X, const void* norm_w, const void* B, const void* bias,
                    void* C, int64_t M, int64_t N, int64_t K, float eps, float alpha, float beta);

// C[M,F] = silu(G) * U with G, U = rmsnorm_matmul(X, norm_w, Wgu, eps) split in halves (Wgu [2F,K]: the
// gate rows, then the up rows), each rounded to dt as stored, then silu_gate's arithmetic: decode's
// norm, gate+up projection and SwiGLU (on CUDA one launch where the GEMV path applies; the same bits as
// rmsnorm_matmul then silu_gate). norm_w null: X is the normalized input already (matmul then silu_gate).
// C must not overlap X.
void rmsnorm_matmul_swiglu(PARALLM_KCTX ctx, DType dt, const void* X, const void* norm_w, const void* Wgu, void* C,
                           int64_t M, int64_t F, int64_t K, float eps);

// C[M,N] = act(H B^T + bias[N]) with H = layernorm(X [M,K], gamma, beta, eps) rounded to dt as layernorm
// writes it (B stored [N,K]) and act gelu (GPT-2's tanh form, on the product rounded to dt) or none:
// GPT-2 decode's norm and the projection after it (qkv; the MLP's up projection with its GELU). On CUDA
// one launch where the fused GEMV applies (PARALLM_GEMV_FUSE=1, a few rows); the same bits as layernorm,
// matmul, then gelu. gamma and beta null: X is the normalized input already (matmul, then gelu). C must
// not overlap X.
void layernorm_matmul(PARALLM_KCTX ctx, DType dt, const void* X, const void* gamma, const void* beta, const void* B,
                      const void* bias, void* C, int64_t M, int64_t N, int64_t K, float eps, bool gelu);

// R[M,N] += A[M,K] B^T + bias[N] (B stored [N,K]; the bits of matmul with beta = 1), then H[M,N] = the norm
// of R's rows: rmsnorm(R, norm_w, eps), or layernorm(R, norm_w, norm_b, eps) when norm_b is not null (the
// bits those ops write). Decode's residual projection and the norm that reads the residual next; on CUDA
// one launch where the register GEMV applies, counting its blocks on `counter` (a u32 on the device, zero,
// left zero; null: the ops apart). H must not overlap R or A.
void matmul_residual_norm(PARALLM_KCTX ctx, DType dt, const void* A, const void* B, const void* bias, void* R,
                          const void* norm_w, const void* norm_b, void* H, uint32_t* counter, int64_t M, int64_t N,
                          int64_t K, float eps);

// Causal attention for prefill, flash-style (no score matrix in device memory on the GPU).
// For batch b, query head h (kv head g = h / (Hq / Hkv)), query i < Tq, key j < Tk:
//   out[b,i,h,:] = sum_j softmax_j(scale * q[b,i,h,:].k[b,j,g,:]) v[b,j,g,:]  over j <= i + (Tk - Tq)
// q[b,i,h,d] = q[b*q_bstride + i*q_tstride + h*D + d]; k and v alike with kv_bstride, kv_tstride.
// out is contiguous [B, Tq, Hq, D]. Tk >= Tq (the last Tq keys are the queries' own positions).
void attention_prefill(PARALLM_KCTX ctx, DType dt, const void* q, const void* k, const void* v, void* out, int B,
                       int Tq, int Tk, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride,
                       int64_t kv_bstride, int64_t kv_tstride, float scale);

// Decode: one query per sequence over a KV cache. q[b,h,d] = q[b*q_bstride + h*D + d]; cache rows
// k[b,j,g,d] = k[b*kv_bstride + j*kv_tstride + g*D + d] for j < lens[b] (lens: int32[B] in device memory,
// so a captured graph replays with new lengths; 1 <= lens[b] <= max_len). out contiguous [B, Hq, D].
// counter (optional): B*Hq zeros in device memory, left zero: on CUDA the key chunks are then merged by the
// split kernel's last block (no combine launch; the same bits). The CPU backend ignores it.
void attention_decode(PARALLM_KCTX ctx, DType dt, const void* q, const void* k, const void* v,
                      const int32_t* lens, void* out, int B, int Hq, int Hkv, int D, int64_t q_bstride,
                      int64_t kv_bstride, int64_t kv_tstride, int max_len, float scale, uint32_t* counter = nullptr);

// Write T new rows per sequence into a cache of max_len rows at positions pos[b] (int32[B], device):
// dst[b*dst_bstride + (pos[b]+t)*dst_tstride + w] = src[b*src_bstride + t*src_tstride + w], w < W.
// A sequence whose rows would fall outside [0, max_len) writes nothing (positions live on the device,
// so they cannot be checked before the launch; a wrong one must not write past the cache).
void kv_write(PARALLM_KCTX ctx, DType dt, const void* src, void* dst, const int32_t* pos, int B, int T, int64_t W,
              int64_t src_bstride, int64_t src_tstride, int64_t dst_bstride, int64_t dst_tstride, int64_t max_len);

// Decode's rope and cache write in one launch (one token per sequence). Row b of qkv starts at
// qkv[b*qkv_stride] and holds Hq query heads, then Hkv key heads, then Hkv value heads, D elements each.
// With rot_dim > 0 the q and k heads are rotated in place exactly as rope(qkv, pos, R = B, H = Hq + Hkv,
// D, qkv_stride, rot_dim, theta, freqs) does (rot_dim == 0: no rotation); then the (rotated) k heads and
// the v heads are written at cache row pos[b] exactly as kv_write(T = 1, W = Hkv*D) writes them into kc
// and vc (kv_bstride, kv_tstride), a sequence with pos[b] outside [0, max_len) writing nothing there.
void rope_kv_write(PARALLM_KCTX ctx, DType dt, void* qkv, void* kc, void* vc, const int32_t* pos, int B, int Hq,
                   int Hkv, int D, int64_t qkv_stride, int rot_dim, float theta, const float* freqs,
                   int64_t kv_bstride, int64_t kv_tstride, int64_t max_len);

// Decode's qkv projection with its rope and cache write, defined as
//   matmul(X [M,K], W [N,K] transposed, bias, qkv [M,N]) with N = (Hq + 2 Hkv) D (qkv dense, alpha 1, beta 0)
//   rope_kv_write(qkv, kc, vc, pos, B = M, Hq, Hkv, D, qkv_stride = N, rot_dim, theta, freqs, kv strides, max_len)
// On CUDA, where the product is cut in K slices, their sum and the rope are one launch (the same bits as the two
// calls); otherwise, and on the CPU, the two calls.
void matmul_rope_kv_write(PARALLM_KCTX ctx, DType dt, const void* X, const void* W, const void* bias, void* qkv,
                          void* kc, void* vc, const int32_t* pos, int64_t M, int64_t K, int Hq, int Hkv, int D,
                          int rot_dim, float theta, const float* freqs, int64_t kv_bstride, int64_t kv_tstride,
                          int64_t max_len);

// Decode's qkv projection, rope, cache write and attention for one new token a sequence, defined as
//   matmul_rope_kv_write(X, W, bias, qkv, kc, vc, pos, M, K, Hq, Hkv, D, rot_dim, theta, freqs, kv strides, max_len)
//   attention_decode(q heads of qkv, kc, vc, lens, out, B = M, Hq, Hkv, D, q_bstride = (Hq + 2 Hkv) D, kv strides,
//                    max_len, scale, counter)
// qkv [M, (Hq + 2 Hkv) D] is scratch: its contents are unspecified after the call. On CUDA, where the product is cut
// in K slices, the attention kernel sums them, rotates and writes the caches itself (one launch where the reduce and
// the attention took two; the same bits); otherwise, and on the CPU, the ops it is defined as.
void matmul_rope_kv_attention_decode(PARALLM_KCTX ctx, DType dt, const void* X, const void* W, const void* bias,
                                     void* qkv, void* kc, void* vc, const int32_t* pos, const int32_t* lens, void* out,
                                     int64_t M, int64_t K, int Hq, int Hkv, int D, int rot_dim, float theta,
                                     const float* freqs, int64_t kv_bstride, int64_t kv_tstride, int max_len, float scale,
                                     uint32_t* counter = nullptr);

// Decode's rope, cache write and attention for one new token a sequence, defined as
//   rope_kv_write(copy of qkv, kc, vc, pos, ..., rot_dim, theta, freqs, kv strides, max_len)
//   attention_decode(q heads of that copy, kc, vc, lens, ..., q_bstride = qkv_stride, max_len, scale, counter)
// with qkv itself left as it is (only read). On CUDA one launch (decode_split's FRESH form: the same bits as
// the two launches); the CPU runs that composition on a copy of the rows.
void rope_kv_attention_decode(PARALLM_KCTX ctx, DType dt, const void* qkv, void* kc, void* vc, const int32_t* pos,
                              const int32_t* lens, void* out, int B, int Hq, int Hkv, int D, int64_t qkv_stride,
                              int rot_dim, float theta, const float* freqs, int64_t kv_bstride, int64_t kv_tstride,
                              int max_len, float scale, uint32_t* counter = nullptr);

// One GPT-2 decode layer (one token per sequence, B sequences), defined as the ops apart in this order:
//   qkv = layernorm_matmul(x, g1, b1, wqkv [3C, C], bqkv)             (rows [B, 3C]: q, k, v; H heads of D)
//   rope_kv_write(qkv, kc, vc, pos, B, H, H, D, 3C, rot_dim 0, ...)  (k, v into the caches at pos[b])
//   att = attention_decode(q of qkv, kc, vc, lens, B, H, H, D, scale 1/sqrt(D))                 ([B, C])
//   x = matmul(att, wout [C, C], bout, x, beta 1)
//   a = layernorm_matmul(x, g2, b2, wup [4C, C], bup, gelu)                                      ([B, 4C])
//   x = matmul(a, wdown [C, 4C], bdown, x, beta 1)
// x [B, C] is updated in place; biases may be null; the caches are [B, max_len, H, D]-like with strides
// kv_bstride, kv_tstride (elements); pos, lens: int32[B] on the device (lens[b] = pos[b] + 1 in decode).
// The CPU runs exactly that composition (f32, bf16). CUDA (bf16 only) runs it as ONE persistent
// cooperative kernel (native/cuda/decode_layer.cu: phases between grid barriers counted on `counter`, a
// u32 on the device whose low 31 bits are zero, left as found, so a zero counter of matmul_residual_norm
// serves), equal to the composition to bf16 rounding (its sums run in another order); sizes outside
// decode_layer_gpt2_supported are an error there.
void decode_layer_gpt2(PARALLM_KCTX ctx, DType dt, void* x, const void* g1, const void* b1, const void* wqkv,
                       const void* bqkv, const void* wout, const void* bout, const void* g2, const void* b2,
                       const void* wup, const void* bup, const void* wdown, const void* bdown, void* kc, void* vc,
                       const int32_t* pos, const int32_t* lens, uint32_t* counter, int B, int C, int H, int D,
                       int64_t kv_bstride, int64_t kv_tstride, int max_len, float eps);
// The sizes the CUDA kernel takes: 1 <= B <= 4, D 64 or 128, C = H D <= 1024 (C % 8 == 0 follows), cache
// strides multiples of 8 (16-byte rows) with room for a token's C values, max_len >= 1.
inline bool decode_layer_gpt2_supported(int B, int C, int H, int D, int64_t kv_bstride, int64_t kv_tstride,
                                        int max_len) {
  return B >= 1 && B <= 4 && (D == 64 || D == 128) && H >= 1 && int64_t(H) * D == C && C <= 1024 &&
         kv_tstride >= C && kv_tstride % 8 == 0 && kv_bstride % 8 == 0 && max_len >= 1;
}

// y = (x - mean) * rstd * gamma + beta per row of C; mean/rstd (f32[R]) written when non-null.
void layernorm(PARALLM_KCTX ctx, DType dt, const void* x, const void* gamma, const void* beta, void* y,
               float* mean, float* rstd, int64_t R, int64_t C, float eps);

// y = x * rsqrt(mean(x^2) + eps) * w per row of C; rstd (f32[R]) written when non-null.
void rmsnorm(PARALLM_KCTX ctx, DType dt, const void* x, const void* w, void* y, float* rstd, int64_t R,
             int64_t C, float eps);

// GELU, tanh form (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), n elements.
void gelu(PARALLM_KCTX ctx, DType dt, const void* x, void* y, int64_t n);

// y[r,f] = silu(gate[r*in_stride + f]) * up[r*in_stride + f]; y contiguous [R, F].
void silu_gate(PARALLM_KCTX ctx, DType dt, const void* gate, const void* up, void* y, int64_t R, int64_t F,
               int64_t in_stride);

// Rotary embedding in place, Hugging Face "rotate_half" layout, on the first rot_dim of each head:
// for i < rot_dim/2, f = f32(theta^(-2i/rot_dim)), a = f32(pos[r] * f) (in f32, as Hugging Face forms it),
// x1 = x[i], x2 = x[i + rot_dim/2]:
//   x[i] = x1 cos a - x2 sin a;  x[i + rot_dim/2] = x2 cos a + x1 sin a.
// Row r (token), head h starts at x[r*tstride + h*D]; pos is int32[R] in device memory.
// freqs: null, or f32[rot_dim/2] in device memory giving f per dimension (scaled RoPE such as LLaMA 3's,
// whose frequencies no single theta describes); theta is then unused. The angle is still float(pos) * f.
void rope(PARALLM_KCTX ctx, DType dt, void* x, const int32_t* pos, int64_t R, int H, int D, int64_t tstride,
          int rot_dim, float theta, const float* freqs = nullptr);

// out[n, :] = table[ids[n], :] (C columns); ids outside [0, V) give a row of zeros (the TS layer rejects
// them earlier when it can see them).
void embedding(PARALLM_KCTX ctx, DType dt, const int32_t* ids, const void* table, void* out, int64_t N,
               int64_t V, int64_t C);

// y[i] = a[i] + b[i % b_period], i < n (b_period == n: same shape; == C: a bias row broadcast).
void add(PARALLM_KCTX ctx, DType dt, const void* a, const void* b, void* y, int64_t n, int64_t b_period);

// Convert n elements between any two of F32, BF16, F16 (round to nearest even).
void cast(PARALLM_KCTX ctx, DType src_dt, const void* src, DType dst_dt, void* dst, int64_t n);

// y = softmax(scale * x) per row of C.
void softmax(PARALLM_KCTX ctx, DType dt, const void* x, void* y, int64_t R, int64_t C, float scale);

// out[r] = index of the largest x in row r (the first such on ties); NaN never wins over a number.
void argmax(PARALLM_KCTX ctx, DType dt, const void* x, int32_t* out, int64_t R, int64_t C);

// Seeded sampling, one token per row of V logits (same algorithm on both backends):
//   temperature <= 0: argmax. Else e_i = expf(x_i / temperature - max), S = f32(sum of e in f64),
//   p_i = e_i / S (f32). Every sum below is taken in f64, so its order does not change the token.
//   top_k > 0 (and < V): keep tokens whose logit >= the k-th largest logit (ties kept).
//   top_p < 1: among those, keep tokens with p >= tau, tau the largest value such that the kept mass
//   >= top_p * (mass of the top-k set).
//   u = uniform01(seed, rows ? rows[r] : r, offsets ? offsets[r] : 0) (native/core/rng.h): keyed on the
//   sequence's row of the whole batch when a call samples part of it; target = u * kept mass; walk
//   the kept tokens in index order summing p; the token is the first where the sum exceeds target
//   (the last kept token if rounding leaves none).
void sample(PARALLM_KCTX ctx, DType dt, const void* logits, int32_t* out, int64_t R, int64_t V,
            float temperature, int top_k, float top_p, uint64_t seed, const int32_t* offsets, const int32_t* rows);

// out[i] = low + (high - low) * uniform01(seed, 0, i) for i < n (native/core/rng.h): the same values on
// either backend, filled on the device (random-init presets of billions of weights never cross PCIe).
void fill_uniform(PARALLM_KCTX ctx, DType dt, void* out, int64_t n, uint64_t seed, float low, float high);

// ============================================================================================ training
// Backward kernels, one beside each forward family in the backend files (as llm.c keeps them). Gradient
// tensors have the element type `dt` of the call, like the activations. "+=" means the kernel adds into
// what is there (gradients summed over uses and micro-steps; the caller zeroes them once); "=" means it
// overwrites. Partial sums are f32 and, on both backends, deterministic: the same inputs give the same
// bits on every run (no floating-point atomics whose order varies).
//
// Linear / matmul backward needs no kernel of its own: dX = dY W and dW += dY^T X are matmuls (transA,
// beta = 1); the bias gradient is sum_rows.

// out[c] (+)= sum over r < R of x[r*C + c], summed in f32 (accumulate: +=, else =). out has C elements.
void sum_rows(PARALLM_KCTX ctx, DType dt, const void* x, void* out, int64_t R, int64_t C, bool accumulate);

// LayerNorm backward, with mean and rstd (f32[R]) saved by the forward; xhat = (x - mean) * rstd:
//   dgamma[c] += sum_r dy[r,c] xhat[r,c];  dbeta[c] += sum_r dy[r,c]
//   g = dy * gamma;  dx[r,c] += rstd[r] * (g[r,c] - mean_c(g[r,:]) - xhat[r,c] * mean_c(g[r,:] xhat[r,:]))
void layernorm_backward(PARALLM_KCTX ctx, DType dt, const void* dy, const void* x, const void* gamma,
                        const float* mean, const float* rstd, void* dx, void* dgamma, void* dbeta, int64_t R,
                        int64_t C);

// layernorm_backward, and dsum[c] (+)= sum_r dx[r,c] over the dx it leaves, as stored (dsum_accumulate: +=):
// in training the gradient of the bias of the linear layer whose output the normed stream adds (GPT-2's
// attention-out and MLP-down projections), with no second read of dx. A null dsum: layernorm_backward alone.
void layernorm_backward_dsum(PARALLM_KCTX ctx, DType dt, const void* dy, const void* x, const void* gamma,
                             const float* mean, const float* rstd, void* dx, void* dgamma, void* dbeta, void* dsum,
                             bool dsum_accumulate, int64_t R, int64_t C);

// RMSNorm backward, with rstd (f32[R]) saved by the forward; xhat = x * rstd:
//   dw[c] += sum_r dy[r,c] xhat[r,c]
//   g = dy * w;  dx[r,c] += rstd[r] * (g[r,c] - xhat[r,c] * mean_c(g[r,:] xhat[r,:]))
void rmsnorm_backward(PARALLM_KCTX ctx, DType dt, const void* dy, const void* x, const void* w, const float* rstd,
                      void* dx, void* dw, int64_t R, int64_t C);

// dx = dy * gelu'(x) (the tanh form's exact derivative), n elements; dx may be dy (in place).
void gelu_backward(PARALLM_KCTX ctx, DType dt, const void* x, const void* dy, void* dx, int64_t n);

// gelu_backward over x, dy, dx [R, C] and the bias gradient dbias[c] (+)= sum_r dx[r,c] (dx as stored; what
// sum_rows of dx gives, within f32 order), in one pass over dx: the up projection's bias in training.
void gelu_backward_bias(PARALLM_KCTX ctx, DType dt, const void* x, const void* dy, void* dx, void* dbias, int64_t R,
                        int64_t C, bool accumulate);

// Backward of silu_gate: with s = sigmoid(gate), y = gate s up, dy contiguous [R, F]:
//   dgate[r*in_stride + f] = dy up s (1 + gate (1 - s));  dup[r*in_stride + f] = dy gate s  (both =)
// (gate/up and dgate/dup may be the two halves of one [R, 2F] buffer: in_stride = 2F.)
void silu_gate_backward(PARALLM_KCTX ctx, DType dt, const void* gate, const void* up, const void* dy, void* dgate,
                        void* dup, int64_t R, int64_t F, int64_t in_stride);

// Rope backward in place: the inverse rotation (angle -a, same a as rope), so rope_backward(rope(x)) = x.
void rope_backward(PARALLM_KCTX ctx, DType dt, void* dx, const int32_t* pos, int64_t R, int H, int D,
                   int64_t tstride, int rot_dim, float theta, const float* freqs = nullptr);

// Causal attention over T tokens per sequence (Tq = Tk = T), as attention_prefill, forward for training:
// out as attention_prefill, and lse[(b*Hq + h)*T + i] = log sum_j exp(scale q.k_j) (f32) for the backward.
void attention_forward(PARALLM_KCTX ctx, DType dt, const void* q, const void* k, const void* v, void* out,
                       float* lse, int B, int T, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride,
                       int64_t kv_bstride, int64_t kv_tstride, float scale);

// Attention backward, flash-style (scores recomputed from q, k and lse, never stored whole): with
// P = exp(scale q k^T - lse) under the causal mask, dP = dout v^T, dS = P (dP - rowsum(dout * out)):
//   dq = scale dS k;  dk = scale dS^T q;  dv = P^T dout   (all =; dk, dv summed over a group's q heads)
// q/dq use q_bstride/q_tstride, k/v/dk/dv use kv_bstride/kv_tstride (so dq, dk, dv may be views of one
// fused [B*T, (Hq + 2 Hkv) D] buffer); out and dout are contiguous [B, T, Hq, D]. workspace: f32 of
// attention_backward_workspace(B, T, Hq, D) elements, for the backend's partial sums.
void attention_backward(PARALLM_KCTX ctx, DType dt, const void* q, const void* k, const void* v, const void* out,
                        const void* dout, const float* lse, void* dq, void* dk, void* dv, float* workspace, int B,
                        int T, int Hq, int Hkv, int D, int64_t q_bstride, int64_t q_tstride, int64_t kv_bstride,
                        int64_t kv_tstride, float scale);
inline int64_t attention_backward_workspace(int64_t B, int64_t T, int64_t Hq, int64_t D) { return B * Hq * T * (D + 1); }

// Embedding backward: dtable[ids[n], :] += scale * dout[n, :] for n < N (C columns); ids outside [0, V) add
// nothing. Deterministic: rows with the same id are summed in n order, then scaled once (scale 1: the sum).
void embedding_backward(PARALLM_KCTX ctx, DType dt, const int32_t* ids, const void* dout, void* dtable, int64_t N,
                        int64_t V, int64_t C, float scale = 1.f);

// The classifier, fused: per row r of V logits (row r starts at element r * ld, ld >= V) with target
// t = targets[r]:
//   losses[r] = logsumexp(logits[r,:V]) - logits[r,t]  (f32; 0 when t == ignore_index)
//   dlogits[r,v] = dscale * (softmax(logits[r,:V])[v] - (v == t)) for v < V  (0 for the whole row when
//   t == ignore_index), and 0 for V <= v < ld
// dlogits may be null (loss only) or logits itself (in place: llm.c's trick, the probabilities are never
// stored apart). Targets outside [0, V) other than ignore_index count as ignored. ld > V pads each row (as
// llm.c pads GPT-2's 50257 to 50304) so the matmuls over the logits' gradient get aligned rows.
void cross_entropy(PARALLM_KCTX ctx, DType dt, const void* logits, const int32_t* targets, float* losses,
                   void* dlogits, int64_t R, int64_t V, int64_t ld, int ignore_index, float dscale);

// out[0] = sum over i < n of f32(x[i])^2 (=), summed in f32 in a fixed order: the gradient's squared norm.
void sum_squares(PARALLM_KCTX ctx, DType dt, const void* x, float* out, int64_t n);

// AdamW over one flat parameter buffer, fused (one kernel for every parameter). master, m, v are f32[n];
// grad has type dt; param (type dt, may be null) receives the updated master cast to dt (the compute copy).
// Elements [0, n_decay) get decoupled weight decay, the rest (norms, biases) none. With g = grad * grad_scale:
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  mh = m / (1 - b1^step);  vh = v / (1 - b2^step)
//   master -= lr (mh / (sqrt(vh) + eps) + wd master [i < n_decay]);  param = dt(master)
void adamw(PARALLM_KCTX ctx, DType dt, float* master, void* param, const void* grad, float* m, float* v, int64_t n,
           int64_t n_decay, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale,
           int step);
