// A follow-up, a regeneration, an edit or a switch between answers or versions posts a form that htmx
// boosts into a page swap: without this the new page would open at the top, far from the
// question just asked. Before the request this notes where the visitor acted and which answers
// the page has; after the swap it shows the new answer (and follows it live), or puts the
// turn the visitor acted on back where it was on screen, or keeps the scroll position.
// Without JavaScript the redirect's #answer-… anchor does the same.

import { resetFollowing } from "./follow.js";

let before = null;

function answerIds() {
  return new Set([...document.querySelectorAll("[data-stream-url]")].map((root) => root.id));
}

function turnIndex(element) {
  const turn = element.closest(".turn");
  return turn ? [...document.querySelectorAll(".turns > .turn")].indexOf(turn) : -1;
}

export function notePlace(event) {
  // The queue status polls in place: only a boosted page swap moves the visitor.
  if (!event.detail.boosted) return;
  const form = event.detail.elt.closest("form");
  if (!form || (form.getAttribute("method") || "get").toLowerCase() !== "post") {
    before = null;
    return;
  }
  const turn = form.closest(".turn");
  before = {
    answers: answerIds(),
    turn: turnIndex(form),
    turnTop: turn ? turn.getBoundingClientRect().top : 0,
    scrollY: window.scrollY,
  };
}

export function restorePlace() {
  if (!before) {
    // An ordinary navigation (a link): a new page starts at the top.
    window.scrollTo(0, 0);
    return;
  }
  const noted = before;
  before = null;
  // A new answer is one being written: switching to another version of a question brings
  // back finished answers the page did not have, and those keep the place instead.
  const fresh = [...document.querySelectorAll("[data-stream-url]")].find(
    (root) =>
      !noted.answers.has(root.id) && ["queued", "running"].includes(root.dataset.status),
  );
  if (fresh) {
    const turn = fresh.closest(".turn") || fresh;
    turn.scrollIntoView({ block: "start", behavior: "instant" });
    resetFollowing();
    return;
  }
  const turns = document.querySelectorAll(".turns > .turn");
  if (noted.turn >= 0 && turns[noted.turn]) {
    window.scrollBy(0, turns[noted.turn].getBoundingClientRect().top - noted.turnTop);
    return;
  }
  window.scrollTo(0, noted.scrollY);
}
