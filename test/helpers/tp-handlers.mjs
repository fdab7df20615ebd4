// Handlers for test/unit/tp.test.ts: a tensor-parallel rank's logits, computed in its own worker (the
// ranks meet in their CPU communicator's all-reduces). Plain JS over the compiled dist/, as
// pool-handlers.mjs.
import { Communicator, Model, Tensor, modelConfig } from '../../dist/index.js';
import { KvCache } from '../../dist/models/transformer.js';

export const handlers = {
  /**
   * Prefill logits of every position of `prompt`, then the logits of one decode step feeding `next`, on
   * tp rank `tp.rank` of `tp.size` (communicator `id`: CPU, or NCCL on a GPU), or the whole model
   * without `tp`.
   */
  logits({ source, seed, tp, id, prompt, next, dtype = 'f32' }, ctx) {
    const cfg = modelConfig(source);
    const stage = { start: 0, end: cfg.layers, embed: true, head: true, ...(tp ? { tp } : {}) };
    const m = Model.load(source, { device: ctx.device, dtype, seed, stage });
    const kind = ctx.device.startsWith('cuda') ? 'nccl' : 'cpu';
    const comm = tp ? Communicator.create(kind, id, tp.rank, tp.size, ctx.device, { timeoutMs: 30_000, stopFlag: ctx.stopFlag }) : null;
    m.transformer.tp = comm;
    const T = prompt.length;
    const i32 = { dtype: 'i32', device: ctx.device };
    const cache = new KvCache(m.transformer.cfg, 1, T + 1, ctx.device, dtype);
    const made = [];
    const keep = (t) => (made.push(t), t);
    try {
      const x = keep(m.transformer.prefill(cache, keep(Tensor.from(prompt, [T], i32)), keep(Tensor.from(prompt.map((_, t) => t), [T], i32)), keep(Tensor.zeros([1], i32)), 1, T));
      const prefill = keep(m.transformer.logits(x)).toArray();
      const decode = keep(m.transformer.decode(cache, keep(Tensor.from([next], [1], i32)), keep(Tensor.from([T], [1], i32)), keep(Tensor.from([T + 1], [1], i32)), 1)).toArray();
      return { prefill, decode, kvHeads: cache.k[0].shape[2] };
    } finally {
      made.forEach((t) => t.dispose());
      cache.dispose();
      comm?.destroy();
      m.dispose();
    }
  },
};
