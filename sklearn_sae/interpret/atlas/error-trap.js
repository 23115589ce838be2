// Runs first, in a script element of its own, so that it also reports errors thrown while atlas.js is parsed.
(function () {
  "use strict";
  function report(message) {
    var box = document.getElementById("atlas-errors");
    var item = document.createElement("div");
    item.className = "atlas-js-error";
    item.textContent = "Script error: " + message;
    if (box) { box.appendChild(item); box.hidden = false; } else { document.documentElement.appendChild(item); }
    document.documentElement.setAttribute("data-atlas-error", "1");
  }
  window.addEventListener("error", function (event) { report(event.message || String(event.error)); });
  window.addEventListener("unhandledrejection", function (event) { report(String(event.reason)); });
})();
