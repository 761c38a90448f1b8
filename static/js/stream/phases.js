// The phase indicator (data-role=phases): queued → thinking → reflecting → answering → done,
// with the time spent in each. Phases the answer went through are "past", the one it is in is
// "current" (aria-current="step"), phases it jumped over are "skipped". A reload keeps the
// times: the server renders the phase and its timestamps, corrected here for clock skew.

import { announce } from "./announce.js";
import { role } from "./dom.js";
import { formatSeconds } from "./format.js";
import { gettext } from "./i18n.js";

const PHASES = ["queued", "thinking", "reflecting", "answering", "done"];
const TICK_MS = 250;

export class Phases {
  constructor(root) {
    this.root = root;
    this.finished = false;
    this.reset();
    this.since = Date.now();
    this.restore();
    this.ticker = window.setInterval(() => this.render(), TICK_MS);
  }

  // Nothing spent, nothing visited: a restarted answer starts its phases again.
  reset() {
    this.spent = Object.fromEntries(PHASES.map((name) => [name, 0]));
    this.visited = new Set();
    this.phase = null;
  }

  // The phase the server rendered, with the time already spent where the server knows it.
  restore() {
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
    this.render();
  }

  enter(name) {
    if (name === this.phase) return;
    const now = Date.now();
    if (this.phase) this.spent[this.phase] += now - this.since;
    const first = !this.visited.has(name);
    this.phase = name;
    this.since = now;
    this.visited.add(name);
    this.render();
    if (name === "thinking" && first) announce(gettext("The model is thinking."));
    else if (name === "reflecting") announce(gettext("Reflection: the model is correcting itself."));
    else if (name === "answering") announce(gettext("The model is writing its answer."));
  }

  // The answer ended (done, error or cancelled): only "done" is entered as a phase.
  end(type) {
    if (this.phase && type === "done") this.enter("done");
    else if (this.phase) this.spent[this.phase] += Date.now() - this.since;
    this.since = Date.now();
    this.visited.add("done");
  }

  // No more ticking; render() shows no phase as current from now on.
  stop() {
    this.finished = true;
    window.clearInterval(this.ticker);
  }

  render() {
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
}
