// Live answers: one WebSocket per answer that is still being written (DESIGN 4.3).
//
// The server renders everything written so far and puts the last seq it included in
// data-seq; this module connects with ?after=<seq>, appends each delta to its section with
// textContent, and reconnects with backoff from the last seq it saw, so a dropped connection
// loses and repeats nothing. An answer whose worker stopped is written again from the start as
// its next attempt: a "restarted" event clears what the page shows of the old one, and the page
// names the attempt its text belongs to when it reconnects (?attempt=). Thinking and reflections stay plain text. The output's text is
// kept verbatim in [data-role=output] (hidden once rendered; "Copy answer" copies it) and shown
// as Markdown in [data-role=output-rendered] by render.js: re-rendered at most every
// RENDER_INTERVAL_MS while it streams, into a fresh element swapped in whole (no flicker), and
// once more when the answer is done. Model output never reaches innerHTML except through
// render.js's sanitizer.
//
// Also here: the phase indicator (queued → thinking → reflecting → answering → done, with the
// time spent in each), the thinking panel that folds away when the answer arrives (the
// visitor's choice is remembered), stats, provenance and the answer check on "done", copy
// buttons, keyboard shortcuts, and a polite live region that announces phase changes and the
// finished answer, never single tokens.

const FINAL = new Set(["done", "error", "cancelled"]);
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000, 15000];
const RENDER_INTERVAL_MS = 100;
const PHASES = ["queued", "thinking", "reflecting", "answering", "done"];
const THINKING_KEY = "playground:thinking";
const SIMULATED_TEXT = "Served by the playground's simulator, not a real model.";
const FINISH_REASONS = {
  length: "cut off at the length limit",
  eos_token: "finished normally",
  stop_sequence: "stopped at a stop sequence",
};
const SAMPLING_LABELS = [
  ["temperature", "temperature"],
  ["top_p", "top_p"],
  ["top_k", "top_k"],
  ["typical_p", "typical_p"],
  ["repetition_penalty", "repetition penalty"],
  ["frequency_penalty", "frequency penalty"],
  ["max_new_tokens", "max new tokens"],
  ["seed", "seed"],
];
const streams = new Map();

// --- small helpers ----------------------------------------------------------------------------

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

let announceTimer = null;

// One polite live region for the page: phase changes and the finished answer, not tokens.
function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  window.clearTimeout(announceTimer);
  // Emptying first and writing a moment later makes a repeated message be read again.
  announceTimer = window.setTimeout(() => {
    region.textContent = text;
  }, 50);
}

// Mirrors playground/presenters.py format_seconds.
function formatSeconds(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.max(0, seconds).toFixed(2)} s`;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const total = Math.round(seconds);
  return `${Math.floor(total / 60)} min ${String(total % 60).padStart(2, "0")} s`;
}

function formatEta(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, "0")} s`;
}

// Mirrors playground/presenters.py stat_parts.
function statParts(stats) {
  if (!stats) return [];
  const parts = [];
  if (stats.queue_seconds != null) parts.push(`Queue ${formatSeconds(stats.queue_seconds)}`);
  if (stats.ttft_seconds != null) parts.push(`First token ${formatSeconds(stats.ttft_seconds)}`);
  if (stats.tokens != null) parts.push(`${stats.tokens} tokens`);
  if (stats.tokens_per_second) parts.push(`${stats.tokens_per_second} tokens/s`);
  if (stats.duration_seconds != null) parts.push(`${formatSeconds(stats.duration_seconds)} in all`);
  if (stats.finish_reason) {
    parts.push(FINISH_REASONS[stats.finish_reason] || `finished: ${stats.finish_reason}`);
  }
  return parts;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function fillProvenance(line, provenance) {
  const parts = [];
  parts.push("Served by ", element("span", "provenance-model", provenance.model_id || "an unnamed model"));
  if (provenance.model_sha) {
    parts.push(" (revision ", element("code", null, String(provenance.model_sha).slice(0, 12)), ")");
  }
  if (provenance.version) parts.push(` · TGI ${provenance.version}`);
  if (provenance.backend) parts.push(" · backend ", element("code", null, provenance.backend));
  const sampling = provenance.sampling || {};
  const settings = SAMPLING_LABELS.filter(([key]) => key in sampling).map(
    ([key, label]) => `${label} ${sampling[key]}`,
  );
  if (settings.length) parts.push(` · ${settings.join(", ")}`);
  line.replaceChildren(...parts);
  show(line);
}

function checkSummary(check) {
  const verdict = check.verdict === "correct" ? "Correct" : "Incorrect";
  return `${verdict}. Expected: ${check.expected}. ${check.note || ""}`.trim();
}

function fillCheck(line, check) {
  const badge = element("span", "check-badge");
  const mark = element("span", null, check.verdict === "correct" ? "✓" : "✗");
  mark.setAttribute("aria-hidden", "true");
  badge.append(mark, check.verdict === "correct" ? " Correct" : " Incorrect");
  line.className = `check check-${check.verdict}`;
  line.replaceChildren(
    badge,
    " ",
    element("span", "check-expected", `Expected: ${check.expected}.`),
    " ",
    element("span", "check-note", check.note || ""),
  );
  show(line);
}

// --- the thinking panel ---------------------------------------------------------------------

// Opens or closes the panel without counting it as the visitor's choice.
function setOpen(box, open) {
  if (!box || box.open === open) return;
  box.dataset.autoToggle = String(open);
  box.open = open;
}

function bindThinking(box) {
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

function keepThinkingOpen() {
  return stored(THINKING_KEY) === "open";
}

// --- rendering the output -------------------------------------------------------------------

function renderOutput(root, final) {
  const source = role(root, "output");
  const target = role(root, "output-rendered");
  if (!source || !target || !window.PlaygroundRender) return false;
  const text = source.textContent;
  if (!text.trim()) return false;
  const rendered = window.PlaygroundRender.renderInto(target, text, { final });
  if (!rendered) return false;
  source.hidden = true;
  return true;
}

// --- one live answer --------------------------------------------------------------------------

class AnswerStream {
  constructor(root) {
    this.root = root;
    this.url = root.dataset.streamUrl;
    this.seq = Number.parseInt(root.dataset.seq || "0", 10) || 0;
    // Which attempt of the answer the text on the page belongs to: an answer whose worker
    // stopped starts again from the beginning as the next attempt (a "restarted" event).
    this.answerAttempt = Number.parseInt(root.dataset.attempt || "0", 10) || 0;
    this.retries = 0;
    this.restartNote = "";
    this.finished = false;
    this.socket = null;
    this.renderTimer = null;
    this.lastRender = 0;
    this.spent = Object.fromEntries(PHASES.map((name) => [name, 0]));
    this.visited = new Set();
    this.phase = null;
    this.since = Date.now();
    this.restorePhase();
    this.ticker = window.setInterval(() => this.renderPhases(), 250);
    this.connect();
  }

  // The phase the server rendered, with the time already spent where the server knows it.
  restorePhase() {
    const data = this.root.dataset;
    const skew = Date.now() / 1000 - Number.parseFloat(data.serverNow || "0");
    const created = Number.parseFloat(data.created || "");
    const started = Number.parseFloat(data.started || "");
    const phase = PHASES.includes(data.phase) ? data.phase : "queued";
    for (const name of PHASES.slice(0, PHASES.indexOf(phase))) {
      if (name !== "reflecting" || this.root.querySelector("aside.reflection")) this.visited.add(name);
    }
    if (!Number.isNaN(created) && !Number.isNaN(started)) this.spent.queued = (started - created) * 1000;
    this.phase = phase;
    this.visited.add(phase);
    if (phase === "queued" && !Number.isNaN(created)) {
      this.since = (created + skew) * 1000;
    } else if (phase === "thinking" && !Number.isNaN(started) && !role(this.root, "output").textContent) {
      this.since = (started + skew) * 1000;
    }
    this.since = Math.min(this.since, Date.now());
    this.renderPhases();
  }

  enterPhase(name) {
    if (name === this.phase) return;
    const now = Date.now();
    if (this.phase) this.spent[this.phase] += now - this.since;
    const first = !this.visited.has(name);
    this.phase = name;
    this.since = now;
    this.visited.add(name);
    this.renderPhases();
    if (name === "thinking" && first) announce("The model is thinking.");
    else if (name === "reflecting") announce("Reflection: the model is correcting itself.");
    else if (name === "answering") announce("The model is writing its answer.");
  }

  renderPhases() {
    const list = role(this.root, "phases");
    if (!list) return;
    const now = Date.now();
    const currentIndex = PHASES.indexOf(this.phase);
    for (const item of list.querySelectorAll("[data-phase]")) {
      const name = item.dataset.phase;
      const current = name === this.phase && !this.finished;
      let state = "future";
      if (current) state = "current";
      else if (this.visited.has(name)) state = "past";
      else if (this.finished || PHASES.indexOf(name) < currentIndex) state = "skipped";
      item.dataset.state = state;
      if (current) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
      const time = item.querySelector(".phase-time");
      if (!time || name === "done") continue;
      const ms = this.spent[name] + (current ? now - this.since : 0);
      time.textContent = this.visited.has(name) && ms > 0 ? formatSeconds(ms / 1000) : "";
    }
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
      this.setStatus("Connection lost, reconnecting…");
      window.setTimeout(() => this.connect(), delay);
    });
  }

  close() {
    this.finished = true;
    window.clearInterval(this.ticker);
    window.clearTimeout(this.renderTimer);
    if (this.socket) this.socket.close();
  }

  setStatus(text) {
    const status = role(this.root, "status");
    if (status) status.textContent = text;
  }

  setStatusValue(status) {
    this.root.dataset.status = status;
  }

  handle(event) {
    switch (event.type) {
      case "queued":
        this.setStatusValue("queued");
        this.enterPhase("queued");
        this.setStatus(
          (event.position > 0
            ? `In line: #${event.position}${event.eta_seconds ? ` · about ${formatEta(event.eta_seconds)}` : ""}`
            : "Starting…") + this.restartNote,
        );
        break;
      case "restarted":
        this.restart(event);
        break;
      case "started":
        if (event.attempt) this.answerAttempt = event.attempt;
        this.setStatusValue("running");
        this.enterPhase("thinking");
        this.setStatus("Thinking…");
        if (String(event.model || "").toLowerCase().includes("simulator")) {
          const note = role(this.root, "simulated");
          if (note) {
            note.textContent = SIMULATED_TEXT;
            show(note);
          }
        }
        break;
      case "delta":
        this.delta(event);
        break;
      default:
        if (FINAL.has(event.type)) this.finish(event);
    }
  }

  // The text so far belonged to an attempt that is gone: clear it and wait for the next one.
  restart(event) {
    this.answerAttempt = event.attempt || this.answerAttempt + 1;
    this.seq = 0;
    this.root.dataset.seq = "0";
    for (const name of ["thinking", "output", "output-rendered", "text"]) {
      const part = role(this.root, name);
      if (part) part.replaceChildren();
    }
    role(this.root, "output").hidden = false;
    for (const name of ["thinking-box", "output-box", "text", "output-rendered"]) {
      const part = role(this.root, name);
      if (part) part.hidden = true;
    }
    const counter = role(this.root, "reflection-count");
    if (counter) counter.textContent = "";
    this.spent = Object.fromEntries(PHASES.map((name) => [name, 0]));
    this.visited = new Set();
    this.phase = null;
    this.setStatusValue("queued");
    this.enterPhase("queued");
    this.restartNote = " · the playground restarted while writing this answer: it starts again";
    this.setStatus(`Waiting${this.restartNote}`);
    announce("The playground restarted: this answer starts again from the beginning.");
  }

  delta(event) {
    if (event.seq <= this.seq) return;
    this.seq = event.seq;
    this.root.dataset.seq = String(event.seq);
    if (this.root.dataset.status !== "running") this.setStatusValue("running");
    if (event.section === "thinking" || event.section === "reflection") {
      show(role(this.root, "thinking-box"));
      this.thinkingDelta(event);
      if (event.section === "reflection") {
        this.enterPhase("reflecting");
        this.setStatus("Reflecting…");
      } else if (this.phase !== "answering") {
        this.enterPhase("thinking");
        this.setStatus("Thinking…");
      }
    } else if (event.section === "output") {
      const box = role(this.root, "output-box");
      if (box.hidden) {
        show(box);
        // The answer is here: fold the thinking away, unless the visitor keeps it open.
        if (!keepThinkingOpen()) setOpen(role(this.root, "thinking-box"), false);
      }
      appendText(role(this.root, "output"), event.text);
      this.enterPhase("answering");
      this.setStatus("Answering…");
      this.scheduleRender();
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
        aside.setAttribute("role", "note");
        aside.dataset.reflectionIndex = String(event.index);
        aside.append(
          element("span", "reflection-label", "Reflection · the model corrects itself"),
          element("span", "reflection-text"),
        );
        body.append(aside);
        const count = body.querySelectorAll("aside.reflection").length;
        const counter = role(this.root, "reflection-count");
        if (counter) counter.textContent = `· ${count} reflection${count === 1 ? "" : "s"}`;
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

  // At most one Markdown render per RENDER_INTERVAL_MS, on an animation frame.
  scheduleRender() {
    if (this.renderTimer !== null || this.finished) return;
    const wait = Math.max(0, this.lastRender + RENDER_INTERVAL_MS - performance.now());
    this.renderTimer = window.setTimeout(() => {
      window.requestAnimationFrame(() => {
        this.renderTimer = null;
        if (this.finished) return;
        this.lastRender = performance.now();
        renderOutput(this.root, false);
      });
    }, wait);
  }

  finish(event) {
    if (this.phase && event.type === "done") this.enterPhase("done");
    else if (this.phase) this.spent[this.phase] += Date.now() - this.since;
    this.since = Date.now();
    this.visited.add("done");
    this.close();
    this.renderTimer = null;
    this.setStatusValue(event.type);
    this.root.setAttribute("aria-busy", "false");
    this.renderPhases();
    const stop = role(this.root, "stop");
    if (stop) stop.remove();
    // The answer is final now, so it can be regenerated without reloading the page.
    const answerId = this.root.id.replace(/^answer-/, "");
    const regenerate = document.querySelector(`form[data-regenerate-for="${answerId}"]`);
    if (regenerate) regenerate.hidden = false;
    const output = role(this.root, "output");
    const hasOutput = Boolean(output && output.textContent.trim());
    if (hasOutput) {
      renderOutput(this.root, true);
      show(this.root.querySelector('[data-copy="answer"]'));
    }
    const doneItem = this.root.querySelector('.phase[data-phase="done"] .phase-label');
    if (event.type === "done") {
      this.setStatus("Done");
      const line = role(this.root, "stats");
      line.textContent = statParts(event.stats).join(" · ");
      show(line);
      if (event.stats && event.stats.finish_reason === "length") show(role(this.root, "cutoff"));
      if (event.provenance) {
        fillProvenance(role(this.root, "provenance"), event.provenance);
        if (event.provenance.simulated) show(role(this.root, "simulated"));
      }
      if (event.check) fillCheck(role(this.root, "check"), event.check);
      if (hasOutput && !keepThinkingOpen()) setOpen(role(this.root, "thinking-box"), false);
      const answerText = hasOutput ? output.textContent.trim().replace(/\s+/g, " ") : "";
      const excerpt = answerText.length > 300 ? `${answerText.slice(0, 299)}…` : answerText;
      const check = event.check ? ` ${checkSummary(event.check)}` : "";
      announce(`Answer ready.${check}${excerpt ? ` The answer: ${excerpt}` : ""}`);
    } else if (event.type === "cancelled") {
      this.setStatus("Stopped");
      if (doneItem) doneItem.textContent = "Stopped";
      announce("The answer was stopped.");
    } else {
      this.setStatus("Failed");
      if (doneItem) doneItem.textContent = "Failed";
      const error = role(this.root, "error");
      error.textContent = event.message || "The answer failed.";
      show(error);
      announce(`The answer failed: ${error.textContent}`);
    }
  }
}

// --- the page -----------------------------------------------------------------------------------

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

// --- copy buttons ---------------------------------------------------------------------------------

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

async function onCopy(event) {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  let text = "";
  if (button.dataset.copy === "answer") {
    const root = button.closest("[data-stream-url]");
    text = root ? role(root, "output").textContent.trim() : "";
  } else {
    const code = button.closest(".code-block")?.querySelector("pre code");
    text = code ? code.textContent : "";
  }
  const copied = text ? await copyText(text) : false;
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = copied ? "Copied" : "Copy failed";
  announce(copied ? "Copied to the clipboard." : "Copying failed; select the text instead.");
  window.setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

// --- keyboard -------------------------------------------------------------------------------------

function submitOnEnter(event) {
  const target = event.target;
  if (!(target instanceof HTMLTextAreaElement) || !target.closest("form.composer")) return;
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    target.form.requestSubmit();
  }
}

function stopOnEscape(event) {
  if (event.key !== "Escape" || event.isComposing) return;
  const stop = document.querySelector('[data-role="stop"]');
  if (stop) stop.requestSubmit();
}

document.addEventListener("keydown", submitOnEnter);
document.addEventListener("keydown", stopOnEscape);
document.addEventListener("click", onCopy);
document.addEventListener("htmx:load", (event) => scan(event.detail.elt.ownerDocument || document));
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => scan());
} else {
  scan();
}
