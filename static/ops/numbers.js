// How the dashboard writes its numbers: latencies (the tiles, the same as
// playground/ops/units.py writes them on the server) and the charts' axis ticks. Nothing here
// touches the page, so tests/ops/test_units.py runs it under Node.

import { formatSeconds } from "../js/stream/format.js";

// Mirrors playground/ops/units.py format_latency: milliseconds below a second, then as
// every other measured time on the site.
export function formatLatency(seconds) {
  if (seconds != null && !Number.isNaN(seconds)) {
    const ms = Math.round(seconds * 1000);
    if (ms < 1000) return `${ms} ms`;
  }
  return formatSeconds(seconds);
}

const STEPS = [1, 2, 2.5, 5, 10];
const WHOLE_STEPS = [1, 2, 5, 10];
const TICKS = 4; // about as many gaps between ticks as a 180 px chart shows comfortably

// The fewest decimals that write `value` exactly (up to 9).
export function decimalsOf(value) {
  for (let decimals = 0; decimals < 9; decimals += 1) {
    const scaled = value * 10 ** decimals;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * Math.max(1, Math.abs(scaled))) return decimals;
  }
  return 9;
}

// 1, 2, 2.5 or 5 times a power of ten: the step that gives at most `count` gaps up to `top`.
export function niceStep(top, count = TICKS, whole = false) {
  const raw = top / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const steps = whole && power < 10 ? WHOLE_STEPS : STEPS;
  const step = steps.find((m) => m * power >= raw * (1 - 1e-9)) * power;
  return whole ? Math.max(1, Math.round(step)) : step;
}

// Ticks from 0 up to the first step at or above `max` (at least `least`): distinct, evenly
// spaced, each a round number. Every chart here counts up from nothing, so it starts at 0.
export function niceTicks(max, { least = 1, whole = false, count = TICKS } = {}) {
  const top = Number.isFinite(max) && max > least ? max : least;
  const step = niceStep(top, count, whole);
  const decimals = decimalsOf(step);
  const gaps = Math.ceil(top / step - 1e-9);
  return Array.from({ length: gaps + 1 }, (_, i) => Number((i * step).toFixed(decimals)));
}

const trim = (value, decimals) => String(Number(value.toFixed(decimals)));

// What each chart's y axis counts: its ticks for a largest value, and their labels.
export const AXES = {
  // Visitors and generations: whole numbers.
  count: {
    ticks: (max) => niceTicks(max, { whole: true }),
    labels: (ticks) => ticks.map(String),
  },
  // Tokens per second.
  rate: {
    ticks: (max) => niceTicks(max, { least: 1 }),
    labels: (ticks) => ticks.map((v) => trim(v, decimalsOf(ticks[1] - ticks[0]))),
  },
  // Seconds, written in ms while the axis stays under a second.
  latency: {
    ticks: (max) => niceTicks(max, { least: 0.01 }),
    labels: (ticks) => {
      const top = ticks[ticks.length - 1];
      const [factor, unit] = top < 1 ? [1000, "ms"] : [1, "s"];
      const decimals = decimalsOf((ticks[1] - ticks[0]) * factor);
      return ticks.map((v) => `${trim(v * factor, decimals)} ${unit}`);
    },
  },
  // Utilization and memory in use, always the whole 0–100 %.
  percent: {
    ticks: () => [0, 25, 50, 75, 100],
    labels: (ticks) => ticks.map((v) => `${v} %`),
  },
};

const two = (n) => String(n).padStart(2, "0");

// A time axis label: 14:05, or 14:05:30 while ticks are less than a minute apart.
export function clockLabel(unixSeconds, stepSeconds) {
  const date = new Date(unixSeconds * 1000);
  const minutes = `${two(date.getHours())}:${two(date.getMinutes())}`;
  return stepSeconds < 60 ? `${minutes}:${two(date.getSeconds())}` : minutes;
}

// The series with an empty point wherever the sampler stopped for longer than `maxGap`
// seconds (no worker, no Redis), so the charts show a gap there instead of a straight line.
export function withGaps(points, maxGap) {
  const result = [];
  points.forEach((point, i) => {
    if (i > 0 && point.t - points[i - 1].t > maxGap) result.push({ t: points[i - 1].t + maxGap });
    result.push(point);
  });
  return result;
}
