// Model output as Markdown, turned into sanitized DOM (imported by static/js/stream/output.js).
//
// Model output is untrusted. The pipeline:
//   1. Math ($…$, $$…$$, \(…\), \[…\]) outside code is swapped for placeholders a random nonce
//      makes unguessable, so Markdown cannot mangle it (underscores, backslashes, asterisks).
//   2. marked turns the rest into HTML. Raw HTML in the output is shown as text, never parsed;
//      images become links (no request to a URL the model chose), task boxes become ☐/☑.
//   3. DOMPurify sanitizes that HTML into a fragment: a short list of tags, no scripts, no event
//      handlers, no style attributes, classes only of the form language-…; every link opens in
//      a new tab with rel="noopener noreferrer nofollow".
//   4. Each placeholder becomes KaTeX's rendering of its TeX (trust off, sizes capped), itself
//      sanitized by a second DOMPurify instance that keeps the style attributes KaTeX's layout
//      needs (KaTeX writes them; the model cannot, since trust is off).
//   5. Code blocks are highlighted with highlight.js (its HTML sanitized again), get a copy
//      button and, like tables, a scrolling frame.
// If a library failed to load, renderMarkdown returns null and the caller keeps the plain text.
//
// An ES module. marked, DOMPurify, KaTeX and highlight.js are vendored classic scripts that
// set globals; the page loads them with defer before any module script, so they have run by
// the time this module does, and they are looked up only when the first render happens.

import { gettext, interpolate } from "./stream/i18n.js";

const MATH_CACHE_LIMIT = 500;
const AUTO_HIGHLIGHT_LIMIT = 20000;
const mathCache = new Map();
let engine = null;

function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function nonce() {
  const bytes = new Uint8Array(8);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(36)).join("");
}

// --- 1. math out of the way -------------------------------------------------------------

// Ranges of fenced code blocks and inline code spans: math inside code is code.
function codeRanges(src) {
  const ranges = [];
  let open = null;
  let pos = 0;
  for (const line of src.split("\n")) {
    const fence = /^ {0,3}(`{3,}|~{3,})/.exec(line);
    if (open) {
      const closing = fence && fence[1][0] === open.char && fence[1].length >= open.length;
      if (closing && /^ {0,3}[`~]+\s*$/.test(line)) {
        ranges.push([open.start, pos + line.length]);
        open = null;
      }
    } else if (fence) {
      open = { char: fence[1][0], length: fence[1].length, start: pos };
    }
    pos += line.length + 1;
  }
  if (open) ranges.push([open.start, src.length]);
  const spans = [];
  let from = 0;
  for (const [start, end] of [...ranges, [src.length, src.length]]) {
    const inline = /(`+)(?!`)[\s\S]*?[^`]\1(?!`)/g;
    const part = src.slice(from, start);
    let match;
    while ((match = inline.exec(part))) spans.push([from + match.index, from + inline.lastIndex]);
    from = end;
  }
  return [...ranges, ...spans].sort((a, b) => a[0] - b[0]);
}

const MATH =
  /(?<!\\)\$\$([\s\S]+?)\$\$|(?<!\\)\\\[([\s\S]+?)\\\]|(?<!\\)\\\(([\s\S]+?)\\\)|(?<![\\$\w])\$(?![\s$])((?:\\.|[^$\\\n])+?)(?<![\s\\])\$(?![\w$])/g;

export function protectMath(src, tag) {
  const maths = [];
  let out = "";
  let from = 0;
  const take = (text) =>
    text.replace(MATH, (whole, block, bracket, paren, inline) => {
      const display = block !== undefined || bracket !== undefined;
      const tex = block ?? bracket ?? paren ?? inline;
      maths.push({ tex, display, source: whole });
      return `${tag}${maths.length - 1}z`;
    });
  for (const [start, end] of codeRanges(src)) {
    if (start < from) continue;
    out += take(src.slice(from, start)) + src.slice(start, end);
    from = end;
  }
  return { text: out + take(src.slice(from)), maths };
}

// --- 2.-5. ------------------------------------------------------------------------------

function build() {
  if (!window.marked || !window.DOMPurify) return null;
  const markdown = new window.marked.Marked({ gfm: true, breaks: false, async: false });
  markdown.use({
    renderer: {
      html({ text, block }) {
        // Raw HTML from the model is text to read, not markup: a block of it gets a paragraph.
        return block ? `<p>${escapeHtml(text.trim())}</p>\n` : escapeHtml(text);
      },
      image({ href, text }) {
        const description = text || href;
        const label = interpolate(gettext("[image: %(description)s]"), { description });
        return `<a href="${escapeHtml(href)}">${escapeHtml(label)}</a>`;
      },
      checkbox({ checked }) {
        return checked ? "☑ " : "☐ ";
      },
    },
  });

  const purifier = window.DOMPurify(window);
  purifier.addHook("uponSanitizeAttribute", (node, data) => {
    if (data.attrName !== "class") return;
    const kept = data.attrValue.split(/\s+/).filter((name) => /^language-[\w+#.-]{1,40}$/.test(name));
    if (kept.length) data.attrValue = kept.join(" ");
    else data.keepAttr = false;
  });
  purifier.addHook("afterSanitizeAttributes", (node) => {
    if (node.tagName === "A" && node.hasAttribute("href")) {
      node.setAttribute("target", "_blank");
      node.setAttribute("rel", "noopener noreferrer nofollow");
    }
  });
  const markdownConfig = {
    ALLOWED_TAGS: [
      "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
      "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody", "td", "th",
      "thead", "tr", "ul",
    ],
    ALLOWED_ATTR: ["href", "title", "align", "start", "class"],
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  };
  const mathPurifier = window.DOMPurify(window);
  const mathConfig = {
    USE_PROFILES: { html: true, mathMl: true, svg: true },
    ADD_TAGS: ["semantics", "annotation"],
    ADD_ATTR: ["encoding"],
    FORBID_TAGS: ["a", "img", "image", "use", "foreignObject", "style", "form", "input"],
    FORBID_ATTR: ["href", "xlink:href", "src", "action"],
    RETURN_DOM_FRAGMENT: true,
  };
  const codePurifier = window.DOMPurify(window);
  const codeConfig = { ALLOWED_TAGS: ["span"], ALLOWED_ATTR: ["class"], RETURN_DOM_FRAGMENT: true };
  return { markdown, purifier, markdownConfig, mathPurifier, mathConfig, codePurifier, codeConfig };
}

function mathNode(item) {
  const node = document.createElement("span");
  node.className = item.display ? "math math-display" : "math math-inline";
  if (!window.katex) {
    const code = document.createElement("code");
    code.textContent = item.source;
    node.append(code);
    return node;
  }
  const key = `${item.display ? "D" : "I"}${item.tex}`;
  let html = mathCache.get(key);
  if (html === undefined) {
    try {
      html = window.katex.renderToString(item.tex, {
        displayMode: item.display,
        throwOnError: false,
        trust: false,
        strict: "ignore",
        maxSize: 10,
        maxExpand: 500,
        output: "htmlAndMathml",
      });
    } catch {
      html = `<code>${escapeHtml(item.source)}</code>`;
    }
    if (mathCache.size >= MATH_CACHE_LIMIT) mathCache.delete(mathCache.keys().next().value);
    mathCache.set(key, html);
  }
  node.append(engine.mathPurifier.sanitize(html, engine.mathConfig));
  return node;
}

function restoreMath(root, tag, maths) {
  if (!maths.length) return;
  const pattern = new RegExp(`${tag}(\\d+)z`, "g");
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    if (walker.currentNode.nodeValue.includes(tag)) texts.push(walker.currentNode);
  }
  for (const text of texts) {
    const parts = [];
    let last = 0;
    const value = text.nodeValue;
    for (const match of value.matchAll(pattern)) {
      const item = maths[Number(match[1])];
      if (!item) continue;
      parts.push(value.slice(last, match.index), mathNode(item));
      last = match.index + match[0].length;
    }
    parts.push(value.slice(last));
    text.replaceWith(...parts.filter((part) => part !== ""));
  }
  // A placeholder that landed in an attribute (a link to "…$x$…") gets its source back.
  for (const element of root.querySelectorAll("[href], [title]")) {
    for (const name of ["href", "title"]) {
      const value = element.getAttribute(name);
      if (value && value.includes(tag)) {
        element.setAttribute(name, value.replace(pattern, (all, i) => (maths[Number(i)] || {}).source || ""));
      }
    }
  }
}

function copyButton(kind, label) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy-button";
  button.dataset.copy = kind;
  button.textContent = label;
  return button;
}

function decorateCode(root, final) {
  for (const code of root.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    const language = (/\blanguage-([\w+#.-]+)/.exec(code.className) || [])[1] || "";
    const hljs = window.hljs;
    let result = null;
    if (hljs) {
      try {
        if (language && hljs.getLanguage(language)) {
          result = hljs.highlight(code.textContent, { language, ignoreIllegals: true });
        } else if (final && !language && code.textContent.length <= AUTO_HIGHLIGHT_LIMIT) {
          result = hljs.highlightAuto(code.textContent);
        }
      } catch {
        result = null;
      }
    }
    if (result) {
      code.replaceChildren(engine.codePurifier.sanitize(result.value, engine.codeConfig));
      code.classList.add("hljs");
    }
    const frame = document.createElement("div");
    frame.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const name = document.createElement("span");
    name.className = "code-language";
    name.textContent = language || (result && result.language) || gettext("code");
    head.append(name, copyButton("code", gettext("Copy code")));
    pre.replaceWith(frame);
    pre.tabIndex = 0; // a scrolling block must be reachable by keyboard
    frame.append(head, pre);
  }
}

function frameTables(root) {
  for (const table of root.querySelectorAll("table")) {
    const frame = document.createElement("div");
    frame.className = "table-scroll";
    frame.tabIndex = 0;
    frame.setAttribute("role", "region");
    frame.setAttribute("aria-label", gettext("Table"));
    table.replaceWith(frame);
    frame.append(table);
  }
}

// Markdown text → a sanitized DocumentFragment, or null when the libraries are missing.
export function renderMarkdown(source, options = {}) {
  const final = options.final !== false;
  if (!engine) engine = build();
  if (!engine) return null;
  const tag = `mathph${nonce()}n`;
  const { text, maths } = protectMath(String(source || ""), tag);
  const html = engine.markdown.parse(text);
  const fragment = engine.purifier.sanitize(html, engine.markdownConfig);
  // A link whose URL the sanitizer refused (javascript:, data:) is left as its text.
  for (const link of fragment.querySelectorAll("a:not([href])")) link.replaceWith(...link.childNodes);
  restoreMath(fragment, tag, maths);
  decorateCode(fragment, final);
  frameTables(fragment);
  return fragment;
}

// Renders into a fresh copy of `target` and swaps it in, so the page never shows a half-built
// state (no flicker while streaming). Returns the element now in the page, or null.
export function renderInto(target, source, options = {}) {
  let fragment;
  try {
    fragment = renderMarkdown(source, options);
  } catch (error) {
    console.error("Markdown rendering failed; showing the text as it is.", error);
    return null;
  }
  if (!fragment) return null;
  const fresh = target.cloneNode(false);
  fresh.append(fragment);
  fresh.hidden = false;
  target.replaceWith(fresh);
  return fresh;
}
