// Following the live text, as chat apps do: while the visitor is at the live end of an answer
// being written, the page scrolls with it; scrolling up stops that, and a "Jump to live"
// button brings them back (and following resumes once the live end is in view again).
//
// A ResizeObserver on each live answer sees every way it grows: deltas, the Markdown
// rendering, the thinking folding away.

import { gettext } from "./i18n.js";

const SLACK_PX = 96;

const live = new Set();
let following = true;
let lastScrollY = window.scrollY;
let button = null;
let observer = null;

function reducedMotion() {
  return window.matchMedia("(prefers-reduced-motion: reduce)").matches;
}

// The part of the viewport the docked composer does not cover.
function visibleBottom() {
  const docked = document.querySelector(".composer-docked");
  const top = docked ? docked.getBoundingClientRect().top : window.innerHeight;
  return Math.min(window.innerHeight, top);
}

function liveEnd() {
  let end = null;
  for (const root of live) {
    if (!root.isConnected) continue;
    const bottom = root.getBoundingClientRect().bottom;
    if (end === null || bottom > end) end = bottom;
  }
  return end;
}

function atLiveEnd() {
  const end = liveEnd();
  return end === null || end <= visibleBottom() + SLACK_PX;
}

function ensureButton() {
  if (button) return button;
  button = document.createElement("button");
  button.type = "button";
  button.className = "jump-to-live";
  button.textContent = `↓ ${gettext("Jump to live")}`;
  button.hidden = true;
  button.addEventListener("click", () => jumpToLive(true));
  document.body.append(button);
  return button;
}

function update() {
  const end = liveEnd();
  if (end === null) {
    if (button) button.hidden = true;
    return;
  }
  const overflow = end - visibleBottom();
  if (following && overflow > 0) {
    window.scrollBy({ top: overflow, behavior: "instant" });
    lastScrollY = window.scrollY;
  }
  placeButton(following || overflow <= SLACK_PX);
}

// Hidden, or shown just above the docked composer (CSSOM styles: the CSP allows them).
function placeButton(hidden) {
  const jump = ensureButton();
  jump.hidden = hidden;
  if (!hidden) jump.style.bottom = `${window.innerHeight - visibleBottom() + 12}px`;
}

export function jumpToLive(smooth = false) {
  following = true;
  const overflow = (liveEnd() ?? visibleBottom()) - visibleBottom();
  window.scrollBy({ top: overflow, behavior: smooth && !reducedMotion() ? "smooth" : "instant" });
  lastScrollY = window.scrollY;
  if (button) button.hidden = true;
}

function onScroll() {
  const y = window.scrollY;
  // Only the visitor scrolls up (the page growing never does): that stops following, unless
  // the live end is still in view. Reaching the live end again resumes it.
  if (y < lastScrollY - 2) following = atLiveEnd();
  else if (atLiveEnd()) following = true;
  lastScrollY = y;
  const end = liveEnd();
  if (end !== null) placeButton(following || end - visibleBottom() <= SLACK_PX);
}

export function followAnswer(root) {
  if (!observer) {
    observer = new ResizeObserver(update);
    window.addEventListener("scroll", onScroll, { passive: true });
    window.addEventListener("resize", update);
  }
  live.add(root);
  observer.observe(root);
}

export function unfollowAnswer(root) {
  live.delete(root);
  if (observer) observer.unobserve(root);
  update();
}

// After the page is swapped (a follow-up, a regeneration, an edit): follow the new answer.
export function resetFollowing() {
  following = true;
  lastScrollY = window.scrollY;
}
