// Live answers: one WebSocket per answer that is still being written (DESIGN 4.3).
//
// The server renders everything written so far and puts the last seq it included in
// data-seq; this module connects with ?after=<seq>, appends each delta to its section with
// textContent (model output is untrusted and never parsed as HTML), and reconnects with
// backoff from the last seq it saw, so a dropped connection loses and repeats nothing.

const FINAL = new Set(["done", "error", "cancelled"]);
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];
const streams = new Map();

function role(root, name) {
  return root.querySelector(`[data-role="${name}"]`);
}

function show(element) {
  if (element) element.hidden = false;
}

function appendText(element, text) {
  // Sections open with the newline that follows their tag; don't render it as a blank line.
  const chunk = element.textContent === "" ? text.replace(/^\s+/, "") : text;
  if (chunk) element.append(chunk);
}

function formatSeconds(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
}

class AnswerStream {
  constructor(root) {
    this.root = root;
    this.url = root.dataset.streamUrl;
    this.seq = Number.parseInt(root.dataset.seq || "0", 10) || 0;
    this.attempt = 0;
    this.finished = false;
    this.socket = null;
    this.phase = root.dataset.status;
    this.connect();
  }

  connect() {
    if (this.finished || !this.root.isConnected) return;
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const separator = this.url.includes("?") ? "&" : "?";
    const socket = new WebSocket(
      `${scheme}//${window.location.host}${this.url}${separator}after=${this.seq}`,
    );
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
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
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      this.setStatus("Connection lost, reconnecting…");
      window.setTimeout(() => this.connect(), delay);
    });
  }

  close() {
    this.finished = true;
    if (this.socket) this.socket.close();
  }

  setStatus(text) {
    const status = role(this.root, "status");
    if (status) status.textContent = text;
  }

  setPhase(phase) {
    this.phase = phase;
    this.root.dataset.status = phase;
  }

  handle(event) {
    switch (event.type) {
      case "queued":
        this.setPhase("queued");
        this.setStatus(
          event.position > 0
            ? `In line: #${event.position}${event.eta_seconds ? ` · about ${formatSeconds(event.eta_seconds)}` : ""}`
            : "Starting…",
        );
        break;
      case "started":
        this.setPhase("running");
        this.setStatus("Thinking…");
        break;
      case "delta":
        this.delta(event);
        break;
      default:
        if (FINAL.has(event.type)) this.finish(event);
    }
  }

  delta(event) {
    if (event.seq <= this.seq) return;
    this.seq = event.seq;
    this.root.dataset.seq = String(event.seq);
    if (this.phase !== "running") this.setPhase("running");
    if (event.section === "thinking" || event.section === "reflection") {
      show(role(this.root, "thinking-box"));
      this.thinkingDelta(event);
      this.setStatus(event.section === "reflection" ? "Reflecting…" : "Thinking…");
    } else if (event.section === "output") {
      show(role(this.root, "output-box"));
      appendText(role(this.root, "output"), event.text);
      this.setStatus("Answering…");
    } else {
      const loose = role(this.root, "text");
      appendText(loose, event.text);
      if (loose.textContent.trim()) show(loose);
    }
  }

  thinkingDelta(event) {
    const body = role(this.root, "thinking");
    const last = body.lastElementChild;
    if (event.section === "reflection") {
      let aside = body.querySelector(`aside[data-reflection-index="${event.index}"]`);
      if (!aside) {
        aside = document.createElement("aside");
        aside.className = "reflection";
        aside.dataset.reflectionIndex = String(event.index);
        const label = document.createElement("span");
        label.className = "reflection-label";
        label.textContent = "Reflection";
        const text = document.createElement("span");
        text.className = "reflection-text";
        aside.append(label, text);
        body.append(aside);
      }
      appendText(aside.querySelector(".reflection-text"), event.text);
      return;
    }
    let span = last && last.classList.contains("thinking-text") ? last : null;
    if (!span) {
      span = document.createElement("span");
      span.className = "thinking-text";
      body.append(span);
    }
    appendText(span, event.text);
  }

  finish(event) {
    this.finished = true;
    this.setPhase(event.type);
    this.root.setAttribute("aria-busy", "false");
    const stop = role(this.root, "stop");
    if (stop) stop.remove();
    if (event.type === "done") {
      const stats = event.stats || {};
      this.setStatus("Done");
      const parts = [];
      if (stats.duration_seconds != null) parts.push(`${stats.duration_seconds.toFixed(1)} s`);
      if (stats.tokens != null) parts.push(`${stats.tokens} tokens`);
      if (stats.tokens_per_second) parts.push(`${stats.tokens_per_second} tokens/s`);
      if (stats.finish_reason === "length") parts.push("cut off at the length limit");
      const line = role(this.root, "stats");
      line.textContent = parts.join(" · ");
      show(line);
      const box = role(this.root, "thinking-box");
      if (box && role(this.root, "output").textContent) box.open = false;
    } else if (event.type === "cancelled") {
      this.setStatus("Stopped");
    } else {
      this.setStatus("Failed");
      const error = role(this.root, "error");
      error.textContent = event.message || "The answer failed.";
      show(error);
    }
    if (this.socket) this.socket.close();
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
    if (streams.has(root)) continue;
    if (FINAL.has(root.dataset.status)) continue;
    streams.set(root, new AnswerStream(root));
  }
}

function submitOnEnter(event) {
  const target = event.target;
  if (!(target instanceof HTMLTextAreaElement) || !target.closest("form.composer")) return;
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    target.form.requestSubmit();
  }
}

function stopOnEscape(event) {
  if (event.key !== "Escape") return;
  const stop = document.querySelector('[data-role="stop"]');
  if (stop) stop.requestSubmit();
}

document.addEventListener("keydown", submitOnEnter);
document.addEventListener("keydown", stopOnEscape);
document.addEventListener("htmx:load", (event) => scan(event.detail.elt.ownerDocument || document));
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => scan());
} else {
  scan();
}
