// The answer's output. Its text is kept verbatim in [data-role=output] (hidden once rendered;
// "Copy answer" copies it) and shown as Markdown in [data-role=output-rendered] by render.js:
// re-rendered at most every RENDER_INTERVAL_MS while it streams, into a fresh element swapped
// in whole (no flicker), and once more when the answer is done. Model output never reaches
// innerHTML except through render.js's sanitizer.

import { renderInto } from "../render.js";
import { role } from "./dom.js";
import { completePartialMarkdown } from "./partial-markdown.js";

const RENDER_INTERVAL_MS = 100;

// Renders the output as Markdown; false when there is nothing to render or the Markdown
// libraries are missing (the plain text then stays visible).
export function renderOutput(root, final) {
  const source = role(root, "output");
  const target = role(root, "output-rendered");
  if (!source || !target) return false;
  const text = source.textContent;
  if (!text.trim()) return false;
  const rendered = renderInto(target, final ? text : completePartialMarkdown(text), { final });
  if (!rendered) return false;
  source.hidden = true;
  return true;
}

// At most one Markdown render per RENDER_INTERVAL_MS, on an animation frame.
export class LiveRender {
  constructor(root) {
    this.root = root;
    this.timer = null;
    this.lastRender = 0;
    this.stopped = false;
  }

  schedule() {
    if (this.timer !== null || this.stopped) return;
    const wait = Math.max(0, this.lastRender + RENDER_INTERVAL_MS - performance.now());
    this.timer = window.setTimeout(() => {
      window.requestAnimationFrame(() => {
        this.timer = null;
        if (this.stopped) return;
        this.lastRender = performance.now();
        renderOutput(this.root, false);
      });
    }, wait);
  }

  stop() {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.timer = null;
  }
}
