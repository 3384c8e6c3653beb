// tokenwarden dashboard: countdowns, the live table filter, and a gentle auto-reload.
// No dependencies, no build step; the pages work without it.
(function () {
  "use strict";
  function human(secs) {
    var a = Math.abs(secs), t;
    if (a >= 86400) t = Math.floor(a / 86400) + "d " + Math.floor((a % 86400) / 3600) + "h";
    else if (a >= 3600) t = Math.floor(a / 3600) + "h " + String(Math.floor((a % 3600) / 60)).padStart(2, "0") + "m";
    else if (a >= 60) t = Math.floor(a / 60) + "m " + String(a % 60).padStart(2, "0") + "s";
    else t = a + "s";
    return secs >= 0 ? "in " + t : "expired " + t + " ago";
  }
  function countdowns() {
    var els = document.querySelectorAll("[data-seconds]");
    var start = Date.now();
    var base = [];
    els.forEach(function (el) { base.push(parseInt(el.getAttribute("data-seconds"), 10)); });
    function tick() {
      var gone = Math.floor((Date.now() - start) / 1000);
      els.forEach(function (el, i) {
        if (isNaN(base[i])) return;
        var left = base[i] - gone;
        el.textContent = human(left);
        el.classList.toggle("soon", left >= 0 && left < 600);
        el.classList.toggle("expired", left < 0);
      });
    }
    if (els.length) { tick(); setInterval(tick, 1000); }
  }
  function filter() {
    document.querySelectorAll("input[data-filter]").forEach(function (input) {
      var rows = document.querySelectorAll(input.getAttribute("data-filter"));
      input.addEventListener("input", function () {
        var q = input.value.trim().toLowerCase();
        rows.forEach(function (tr) {
          var text = tr.getAttribute("data-search");
          if (text === null) return;
          tr.hidden = q !== "" && text.indexOf(q) === -1;
        });
      });
    });
  }
  // The notice after a button ("Refreshed", "Probed") is shown once, not at every reload.
  function forgetNotice() {
    if (/[?&]notice=/.test(location.search) && window.history && history.replaceState) {
      history.replaceState(null, "", location.pathname);
    }
  }
  function reload() {
    var secs = parseInt(document.body.getAttribute("data-refresh"), 10);
    if (!secs) return;
    setInterval(function () {
      var a = document.activeElement;
      var busy = a && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
      if (!busy && document.visibilityState === "visible") location.reload();
    }, secs * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () { countdowns(); filter(); forgetNotice(); reload(); });
})();
