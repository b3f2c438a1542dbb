// Follows a queued or running run: polls its progress.json, updates counts and stage bars in place, and
// reloads the page when the run changes state (starts, or ends) so the page shows what it became.
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  var every = Number(box.getAttribute("data-poll-ms")) || 1000;
  var shownStatus = box.getAttribute("data-status");
  var leaving = false;  // a form of the page (cancel, retry) is being sent: its answer replaces the page
  document.addEventListener("submit", function () { leaving = true; });
  var number = function (n) { return Math.round(n).toLocaleString("en-US"); };
  var seconds = function (s) {
    if (s < 60) { return s.toFixed(2) + " s"; }
    var m = Math.floor(Math.round(s) / 60), r = Math.round(s) % 60;
    return m + " min " + (r < 10 ? "0" : "") + r + " s";
  };
  var stageRow = function (s) {
    var known = s.percent !== null;
    var text = number(s.rows) + (s.total !== null ? " of " + number(s.total) : "") + " rows" +
      (known ? " (" + s.percent.toFixed(1) + "%)" : "") + " \u00b7 " + number(s.rows_per_s) + " rows/s" +
      (s.eta_s !== null ? " \u00b7 ETA " + seconds(s.eta_s) : "") + " \u00b7 " + s.batches +
      (s.batches === 1 ? " batch" : " batches");
    var row = document.createElement("div");
    row.className = "stage";
    row.setAttribute("data-stage", s.stage);
    var name = document.createElement("span");
    name.className = "stage-name";
    name.textContent = s.stage;
    var bar = document.createElement("div");
    bar.className = "bar" + (known ? "" : " unknown");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", s.stage);
    if (known) { bar.setAttribute("aria-valuenow", s.percent.toFixed(1)); }
    var fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (known ? s.percent.toFixed(1) : "100") + "%";
    bar.appendChild(fill);
    var label = document.createElement("span");
    label.className = "stage-text";
    label.textContent = text;
    row.appendChild(name);
    row.appendChild(bar);
    row.appendChild(label);
    return row;
  };
  var update = function (state) {
    Object.keys(state.counts).forEach(function (key) {
      document.querySelectorAll('[data-count="' + key + '"]').forEach(function (el) {
        el.textContent = number(state.counts[key]);
        var card = el.closest(".count");
        if (card) { card.classList.toggle("nonzero", state.counts[key] > 0); }
      });
    });
    var stages = document.getElementById("stages");
    if (stages && state.stages.length) {
      stages.replaceChildren.apply(stages, state.stages.map(stageRow));
    }
    var position = document.querySelector(".queue-position");
    if (position && state.position) { position.textContent = "number " + state.position + " in line"; }
  };
  var poll = function () {
    if (leaving) { return; }
    fetch(url, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (state) {
        if (leaving) { return; }
        if (state && (state.finished || state.status !== shownStatus)) {
          window.location.reload();
          return;
        }
        if (state) { update(state); }
        window.setTimeout(poll, every);
      })
      .catch(function () { window.setTimeout(poll, every); });
  };
  window.setTimeout(poll, every);
})();
