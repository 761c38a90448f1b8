// The operators' dashboard: polls /ops/data every 1.5 s and updates tiles, tables and charts.
// Every value from the server is written with textContent or as an attribute value, never as
// HTML: prompts and backend answers are untrusted text.

import { activeList } from "./active.js";
import { chartSeries } from "./charts.js";
import { askBeforeSubmitting } from "./confirm.js";
import { el, emptyRow } from "./dom.js";
import { formatLatency } from "./numbers.js";

const root = document.getElementById("ops");
const POLL_MS = 1500;

const get = (obj, path) =>
  path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), obj);

const formats = {
  latency: formatLatency,
  int: (v) => (v == null ? "–" : String(Math.round(v))),
  plain: (v) => (v == null || v === "" ? "–" : String(v)),
};

// --- tiles ----------------------------------------------------------------------------------

function updateFields(data) {
  root.querySelectorAll("[data-field]").forEach((node) => {
    const format = formats[node.dataset.format] || formats.plain;
    node.textContent = format(get(data, node.dataset.field));
  });
  root.querySelectorAll("[data-show]").forEach((node) => {
    node.hidden = !get(data, node.dataset.show);
  });
  root.querySelectorAll("[data-show-not]").forEach((node) => {
    node.hidden = Boolean(get(data, node.dataset.showNot));
  });
}

function breakdown(name, entries, emptyText) {
  const list = root.querySelector(`[data-list="${name}"]`);
  if (!list) return;
  const items = entries.length
    ? entries.map(([label, count]) => el("li", {}, el("span", {}, count), " ", label))
    : [el("li", { class: "muted" }, emptyText)];
  list.replaceChildren(...items);
}

// --- tables ---------------------------------------------------------------------------------

function updateBackends(data) {
  data.backends.forEach((b, i) => {
    const row = root.querySelector(`tr[data-backend="${i}"]`);
    if (!row) return;
    const set = (name, text, bad = false) => {
      const cell = row.querySelector(`[data-b="${name}"]`);
      if (!cell) return;
      cell.textContent = text;
      cell.classList.toggle("bad", bad);
    };
    const info = b.info || {};
    const tgi = b.tgi || {};
    const failures = Object.entries(tgi.failures || {});
    set("state", b.state, b.state !== "in rotation");
    set("health", (b.health || "unreachable") + (b.error ? ` (${b.error})` : ""), b.health !== "ok");
    set("slots", `${b.slots_in_use}/${b.limit}` + (b.override ? " (set)" : ""));
    set("model", formats.plain(info.model_id) + (info.model_sha ? ` @${String(info.model_sha).slice(0, 9)}` : ""));
    set("version", formats.plain(info.version));
    set("max_concurrent", formats.plain(info.max_concurrent_requests));
    set("max_tokens", `${formats.plain(info.max_input_tokens)} / ${formats.plain(info.max_total_tokens)}`);
    set("queue", formats.int(tgi.queue_size));
    set("batch", formats.int(tgi.batch_current_size));
    set("per_token", formats.plain(tgi.mean_time_per_token_ms));
    set("failures", failures.length ? failures.map(([e, n]) => `${e}: ${Math.round(n)}`).join(", ") : "–");
  });
}

const round = (v, unit) => (v == null ? "–" : `${Math.round(v)}${unit}`);

function gpuRow(backend, source, g) {
  const model = el("td", {}, g.model || "–");
  if (g.simulated) model.append(" ", el("span", { class: "badge badge-sim" }, "simulated"));
  return el(
    "tr",
    {},
    el("td", { class: "url" }, el("code", {}, backend)),
    el("td", {}, source),
    el("td", {}, g.gpu),
    model,
    el("td", {}, round(g.utilization, " %")),
    el("td", {}, `${round(g.memory_used_mib, "")} / ${round(g.memory_total_mib, "")} MiB`),
    el("td", {}, round(g.temperature_c, " °C")),
    el("td", {}, round(g.power_w, " W")),
  );
}

function updateGpus(data) {
  const body = root.querySelector('[data-list="gpus"]');
  if (!body) return;
  const rows = [];
  for (const b of data.backends) {
    const panel = b.gpu || { status: "unreachable", readings: [] };
    if (panel.readings && panel.readings.length) {
      panel.readings.forEach((g) => rows.push(gpuRow(b.url, panel.source, g)));
    } else {
      const text = (panel.status || "unreachable") + (panel.error ? ` (${panel.error})` : "");
      rows.push(
        el(
          "tr",
          {},
          el("td", { class: "url" }, el("code", {}, b.url)),
          el("td", {}, panel.source || "–"),
          el("td", { colspan: "6", class: panel.status === "unreachable" ? "bad" : "muted" }, text),
        ),
      );
    }
  }
  (data.host_gpus || []).forEach((g) => rows.push(gpuRow("this host", "nvml", g)));
  body.replaceChildren(...rows);
}

let auditSignature = null;

function updateAudit(data) {
  const body = root.querySelector('[data-list="audit"]');
  if (!body) return;
  const signature = data.audit.map((a) => a.when + a.action).join("|");
  if (signature === auditSignature) return;
  auditSignature = signature;
  if (!data.audit.length) {
    body.replaceChildren(emptyRow(5, "No control has been used yet."));
    return;
  }
  body.replaceChildren(
    ...data.audit.map((a) =>
      el(
        "tr",
        {},
        el("td", {}, a.when.slice(0, 19)),
        el("td", {}, a.who),
        el("td", {}, a.action),
        el("td", { class: "url" }, a.target),
        el("td", {}, el("code", {}, JSON.stringify(a.detail))),
      ),
    ),
  );
}

function accuracyCell(cell) {
  if (!cell || !cell.total) return "–";
  return `${cell.correct}/${cell.total} (${Math.round((100 * cell.correct) / cell.total)} %)`;
}

function updateAccuracy(data) {
  const body = root.querySelector('[data-list="accuracy"]');
  if (!body || !data.accuracy) return;
  const windows = ["last_hour", "last_day", "all_time"];
  body.replaceChildren(
    ...data.accuracy.samples.map((row) => {
      const tr = el("tr", { "data-sample": row.slug }, el("td", {}, row.title), el("td", {}, row.expected || "–"));
      windows.forEach((name) => tr.append(el("td", { "data-window": name }, accuracyCell(row[name]))));
      return tr;
    }),
  );
}

const initial = { paused: null, draining: null };

function noteChangedControls(data) {
  // The control forms were rendered for the state at page load; say so when it changed.
  const notice = document.getElementById("controls-changed");
  if (!notice) return;
  if (initial.paused === null) {
    initial.paused = data.controls.paused;
    initial.draining = data.controls.draining;
  }
  notice.hidden = data.controls.paused === initial.paused && data.controls.draining === initial.draining;
}

// --- the loop -------------------------------------------------------------------------------

function start() {
  const status = document.getElementById("live-status");
  const seriesNode = document.getElementById("ops-series");
  const series = chartSeries(seriesNode ? JSON.parse(seriesNode.textContent) : []);
  const activeBody = root.querySelector('[data-list="active"]');
  const updateActive = activeList(
    activeBody,
    document.getElementById("active-row"),
    document.getElementById("active-held"),
  );

  function render(data) {
    updateFields(data);
    const slots = root.querySelector('[data-list="backend-slots"]');
    if (slots) {
      slots.replaceChildren(
        ...data.backends.map((b) => el("li", {}, el("span", {}, `${b.slots_in_use}/${b.limit}`), " ", b.url)),
      );
    }
    breakdown("rejected", Object.entries(data.last_minute.rejected), "none");
    breakdown("errors", Object.entries(data.last_minute.errors), "none");
    updateBackends(data);
    updateGpus(data);
    updateActive(data.active);
    updateAudit(data);
    updateAccuracy(data);
    noteChangedControls(data);
    series.add(data.series, data.now);
  }

  async function poll() {
    try {
      const since = series.last();
      const query = since != null ? `?since=${encodeURIComponent(since)}` : "";
      const response = await fetch(root.dataset.url + query, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      const type = response.headers.get("content-type") || "";
      if (!response.ok || !type.includes("application/json")) {
        throw new Error(response.ok ? "signed out? reload the page" : `HTTP ${response.status}`);
      }
      render(await response.json());
      status.textContent = `updated ${new Date().toLocaleTimeString()}`;
      status.classList.remove("stale");
    } catch (error) {
      status.textContent = `stale: ${error.message}`;
      status.classList.add("stale");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  askBeforeSubmitting(root, document.getElementById("confirm"));
  series.make(root);
  setTimeout(poll, POLL_MS);
}

if (root) start();
