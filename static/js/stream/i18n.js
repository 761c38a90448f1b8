// The scripts' translations. base.html loads Django's JavaScript catalog (/jsi18n/<language>/,
// domain djangojs) before any script; it defines gettext, ngettext and interpolate on window. They
// are looked up on every call rather than once: should the catalog fail to load, the page
// keeps working in English, and in Node (where the modules are tested) there is no window.
//
// Strings are plain literals inside gettext("…") and ngettext("…", "…", n), so that
// `manage.py makemessages -d djangojs` finds them; variable parts go in as %(name)s.

const scope = globalThis;

export function gettext(text) {
  return typeof scope.gettext === "function" ? scope.gettext(text) : text;
}

export function ngettext(singular, plural, count) {
  if (typeof scope.ngettext === "function") return scope.ngettext(singular, plural, count);
  return count === 1 ? singular : plural;
}

const NAMED = /%\((\w+)\)s/g;

// interpolate("In line: #%(position)s", {position: 3}) → "In line: #3". Always named, so a
// translation may put the parts in another order.
export function interpolate(format, values) {
  if (typeof scope.interpolate === "function") return scope.interpolate(format, values, true);
  return format.replace(NAMED, (whole, name) => String(values[name]));
}

// The same for a line with elements in it (a model name in a <span>, a revision in <code>):
// the pieces to append(), strings and the values as given, in the translation's order.
export function interpolateNodes(format, values) {
  const pieces = [];
  let from = 0;
  for (const match of format.matchAll(NAMED)) {
    pieces.push(format.slice(from, match.index), values[match[1]]);
    from = match.index + match[0].length;
  }
  pieces.push(format.slice(from));
  return pieces.filter((piece) => piece !== "");
}
