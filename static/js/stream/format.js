// Durations and answer statistics as text, the way the server writes them
// (playground/durations.py, playground/presenters.py), so a page looks the same whether it was
// rendered or streamed.

const FINISH_REASONS = {
  length: "cut off at the length limit",
  eos_token: "finished normally",
  stop_sequence: "stopped at a stop sequence",
};

// Mirrors playground/durations.py format_measured.
export function formatSeconds(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.max(0, seconds).toFixed(2)} s`;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, "0")} s`;
}

// Mirrors playground/durations.py format_wait.
export function formatEta(seconds) {
  if (seconds == null) return "";
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// Mirrors playground/presenters.py facts_line.
export function factsLine(stats, provenance) {
  const parts = [];
  const model = (provenance && provenance.model_id) || "";
  if (model) parts.push(model.split("/").pop());
  if (stats && stats.duration_seconds != null) parts.push(formatSeconds(stats.duration_seconds));
  if (stats && stats.tokens_per_second) parts.push(`${stats.tokens_per_second} tokens/s`);
  return parts.join(" · ");
}

// Mirrors playground/presenters.py stat_parts.
export function statParts(stats) {
  if (!stats) return [];
  const parts = [];
  if (stats.queue_seconds != null) parts.push(`Queue ${formatSeconds(stats.queue_seconds)}`);
  if (stats.ttft_seconds != null) parts.push(`First token ${formatSeconds(stats.ttft_seconds)}`);
  if (stats.tokens != null) parts.push(`${stats.tokens} tokens`);
  if (stats.tokens_per_second) parts.push(`${stats.tokens_per_second} tokens/s`);
  if (stats.duration_seconds != null) parts.push(`${formatSeconds(stats.duration_seconds)} in all`);
  if (stats.finish_reason) {
    parts.push(FINISH_REASONS[stats.finish_reason] || `finished: ${stats.finish_reason}`);
  }
  return parts;
}
