// npm run prebuild: prebuilds/<platform>-<arch>/parallm.node through prebuildify, with cmake-js doing
// the build (both backends in one binary when nvcc is found; cudart is linked statically).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const prebuildify = require.resolve('prebuildify/bin.js', { paths: [root] });
const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, PREBUILD_NODE_GYP: path.join(__dirname, 'cmake-gyp.cjs') },
});
process.exit(r.status ?? 1);
