// The start of a communicator test's worker thread, as source text (the worker is eval'd: it cannot
// import the TypeScript sources): the addon loaded from workerData.root, this rank's device, and
// tensor(dt, values) / readF32(t) to move f32 values to and from an f32 or bf16 device tensor.
// `W` is the workerData ({ root, rank, cpuDevices? }).
export function workerPrelude(kind: 'cuda' | 'cpu'): string {
  return String.raw`
const { parentPort, workerData: W } = require('node:worker_threads');
const native = require('node:module').createRequire(W.root + '/package.json')('node-gyp-build')(W.root);
${kind === 'cpu' ? 'native.configureCpuDevices(W.cpuDevices);' : ''}
const dev = '${kind}:' + W.rank;
const toBf16 = (f) => Uint16Array.from(new Uint32Array(Float32Array.from(f).buffer), (u) => u >>> 16);
function tensor(dt, f32) {
  const t = native.empty(dev, dt, [f32.length]);
  t.writeHost(dt === 'bf16' ? toBf16(f32) : Float32Array.from(f32));
  return t;
}
function readF32(t) {
  const b = t.toHost(); // waits for the device's stream, so for the collective queued on it
  if (t.dtype === 'bf16') return new Float32Array(Uint32Array.from(new Uint16Array(b), (h) => h << 16).buffer);
  return new Float32Array(b);
}
`;
}
