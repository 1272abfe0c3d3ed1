// scheduler dashboard: live overview counts, and reloading pages whose subject is still
// changing. Values are written with textContent only, so nothing from the server is
// ever parsed as HTML.
"use strict";

(function () {
  function formatSeconds(value) {
    value = Math.abs(value);
    if (value < 1) return "0s";
    if (value < 90) return Math.round(value) + "s";
    if (value < 5400) return Math.round(value / 60) + "m";
    if (value < 172800) return Math.round(value / 3600) + "h";
    return Math.round(value / 86400) + "d";
  }

  function cell(row, field, value, base, filter, name) {
    var td = document.createElement("td");
    td.className = "num";
    td.dataset.field = field;
    if (field === "failed_hour" && value > 0) {
      var link = document.createElement("a");
      link.className = "bad";
      link.href = base + "/jobs?status=failed&" + filter + "=" + encodeURIComponent(name);
      link.textContent = String(value);
      td.appendChild(link);
    } else if (field === "lag_seconds") {
      td.textContent = formatSeconds(value);
    } else if (field === "per_minute") {
      td.textContent = Number(value).toFixed(1);
    } else {
      td.textContent = String(value);
    }
    row.appendChild(td);
  }

  // Only the counts are refreshed; rows that appear or vanish (and queue actions) show on
  // the next page load, so an operator's click never lands on a row that moved.
  function update(table, entries, base, filter) {
    var byName = {};
    entries.forEach(function (entry) { byName[entry.name] = entry; });
    table.querySelectorAll("tbody tr[data-row]").forEach(function (row) {
      var entry = byName[row.dataset.row];
      row.querySelectorAll("td[data-field]").forEach(function (td) {
        var field = td.dataset.field;
        if (field === "paused") return;
        var value = entry ? entry[field] : 0;
        var scratch = document.createElement("tr");
        cell(scratch, field, value, base, filter, row.dataset.row);
        td.replaceWith(scratch.firstChild);
      });
    });
  }

  function poll(section) {
    var url = section.dataset.pollUrl;
    var every = Number(section.dataset.pollMs) || 2000;
    var base = section.dataset.base || "";
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data) return;
          var totals = { due_now: 0, running: 0, failed_hour: 0, per_minute: 0 };
          data.queues.forEach(function (q) {
            Object.keys(totals).forEach(function (k) { totals[k] += q[k]; });
          });
          totals.per_minute = totals.per_minute.toFixed(1);
          totals.live_workers = data.live_workers;
          section.querySelectorAll("[data-total]").forEach(function (el) {
            el.textContent = String(totals[el.dataset.total]);
          });
          var queues = document.getElementById("queues");
          var tasks = document.getElementById("tasks");
          if (queues) update(queues, data.queues, base, "queue");
          if (tasks) update(tasks, data.tasks, base, "task");
          document.body.dataset.refreshedAt = String(Date.now());
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.querySelector("[data-poll-url]");
    if (section) poll(section);
    var reload = Number(document.body.dataset.reloadMs);
    if (reload > 0) setTimeout(function () { window.location.reload(); }, reload);
  });
})();
