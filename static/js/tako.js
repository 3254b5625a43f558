// Small page behaviours: the code editor (CodeMirror from static/vendor/codemirror/ where it
// loaded, else the textarea's keys and line numbers), input files picked or dropped, inline JSON
// checking, the environment's description, and toasts from the server's HX-Trigger: showToast events.
(function () {
  "use strict";

  function setUpEditor(textarea) {
    if (window.TakoEditor) {
      const nonce = document.querySelector('meta[name="csp-nonce"]');
      const view = window.TakoEditor.attach(textarea, { nonce: nonce ? nonce.content : "", label: "Code" });
      textarea.parentElement.classList.add("enhanced");
      // The label names the hidden textarea: a click on it goes to the editor instead.
      const label = document.querySelector(`label[for="${textarea.id}"]`);
      if (label) label.addEventListener("click", (event) => { event.preventDefault(); view.focus(); });
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

  // -- input files: picked or dropped, listed with their sizes, over-limit ones refused here (the
  // server checks again). The chosen files live in `chosenFiles` and are put back into the file
  // input after every change, so the form sends them; they survive the form being re-rendered
  // with errors (an htmx swap) because they are kept here, not in the old input.
  let chosenFiles = [];
  const NAME_RE = /^[A-Za-z0-9._-]+$/;

  function formatBytes(n) {
    if (n < 1024) return n + " bytes";
    const units = ["KB", "MB", "GB"];
    let value = n / 1024, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toFixed(1) + " " + units[unit];
  }

  function setUpDropzone(zone) {
    const input = zone.querySelector("input[type=file]");
    const list = document.getElementById("files-list");
    const error = document.getElementById("input_files-error");
    const limits = {
      count: Number(zone.dataset.maxFiles), each: Number(zone.dataset.maxFileBytes), total: Number(zone.dataset.maxTotalBytes),
    };

    function render(refusals) {
      const dt = new DataTransfer();
      chosenFiles.forEach((f) => dt.items.add(f));
      input.files = dt.files;
      list.replaceChildren(...chosenFiles.map((file) => {
        const item = document.createElement("li");
        const name = document.createElement("code");
        name.textContent = "/input/" + file.name;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "small";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove " + file.name);
        remove.addEventListener("click", () => { chosenFiles = chosenFiles.filter((f) => f !== file); render([]); });
        item.append(name, " ", document.createTextNode(formatBytes(file.size)), " ", remove);
        return item;
      }));
      if (chosenFiles.length) {
        const total = chosenFiles.reduce((sum, f) => sum + f.size, 0);
        const summary = document.createElement("li");
        summary.className = "hint";
        summary.textContent = `${chosenFiles.length} of at most ${limits.count} files, ${formatBytes(total)} of ${formatBytes(limits.total)}`;
        list.append(summary);
      }
      if (refusals !== undefined) error.textContent = refusals.join(" ");
      input.setAttribute("aria-invalid", refusals && refusals.length ? "true" : "false");
    }

    function add(files) {
      const refusals = [];
      for (const file of files) {
        const others = chosenFiles.filter((f) => f.name !== file.name); // the same name: the new one replaces it
        const total = others.reduce((sum, f) => sum + f.size, 0) + file.size;
        if (!NAME_RE.test(file.name) || file.name === "data.json" || /^\.+$/.test(file.name)) {
          refusals.push(`“${file.name}” was not added: a name may hold only letters, digits, '.', '_' and '-' (and not be data.json); rename it.`);
        } else if (file.size > limits.each) {
          refusals.push(`“${file.name}” was not added: it is ${formatBytes(file.size)}, over the limit of ${formatBytes(limits.each)} per file.`);
        } else if (others.length >= limits.count) {
          refusals.push(`“${file.name}” was not added: at most ${limits.count} files are allowed.`);
        } else if (total > limits.total) {
          refusals.push(`“${file.name}” was not added: the files would total ${formatBytes(total)}, over the limit of ${formatBytes(limits.total)} in all.`);
        } else {
          chosenFiles = [...others, file];
        }
      }
      render(refusals);
    }

    // A picked selection replaces the input's files: add it to those already chosen instead.
    input.addEventListener("change", () => add(Array.from(input.files)));
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      add(Array.from(event.dataTransfer.files));
    });
    if (chosenFiles.length) render(); // the form came back with errors: its files are still chosen
  }

  function init(root) {
    root.querySelectorAll("textarea[data-editor]").forEach(setUpEditor);
    root.querySelectorAll("[data-dropzone]").forEach(setUpDropzone);
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
