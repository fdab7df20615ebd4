// Tensors: device memory with a dtype and a shape. Memory is freed by dispose() at once (a finalizer is
// only the safety net). Views share their base's memory.
import { checkDType, decode, dtypeSize, encode, type DType } from './dtype.js';
import { defaultDevice, parseDevice } from './device.js';
import { native, type NativeTensor } from './native.js';

export type Shape = readonly number[];

export interface TensorOptions {
  dtype?: DType;
  device?: string;
}

export function numelOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkShape(shape: Shape): number[] {
  if (!Array.isArray(shape)) throw new Error(`shape must be an array of sizes, got ${String(shape)}`);
  for (const d of shape)
    if (!Number.isInteger(d) || d < 0) throw new Error(`bad shape [${shape.join(', ')}]: sizes must be integers >= 0`);
  return [...shape];
}

export class Tensor {
  /** @internal */
  readonly native: NativeTensor;

  /** @internal */
  constructor(n: NativeTensor) {
    this.native = n;
  }

  get device(): string {
    return this.native.device;
  }
  get dtype(): DType {
    return this.native.dtype;
  }
  get shape(): number[] {
    return this.native.shape;
  }
  get numel(): number {
    return numelOf(this.native.shape);
  }
  get nbytes(): number {
    return this.native.nbytes;
  }
  get disposed(): boolean {
    return this.native.disposed;
  }

  /** An uninitialized tensor. */
  static empty(shape: Shape, opts: TensorOptions = {}): Tensor {
    const device = parseDevice(opts.device ?? defaultDevice());
    const dtype = checkDType(opts.dtype ?? 'f32');
    return new Tensor(native.empty(device, dtype, checkShape(shape)));
  }

  /** A tensor holding `data` (numbers, converted to the dtype: bf16/f16 round to nearest even). */
  static from(data: ArrayLike<number>, shape: Shape, opts: TensorOptions = {}): Tensor {
    const s = checkShape(shape);
    if (data.length !== numelOf(s))
      throw new Error(`Tensor.from: ${data.length} values for shape [${s.join(', ')}] (${numelOf(s)} elements)`);
    const t = Tensor.empty(s, opts);
    try {
      t.native.writeHost(encode(data, t.dtype));
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }

  static zeros(shape: Shape, opts: TensorOptions = {}): Tensor {
    return Tensor.full(shape, 0, opts);
  }

  static full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
    const n = numelOf(checkShape(shape));
    const dtype = opts.dtype ?? 'f32';
    return Tensor.from(dtype === 'i32' ? new Int32Array(n).fill(value) : new Float32Array(n).fill(value), shape, opts);
  }

  /** Values on the host: f32/bf16/f16 as a Float32Array, i32 as an Int32Array. Waits for the device. */
  toArray(): Float32Array | Int32Array {
    this.assertAlive('toArray');
    return decode(this.native.toHost(), this.dtype);
  }

  /**
   * Begin reading the values to the host without waiting: on a GPU the copy is queued behind the work
   * already enqueued, so more work can be enqueued before `wait()` blocks for these values (decode's next
   * step while this step's tokens come back). `wait()` returns what toArray would have, once.
   */
  readBegin(): { wait(): Float32Array | Int32Array } {
    this.assertAlive('readBegin');
    const r = this.native.readBegin();
    const dtype = this.dtype;
    return { wait: () => decode(r.wait(), dtype) };
  }

  /** The raw host bytes of the tensor. */
  toBuffer(): ArrayBuffer {
    this.assertAlive('toBuffer');
    return this.native.toHost();
  }

  /** Overwrite the contents from the host. */
  write(data: ArrayLike<number>): this {
    this.assertAlive('write');
    if (data.length !== this.numel) throw new Error(`write: ${data.length} values for a tensor of ${this.numel}`);
    this.native.writeHost(encode(data, this.dtype));
    return this;
  }

  /** A copy on another device (any to any: host, GPU, GPU to GPU). */
  to(device: string): Tensor {
    this.assertAlive('to');
    const out = Tensor.empty(this.shape, { dtype: this.dtype, device });
    out.native.copyFrom(this.native);
    return out;
  }

  /** Copy `src` (same dtype and size, any device) into this tensor. */
  copyFrom(src: Tensor): this {
    this.assertAlive('copyFrom');
    src.assertAlive('copyFrom');
    this.native.copyFrom(src.native);
    return this;
  }

  /** A view over elements [offset, offset + numel(shape)) of this tensor's memory. */
  view(offset: number, shape: Shape): Tensor {
    this.assertAlive('view');
    return new Tensor(this.native.view(offset, checkShape(shape)));
  }

  /** The same memory with another shape of the same size. */
  reshape(shape: Shape): Tensor {
    const s = checkShape(shape);
    if (numelOf(s) !== this.numel)
      throw new Error(`reshape: [${this.shape.join(', ')}] has ${this.numel} elements, [${s.join(', ')}] has ${numelOf(s)}`);
    return this.view(0, s);
  }

  dispose(): void {
    this.native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  assertAlive(op: string): void {
    if (this.native.disposed) throw new Error(`${op}: tensor has been disposed`);
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(', ')}] on ${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

export const bytesOf = (shape: Shape, dtype: DType): number => numelOf(shape) * dtypeSize(dtype);
