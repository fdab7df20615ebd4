// npm install hook. Use a binary that loads (the prebuilt one shipped in the package, or one built
// before); otherwise build from source: cmake-js when it is installed (a clone: CUDA backend too if nvcc
// is found), else node-gyp with binding.gyp (CPU backend only). PARALLM_BUILD_FROM_SOURCE=1 forces a build.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function loads() {
  try {
    const b = require('node-gyp-build')(root);
    return typeof b.devices === 'function';
  } catch {
    return false;
  }
}

function run(cmd, args) {
  console.log(`parallm: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

function resolveBin(pkg, bin) {
  try {
    const dir = path.dirname(require.resolve(`${pkg}/package.json`, { paths: [root] }));
    const meta = require(path.join(dir, 'package.json'));
    const rel = typeof meta.bin === 'string' ? meta.bin : meta.bin[bin];
    return path.join(dir, rel);
  } catch {
    return null;
  }
}

if (process.env.PARALLM_BUILD_FROM_SOURCE !== '1' && loads()) {
  console.log('parallm: using the existing native binary');
  process.exit(0);
}
const cmakeJs = resolveBin('cmake-js', 'cmake-js');
if (cmakeJs && run(process.execPath, [cmakeJs, 'compile', '--out', 'build'])) process.exit(0);
const nodeGyp = resolveBin('node-gyp', 'node-gyp');
if (nodeGyp && run(process.execPath, [nodeGyp, 'rebuild'])) process.exit(0);
if (!nodeGyp && run('node-gyp', ['rebuild'])) process.exit(0);
console.error(
  'parallm: no prebuilt binary fits this platform and building from source failed. ' +
    'The fallback build is node-gyp (CPU backend only): it needs Python 3, make and a C++17 compiler. ' +
    'In a clone with cmake-js installed, cmake and a C++17 compiler build both backends (and nvcc the CUDA one). ' +
    'Install what is missing, then run npm install again.',
);
process.exit(1);
