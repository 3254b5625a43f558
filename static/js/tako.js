// Small page behaviours: the code editor (CodeMirror from static/vendor/codemirror/ where it
// loaded, else the textarea's keys and line numbers), inline JSON checking, the environment's description, and toasts from the server's HX-Trigger: showToast events.
(function () {
  "use strict";

  function setUpEditor(textarea) {
    if (window.TakoEditor) {
      const nonce = document.querySelector('meta[name="csp-nonce"]');
      window.TakoEditor.attach(textarea, { nonce: nonce ? nonce.content : "", label: "Code" });
      textarea.parentElement.classList.add("enhanced");
      return;
    }
    setUpPlainEditor(textarea);
  }

  function setUpPlainEditor(textarea) {
    const gutter = textarea.parentElement.querySelector(".gutter");
    const renumber = () => {
      const lines = textarea.value.split("\n").length;
      gutter.textContent = Array.from({ length: lines }, (_, i) => i + 1).join("\n");
      gutter.scrollTop = textarea.scrollTop;
    };
    textarea.addEventListener("input", renumber);
    textarea.addEventListener("scroll", () => { gutter.scrollTop = textarea.scrollTop; });
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.metaKey) {
        event.preventDefault(); // Tab inserts four spaces (Esc then Tab leaves the editor)
        textarea.setRangeText("    ", textarea.selectionStart, textarea.selectionEnd, "end");
        renumber();
      } else if (event.key === "Escape") {
        textarea.blur();
      }
    });
    renumber();
  }

  function checkJson(textarea) {
    const error = document.getElementById(textarea.id + "-error");
    const text = textarea.value.trim();
    let message = "";
    if (text) {
      try {
        const value = JSON.parse(text);
        if (value === null || typeof value !== "object" || Array.isArray(value)) message = "Input must be a JSON object, such as {\"value\": 1}.";
      } catch (e) {
        message = "Input is not valid JSON: " + e.message;
      }
    }
    if (error) error.textContent = message;
    textarea.setAttribute("aria-invalid", message ? "true" : "false");
    return !message;
  }

  function describeEnvironment(select) {
    const info = document.getElementById("env-info");
    const option = select.options[select.selectedIndex];
    if (info && option) info.textContent = option.dataset.info || "";
  }

  function init(root) {
    root.querySelectorAll("textarea[data-editor]").forEach(setUpEditor);
    root.querySelectorAll("textarea[data-json]").forEach((t) => t.addEventListener("input", () => checkJson(t)));
    root.querySelectorAll("select#job_type").forEach((s) => { describeEnvironment(s); s.addEventListener("change", () => describeEnvironment(s)); });
  }

  // Invalid JSON input is shown inline and nothing is sent.
  document.addEventListener("htmx:confirm", (event) => {
    const form = event.target.closest && event.target.closest("#run-form");
    if (!form || event.target !== form) return;
    const input = form.querySelector("textarea[data-json]");
    if (input && !checkJson(input)) { event.preventDefault(); input.focus(); }
  });
  // Ctrl+Enter in any field of the form runs it (the code editor handles its own: defaultPrevented).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.defaultPrevented) {
      const form = document.getElementById("run-form");
      if (form && form.contains(document.activeElement)) { event.preventDefault(); form.requestSubmit(); }
    }
  });
  document.addEventListener("showToast", (event) => {
    const detail = event.detail || {};
    const toast = document.createElement("div");
    toast.className = "toast " + (detail.level || "info");
    toast.textContent = detail.message || "";
    document.getElementById("toasts").appendChild(toast);
    setTimeout(() => toast.remove(), 6000);
  });
  document.addEventListener("htmx:load", (event) => init(event.target));
  document.addEventListener("DOMContentLoaded", () => init(document));
})();
