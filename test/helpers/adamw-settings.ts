// AdamW with its settings in device memory (ops.adamw's `settings`, written by ops.writeAdamwSettings; ZeRO-1's
// update inside a captured step, src/train/zero.ts): the bits of adamw given the same options as
// arguments, op by op and in a graph replayed with new settings written before each replay. Shared by the
// CPU tests (test/unit/grad-kernels.test.ts) and the GPU ones (test/gpu/grad-kernels.gpu.test.ts).
import { expect, it } from 'vitest';
import { Tensor, ops, type DType } from '../../src/index.js';
import { capture } from '../../src/runtime.js';
import { uniformArray } from '../../src/random.js';

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((x, i) => Object.is(x, b[i]));

export function adamwSettingsTests(dev: string, sizes: number[]): void {
  for (const n of sizes)
    for (const dt of ['f32', 'bf16'] as DType[])
      it(`adamw with its settings in memory n=${n} [${dt}]: the bits of adamw with them as arguments, op by op and in a graph replayed 5 times`, () => {
        const seed = Math.floor(Math.random() * 1e6);
        const nDecay = Math.floor(n / 2);
        const opts = (step: number) => ({ lr: 1e-3 * step, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 + 0.1 * step, step });
        const grads = Array.from({ length: 5 }, (_, i) => Tensor.from(uniformArray(n, seed + 10 + i, -2, 2), [n], { dtype: dt, device: dev }));
        const state = () => ({
          master: Tensor.from(uniformArray(n, seed, -1, 1), [n], { dtype: 'f32', device: dev }),
          m: Tensor.from(uniformArray(n, seed + 1, -1e-2, 1e-2), [n], { dtype: 'f32', device: dev }),
          v: Tensor.from(uniformArray(n, seed + 2, 0, 1e-3), [n], { dtype: 'f32', device: dev }),
          param: dt === 'f32' ? undefined : Tensor.empty([n], { dtype: dt, device: dev }),
          grad: Tensor.empty([n], { dtype: dt, device: dev }),
        });
        const [a, b, c] = [state(), state(), state()];
        const settings = Tensor.empty([8], { dtype: 'f32', device: dev });
        for (let step = 1; step <= 5; step++) {
          a.grad.copyFrom(grads[step - 1]!);
          ops.adamw(a, { nDecay, ...opts(step) });
          b.grad.copyFrom(grads[step - 1]!);
          ops.writeAdamwSettings(settings, opts(step));
          ops.adamw(b, { nDecay, settings });
        }
        const g = capture(dev, () => ops.adamw(c, { nDecay, settings }));
        for (let step = 1; step <= 5; step++) {
          c.grad.copyFrom(grads[step - 1]!);
          ops.writeAdamwSettings(settings, opts(step));
          g.replay();
        }
        g.dispose();
        for (const [name, x] of Object.entries(a) as [string, Tensor | undefined][]) {
          if (!x || name === 'grad') continue;
          const want = x.toArray();
          expect(same((b as Record<string, Tensor>)[name]!.toArray(), want), `${name} op by op (seed ${seed})`).toBe(true);
          expect(same((c as Record<string, Tensor>)[name]!.toArray(), want), `${name} in the graph (seed ${seed})`).toBe(true);
        }
        expect(() => ops.adamw(a, { nDecay, settings: Tensor.zeros([7], { dtype: 'f32', device: dev }) })).toThrow(/adamw: settings has 7 elements, expected 8/);
        expect(() => ops.writeAdamwSettings(settings, { lr: 1, step: 0 })).toThrow(/step must be an integer >= 1/);
        for (const s of [a, b, c]) for (const t of Object.values(s)) t?.dispose();
        [...grads, settings].forEach((t) => t.dispose());
      });
}
