// The last hour's charts (uPlot, vendored): each y axis counts up from 0 in round steps with
// its unit (static/ops/numbers.js), the time axis reads as a clock.

import { AXES, clockLabel, withGaps } from "./numbers.js";

const HOUR = 3600;
const HEIGHT = 180;
// The sampler writes a point every 5 s; three missed in a row is an outage, drawn as a gap.
const GAP_SECONDS = 15;
// A fresh site has a point or two: the time axis still spans five minutes, so its ticks are
// whole minutes rather than the same second written five times.
const LEAST_SPAN_SECONDS = 300;

const palette = ["#3b4fd8", "#c98a00", "#2f7a3e", "#a3261b"];
const CHARTS = {
  queue: { axis: "count", series: [["waiting", "waiting"], ["running", "running"], ["capacity", "capacity"]] },
  tokens: { axis: "rate", series: [["tokens_per_second", "tokens/s"]] },
  ttft: { axis: "latency", series: [["ttft_p95", "p95"]] },
  gpu: { axis: "percent", series: [["gpu_utilization", "utilization"], ["gpu_memory", "memory"]] },
};

function columns(def, points) {
  const gapped = withGaps(points, GAP_SECONDS);
  return [gapped.map((p) => p.t), ...def.series.map(([key]) => gapped.map((p) => p[key] ?? null))];
}

// A canvas says nothing to a screen reader: the chart node is an image labelled with its
// caption and its axes' ticks, as drawn.
function describe(node, axis, labels) {
  const drawn = (node.drawnTicks = { ...node.drawnTicks, [axis]: labels.join(", ") });
  const caption = node.closest("figure")?.querySelector("figcaption")?.textContent || "chart";
  node.setAttribute("aria-label", `${caption}; time axis: ${drawn.time || ""}; y axis: ${drawn.y || ""}`);
}

// From the points themselves: uPlot widens a single point's range to years before asking.
function timeRange(u) {
  const times = u.data[0] || [];
  const end = times.length ? times[times.length - 1] : Date.now() / 1000;
  return [Math.min(times.length ? times[0] : end, end - LEAST_SPAN_SECONDS), end];
}

function options(node, def, width, ink) {
  const axis = AXES[def.axis];
  const lines = { stroke: ink, grid: { stroke: "rgba(128,128,128,.2)" }, ticks: { stroke: "rgba(128,128,128,.3)" } };
  return {
    width,
    height: HEIGHT,
    series: [{}, ...def.series.map(([, label], i) => ({ label, stroke: palette[i], width: 2 }))],
    scales: {
      x: { time: true, range: timeRange },
      y: {
        range: (u, dataMin, dataMax) => {
          const ticks = axis.ticks(dataMax);
          return [0, ticks[ticks.length - 1]];
        },
      },
    },
    axes: [
      {
        ...lines,
        values: (u, splits, i, space, step) => {
          const labels = splits.map((t) => clockLabel(t, step));
          describe(node, "time", labels);
          return labels;
        },
      },
      {
        ...lines,
        size: 64,
        splits: (u, i, min, max) => axis.ticks(max),
        values: (u, splits) => {
          const labels = axis.labels(splits);
          describe(node, "y", labels);
          return labels;
        },
      },
    ],
    legend: { live: false },
  };
}

export function chartSeries(initial) {
  let points = initial;
  const charts = [];

  function make(root) {
    if (typeof uPlot === "undefined") return;
    const ink = getComputedStyle(document.body).color;
    root.querySelectorAll("[data-chart]").forEach((node) => {
      const def = CHARTS[node.dataset.chart];
      if (!def) return;
      node.setAttribute("role", "img");
      const plot = new uPlot(options(node, def, node.clientWidth || 400, ink), columns(def, points), node);
      charts.push({ node, def, plot });
    });
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => {
        charts.forEach(({ node, plot }) => plot.setSize({ width: node.clientWidth, height: HEIGHT }));
      }, 150);
    });
  }

  function add(newer, now) {
    points = points.concat(newer).filter((p) => p.t >= now - HOUR);
    charts.forEach(({ def, plot }) => plot.setData(columns(def, points)));
  }

  const last = () => (points.length ? points[points.length - 1].t : null);
  return { make, add, last };
}
