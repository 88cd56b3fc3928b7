// cpnode console: local times, and live task and migration pages over the node's event streams.
// No inline script anywhere (the Content-Security-Policy forbids it): this file is all there is.
"use strict";

(function () {
  const BAD = ["failed", "refused", "voided", "error", "rolled_back", "needs_attention", "offline", "cancelled"];
  const GOOD = ["settled", "succeeded", "done", "online", "ok", "accepted", "running", "completed", "ready"];

  function pad(n) { return String(n).padStart(2, "0"); }

  function localText(date) {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()) + " " + zone;
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      const date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) { return; }
      el.title = el.textContent;  // UTC, on hover
      el.textContent = localText(date);
      el.setAttribute("data-local", "1");
    });
  }

  function utcTime(ms) {
    const date = new Date(ms);
    const el = document.createElement("time");
    el.setAttribute("datetime", date.toISOString().replace(/\.\d+Z$/, "Z"));
    el.textContent = date.toISOString().replace(/\.\d+Z$/, "Z");
    localTimes({ querySelectorAll: function () { return [el]; } });
    return el;
  }

  function badge(el, state) {
    if (!el) { return; }
    const kind = BAD.includes(state) ? "bad" : (GOOD.includes(state) ? "good" : "neutral");
    el.replaceChildren();
    const span = document.createElement("span");
    span.className = "badge badge-" + kind;
    span.textContent = state;
    el.appendChild(span);
  }

  function setText(id, text) {
    const el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n || 0;
    let i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return i === 0 ? value.toFixed(0) + " B" : value.toFixed(1) + " " + units[i];
  }

  function historyLine(list, ms, text) {
    if (!list) { return; }
    const li = document.createElement("li");
    li.appendChild(utcTime(ms));
    li.appendChild(document.createTextNode(" " + text));
    list.appendChild(li);
  }

  function followTask(section) {
    const source = new EventSource(section.dataset.events);
    const log = document.getElementById("task-log");
    const history = document.getElementById("task-history");
    if (history) { history.replaceChildren(); }
    source.addEventListener("state", function (event) {
      const entry = JSON.parse(event.data);
      badge(document.getElementById("task-state"), entry.state);
      historyLine(history, entry.ts_ms, entry.state + " (" + entry.event + ")" + (entry.detail ? ": " + entry.detail : ""));
    });
    source.addEventListener("log", function (event) {
      const chunk = JSON.parse(event.data);
      if (log) { log.textContent += chunk.text; }
    });
    source.addEventListener("end", function (event) {
      const task = JSON.parse(event.data);
      setText("task-outcome", task.outcome || "-");
      badge(document.getElementById("task-state"), task.state);
      section.setAttribute("data-ended", "1");
      source.close();
    });
    source.addEventListener("closed", function () { source.close(); });
  }

  function followMigration(section) {
    const source = new EventSource(section.dataset.events);
    const history = document.getElementById("m-history");
    if (history) { history.replaceChildren(); }
    source.addEventListener("progress", function (event) {
      const m = JSON.parse(event.data);
      const p = m.progress || {};
      badge(document.getElementById("m-state"), m.state);
      if (m.destination_pool) { setText("m-dest", m.destination_pool); }
      const bar = document.getElementById("m-progress");
      if (bar) {
        bar.max = Math.max(p.bytes_total || m.state_bytes || 0, 1);
        bar.value = p.bytes_done || 0;
      }
      setText("m-bytes", bytes(p.bytes_done) + " of " + bytes(p.bytes_total || m.state_bytes));
      setText("m-rate", bytes(p.rate_bytes_per_s) + "/s");
      setText("m-eta", p.eta_ms === null || p.eta_ms === undefined ? "-" : Math.ceil(p.eta_ms / 1000) + " s");
      setText("m-retries", String(p.retries || 0) + " (transfer attempts " + m.transfer_attempts + ", resumes " + m.transfer_resumes + ")");
      setText("m-error", m.last_error || p.last_error || "none");
      if (m.downtime_ms !== null && m.downtime_ms !== undefined) { setText("m-downtime", m.downtime_ms + " ms"); }
      section.setAttribute("data-state", m.state);
    });
    source.addEventListener("transition", function (event) {
      const line = JSON.parse(event.data);
      historyLine(history, line.at_ms || Date.now(), line.from + " → " + line.to + " (" + line.event + ")" + (line.detail ? ": " + line.detail : ""));
    });
    source.addEventListener("closed", function () {
      section.setAttribute("data-ended", "1");
      source.close();
    });
  }

  function start() {
    localTimes(document);
    document.body.addEventListener("htmx:afterSettle", function (event) { localTimes(event.target); });
    const task = document.getElementById("task");
    if (task && task.dataset.events) { followTask(task); }
    const migration = document.getElementById("migration");
    if (migration && migration.dataset.events) { followMigration(migration); }
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
