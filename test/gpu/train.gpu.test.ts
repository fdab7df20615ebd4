// Training on CUDA (src/train/): whole-model gradients on cuda:0 against the same step on the CPU (f32
// within 1e-4; bf16 compute within 5e-2, since the weights and every op's output are rounded to bf16),
// and a short f32/bf16 run that overfits one batch. Skipped where there is no GPU (CI).
import { describe, expect, it } from 'vitest';
import { cudaDeviceCount, type DType } from '../../src/index.js';
import { initParams } from '../../src/train/init.js';
import { adamwStep, DEFAULT_ADAMW } from '../../src/train/optim.js';
import { TrainStage } from '../../src/train/stage.js';
import { relError } from '../helpers/reference.js';
import { randomBatch, smallGpt2, smallLlama } from '../helpers/train.js';

const newSeed = () => Math.floor(Math.random() * 1e6);

describe.skipIf(cudaDeviceCount() === 0)('training on cuda:0', () => {
  for (const cfg of [smallGpt2, smallLlama])
    for (const dt of ['f32', 'bf16'] as DType[]) {
      it(`${cfg.family} [${dt}]: the gradient matches the CPU's f32 gradient`, () => {
        const seed = newSeed();
        const mb = randomBatch(cfg.vocabSize, 3, 16, seed, 2);
        const grad = (device: string, dtype: DType) => {
          const p = initParams({ cfg, folder: null, name: 'test' }, { device, dtype, seed });
          const st = new TrainStage(p);
          p.zeroGrad();
          const r = st.forward(0, mb);
          st.backward(0);
          const g = p.grad.toArray();
          p.dispose();
          return { g, loss: r.lossSum! / r.count! };
        };
        const cpu = grad('cpu:0', 'f32');
        const gpu = grad('cuda:0', dt);
        const tol = dt === 'f32' ? 1e-4 : 5e-2;
        expect(Math.abs(gpu.loss - cpu.loss) / cpu.loss, `loss (seed ${seed})`).toBeLessThan(dt === 'f32' ? 1e-5 : 1e-2);
        expect(relError(gpu.g, cpu.g), `gradient (seed ${seed})`).toBeLessThan(tol);
      });

      it(`${cfg.family} [${dt}]: overfits one batch`, () => {
        const seed = newSeed();
        const p = initParams({ cfg, folder: null, name: 'test' }, { device: 'cuda:0', dtype: dt, seed });
        const st = new TrainStage(p);
        const mb = randomBatch(cfg.vocabSize, 2, 12, seed);
        const losses: number[] = [];
        for (let step = 1; step <= 60; step++) {
          p.zeroGrad();
          const r = st.forward(0, mb);
          losses.push(r.lossSum! / r.count!);
          st.backward(0);
          adamwStep(p, step, 1e-2, { ...DEFAULT_ADAMW, weightDecay: 0 });
        }
        expect(losses[59]!, `seed ${seed}`).toBeLessThan(0.15 * losses[0]!);
        p.dispose();
      });
    }
});
