// The lines under a finished answer that name where it came from and whether it was right:
// provenance (model, revision, backend, sampling settings) and the answer check.

import { element, show } from "./dom.js";
import { gettext, interpolate, interpolateNodes } from "./i18n.js";

// Parameter names (top_p, top_k, typical_p) read the same in every language.
function samplingLabels() {
  return [
    ["temperature", gettext("temperature")],
    ["top_p", "top_p"],
    ["top_k", "top_k"],
    ["typical_p", "typical_p"],
    ["repetition_penalty", gettext("repetition penalty")],
    ["frequency_penalty", gettext("frequency penalty")],
    ["max_new_tokens", gettext("max new tokens")],
    ["seed", gettext("seed")],
  ];
}

export function fillProvenance(line, provenance) {
  const name = provenance.model_id || gettext("an unnamed model");
  const model = element("span", "provenance-model", name);
  const parts = interpolateNodes(gettext("Served by %(model)s"), { model });
  if (provenance.model_sha) {
    const revision = element("code", null, String(provenance.model_sha).slice(0, 12));
    // Translators: follows the model's name; the leading space is for languages that want one.
    parts.push(...interpolateNodes(gettext(" (revision %(revision)s)"), { revision }));
  }
  if (provenance.version) parts.push(` · TGI ${provenance.version}`);
  if (provenance.backend) {
    const backend = element("code", null, provenance.backend);
    parts.push(" · ", ...interpolateNodes(gettext("backend %(backend)s"), { backend }));
  }
  const sampling = provenance.sampling || {};
  const settings = samplingLabels()
    .filter(([key]) => key in sampling)
    .map(([key, label]) => `${label} ${sampling[key]}`);
  if (settings.length) parts.push(` · ${settings.join(", ")}`);
  line.replaceChildren(...parts);
  show(line);
}

// The check as one sentence, for the announcement of the finished answer.
export function checkSummary(check) {
  const verdict = check.verdict === "correct" ? gettext("Correct") : gettext("Incorrect");
  const expected = interpolate(gettext("%(verdict)s. Expected: %(expected)s."), {
    verdict,
    expected: check.expected,
  });
  return `${expected} ${check.note || ""}`.trim();
}

export function fillCheck(line, check) {
  const badge = element("span", "check-badge");
  const mark = element("span", null, check.verdict === "correct" ? "✓" : "✗");
  mark.setAttribute("aria-hidden", "true");
  badge.append(mark, " ", check.verdict === "correct" ? gettext("Correct") : gettext("Incorrect"));
  line.className = `check check-${check.verdict}`;
  line.replaceChildren(
    badge,
    " ",
    element(
      "span",
      "check-expected",
      interpolate(gettext("Expected: %(expected)s."), { expected: check.expected }),
    ),
    " ",
    element("span", "check-note", check.note || ""),
  );
  show(line);
}
