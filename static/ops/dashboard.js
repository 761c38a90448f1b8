// The operators' dashboard: polls /ops/data every 1.5 s and updates tiles, tables and charts.
// Every value from the server is written with textContent or as an attribute value, never as
// HTML: prompts and backend answers are untrusted text.
"use strict";

(() => {
  const root = document.getElementById("ops");
  if (!root) return;

  const POLL_MS = 1500;
  const HOUR = 3600;
  const CHART_HEIGHT = 180;
  const dataUrl = root.dataset.url;
  const status = document.getElementById("live-status");
  const seriesNode = document.getElementById("ops-series");
  let series = seriesNode ? JSON.parse(seriesNode.textContent) : [];
  let lastT = series.length ? series[series.length - 1].t : null;
  const initial = { paused: null, draining: null };

  // --- small helpers ------------------------------------------------------------------------

  const get = (obj, path) =>
    path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), obj);

  const formats = {
    seconds: (v) => (v == null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1)),
    int: (v) => (v == null ? "–" : String(Math.round(v))),
    plain: (v) => (v == null || v === "" ? "–" : String(v)),
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child == null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function postForm(action, fields, label) {
    const form = el("form", { method: "post", action });
    form.append(el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken() }));
    for (const [name, value] of Object.entries(fields)) {
      form.append(el("input", { type: "hidden", name, value: String(value) }));
    }
    form.append(el("button", { type: "submit" }, label));
    return form;
  }

  const emptyRow = (columns, text, cls = "muted") =>
    el("tr", {}, el("td", { colspan: String(columns), class: cls }, text));

  // --- tiles --------------------------------------------------------------------------------

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

  // --- tables -------------------------------------------------------------------------------

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
      el("td", {}, el("code", {}, backend)),
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
            el("td", {}, el("code", {}, b.url)),
            el("td", {}, panel.source || "–"),
            el("td", { colspan: "6", class: panel.status === "unreachable" ? "bad" : "muted" }, text),
          ),
        );
      }
    }
    (data.host_gpus || []).forEach((g) => rows.push(gpuRow("this host", "nvml", g)));
    body.replaceChildren(...rows);
  }

  let activeSignature = null;

  function updateActive(data) {
    const body = root.querySelector('[data-list="active"]');
    if (!body) return;
    // Rebuild only when the set changes, so a button is never swapped away under the pointer.
    const signature = data.active.map((m) => `${m.id}:${m.status}:${m.backend}`).join("|");
    if (signature === activeSignature) {
      data.active.forEach((m, i) => {
        const age = body.rows[i] && body.rows[i].querySelector("[data-age]");
        if (age) age.textContent = `${Math.round(m.age_seconds)} s`;
      });
      return;
    }
    activeSignature = signature;
    if (!data.active.length) {
      body.replaceChildren(emptyRow(7, "Nothing queued or running."));
      return;
    }
    const cancelUrl = root.dataset.cancelUrl;
    const blockUrl = root.dataset.blockUrl;
    body.replaceChildren(
      ...data.active.map((m) => {
        const actions = el("td", { class: "row-controls" }, postForm(cancelUrl, { message_id: m.id }, "Cancel"));
        if (m.client_ip) {
          actions.append(postForm(blockUrl, { kind: "ip", value: m.client_ip, duration: "1h" }, "Block IP 1 h"));
        }
        actions.append(postForm(blockUrl, { kind: "session", value: m.id, duration: "1h" }, "Block session 1 h"));
        return el(
          "tr",
          {},
          el("td", {}, el("code", {}, m.id)),
          el("td", {}, m.status),
          el("td", {}, m.backend || "–"),
          el("td", { "data-age": "" }, `${Math.round(m.age_seconds)} s`),
          el("td", {}, m.client_ip || "–"),
          el("td", { class: "prompt" }, m.prompt),
          actions,
        );
      }),
    );
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
          el("td", {}, a.target),
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

  function noteChangedControls(data) {
    // The control forms were rendered for the state at page load; say so when it changed.
    const notice = document.getElementById("controls-changed");
    if (!notice) return;
    if (initial.paused === null) {
      initial.paused = data.controls.paused;
      initial.draining = data.controls.draining;
    }
    notice.hidden =
      data.controls.paused === initial.paused && data.controls.draining === initial.draining;
  }

  // --- charts -------------------------------------------------------------------------------

  const palette = ["#3b4fd8", "#c98a00", "#2f7a3e", "#a3261b"];
  const chartDefs = {
    queue: { series: [["waiting", "waiting"], ["running", "running"], ["capacity", "capacity"]] },
    tokens: { series: [["tokens_per_second", "tokens/s"]] },
    ttft: { series: [["ttft_p95", "p95 (s)"]] },
    gpu: { series: [["gpu_utilization", "utilization %"], ["gpu_memory", "memory %"]], range: [0, 100] },
  };
  const charts = [];

  function chartData(def) {
    return [series.map((p) => p.t), ...def.series.map(([key]) => series.map((p) => p[key] ?? null))];
  }

  function makeCharts() {
    if (typeof uPlot === "undefined") return;
    const ink = getComputedStyle(document.body).color;
    const axis = { stroke: ink, grid: { stroke: "rgba(128,128,128,.2)" }, ticks: { stroke: "rgba(128,128,128,.3)" } };
    root.querySelectorAll("[data-chart]").forEach((node) => {
      const def = chartDefs[node.dataset.chart];
      if (!def) return;
      const options = {
        width: node.clientWidth || 400,
        height: CHART_HEIGHT,
        series: [{}, ...def.series.map(([, label], i) => ({ label, stroke: palette[i], width: 2 }))],
        axes: [axis, axis],
        scales: { x: { time: true }, y: def.range ? { range: def.range } : {} },
        legend: { live: false },
      };
      charts.push({ node, def, plot: new uPlot(options, chartData(def), node) });
    });
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => {
        charts.forEach(({ node, plot }) => plot.setSize({ width: node.clientWidth, height: CHART_HEIGHT }));
      }, 150);
    });
  }

  function updateCharts(data) {
    if (data.series.length) {
      series = series.concat(data.series);
      lastT = series[series.length - 1].t;
    }
    series = series.filter((p) => p.t >= data.now - HOUR);
    charts.forEach(({ def, plot }) => plot.setData(chartData(def)));
  }

  // --- the loop -----------------------------------------------------------------------------

  function render(data) {
    updateFields(data);
    const backends = data.backends.map((b) => [`${b.url}`, `${b.slots_in_use}/${b.limit}`]);
    const slots = root.querySelector('[data-list="backend-slots"]');
    if (slots) {
      slots.replaceChildren(...backends.map(([url, used]) => el("li", {}, el("span", {}, used), " ", url)));
    }
    breakdown("rejected", Object.entries(data.last_minute.rejected), "none");
    breakdown("errors", Object.entries(data.last_minute.errors), "none");
    updateBackends(data);
    updateGpus(data);
    updateActive(data);
    updateAudit(data);
    updateAccuracy(data);
    noteChangedControls(data);
    updateCharts(data);
  }

  async function poll() {
    try {
      const query = lastT != null ? `?since=${encodeURIComponent(lastT)}` : "";
      const response = await fetch(dataUrl + query, {
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

  makeCharts();
  setTimeout(poll, POLL_MS);
})();
