// The thinking panel (data-role=thinking-box, a <details>): the model's thinking and its
// reflections stay plain text, appended as they stream. The panel folds away when the answer
// arrives, unless the visitor keeps it open: opening or closing it by hand is remembered in
// localStorage, for this answer and later ones; the page's own folding is not a choice.

import { appendText, element, role } from "./dom.js";
import { gettext, interpolate, ngettext } from "./i18n.js";

const THINKING_KEY = "playground:thinking";

function stored(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function store(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch {
    // Private mode or storage disabled: the choice lasts for this page only.
  }
}

// Opens or closes the panel without counting it as the visitor's choice.
export function setOpen(box, open) {
  if (!box || box.open === open) return;
  box.dataset.autoToggle = String(open);
  box.open = open;
}

export function bindThinking(box) {
  if (!box || box.dataset.bound) return;
  box.dataset.bound = "1";
  box.addEventListener("toggle", () => {
    if (box.dataset.autoToggle !== undefined) {
      const expected = box.dataset.autoToggle === String(box.open);
      delete box.dataset.autoToggle;
      if (expected) return;
    }
    store(THINKING_KEY, box.open ? "open" : "closed");
  });
}

export function keepThinkingOpen() {
  return stored(THINKING_KEY) === "open";
}

// A thinking or reflection delta: reflections get an aside of their own (one per index) and
// the counter in the panel's summary; thinking text continues the last plain span.
export function appendThinking(root, event) {
  const body = role(root, "thinking");
  const last = body.lastElementChild;
  if (event.section === "reflection") {
    let aside = body.querySelector(`aside[data-reflection-index="${event.index}"]`);
    if (!aside) {
      aside = document.createElement("aside");
      aside.className = "reflection";
      aside.setAttribute("role", "note");
      aside.dataset.reflectionIndex = String(event.index);
      aside.append(
        element("span", "reflection-label", gettext("Reflection · the model corrects itself")),
        element("span", "reflection-text"),
      );
      body.append(aside);
      const count = body.querySelectorAll("aside.reflection").length;
      const counter = role(root, "reflection-count");
      if (counter) {
        const reflections = ngettext("%(count)s reflection", "%(count)s reflections", count);
        counter.textContent = `· ${interpolate(reflections, { count })}`;
      }
    }
    appendText(aside.querySelector(".reflection-text"), event.text);
    return;
  }
  let span = last && last.classList.contains("thinking-text") ? last : null;
  if (!span) {
    span = element("span", "thinking-text");
    body.append(span);
  }
  appendText(span, event.text);
}
