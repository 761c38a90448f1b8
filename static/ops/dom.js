// Building page elements from server data. Every value is written with textContent or as an
// attribute value, never as HTML: prompts and backend answers are untrusted text.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const emptyRow = (columns, text, cls = "muted") =>
  el("tr", { "data-empty": "" }, el("td", { colspan: String(columns), class: cls }, text));
