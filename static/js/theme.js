// The color theme: the system's (prefers-color-scheme) unless the visitor picked light or dark
// with the header's toggle; the choice is kept in localStorage. Loaded in <head> without
// `defer`, so the theme is applied before the first paint (no flash of the wrong colors).
// It sets data-theme on <html>, which playground.css reads, and switches the code highlighting
// stylesheet to match.
"use strict";

(() => {
  const KEY = "playground:theme";
  const CHOICES = ["system", "light", "dark"];
  const LABELS = { system: "Theme: system", light: "Theme: light", dark: "Theme: dark" };
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
      button.setAttribute("aria-label", `${LABELS[choice]} (now ${effective}). Switch to ${next}.`);
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
