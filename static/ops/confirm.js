// Controls that stop something for visitors (a form with data-confirm) ask first, in the
// page's <dialog>, and are sent with confirmed=yes only on "yes". The question names its
// target ("Cancel answer <id>?") from the form's own fields, captured when it was clicked,
// so it is the row that was clicked that is acted on even if the list has moved since.
// Without this script the server asks the same question on a page of its own.

export const CONFIRMED_FIELD = "confirmed";

// "Block {value} for {duration}?" with the form's values in place of the names.
export function fillQuestion(template, fields) {
  return template.replace(/\{(\w+)\}/g, (_, name) => String(fields.get(name) ?? ""));
}

function send(action, fields) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = action;
  form.hidden = true;
  for (const [name, value] of fields) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    form.append(input);
  }
  document.body.append(form);
  form.submit();
}

export function askBeforeSubmitting(root, dialog) {
  if (!dialog || typeof dialog.showModal !== "function") return; // the server asks instead
  const question = dialog.querySelector("#confirm-question");
  const detail = dialog.querySelector("#confirm-detail");
  const yes = dialog.querySelector("#confirm-yes");
  let pending = null;

  root.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    event.preventDefault();
    const fields = new FormData(form);
    const submitter = event.submitter;
    if (submitter && submitter.name) fields.append(submitter.name, submitter.value);
    fields.set(CONFIRMED_FIELD, "yes");
    pending = { action: form.action, fields };
    question.textContent = fillQuestion(form.dataset.confirm, fields);
    detail.textContent = form.dataset.confirmDetail || "";
    yes.textContent = form.dataset.confirmButton || "Yes";
    dialog.returnValue = "";
    dialog.showModal();
  });

  dialog.addEventListener("close", () => {
    const chosen = pending;
    pending = null;
    if (chosen && dialog.returnValue === "yes") send(chosen.action, chosen.fields);
  });
}
