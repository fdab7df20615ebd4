// Element types and host-side conversion between f32 and the 16-bit storage types.
import type { DTypeName } from './native.js';

export type DType = DTypeName;
export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'i32'];
export const isFloat = (d: DType): boolean => d !== 'i32';
export const dtypeSize = (d: DType): number => (d === 'bf16' || d === 'f16' ? 2 : 4);

export function checkDType(d: unknown): DType {
  if (typeof d !== 'string' || !(DTYPES as readonly string[]).includes(d))
    throw new Error(`unknown dtype ${JSON.stringify(d)}: expected one of ${DTYPES.join(', ')}`);
  return d as DType;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 -> bf16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** f32 -> IEEE half bits, round to nearest even. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const e8 = (u >>> 23) & 0xff;
  let man = u & 0x7fffff;
  if (e8 === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const exp = e8 - 127 + 15;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    man |= 0x800000;
    const shift = 14 - exp;
    let half = man >>> shift;
    const rem = man & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (exp << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return half;
}

export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 31) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** Encode numbers as the host bytes of a tensor of type `dtype`. */
export function encode(data: ArrayLike<number>, dtype: DType): Float32Array | Uint16Array | Int32Array {
  const n = data.length;
  switch (dtype) {
    case 'f32':
      return data instanceof Float32Array ? data : Float32Array.from(data);
    case 'i32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = data[i]!;
        if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647)
          throw new Error(`i32 tensor: element ${i} is ${v}, not a 32-bit integer`);
        out[i] = v;
      }
      return out;
    }
    case 'bf16':
    case 'f16': {
      const out = new Uint16Array(n);
      const conv = dtype === 'bf16' ? f32ToBf16 : f32ToF16;
      for (let i = 0; i < n; i++) out[i] = conv(data[i]!);
      return out;
    }
  }
}

/** Decode a tensor's host bytes: floats come back as f32, i32 as i32. */
export function decode(buf: ArrayBuffer, dtype: DType): Float32Array | Int32Array {
  switch (dtype) {
    case 'f32':
      return new Float32Array(buf);
    case 'i32':
      return new Int32Array(buf);
    case 'bf16': {
      const h = new Uint16Array(buf);
      const out = new Float32Array(h.length);
      const ou = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) ou[i] = h[i]! << 16;
      return out;
    }
    case 'f16': {
      const h = new Uint16Array(buf);
      const out = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) out[i] = f16ToF32(h[i]!);
      return out;
    }
  }
}
