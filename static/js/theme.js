// The color theme: the system's (prefers-color-scheme) unless the visitor picked light or dark
// with the header's toggle; the choice is kept in localStorage. Loaded in <head> without
// `defer`, so the theme is applied before the first paint (no flash of the wrong colors).
// It sets data-theme on <html>, which playground.css reads, and switches the code highlighting
// stylesheet to match.
"use strict";

(() => {
  const KEY = "playground:theme";
  const CHOICES = ["system", "light", "dark"];
  // The translations' catalog (/jsi18n/<language>/) is loaded just before this script; without
  // it, English.
  const gettext = typeof window.gettext === "function" ? window.gettext : (text) => text;
  const interpolate =
    typeof window.interpolate === "function"
      ? window.interpolate
      : (format, values) => format.replace(/%\((\w+)\)s/g, (whole, name) => String(values[name]));
  const LABELS = {
    system: gettext("Theme: system"),
    light: gettext("Theme: light"),
    dark: gettext("Theme: dark"),
  };
  const NOW = { light: gettext("now light"), dark: gettext("now dark") };
  const SWITCH = {
    system: gettext("Switch to system."),
    light: gettext("Switch to light."),
    dark: gettext("Switch to dark."),
  };
  const root = document.documentElement;
  root.classList.add("js"); // what needs JavaScript (keyboard hints, copy buttons) may show
  const systemDark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function read() {
    try {
      const value = window.localStorage.getItem(KEY);
      return CHOICES.includes(value) ? value : "system";
    } catch {
      return "system";
    }
  }

  function write(choice) {
    try {
      if (choice === "system") window.localStorage.removeItem(KEY);
      else window.localStorage.setItem(KEY, choice);
    } catch {
      // Storage disabled: the choice lasts until the page is left.
    }
  }

  function codeThemes() {
    const light = document.getElementById("code-theme-light");
    const dark = document.getElementById("code-theme-dark");
    if (!light || !dark) return;
    const choice = root.dataset.theme;
    light.media = choice === "light" ? "all" : choice === "dark" ? "not all" : "(prefers-color-scheme: light)";
    dark.media = choice === "dark" ? "all" : choice === "light" ? "not all" : "(prefers-color-scheme: dark)";
  }

  function labelButtons() {
    const choice = read();
    const next = CHOICES[(CHOICES.indexOf(choice) + 1) % CHOICES.length];
    const effective = choice === "system" ? (systemDark && systemDark.matches ? "dark" : "light") : choice;
    for (const button of document.querySelectorAll("[data-theme-toggle]")) {
      button.hidden = false;
      button.textContent = LABELS[choice];
      button.dataset.effective = effective;
      const label = interpolate(
        gettext("%(theme)s (%(now)s). %(switch)s"),
        { theme: LABELS[choice], now: NOW[effective], switch: SWITCH[next] },
        true,
      );
      button.setAttribute("aria-label", label);
    }
  }

  function apply(choice) {
    if (choice === "light" || choice === "dark") root.dataset.theme = choice;
    else delete root.dataset.theme;
    codeThemes();
    labelButtons();
  }

  apply(read());
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-theme-toggle]");
    if (!button) return;
    const choice = CHOICES[(CHOICES.indexOf(read()) + 1) % CHOICES.length];
    write(choice);
    apply(choice);
  });
  if (systemDark && systemDark.addEventListener) systemDark.addEventListener("change", labelButtons);
  document.addEventListener("DOMContentLoaded", labelButtons);
  document.addEventListener("htmx:load", labelButtons);
  // Another tab changed the theme.
  window.addEventListener("storage", (event) => {
    if (event.key === KEY) apply(read());
  });
})();
