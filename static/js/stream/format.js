// Durations and answer statistics as text, the way the server writes them
// (playground/durations.py, playground/presenters.py), so a page looks the same whether it was
// rendered or streamed, in either language.

import { gettext, interpolate, ngettext } from "./i18n.js";

// Looked up when used: the translations are the page's, not the module's at import.
function finishReason(reason) {
  if (reason === "length") return gettext("cut off at the length limit");
  if (reason === "eos_token") return gettext("finished normally");
  if (reason === "stop_sequence") return gettext("stopped at a stop sequence");
  return interpolate(gettext("finished: %(reason)s"), { reason });
}

function secondsText(seconds) {
  return interpolate(gettext("%(seconds)s s"), { seconds });
}

function minutesText(minutes, seconds) {
  return interpolate(gettext("%(minutes)s min %(seconds)s s"), {
    minutes,
    seconds: String(seconds).padStart(2, "0"),
  });
}

// Mirrors playground/durations.py format_measured.
export function formatSeconds(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return secondsText(Math.max(0, seconds).toFixed(2));
  if (seconds < 10) return secondsText(seconds.toFixed(1));
  if (seconds < 60) return secondsText(Math.round(seconds));
  const total = Math.round(seconds);
  return minutesText(Math.floor(total / 60), total % 60);
}

// Mirrors playground/durations.py format_wait.
export function formatEta(seconds) {
  if (seconds == null) return "";
  const whole = Math.round(seconds);
  if (whole < 60) return secondsText(whole);
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return minutesText(minutes, whole % 60);
  return interpolate(gettext("%(hours)s h %(minutes)s min"), {
    hours: Math.floor(minutes / 60),
    minutes: minutes % 60,
  });
}

function speedText(tokensPerSecond) {
  return interpolate(gettext("%(speed)s tokens/s"), { speed: tokensPerSecond });
}

// Mirrors playground/presenters.py facts_line.
export function factsLine(stats, provenance) {
  const parts = [];
  const model = (provenance && provenance.model_id) || "";
  if (model) parts.push(model.split("/").pop());
  if (stats && stats.duration_seconds != null) parts.push(formatSeconds(stats.duration_seconds));
  if (stats && stats.tokens_per_second) parts.push(speedText(stats.tokens_per_second));
  return parts.join(" · ");
}

// Mirrors playground/presenters.py stat_parts.
export function statParts(stats) {
  if (!stats) return [];
  const parts = [];
  if (stats.queue_seconds != null) {
    parts.push(interpolate(gettext("Queue %(time)s"), { time: formatSeconds(stats.queue_seconds) }));
  }
  if (stats.ttft_seconds != null) {
    parts.push(
      interpolate(gettext("First token %(time)s"), { time: formatSeconds(stats.ttft_seconds) }),
    );
  }
  if (stats.tokens != null) {
    const tokens = ngettext("%(count)s token", "%(count)s tokens", stats.tokens);
    parts.push(interpolate(tokens, { count: stats.tokens }));
  }
  if (stats.tokens_per_second) parts.push(speedText(stats.tokens_per_second));
  if (stats.duration_seconds != null) {
    parts.push(
      interpolate(gettext("%(time)s in all"), { time: formatSeconds(stats.duration_seconds) }),
    );
  }
  if (stats.finish_reason) parts.push(finishReason(stats.finish_reason));
  return parts;
}
