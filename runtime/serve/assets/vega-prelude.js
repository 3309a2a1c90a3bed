/* vega-prelude.js: a CommonJS loader for Debian's libjs-vega modules (runtime/serve/).
 * Debian ships Vega as one UMD file per module, not the single vega.min.js bundle; their
 * global (no module system) path overwrites window.vega in each file, so they are wrapped
 * here as CommonJS modules instead and joined by vega-index.js. Vega: BSD-3-Clause,
 * Copyright 2015-2021 UW Interactive Data Lab. */
var rnVega = (function () {
  "use strict";
  var factories = {}, cache = {};
  /* npm names that differ from the names of Debian's files */
  var alias = { "vega-selections": "vega-selection" };
  function require(name) {
    name = alias[name] || name;
    if (cache[name]) return cache[name].exports;
    if (!factories[name]) throw new Error("vega module " + name + " is not in this page");
    var module = { exports: {} };
    cache[name] = module;
    factories[name].call(window, module.exports, module, require);
    return module.exports;
  }
  return {
    define: function (name, factory) { factories[name] = factory; },
    require: require,
  };
})();
