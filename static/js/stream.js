// The page's answers, live: the entry module base.html loads (type="module", after the
// vendored libraries render.js relies on). It finds every answer on the page, and every one an
// htmx swap brings, prepares what the server rendered of it, and follows each answer that is
// still being written over its own WebSocket. The jobs live in stream/:
//   answer-stream.js  the socket of one answer: ?after=&attempt=, reconnects with backoff,
//                     restarted attempts
//   answer-view.js    what the page shows of one answer as events arrive, and its outcome
//   phases.js         the phase indicator and the time spent in each phase
//   thinking-panel.js the thinking and reflections, folding away (the visitor's choice kept)
//   output.js         the output rendered as Markdown through ../render.js, throttled
//   facts.js          provenance and the answer check under a finished answer
//   format.js         times and stats as text, as playground/presenters.py writes them
//   copy.js           copy buttons
//   follow.js         the page follows the live text while the visitor is at its end
//   keep-place.js     a posted form's page swap keeps the visitor's place
//   waiting.js        the place in line in the tab title, and the answer's start announced
//   keys.js           keyboard shortcuts
//   dom.js            small DOM helpers
//   i18n.js           the page's translations (Django's catalog), English without them
//   announce.js       the polite live region: phase changes and the finished answer, never
//                     single tokens

import { AnswerStream, FINAL } from "./stream/answer-stream.js";
import { onCopy } from "./stream/copy.js";
import { role, show } from "./stream/dom.js";
import { notePlace, restorePlace } from "./stream/keep-place.js";
import { stopOnEscape, submitOnEnter } from "./stream/keys.js";
import { renderOutput } from "./stream/output.js";
import { bindThinking, keepThinkingOpen, setOpen } from "./stream/thinking-panel.js";

const streams = new Map();

function prepare(root) {
  const box = role(root, "thinking-box");
  bindThinking(box);
  const final = FINAL.has(root.dataset.status);
  if (role(root, "output").textContent.trim()) {
    renderOutput(root, final);
    if (final) show(root.querySelector('[data-copy="answer"]'));
    // The server folds the thinking away once there is an answer; the visitor may prefer it open.
    if (keepThinkingOpen()) setOpen(box, true);
  }
}

function scan(scope = document) {
  for (const [root, stream] of streams) {
    if (!root.isConnected) {
      stream.close();
      streams.delete(root);
    }
  }
  for (const root of scope.querySelectorAll("[data-stream-url]")) {
    if (root.dataset.prepared) continue;
    root.dataset.prepared = "1";
    prepare(root);
    if (!FINAL.has(root.dataset.status) && !streams.has(root)) {
      streams.set(root, new AnswerStream(root));
    }
  }
}

document.addEventListener("keydown", submitOnEnter);
document.addEventListener("keydown", stopOnEscape);
document.addEventListener("click", onCopy);
document.addEventListener("htmx:load", (event) => scan(event.detail.elt.ownerDocument || document));
document.addEventListener("htmx:beforeRequest", notePlace);
// Boosted swaps of the whole body only: the queue status polling swaps a fragment in place.
document.addEventListener("htmx:afterSettle", (event) => {
  if (event.detail.boosted) restorePlace();
});
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => scan());
} else {
  scan();
}
