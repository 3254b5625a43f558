// The New page's code editor: CodeMirror 6 over the form's <textarea>, which stays the form
// field (the page works without JavaScript). Exposed as window.TakoEditor for static/js/tako.js.
import { EditorState } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, drawSelection, dropCursor, rectangularSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  bracketMatching, indentOnInput, indentUnit, syntaxHighlighting, defaultHighlightStyle, foldGutter, foldKeymap,
} from "@codemirror/language";
import { search, searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { python } from "@codemirror/lang-python";

// Ctrl+Enter (Cmd+Enter on a Mac; Ctrl+Enter there too) runs the form. Ahead of the default
// keymap, which binds Mod-Enter to "insert blank line".
function runKeys(form) {
  const run = () => { form.requestSubmit(); return true; };
  return keymap.of([{ key: "Mod-Enter", run }, { key: "Ctrl-Enter", run }]);
}

function attach(textarea, options = {}) {
  if (textarea.takoEditor) return textarea.takoEditor;
  const form = textarea.form;
  const sync = EditorView.updateListener.of((update) => {
    if (update.docChanged) textarea.value = update.state.doc.toString();
  });
  const view = new EditorView({
    parent: textarea.parentElement,
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        // CodeMirror adds its styles as a <style> element: the page's CSP nonce lets them in.
        EditorView.cspNonce.of(options.nonce || ""),
        lineNumbers(), highlightActiveLineGutter(), foldGutter(), highlightSpecialChars(), history(),
        drawSelection(), dropCursor(), indentOnInput(), bracketMatching(), rectangularSelection(),
        highlightActiveLine(), highlightSelectionMatches(), search({ top: true }),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }), python(),
        EditorState.tabSize.of(4), indentUnit.of("    "), // PEP 8's four spaces, not CodeMirror's two
        form ? runKeys(form) : [],
        // Tab indents; Esc then Tab moves on (CodeMirror's own escape from the Tab trap).
        keymap.of([...defaultKeymap, ...searchKeymap, ...historyKeymap, ...foldKeymap, indentWithTab]),
        EditorView.contentAttributes.of({
          "aria-label": options.label || "Code",
          "aria-describedby": textarea.getAttribute("aria-describedby") || "",
          "data-gramm": "false",
        }),
        sync,
      ],
    }),
  });
  // The textarea stays the field the form sends; also copied on submit in case it was changed
  // behind the editor's back.
  if (form) form.addEventListener("submit", () => { textarea.value = view.state.doc.toString(); }, true);
  textarea.takoEditor = view;
  return view;
}

// Replace the editor's whole text (tests, and the page's own "load file" actions).
function setText(view, text) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
}

window.TakoEditor = { attach, setText };
