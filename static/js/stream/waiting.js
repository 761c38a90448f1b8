// Waiting in line, made visible: the place in the tab title (so a visitor in another tab sees
// it move), a bar that fills as the line moves, and, if the visitor asks for it, a chime and a
// browser notification when their answer starts.

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

// The visitor's click on "Notify me" is the gesture that lets the page play sound later: the
// audio context is made (or resumed) inside it. A notification needs the browser's permission
// on top; the chime needs none, so a visitor who refuses notifications still hears it.
let chime = null;

export function offerNotification(button) {
  const canNotify = "Notification" in window && Notification.permission !== "denied";
  if (!button || (!canNotify && !window.AudioContext)) return;
  show(button);
  button.addEventListener("click", async () => {
    button.disabled = true;
    if (window.AudioContext) {
      chime = chime || new AudioContext();
      chime.resume();
    }
    const permission = canNotify ? await Notification.requestPermission() : "denied";
    notifyWhenStarted = permission === "granted";
    if (notifyWhenStarted) {
      button.textContent = chime
        ? gettext("You will be notified, with a chime")
        : gettext("You will be notified");
    } else {
      button.textContent = chime
        ? gettext("You will hear a chime")
        : gettext("Notifications are off");
    }
  });
}

// Two short soft tones, rising: heard from another tab, not startling in this one.
function playChime() {
  const now = chime.currentTime;
  [
    [660, 0],
    [880, 0.18],
  ].forEach(([frequency, delay]) => {
    const tone = chime.createOscillator();
    const volume = chime.createGain();
    tone.frequency.value = frequency;
    volume.gain.setValueAtTime(0.0001, now + delay);
    volume.gain.exponentialRampToValueAtTime(0.12, now + delay + 0.02);
    volume.gain.exponentialRampToValueAtTime(0.0001, now + delay + 0.3);
    tone.connect(volume).connect(chime.destination);
    tone.start(now + delay);
    tone.stop(now + delay + 0.32);
  });
}

export function announceStart() {
  if (chime) {
    playChime();
    chime = null;
  }
  if (!notifyWhenStarted || !document.hidden) return;
  notifyWhenStarted = false;
  try {
    const title = gettext("Your answer is being written");
    new Notification(title, { body: baseTitle, tag: "answer-started" });
  } catch {
    // Some browsers only allow notifications from a service worker: the tab title says it.
  }
}
