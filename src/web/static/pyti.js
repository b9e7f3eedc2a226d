// pyti web UI: served by the master as /static/pyti.js (the only script a page runs, with chart.js).
// Reads the charts' data from data-chart attributes and keeps a page up to date while a run is in
// progress by fetching its JSON twin; everything it writes goes in as text (textContent), never HTML.
"use strict";
(function () {
  const colours = { passed: "#2e9d57", failed: "#d64545", wall: "#3c78d8", cpu: "#e08a1e", rss: "#7b55c7" };

  function chart(canvas) {
    if (typeof Chart === "undefined") return;
    let d;
    try { d = JSON.parse(canvas.dataset.chart); } catch (e) { return; }
    let cfg;
    if (d.kind === "durations") {
      cfg = { type: "bar", data: { labels: d.labels, datasets: [{ label: "duration (s)", data: d.values, backgroundColor: colours.wall }] } };
    } else if (d.kind === "tasks") {
      cfg = { type: "bar", data: { labels: d.labels, datasets: [
        { label: "wall (s)", data: d.wall, backgroundColor: colours.wall, yAxisID: "y" },
        { label: "CPU (s)", data: d.cpu, backgroundColor: colours.cpu, yAxisID: "y" },
        { label: "peak memory (MiB)", data: d.rss_mb, backgroundColor: colours.rss, yAxisID: "y2" }] },
        options: { scales: { y: { position: "left" }, y2: { position: "right", grid: { drawOnChartArea: false } } } } };
    } else if (d.kind === "history") {
      cfg = { type: "line", data: { labels: d.labels, datasets: [
        { label: "tests passed", data: d.passed, borderColor: colours.passed },
        { label: "tests failed", data: d.failed, borderColor: colours.failed }] } };
    } else return;
    cfg.options = Object.assign({ animation: false, responsive: true }, cfg.options || {});
    new Chart(canvas, cfg);
  }

  function text(v) { return v === null || v === undefined ? "–" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : String(v); }

  function setBadge(cell, v) {
    cell.textContent = "";
    if (v === null || v === undefined) { cell.textContent = "–"; return; }
    const s = document.createElement("span");
    s.className = "badge b-" + String(v).replace(/[^a-z-]/g, "");
    s.textContent = v;
    cell.appendChild(s);
  }

  // a run page: update each job row and the counts from /api/run/ID
  function updateRun(doc) {
    for (const j of doc.jobs || []) {
      const row = document.getElementById(j.job_id);
      if (!row) continue;
      for (const cell of row.querySelectorAll("[data-f]")) {
        const f = cell.dataset.f;
        if (f === "state" || f === "verdict") setBadge(cell, j[f]); else cell.textContent = text(j[f]);
      }
    }
    const run = doc.run || {};
    for (const [k, v] of Object.entries(run.counts || {})) {
      const dd = document.querySelector('[data-count="' + k + '"]');
      if (dd) dd.textContent = v;
    }
    for (const [k, v] of Object.entries(run.verdicts || {})) {
      const dd = document.querySelector('[data-verdict="' + k + '"]');
      if (dd) dd.textContent = v;
    }
    const c = run.counts || {};
    return (c.queued || 0) + (c.leased || 0) > 0;
  }

  function updateJob(doc) {
    const j = doc.job || {};
    const st = document.getElementById("job-state");
    if (st) setBadge(st, j.state);
    const pg = document.getElementById("job-progress");
    if (pg && j.progress) pg.textContent = "task " + text(j.progress.task) + " (" + text(j.progress.i) + " of " + text(j.progress.n) + ")";
    const tail = document.getElementById("live-tail");
    if (tail && j.progress && typeof j.progress.tail === "string") tail.textContent = j.progress.tail;
    return j.state === "leased" || j.state === "queued";
  }

  function live(el) {
    const url = el.dataset.live;
    const every = 3000;
    if (url === "reload") { // a list page: fetch it again and swap the main element's tables
      setTimeout(async function tick() {
        try {
          const r = await fetch(location.href, { headers: { Accept: "text/html" } });
          const html = new DOMParser().parseFromString(await r.text(), "text/html");
          const fresh = html.querySelector("main");
          if (fresh) document.querySelector("main").replaceWith(document.adoptNode(fresh));
        } catch (e) { /* the master may be restarting: try again */ }
        setTimeout(tick, every);
      }, every);
      return;
    }
    async function poll() {
      let going = true;
      try {
        const r = await fetch(url, { headers: { Accept: "application/json" } });
        const doc = await r.json();
        going = url.startsWith("/api/run/") ? updateRun(doc) : updateJob(doc);
      } catch (e) { /* try again */ }
      if (going) setTimeout(poll, every); // else: the run ended; the page stays as it is now
    }
    setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("canvas[data-chart]").forEach(chart);
    const l = document.querySelector("[data-live]");
    if (l) live(l);
  });
})();
