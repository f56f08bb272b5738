// The run page's workflow graph: its Mermaid text (#graph-source, rendered escaped by the
// server) drawn as an SVG in #graph by the vendored mermaid.js, in the browser. The text stays
// in its <details> for browsers without script. securityLevel "strict" makes mermaid sanitize
// labels and refuse click handlers; no network is used.
(function () {
  "use strict";
  var source = document.getElementById("graph-source");
  var target = document.getElementById("graph");
  if (!source || !target || !window.mermaid) {
    return;
  }
  window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  window.mermaid
    .render("graph-svg", source.textContent)
    .then(function (result) {
      target.innerHTML = result.svg;
      target.setAttribute("data-rendered", "svg");
    })
    .catch(function (error) {
      target.textContent = "the graph could not be drawn: " + error;
      target.setAttribute("data-rendered", "error");
    });
})();
