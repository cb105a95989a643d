// defender admin: sortable tables and live relative times. Loaded from the
// admin's own origin (the Content-Security-Policy forbids inline script).
(function () {
  "use strict";
  var loaded = Date.now();

  function span(s) {
    if (s < 60) return Math.max(0, Math.floor(s)) + " s";
    if (s < 3600) return Math.ceil(s / 60) + " min";
    if (s < 86400) {
      var h = Math.floor(s / 3600), m = Math.ceil((s % 3600) / 60);
      if (m === 60) { h++; m = 0; }
      return m ? h + " h " + m + " min" : h + " h";
    }
    var d = Math.round(s / 86400);
    return d === 1 ? "1 day" : d + " days";
  }

  function tick() {
    var gone = (Date.now() - loaded) / 1000;
    document.querySelectorAll(".rel-until").forEach(function (el) {
      var left = Number(el.getAttribute("data-seconds")) - gone;
      el.textContent = left > 0 ? "in " + span(left) : "expired (reload)";
      if (left <= 0) el.classList.add("expired");
    });
    var now = Date.now() / 1000;
    document.querySelectorAll(".rel-ago").forEach(function (el) {
      var ago = now - Number(el.getAttribute("data-epoch"));
      el.textContent = ago < 5 ? "just now" : span(ago) + " ago";
    });
  }

  function cellValue(row, i, type) {
    var c = row.cells[i];
    var v = c ? (c.getAttribute("data-value") || c.textContent) : "";
    return type === "num" ? Number(v) : v.toLowerCase();
  }

  function sortBy(table, th, idx, dir) {
    var type = th.getAttribute("data-type") || "text";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, idx, type), y = cellValue(b, idx, type);
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    table.querySelectorAll("th").forEach(function (h) {
      h.classList.remove("sorted-asc", "sorted-desc");
      h.removeAttribute("aria-sort");
    });
    th.classList.add(dir > 0 ? "sorted-asc" : "sorted-desc");
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
  }

  function init() {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      var ths = table.tHead ? table.tHead.rows[0].cells : [];
      Array.prototype.forEach.call(ths, function (th, idx) {
        if (th.classList.contains("nosort")) return;
        th.tabIndex = 0;
        var go = function () {
          sortBy(table, th, idx, th.classList.contains("sorted-asc") ? -1 : 1);
        };
        th.addEventListener("click", go);
        th.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); }
        });
      });
    });
    tick();
    setInterval(tick, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
