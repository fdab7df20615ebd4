#!/usr/bin/env node
// Stands in for node-gyp when prebuildify builds (PREBUILD_NODE_GYP): prebuildify knows only node-gyp,
// our build is cmake-js. Arguments meant for node-gyp are ignored; the build is incremental.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const root = path.resolve(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
