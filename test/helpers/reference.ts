// Float64 references for every kernel, written for clarity, not speed. Inputs are the values the
// tensors actually hold (read back after rounding to the dtype), so the references see what the kernels saw.
type Arr = ArrayLike<number>;

export function matmulRef(a: Arr, b: Arr, bias: Arr | null, c0: Arr | null, M: number, N: number, K: number, transA: boolean, transB: boolean, alpha = 1, beta = 0): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[transA ? k * M + m : m * K + k]! * b[transB ? n * K + k : k * N + n]!;
      out[m * N + n] = alpha * s + (beta && c0 ? beta * c0[m * N + n]! : 0) + (bias ? bias[n]! : 0);
    }
  return out;
}

export function attentionPrefillRef(q: Arr, k: Arr, v: Arr, B: number, Tq: number, Tk: number, Hq: number, Hkv: number, D: number, qB: number, qT: number, kB: number, kT: number, scale: number): Float64Array {
  const out = new Float64Array(B * Tq * Hq * D);
  const g = Hq / Hkv;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / g);
      for (let i = 0; i < Tq; i++) {
        const last = i + (Tk - Tq);
        const s = new Float64Array(last + 1);
        let mx = -Infinity;
        for (let j = 0; j <= last; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[b * qB + i * qT + h * D + d]! * k[b * kB + j * kT + kh * D + d]!;
          s[j] = dot * scale;
          mx = Math.max(mx, s[j]!);
        }
        let sum = 0;
        for (let j = 0; j <= last; j++) sum += s[j] = Math.exp(s[j]! - mx);
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j <= last; j++) acc += s[j]! * v[b * kB + j * kT + kh * D + d]!;
          out[((b * Tq + i) * Hq + h) * D + d] = acc / sum;
        }
      }
    }
  return out;
}

export function attentionDecodeRef(q: Arr, k: Arr, v: Arr, lens: Arr, B: number, Hq: number, Hkv: number, D: number, qS: number, kB: number, kT: number, scale: number): Float64Array {
  const out = new Float64Array(B * Hq * D);
  for (let b = 0; b < B; b++) {
    const L = lens[b]!;
    // Decode is prefill with one query that sees every key.
    const o = attentionPrefillRef(
      Array.from({ length: Hq * D }, (_, i) => q[b * qS + i]!),
      Array.from({ length: L * kT }, (_, i) => k[b * kB + i]!),
      Array.from({ length: L * kT }, (_, i) => v[b * kB + i]!),
      1, 1, L, Hq, Hkv, D, 0, Hq * D, 0, kT, scale,
    );
    out.set(o, b * Hq * D);
  }
  return out;
}

export function layernormRef(x: Arr, g: Arr, beta: Arr, R: number, C: number, eps: number) {
  const y = new Float64Array(R * C), mean = new Float64Array(R), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let m = 0;
    for (let c = 0; c < C; c++) m += x[r * C + c]!;
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[r * C + c]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (let c = 0; c < C; c++) y[r * C + c] = (x[r * C + c]! - m) * rs * g[c]! + beta[c]!;
  }
  return { y, mean, rstd };
}

export function rmsnormRef(x: Arr, w: Arr, R: number, C: number, eps: number) {
  const y = new Float64Array(R * C), rstd = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[r * C + c]! ** 2;
    const rs = 1 / Math.sqrt(ss / C + eps);
    rstd[r] = rs;
    for (let c = 0; c < C; c++) y[r * C + c] = x[r * C + c]! * rs * w[c]!;
  }
  return { y, rstd };
}

export const geluRef = (x: Arr) =>
  Float64Array.from(x, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));

export function siluGateRef(gate: Arr, up: Arr, R: number, F: number, st: number): Float64Array {
  const y = new Float64Array(R * F);
  for (let r = 0; r < R; r++)
    for (let f = 0; f < F; f++) {
      const gv = gate[r * st + f]!;
      y[r * F + f] = (gv / (1 + Math.exp(-gv))) * up[r * st + f]!;
    }
  return y;
}

export function ropeRef(x: Arr, pos: Arr, R: number, H: number, D: number, st: number, rot: number, theta: number): Float64Array {
  const y = Float64Array.from(x);
  const half = rot / 2;
  for (let r = 0; r < R; r++)
    for (let h = 0; h < H; h++) {
      const base = r * st + h * D;
      for (let i = 0; i < half; i++) {
        // The angle in f32 as the kernels (and Hugging Face) form it; the rest in float64.
        const a = Math.fround(pos[r]! * Math.fround(theta ** ((-2 * i) / rot)));
        const x1 = x[base + i]!, x2 = x[base + i + half]!;
        y[base + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        y[base + i + half] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
    }
  return y;
}

export function embeddingRef(ids: Arr, table: Arr, V: number, C: number): Float64Array {
  const y = new Float64Array(ids.length * C);
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n]!;
    if (id >= 0 && id < V) for (let c = 0; c < C; c++) y[n * C + c] = table[id * C + c]!;
  }
  return y;
}

export function softmaxRef(x: Arr, R: number, C: number, scale: number): Float64Array {
  const y = new Float64Array(R * C);
  for (let r = 0; r < R; r++) {
    let mx = -Infinity;
    for (let c = 0; c < C; c++) mx = Math.max(mx, scale * x[r * C + c]!);
    let s = 0;
    for (let c = 0; c < C; c++) s += y[r * C + c] = Math.exp(scale * x[r * C + c]! - mx);
    for (let c = 0; c < C; c++) y[r * C + c]! /= s;
  }
  return y;
}

export function argmaxRef(x: Arr, R: number, C: number): Int32Array {
  const y = new Int32Array(R);
  for (let r = 0; r < R; r++) {
    let best = 0;
    for (let c = 1; c < C; c++) if (x[r * C + c]! > x[r * C + best]!) best = c;
    y[r] = best;
  }
  return y;
}

/** Probabilities the sampler draws from for one row (after temperature, top-k, top-p), float64. */
export function sampleDistributionRef(x: Arr, temperature: number, topK: number, topP: number): Float64Array {
  const V = x.length;
  const p = new Float64Array(V);
  let mx = -Infinity;
  for (let i = 0; i < V; i++) mx = Math.max(mx, x[i]! / temperature);
  let s = 0;
  for (let i = 0; i < V; i++) s += p[i] = Math.exp(x[i]! / temperature - mx);
  for (let i = 0; i < V; i++) p[i]! /= s;
  const keep = new Array<boolean>(V).fill(true);
  if (topK > 0 && topK < V) {
    const kth = [...Array.from(x)].sort((a, b) => b - a)[topK - 1]!;
    for (let i = 0; i < V; i++) if (x[i]! < kth) keep[i] = false;
  }
  if (topP < 1) {
    const kept = [...Array(V).keys()].filter((i) => keep[i]).sort((a, b) => p[b]! - p[a]!);
    const mass = kept.reduce((acc, i) => acc + p[i]!, 0);
    let acc = 0, tau = 0;
    for (const i of kept) {
      acc += p[i]!;
      tau = p[i]!;
      if (acc >= topP * mass) break;
    }
    for (let i = 0; i < V; i++) if (p[i]! < tau) keep[i] = false;
  }
  let mass = 0;
  for (let i = 0; i < V; i++) mass += keep[i] ? p[i]! : 0;
  return Float64Array.from(p, (v, i) => (keep[i] ? v / mass : 0));
}

/** ||out - ref|| / max(||ref||, floor) (Frobenius); NaN anywhere gives Infinity. */
export function relError(out: Arr, ref: Arr, floor = 0): number {
  if (out.length !== ref.length) throw new Error(`length ${out.length} vs ${ref.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < out.length; i++) {
    const o = out[i]!, r = ref[i]!;
    if (!Number.isFinite(o)) return Infinity;
    num += (o - r) ** 2;
    den += r * r;
  }
  den = Math.max(den, floor * floor);
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

export function maxAbsError(out: Arr, ref: Arr): number {
  let m = 0;
  for (let i = 0; i < out.length; i++) {
    const d = Math.abs(out[i]! - ref[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
