// Whole-model gradients and AdamW steps against PyTorch autograd, on the tiny Hugging Face fixtures:
// test/fixtures/make_fixtures.py writes grads.safetensors (every parameter's gradient of the mean
// cross-entropy over a fixed batch, with padded targets) and grads.json (the batch, its loss, and the losses
// of 10 AdamW steps). They are made on a machine with torch; where they are absent, these tests report
// themselves as skipped, saying so.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { hfTensors } from '../../src/train/checkpoint.js';
import { initParams, resolveModel } from '../../src/train/init.js';
import { adamwStep } from '../../src/train/optim.js';
import { TrainStage, type MicroBatch } from '../../src/train/stage.js';
import { relError } from '../helpers/reference.js';
import { fixtures } from '../helpers/models.js';

const gradFile = path.join(fixtures, 'grads.safetensors');
const infoFile = path.join(fixtures, 'grads.json');
const present = existsSync(gradFile) && existsSync(infoFile);
const absent = present ? '' : ' [SKIPPED: test/fixtures/grads.safetensors or grads.json is absent; run make_fixtures.py where torch is]';

interface Info {
  inputs: number[][];
  targets: number[][];
  loss: number;
  adamw: { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; losses: number[]; final_loss: number };
}

describe('training matches PyTorch autograd on the Hugging Face fixtures', () => {
  for (const name of ['tiny-gpt2', 'tiny-llama'] as const) {
    const setup = () => {
      const info = (JSON.parse(readFileSync(infoFile, 'utf8')) as Record<string, Info>)[name]!;
      const p = initParams(resolveModel(path.join(fixtures, name)), { device: 'cpu:0' });
      const B = info.inputs.length, T = info.inputs[0]!.length;
      const mb: MicroBatch = { inputs: Int32Array.from(info.inputs.flat()), targets: Int32Array.from(info.targets.flat()), batch: B, seq: T };
      return { info, p, st: new TrainStage(p), mb };
    };

    it.skipIf(!present)(`${name}: every parameter's gradient within 1e-4${absent}`, () => {
      const { info, p, st, mb } = setup();
      p.zeroGrad();
      const r = st.forward(0, mb);
      expect(Math.abs(r.lossSum! / r.count! - info.loss) / info.loss).toBeLessThan(1e-5);
      st.backward(0);
      const ours = hfTensors(p, p.grad.toArray() as Float32Array); // the gradient in HF names and layouts
      const f = SafetensorsFile.open(gradFile);
      try {
        const theirs = f.tensors().map((t) => t.name).filter((n) => n.startsWith(`${name}/`));
        expect(ours.map((t) => `${name}/${t.name}`).sort()).toEqual([...theirs].sort());
        for (const t of ours) {
          const want = new Float32Array(f.readRaw(`${name}/${t.name}`).buffer);
          expect(relError(t.data as Float32Array, want), t.name).toBeLessThan(1e-4);
        }
      } finally {
        f.close();
        p.dispose();
      }
    });

    it.skipIf(!present)(`${name}: the losses of 10 AdamW steps within 1e-4${absent}`, () => {
      const { info, p, st, mb } = setup();
      const a = info.adamw;
      const h = { beta1: a.beta1, beta2: a.beta2, eps: a.eps, weightDecay: a.weight_decay, clip: 0 };
      const loss = () => {
        const r = st.forward(1, mb, undefined, { dscale: false });
        return r.lossSum! / r.count!;
      };
      a.losses.forEach((want, i) => {
        p.zeroGrad();
        const r = st.forward(0, mb);
        expect(Math.abs(r.lossSum! / r.count! - want) / want, `step ${i + 1}`).toBeLessThan(1e-4);
        st.backward(0);
        adamwStep(p, i + 1, a.lr, h);
      });
      expect(Math.abs(loss() - a.final_loss) / a.final_loss, 'after 10 steps').toBeLessThan(1e-4);
      p.dispose();
    });
  }
});
