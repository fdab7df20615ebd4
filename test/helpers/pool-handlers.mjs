// Handlers for test/unit/pool.test.ts. Plain JS so a worker (plain Node) imports it as is; it uses the
// compiled library in dist/, as a user's module would use the installed package.
import { Tensor, ops } from '../../dist/index.js';

export const handlers = {
  whoami: (_args, ctx) => ({ rank: ctx.rank, world: ctx.world, device: ctx.device }),

  // a [m, k] x b [k, n] on this worker's device.
  matmul: ({ a, b, m, k, n }, ctx) => {
    const A = Tensor.from(a, [m, k], { device: ctx.device });
    const B = Tensor.from(b, [k, n], { device: ctx.device });
    const C = ops.matmul(A, B);
    const out = { device: C.device, shape: C.shape, values: Array.from(C.toArray()) };
    for (const t of [A, B, C]) t.dispose();
    return out;
  },

  // `n` progress values, each after a turn of the event loop; returns n.
  count: async (n, ctx) => {
    for (let i = 1; i <= n; i++) {
      await new Promise((r) => setImmediate(r));
      ctx.progress({ i, device: ctx.device });
    }
    return n;
  },

  remember: ({ key, value }, ctx) => void ctx.state.set(key, value),
  recall: (key, ctx) => ctx.state.get(key),

  // Sums a Float32Array's buffer (sent with a transfer list).
  sum: (buf) => new Float32Array(buf).reduce((s, x) => s + x, 0),

  fail: (message) => {
    throw new TypeError(message);
  },
  sleep: (ms) => new Promise((r) => setTimeout(() => r(ms), ms)),
  // Busy for `ms`: stands for a worker stuck in a long native call.
  spin: (ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end);
    return 'done';
  },
  exit: (code) => process.exit(code),
  throwLater: (message) => {
    setTimeout(() => {
      throw new Error(message);
    }, 20);
    return new Promise(() => {}); // never settles by itself
  },
  unsendable: () => () => 1,
  log: (message, ctx) => ctx.log(message, 'warn'),
};

// A rank that joins a CPU communicator without a timeout and waits for a message no one sends: a worker
// blocked in a native wait (only its stop flag can end the wait).
handlers.waitForever = async ({ id, rank, world }, ctx) => {
  const { Communicator, Tensor: T } = await import('../../dist/index.js');
  const c = Communicator.create('cpu', id, rank, world, ctx.device, { timeoutMs: 0, stopFlag: ctx.stopFlag });
  const t = T.empty([4], { device: ctx.device });
  try {
    c.recv(t, (rank + 1) % world);
  } finally {
    t.dispose();
    c.destroy();
  }
};

