// Float64 references for the training kernels (native/core/kernels.h, section "training"), written from
// the definitions, not from the kernels: attention gradients from the full score matrix, AdamW step by
// step. As in reference.ts, inputs are the values the tensors hold (read back after rounding).
type Arr = ArrayLike<number>;

export function sumRowsRef(x: Arr, R: number, C: number, base: Arr | null): Float64Array {
  const y = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let s = base ? base[c]! : 0;
    for (let r = 0; r < R; r++) s += x[r * C + c]!;
    y[c] = s;
  }
  return y;
}

/** LayerNorm backward from x and the saved mean/rstd; returns dx, dgamma, dbeta added to the given bases. */
export function layernormBackwardRef(dy: Arr, x: Arr, gamma: Arr, mean: Arr, rstd: Arr, R: number, C: number, dx0: Arr, dg0: Arr, db0: Arr) {
  const dx = Float64Array.from(dx0), dgamma = Float64Array.from(dg0), dbeta = Float64Array.from(db0);
  for (let r = 0; r < R; r++) {
    const xh = (c: number) => (x[r * C + c]! - mean[r]!) * rstd[r]!;
    let mg = 0, mgx = 0;
    for (let c = 0; c < C; c++) {
      const g = dy[r * C + c]! * gamma[c]!;
      mg += g;
      mgx += g * xh(c);
      dgamma[c]! += dy[r * C + c]! * xh(c);
      dbeta[c]! += dy[r * C + c]!;
    }
    mg /= C;
    mgx /= C;
    for (let c = 0; c < C; c++) dx[r * C + c]! += rstd[r]! * (dy[r * C + c]! * gamma[c]! - mg - xh(c) * mgx);
  }
  return { dx, dgamma, dbeta };
}

export function rmsnormBackwardRef(dy: Arr, x: Arr, w: Arr, rstd: Arr, R: number, C: number, dx0: Arr, dw0: Arr) {
  const dx = Float64Array.from(dx0), dw = Float64Array.from(dw0);
  for (let r = 0; r < R; r++) {
    let mgx = 0;
    for (let c = 0; c < C; c++) {
      const xh = x[r * C + c]! * rstd[r]!;
      mgx += dy[r * C + c]! * w[c]! * xh;
      dw[c]! += dy[r * C + c]! * xh;
    }
    mgx /= C;
    for (let c = 0; c < C; c++) dx[r * C + c]! += rstd[r]! * (dy[r * C + c]! * w[c]! - x[r * C + c]! * rstd[r]! * mgx);
  }
  return { dx, dw };
}

/** d/dx of 0.5 x (1 + tanh(k (x + 0.044715 x^3))), times dy. */
export function geluBackwardRef(x: Arr, dy: Arr): Float64Array {
  const k = Math.sqrt(2 / Math.PI);
  return Float64Array.from(x, (v, i) => {
    const t = Math.tanh(k * (v + 0.044715 * v ** 3));
    return dy[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k * (1 + 3 * 0.044715 * v * v));
  });
}

/** dgate, dup at their strided places (other elements: taken from base0, the buffers' prior contents). */
export function siluGateBackwardRef(gate: Arr, up: Arr, dy: Arr, R: number, F: number, st: number, dg0: Arr, du0: Arr) {
  const dgate = Float64Array.from(dg0), dup = Float64Array.from(du0);
  for (let r = 0; r < R; r++)
    for (let f = 0; f < F; f++) {
      const g = gate[r * st + f]!, u = up[r * st + f]!, d = dy[r * F + f]!;
      const s = 1 / (1 + Math.exp(-g));
      dgate[r * st + f] = d * u * s * (1 + g * (1 - s));
      dup[r * st + f] = d * g * s;
    }
  return { dgate, dup };
}

/** The transpose (= inverse) of the rope rotation, angle formed in f32 as the kernels form it. */
export function ropeBackwardRef(dx: Arr, pos: Arr, R: number, H: number, D: number, st: number, rot: number, theta: number): Float64Array {
  const y = Float64Array.from(dx);
  const half = rot / 2;
  for (let r = 0; r < R; r++)
    for (let h = 0; h < H; h++) {
      const base = r * st + h * D;
      for (let i = 0; i < half; i++) {
        const a = Math.fround(pos[r]! * Math.fround(theta ** ((-2 * i) / rot)));
        const y1 = dx[base + i]!, y2 = dx[base + i + half]!;
        y[base + i] = y1 * Math.cos(a) + y2 * Math.sin(a);
        y[base + i + half] = y2 * Math.cos(a) - y1 * Math.sin(a);
      }
    }
  return y;
}

export interface AttnDims { B: number; T: number; Hq: number; Hkv: number; D: number; qB: number; qT: number; kB: number; kT: number; scale: number }

/** Causal attention over T tokens: out [B, T, Hq, D] and lse [B, Hq, T] (log-sum-exp of the scaled scores). */
export function attentionForwardRef(q: Arr, k: Arr, v: Arr, a: AttnDims) {
  const { B, T, Hq, Hkv, D, qB, qT, kB, kT, scale } = a;
  const out = new Float64Array(B * T * Hq * D), lse = new Float64Array(B * Hq * T);
  const G = Hq / Hkv;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      for (let i = 0; i < T; i++) {
        const s = scores(q, k, a, b, h, g, i);
        const mx = Math.max(...s);
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += Math.exp(s[j]! - mx);
        lse[(b * Hq + h) * T + i] = mx + Math.log(sum);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j <= i; j++) acc += Math.exp(s[j]! - mx) * v[b * kB + j * kT + g * D + d]!;
          out[((b * T + i) * Hq + h) * D + d] = acc / sum;
        }
      }
    }
  void scale;
  return { out, lse };
}

function scores(q: Arr, k: Arr, a: AttnDims, b: number, h: number, g: number, i: number): number[] {
  const s: number[] = [];
  for (let j = 0; j <= i; j++) {
    let dot = 0;
    for (let d = 0; d < a.D; d++) dot += q[b * a.qB + i * a.qT + h * a.D + d]! * k[b * a.kB + j * a.kT + g * a.D + d]!;
    s.push(dot * a.scale);
  }
  return s;
}

/**
 * Gradients of sum(dout * attention(q, k, v)) by the chain rule over the whole (causal) probability matrix:
 * dv_j = sum_i P_ij dout_i; dP_ij = dout_i . v_j; dS = P (dP - sum_j P dP); dq = scale dS k, dk = scale dS^T q.
 * dq, dk, dv come back at q's / k's strided places (elements between heads: taken from base0 arrays).
 * `out`, when given (the forward's stored output), stands in for sum_j P dP = dout . out, as the kernels use it.
 */
export function attentionBackwardRef(q: Arr, k: Arr, v: Arr, dout: Arr, a: AttnDims, dq0: Arr, dk0: Arr, dv0: Arr, out?: Arr) {
  const { B, T, Hq, Hkv, D, qB, qT, kB, kT, scale } = a;
  const dq = Float64Array.from(dq0), dk = Float64Array.from(dk0), dv = Float64Array.from(dv0);
  const G = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) for (let h = 0; h < Hq; h++) for (let d = 0; d < D; d++) dq[b * qB + i * qT + h * D + d] = 0;
    for (let j = 0; j < T; j++) for (let g = 0; g < Hkv; g++) for (let d = 0; d < D; d++) dk[b * kB + j * kT + g * D + d] = dv[b * kB + j * kT + g * D + d] = 0;
    for (let h = 0; h < Hq; h++) {
      const g = Math.floor(h / G);
      for (let i = 0; i < T; i++) {
        const s = scores(q, k, a, b, h, g, i);
        const mx = Math.max(...s);
        const e = s.map((x) => Math.exp(x - mx));
        const sum = e.reduce((x, y) => x + y, 0);
        const P = e.map((x) => x / sum);
        const dO = (d: number) => dout[((b * T + i) * Hq + h) * D + d]!;
        const dP = P.map((_, j) => {
          let t = 0;
          for (let d = 0; d < D; d++) t += dO(d) * v[b * kB + j * kT + g * D + d]!;
          return t;
        });
        let rowsum = 0;
        if (out) for (let d = 0; d < D; d++) rowsum += dO(d) * out[((b * T + i) * Hq + h) * D + d]!;
        else for (let j = 0; j <= i; j++) rowsum += P[j]! * dP[j]!;
        for (let j = 0; j <= i; j++) {
          const dS = P[j]! * (dP[j]! - rowsum);
          for (let d = 0; d < D; d++) {
            const qi = b * qB + i * qT + h * D + d, kj = b * kB + j * kT + g * D + d;
            dq[qi]! += scale * dS * k[kj]!;
            dk[kj]! += scale * dS * q[qi]!;
            dv[kj]! += P[j]! * dO(d);
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

export function embeddingBackwardRef(ids: Arr, dout: Arr, V: number, C: number, base: Arr, scale = 1): Float64Array {
  const y = Float64Array.from(base);
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n]!;
    if (id >= 0 && id < V) for (let c = 0; c < C; c++) y[id * C + c]! += scale * dout[n * C + c]!;
  }
  return y;
}

export function crossEntropyRef(x: Arr, targets: Arr, R: number, V: number, ignore: number, dscale: number) {
  const losses = new Float64Array(R), dlogits = new Float64Array(R * V);
  for (let r = 0; r < R; r++) {
    const t = targets[r]!;
    if (t === ignore || t < 0 || t >= V) continue;
    let mx = -Infinity;
    for (let c = 0; c < V; c++) mx = Math.max(mx, x[r * V + c]!);
    let s = 0;
    for (let c = 0; c < V; c++) s += Math.exp(x[r * V + c]! - mx);
    const lse = mx + Math.log(s);
    losses[r] = lse - x[r * V + t]!;
    for (let c = 0; c < V; c++) dlogits[r * V + c] = dscale * (Math.exp(x[r * V + c]! - lse) - (c === t ? 1 : 0));
  }
  return { losses, dlogits };
}

export function sumSquaresRef(x: Arr): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

export interface AdamwRefOptions { nDecay: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; gradScale: number }

/** AdamW (decoupled weight decay on [0, nDecay)), one step per entry of grads, in float64. */
export function adamwRef(master0: Arr, m0: Arr, v0: Arr, grads: Arr[], o: AdamwRefOptions, firstStep = 1) {
  const master = Float64Array.from(master0), m = Float64Array.from(m0), v = Float64Array.from(v0);
  grads.forEach((grad, s) => {
    const step = firstStep + s;
    const bc1 = 1 - o.beta1 ** step, bc2 = 1 - o.beta2 ** step;
    for (let i = 0; i < master.length; i++) {
      const g = grad[i]! * o.gradScale;
      m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g * g;
      const upd = m[i]! / bc1 / (Math.sqrt(v[i]! / bc2) + o.eps) + (i < o.nDecay ? o.weightDecay * master[i]! : 0);
      master[i]! -= o.lr * upd;
    }
  });
  return { master, m, v };
}
