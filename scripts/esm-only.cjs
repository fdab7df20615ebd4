// `require('parallm')`: parallm is an ES module (its workers and top-level await need it). Say so
// instead of Node's ERR_PACKAGE_PATH_NOT_EXPORTED.
'use strict';
const err = new Error(
  "parallm is an ES module: use `import { Model } from 'parallm'` (in a .mjs file or a package with " +
    '"type": "module"), or `const { Model } = await import(\'parallm\')` from CommonJS.',
);
err.code = 'ERR_REQUIRE_ESM';
throw err;
