// Vigil status page: swaps in the server-drawn live part every second. Read-only: it only GETs
// /live from this origin (the browser adds the credentials it already holds).
(function () {
  "use strict";
  var conn = document.getElementById("conn");
  var busy = false;
  function say(text, cls) {
    conn.textContent = text;
    conn.className = "conn " + cls;
  }
  function tick() {
    if (busy) { return; }
    busy = true;
    fetch("/live", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        var old = document.getElementById("live");
        if (!fresh || !old) { throw new Error("unexpected answer"); }
        old.replaceWith(document.adoptNode(fresh));
        document.title = fresh.getAttribute("data-title") || document.title;
        say("live", "ok");
      })
      .catch(function (e) {
        say("connection lost (" + e.message + "), retrying", "bad");
      })
      .then(function () { busy = false; });
  }
  say("live", "ok");
  setInterval(tick, 1000);
})();
