// "Answers in progress", steady under the operator's hand. Rows are keyed by answer id and
// updated in place, never rebuilt. While the pointer or keyboard focus is on the list nothing
// in it moves: answers that arrived, ended or changed wait (a note says so), only ages tick,
// so a click lands on the row it was aimed at. What waited is applied as soon as the pointer
// and focus leave.

import { emptyRow } from "./dom.js";

const EMPTY_TEXT = "Nothing queued or running.";

const age = (m) => `${Math.round(m.age_seconds)} s`;

export function activeList(body, template, note) {
  const rows = new Map();
  body.querySelectorAll("tr[data-answer]").forEach((tr) => rows.set(tr.dataset.answer, tr));
  let latest = null;

  const cell = (tr, name) => tr.querySelector(`[data-a="${name}"]`);
  const held = () => body.matches(":hover") || body.contains(document.activeElement);

  function newRow(m) {
    const tr = template.content.firstElementChild.cloneNode(true);
    tr.dataset.answer = m.id;
    cell(tr, "id").textContent = m.id;
    cell(tr, "client").textContent = m.client_ip || "–";
    cell(tr, "prompt").textContent = m.prompt;
    tr.querySelectorAll("[data-a-value]").forEach((input) => {
      input.value = m[input.dataset.aValue] ?? "";
    });
    if (!m.client_ip) tr.querySelector('form[data-block="ip"]')?.remove();
    return tr;
  }

  function show(tr, m) {
    cell(tr, "status").textContent = m.status;
    cell(tr, "backend").textContent = m.backend || "–";
    cell(tr, "age").textContent = age(m);
  }

  function rearrange(list) {
    const wanted = new Set(list.map((m) => m.id));
    for (const [id, tr] of rows) {
      if (!wanted.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    }
    body.querySelector("tr[data-empty]")?.remove();
    list.forEach((m, i) => {
      let tr = rows.get(m.id);
      if (!tr) {
        tr = newRow(m);
        rows.set(m.id, tr);
      }
      show(tr, m);
      // Moved, not re-created: an existing row keeps its node (and its buttons).
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    if (!list.length) body.append(emptyRow(7, EMPTY_TEXT));
  }

  function waiting(list) {
    const shown = [...body.querySelectorAll("tr[data-answer]")].map((tr) => tr.dataset.answer);
    return shown.length !== list.length || list.some((m, i) => {
      const tr = rows.get(m.id);
      return shown[i] !== m.id || cell(tr, "status").textContent !== m.status
        || cell(tr, "backend").textContent !== (m.backend || "–");
    });
  }

  function update(list) {
    latest = list;
    if (held()) {
      list.forEach((m) => {
        const tr = rows.get(m.id);
        if (tr) cell(tr, "age").textContent = age(m);
      });
      note.hidden = !waiting(list);
      return;
    }
    note.hidden = true;
    rearrange(list);
  }

  const catchUp = () => {
    // After focus moves, activeElement is only settled on the next turn.
    setTimeout(() => latest && !held() && update(latest), 0);
  };
  body.addEventListener("pointerleave", catchUp);
  body.addEventListener("focusout", catchUp);
  return update;
}
