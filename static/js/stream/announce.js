// One polite live region for the page (#announcer): phase changes, the finished answer and
// copy results are announced, never single tokens.

let announceTimer = null;

export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  window.clearTimeout(announceTimer);
  // Emptying first and writing a moment later makes a repeated message be read again.
  announceTimer = window.setTimeout(() => {
    region.textContent = text;
  }, 50);
}
