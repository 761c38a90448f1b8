// Waiting in line, made visible: the place in the tab title (so a visitor in another tab sees
// it move), a bar that fills as the line moves, and, if the visitor asks for it, a browser
// notification when their answer starts.

import { show } from "./dom.js";
import { gettext, interpolate } from "./i18n.js";

const baseTitle = document.title;
let notifyWhenStarted = false;

export function titleInLine(position) {
  const place =
    position > 0 ? interpolate(gettext("#%(position)s in line"), { position }) : gettext("Starting…");
  document.title = `${place} · ${baseTitle}`;
}

export function titleWriting() {
  document.title = `${gettext("Writing…")} · ${baseTitle}`;
}

export function titleDone(outcome) {
  document.title = outcome === "done" ? `✓ ${baseTitle}` : baseTitle;
}

// The share of the line already behind the visitor, from the first place they were told.
export function lineProgress(bar, firstPosition, position) {
  if (!bar || !firstPosition) return;
  bar.value = position > 0 ? (firstPosition - position + 1) / (firstPosition + 1) : 1;
  show(bar.closest("[data-role='line-progress']"));
}

export function offerNotification(button) {
  if (!button || !("Notification" in window) || Notification.permission === "denied") return;
  show(button);
  button.addEventListener("click", async () => {
    const permission = await Notification.requestPermission();
    notifyWhenStarted = permission === "granted";
    button.textContent = notifyWhenStarted
      ? gettext("You will be notified")
      : gettext("Notifications are off");
    button.disabled = true;
  });
}

export function announceStart() {
  if (!notifyWhenStarted || !document.hidden) return;
  notifyWhenStarted = false;
  try {
    const title = gettext("Your answer is being written");
    new Notification(title, { body: baseTitle, tag: "answer-started" });
  } catch {
    // Some browsers only allow notifications from a service worker: the tab title says it.
  }
}
