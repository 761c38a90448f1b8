// The lines under a finished answer that name where it came from and whether it was right:
// provenance (model, revision, backend, sampling settings) and the answer check.

import { element, show } from "./dom.js";

const SAMPLING_LABELS = [
  ["temperature", "temperature"],
  ["top_p", "top_p"],
  ["top_k", "top_k"],
  ["typical_p", "typical_p"],
  ["repetition_penalty", "repetition penalty"],
  ["frequency_penalty", "frequency penalty"],
  ["max_new_tokens", "max new tokens"],
  ["seed", "seed"],
];

export function fillProvenance(line, provenance) {
  const parts = [];
  parts.push("Served by ", element("span", "provenance-model", provenance.model_id || "an unnamed model"));
  if (provenance.model_sha) {
    parts.push(" (revision ", element("code", null, String(provenance.model_sha).slice(0, 12)), ")");
  }
  if (provenance.version) parts.push(` · TGI ${provenance.version}`);
  if (provenance.backend) parts.push(" · backend ", element("code", null, provenance.backend));
  const sampling = provenance.sampling || {};
  const settings = SAMPLING_LABELS.filter(([key]) => key in sampling).map(
    ([key, label]) => `${label} ${sampling[key]}`,
  );
  if (settings.length) parts.push(` · ${settings.join(", ")}`);
  line.replaceChildren(...parts);
  show(line);
}

// The check as one sentence, for the announcement of the finished answer.
export function checkSummary(check) {
  const verdict = check.verdict === "correct" ? "Correct" : "Incorrect";
  return `${verdict}. Expected: ${check.expected}. ${check.note || ""}`.trim();
}

export function fillCheck(line, check) {
  const badge = element("span", "check-badge");
  const mark = element("span", null, check.verdict === "correct" ? "✓" : "✗");
  mark.setAttribute("aria-hidden", "true");
  badge.append(mark, check.verdict === "correct" ? " Correct" : " Incorrect");
  line.className = `check check-${check.verdict}`;
  line.replaceChildren(
    badge,
    " ",
    element("span", "check-expected", `Expected: ${check.expected}.`),
    " ",
    element("span", "check-note", check.note || ""),
  );
  show(line);
}
