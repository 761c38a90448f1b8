// Markdown cut off mid-stream. "The answer is **3" renders as a literal "**3" until the closing
// marks arrive, and that flash of raw marks at the start of bold text is what a reader notices.
// While an answer is being written, its unfinished last paragraph is rendered with its open
// code span and bold closed, or, when nothing follows an opening mark yet, without the mark.
// Only what is rendered changes: the text kept (and copied) is the model's, as it came.

const FENCE = /^ {0,3}(`{3,}|~{3,})/;

function insideFence(text) {
  let open = null;
  for (const line of text.split("\n")) {
    const match = FENCE.exec(line);
    if (!match) continue;
    if (open === null) open = match[1][0];
    else if (match[1][0] === open) open = null;
  }
  return open !== null;
}

// Drops the last occurrence of `mark` when only blanks follow it; else closes it, before any
// trailing blanks (a closing mark after a blank would not close).
function closeOrDrop(text, mark) {
  const trimmed = text.trimEnd();
  if (trimmed.endsWith(mark)) return trimmed.slice(0, -mark.length);
  return trimmed + mark + text.slice(trimmed.length);
}

function count(text, pattern) {
  return (text.match(pattern) || []).length;
}

export function completePartialMarkdown(text) {
  // An open code block already renders as code, marks and all.
  if (insideFence(text)) return text;
  const cut = text.lastIndexOf("\n\n");
  const head = cut < 0 ? "" : text.slice(0, cut + 2);
  let tail = cut < 0 ? text : text.slice(cut + 2);
  if (count(tail, /`/g) % 2 === 1) tail = closeOrDrop(tail, "`");
  // Marks inside code spans are text, not bold.
  const outsideCode = tail.replace(/`[^`]*`/g, "");
  if (count(outsideCode, /\*\*/g) % 2 === 1) tail = closeOrDrop(tail, "**");
  return head + tail;
}
