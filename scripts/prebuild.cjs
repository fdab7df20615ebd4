// npm run prebuild: prebuilds/<platform>-<arch>/parallm.node through prebuildify, with cmake-js doing
// the build (both backends in one binary when nvcc is found; cudart is linked statically).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const prebuildify = require.resolve('prebuildify/bin.js', { paths: [root] });
const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PREBUILD_NODE_GYP: path.join(__dirname, 'cmake-gyp.cjs') },
});
// prebuildify moves the binary out of build/Release; put a copy back so the development build (which
// node-gyp-build prefers) stays in place.
const built = path.join(root, 'build/Release/parallm.node');
const pre = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'parallm.node');
if (r.status === 0 && !fs.existsSync(built) && fs.existsSync(pre)) fs.copyFileSync(pre, built + '.tmp'), fs.renameSync(built + '.tmp', built);
process.exit(r.status ?? 1);
