// Small DOM helpers shared by the answer modules. Every text from the model or the server is
// written with textContent or append(string), never as HTML.

// The part of an answer a template marks with data-role="…".
export function role(root, name) {
  return root.querySelector(`[data-role="${name}"]`);
}

export function show(element) {
  if (element) element.hidden = false;
}

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

export function appendText(element, text) {
  // Sections open with the newline that follows their tag; don't render it as a blank line.
  const chunk = element.textContent === "" ? text.replace(/^\s+/, "") : text;
  if (chunk) element.append(chunk);
}
