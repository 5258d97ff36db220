// slmstack console: keyboard shortcuts and small conveniences. Every page works without it.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  // Clicking anywhere on a packet row opens it (the link in the row is the keyboard path).
  document.querySelectorAll("tr[data-href]").forEach(function (row) {
    row.addEventListener("click", function (event) {
      if (event.target.closest("a, button, input, select, textarea")) return;
      window.location.href = row.dataset.href;
    });
  });
  // Ctrl/Cmd+Enter sends the form of a text box that asks for it.
  document.querySelectorAll("textarea[data-submit-on-ctrl-enter]").forEach(function (box) {
    box.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && box.form) {
        event.preventDefault();
        box.form.requestSubmit();
      }
    });
  });
  // j/k move through the packet list, Enter opens, "/" searches, "g i|p|r|e" navigates.
  var rows = Array.prototype.slice.call(document.querySelectorAll("table[data-keynav] tbody tr"));
  var current = -1;
  function select(i) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("current", n === current); });
    var link = rows[current].querySelector("a");
    if (link) link.focus();
  }
  var pendingG = false;
  var places = { i: "/console/inbox", p: "/console/playground", r: "/console/reports", e: "/console/examples" };
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    if (pendingG) {
      pendingG = false;
      if (places[event.key]) { window.location.href = places[event.key]; event.preventDefault(); }
      return;
    }
    if (event.key === "g") { pendingG = true; return; }
    if (event.key === "/") {
      var search = document.querySelector("[data-shortcut='/']");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (event.key === "j") { select(current + 1); }
    else if (event.key === "k") { select(current - 1); }
  });
  // A button that sends a form is disabled while it does, so a double click sends once.
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button[type=submit]");
      if (button) { setTimeout(function () { button.disabled = true; }, 0); }
    });
  });
})();
