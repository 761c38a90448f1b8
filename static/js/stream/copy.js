// Copy buttons: "Copy answer" (the output's verbatim text, not its rendering), "Copy link"
// (the share link) and "Copy code" on each code block render.js frames. One click listener on the document serves buttons
// that arrive later too (htmx swaps, re-rendered output).

import { announce } from "./announce.js";
import { role } from "./dom.js";
import { gettext } from "./i18n.js";

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Denied: fall back to a selection and the copy command.
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "copy-buffer";
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}

export async function onCopy(event) {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  let text = "";
  if (button.dataset.copy === "answer") {
    const root = button.closest("[data-stream-url]");
    text = root ? role(root, "output").textContent.trim() : "";
  } else if (button.dataset.copy === "share-link") {
    text = document.getElementById("share-link")?.value || "";
  } else {
    const code = button.closest(".code-block")?.querySelector("pre code");
    text = code ? code.textContent : "";
  }
  const copied = text ? await copyText(text) : false;
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = copied ? gettext("Copied") : gettext("Copy failed");
  announce(
    copied ? gettext("Copied to the clipboard.") : gettext("Copying failed; select the text instead."),
  );
  window.setTimeout(() => {
    button.textContent = label;
  }, 1500);
}
