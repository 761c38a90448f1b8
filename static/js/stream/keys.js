// Keyboard shortcuts (the composer's hint names them): Enter sends the prompt, Shift+Enter
// starts a new line, Esc stops the answer being written. Never while an IME is composing.

export function submitOnEnter(event) {
  const target = event.target;
  if (!(target instanceof HTMLTextAreaElement) || !target.closest("form.composer")) return;
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    target.form.requestSubmit();
  }
}

export function stopOnEscape(event) {
  if (event.key !== "Escape" || event.isComposing) return;
  const stop = document.querySelector('[data-role="stop"]');
  if (stop) stop.requestSubmit();
}
