// Live answers: one WebSocket per answer that is still being written (DESIGN 4.3).
//
// The server renders everything written so far and puts the last seq it included in
// data-seq; this module connects with ?after=<seq>, hands each delta to the page (which
// appends it to its section with textContent), and reconnects with backoff from the last seq
// it saw, so a dropped connection loses and repeats nothing. An answer whose worker stopped is
// written again from the start as its next attempt: a "restarted" event clears what the page
// shows of the old one, and the page names the attempt its text belongs to when it
// reconnects (?attempt=).

import { AnswerView } from "./answer-view.js";
import { followAnswer, unfollowAnswer } from "./follow.js";
import { gettext } from "./i18n.js";

export const FINAL = new Set(["done", "error", "cancelled"]);
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];

export class AnswerStream {
  constructor(root) {
    this.root = root;
    this.url = root.dataset.streamUrl;
    this.seq = Number.parseInt(root.dataset.seq || "0", 10) || 0;
    // Which attempt of the answer the text on the page belongs to: an answer whose worker
    // stopped starts again from the beginning as the next attempt (a "restarted" event).
    this.answerAttempt = Number.parseInt(root.dataset.attempt || "0", 10) || 0;
    this.retries = 0;
    this.finished = false;
    this.socket = null;
    this.view = new AnswerView(root);
    followAnswer(root);
    this.connect();
  }

  connect() {
    if (this.finished || !this.root.isConnected) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const separator = this.url.includes("?") ? "&" : "?";
    const socket = new WebSocket(
      `${scheme}//${window.location.host}${this.url}${separator}after=${this.seq}&attempt=${this.answerAttempt}`,
    );
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.retries = 0;
    });
    socket.addEventListener("message", (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      this.handle(event);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket || this.finished) return;
      const delay = BACKOFF_MS[Math.min(this.retries, BACKOFF_MS.length - 1)];
      this.retries += 1;
      this.view.setStatus(gettext("Connection lost, reconnecting…"));
      window.setTimeout(() => this.connect(), delay);
    });
  }

  close() {
    this.finished = true;
    unfollowAnswer(this.root);
    this.view.stop();
    if (this.socket) this.socket.close();
  }

  handle(event) {
    switch (event.type) {
      case "queued":
        this.view.queued(event);
        break;
      case "restarted":
        this.restart(event);
        break;
      case "started":
        if (event.attempt) this.answerAttempt = event.attempt;
        this.view.started(event);
        break;
      case "delta":
        this.delta(event);
        break;
      default:
        if (FINAL.has(event.type)) this.finish(event);
    }
  }

  restart(event) {
    this.answerAttempt = event.attempt || this.answerAttempt + 1;
    this.seq = 0;
    this.root.dataset.seq = "0";
    this.view.restart();
  }

  delta(event) {
    if (event.seq <= this.seq) return;
    this.seq = event.seq;
    this.root.dataset.seq = String(event.seq);
    this.view.delta(event);
  }

  finish(event) {
    this.view.endPhase(event.type);
    this.close();
    this.view.finish(event);
  }
}
