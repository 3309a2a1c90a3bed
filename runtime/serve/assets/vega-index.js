/* vega-index.js: what Vega's own index.js does for the vega.min.js bundle: one `vega` object
 * with every module's exports, and the transforms registered by name so specs can use them. */
var vega = (function (require) {
  "use strict";
  var names = ["vega-util", "vega-dataflow", "vega-statistics", "vega-time", "vega-loader",
               "vega-scenegraph", "vega-scale", "vega-view", "vega-format", "vega-functions",
               "vega-parser", "vega-runtime", "vega-expression", "vega-event-selector"];
  var transformModules = ["vega-transforms", "vega-view-transforms", "vega-encode", "vega-wordcloud"];
  var out = {};
  names.forEach(function (name) {
    var m = require(name);
    Object.keys(m).forEach(function (k) { if (k !== "default" && !(k in out)) out[k] = m[k]; });
  });
  var registry = require("vega-dataflow").transforms;
  transformModules.forEach(function (name) {
    var m = require(name);
    Object.keys(m).forEach(function (k) { if (k !== "default") registry[k] = m[k]; });
  });
  return out;
})(rnVega.require);
