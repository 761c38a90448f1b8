// What the page shows of one live answer: the status line and data-status, the deltas
// appended to their sections with textContent, the thinking panel folding away when the
// answer arrives, the page cleared for a restarted attempt, and, once the answer ends, stats,
// provenance and the answer check on "done", with an announcement of the outcome.

import { announce } from "./announce.js";
import { appendText, role, show } from "./dom.js";
import { checkSummary, fillCheck, fillProvenance } from "./facts.js";
import { factsLine, formatEta, statParts } from "./format.js";
import { gettext, interpolate } from "./i18n.js";
import { LiveRender, renderOutput } from "./output.js";
import { Phases } from "./phases.js";
import { appendThinking, keepThinkingOpen, setOpen } from "./thinking-panel.js";
import {
  announceStart,
  lineProgress,
  offerNotification,
  titleDone,
  titleInLine,
  titleWriting,
} from "./waiting.js";

export class AnswerView {
  constructor(root) {
    this.root = root;
    this.restartNote = "";
    this.liveRender = new LiveRender(root);
    this.phases = new Phases(root);
    this.firstPosition = 0;
    if (root.dataset.status === "queued") offerNotification(role(root, "notify"));
    // A page opened on an answer already being written says so in its tab at once, not only
    // when the socket's replayed "started" arrives.
    if (root.dataset.status === "running") titleWriting();
  }

  setStatus(text) {
    const status = role(this.root, "status");
    if (status) status.textContent = text;
  }

  setStatusValue(status) {
    this.root.dataset.status = status;
  }

  queued(event) {
    this.setStatusValue("queued");
    this.phases.enter("queued");
    if (event.position > 0 && !this.firstPosition) this.firstPosition = event.position;
    lineProgress(role(this.root, "line-progress")?.querySelector("progress"), this.firstPosition, event.position);
    titleInLine(event.position);
    // On hold (the operators drained the line): no estimate holds until it moves again.
    const wait = event.on_hold
      ? ` · ${gettext("on hold: no new answers are starting for now, and you keep your place")}`
      : event.eta_seconds
        ? ` · ${interpolate(gettext("about %(wait)s"), { wait: formatEta(event.eta_seconds) })}`
        : "";
    const place =
      event.position > 0
        ? interpolate(gettext("In line: #%(position)s"), { position: event.position }) + wait
        : gettext("Starting…");
    this.setStatus(place + this.restartNote);
  }

  started(event) {
    for (const waitingOnly of [role(this.root, "line-progress"), role(this.root, "meanwhile")]) {
      if (waitingOnly) waitingOnly.hidden = true;
    }
    titleWriting();
    announceStart();
    this.setStatusValue("running");
    this.phases.enter("thinking");
    this.setStatus(gettext("Thinking…"));
    if (String(event.model || "").toLowerCase().includes("simulator")) {
      const note = role(this.root, "simulated");
      if (note) {
        note.textContent = gettext("Served by the playground's simulator, not a real model.");
        show(note);
      }
    }
  }

  // The text so far belonged to an attempt that is gone: clear it and wait for the next one.
  restart() {
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
    this.phases.reset();
    this.setStatusValue("queued");
    this.phases.enter("queued");
    const note = gettext("the playground restarted while writing this answer: it starts again");
    this.restartNote = ` · ${note}`;
    this.setStatus(gettext("Waiting") + this.restartNote);
    announce(gettext("The playground restarted: this answer starts again from the beginning."));
  }

  delta(event) {
    if (this.root.dataset.status !== "running") this.setStatusValue("running");
    if (event.section === "thinking" || event.section === "reflection") {
      show(role(this.root, "thinking-box"));
      appendThinking(this.root, event);
      if (event.section === "reflection") {
        this.phases.enter("reflecting");
        this.setStatus(gettext("Reflecting…"));
      } else if (this.phases.phase !== "answering") {
        this.phases.enter("thinking");
        this.setStatus(gettext("Thinking…"));
      }
    } else if (event.section === "output") {
      const box = role(this.root, "output-box");
      if (box.hidden) {
        show(box);
        // The answer is here: fold the thinking away, unless the visitor keeps it open.
        if (!keepThinkingOpen()) setOpen(role(this.root, "thinking-box"), false);
      }
      appendText(role(this.root, "output"), event.text);
      this.phases.enter("answering");
      this.setStatus(gettext("Answering…"));
      this.liveRender.schedule();
    } else {
      const loose = role(this.root, "text");
      appendText(loose, event.text);
      if (loose.textContent.trim()) show(loose);
    }
  }

  // No more ticking phase timers or pending renders.
  stop() {
    this.phases.stop();
    this.liveRender.stop();
  }

  // The answer ended as `event.type` (done, error or cancelled); called before stop().
  endPhase(type) {
    this.phases.end(type);
  }

  // The answer ended; called after stop().
  finish(event) {
    titleDone(event.type);
    this.setStatusValue(event.type);
    this.root.setAttribute("aria-busy", "false");
    this.phases.render();
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
      this.setStatus(gettext("Done"));
      const line = role(this.root, "stats");
      line.textContent = statParts(event.stats).join(" · ");
      show(line);
      const facts = factsLine(event.stats, event.provenance);
      role(this.root, "facts").textContent = facts || gettext("Details");
      show(role(this.root, "facts-box"));
      if (event.stats && event.stats.finish_reason === "length") show(role(this.root, "cutoff"));
      if (event.provenance) {
        fillProvenance(role(this.root, "provenance"), event.provenance);
        if (event.provenance.simulated) show(role(this.root, "simulated"));
      }
      if (event.check) fillCheck(role(this.root, "check"), event.check);
      if (hasOutput && !keepThinkingOpen()) setOpen(role(this.root, "thinking-box"), false);
      const answerText = hasOutput ? output.textContent.trim().replace(/\s+/g, " ") : "";
      const excerpt = answerText.length > 300 ? `${answerText.slice(0, 299)}…` : answerText;
      const sentences = [gettext("Answer ready.")];
      if (event.check) sentences.push(checkSummary(event.check));
      if (excerpt) sentences.push(interpolate(gettext("The answer: %(excerpt)s"), { excerpt }));
      announce(sentences.join(" "));
    } else if (event.type === "cancelled" && event.by === "operator") {
      // Not the visitor's own Stop: say who stopped it and why.
      this.setStatus(gettext("Stopped by the site"));
      if (doneItem) doneItem.textContent = gettext("Stopped by the site");
      const note = role(this.root, "error");
      note.textContent = event.message || gettext("The site's operators stopped this answer.");
      show(note);
      const reason = note.textContent;
      announce(interpolate(gettext("The site stopped this answer: %(reason)s"), { reason }));
    } else if (event.type === "cancelled") {
      this.setStatus(gettext("Stopped"));
      if (doneItem) doneItem.textContent = gettext("Stopped");
      announce(gettext("The answer was stopped."));
    } else {
      this.setStatus(gettext("Failed"));
      if (doneItem) doneItem.textContent = gettext("Failed");
      const error = role(this.root, "error");
      error.textContent = event.message || gettext("The answer failed.");
      show(error);
      const reason = error.textContent;
      announce(interpolate(gettext("The answer failed: %(reason)s"), { reason }));
    }
  }
}
