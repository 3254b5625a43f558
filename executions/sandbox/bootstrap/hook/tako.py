"""`from tako import display`: rich output for the execution page, importable in every environment.

display(obj) records one output, in order: a pandas DataFrame or Series as an HTML table of its
first 50 rows, a matplotlib figure as a PNG artifact (/output/figure-N.png), anything
JSON-serialisable as JSON, anything else as its repr. It never raises: what cannot be rendered is
recorded as text, and the program goes on.

Figures are also saved without any call: each one shown with plt.show() (the backend
tako_matplotlib) and every one still open when the program ends (sitecustomize's exit hook).
The launcher hands the program a file (its descriptor in TAKO_DISPLAY_FD) for the records, one
JSON line each; it reads them when the program has ended (see wire.py).
"""

import json
import os
import sys

__all__ = ["display"]

TABLE_ROWS = 50
MAX_TEXT_CHARS = 100_000
MAX_JSON_CHARS = 1_000_000
OUTPUT_DIR = os.environ.get("TAKO_OUTPUT_DIR", "/output")  # (the unit tier's fake sandbox has its own)

_saved = {}  # id(figure) -> (figure, the artifact it was saved as): each is saved once (held: ids stay unique)
_next_figure = [1]
_written = [0]  # bytes of records written (the launcher reads at most MAX_DISPLAY_BYTES)
MAX_DISPLAY_BYTES = 8 * 1024 * 1024  # wire.MAX_DISPLAY_BYTES


def display(obj):
    """Record `obj` as one rich output of this run (see the module's docstring)."""
    try:
        entry = _entry(obj)
    except Exception as exc:  # a broken object must not end the program
        entry = _text(f"display() could not render {type(obj).__name__}: {_describe(exc)}")
    _record(entry)


def _entry(obj):
    kind = type(obj)
    module = kind.__module__ or ""
    if module.startswith("pandas") and kind.__name__ in ("DataFrame", "Series"):
        frame = obj.head(TABLE_ROWS)
        if kind.__name__ == "Series":
            frame = frame.to_frame()
        return {"mime": "text/html", "data": frame.to_html(max_rows=TABLE_ROWS)}
    if module.startswith("matplotlib") and kind.__name__ in ("Figure", "SubFigure"):
        name, problem = save_figure(obj.figure if kind.__name__ == "SubFigure" else obj)
        return {"mime": "image/png", "artifact": name} if name else _text(problem)
    try:
        text = json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _text(_repr(obj))
    if len(text) > MAX_JSON_CHARS:
        return _text(_repr(obj))
    return {"mime": "application/json", "data": json.loads(text)}


def _text(text):
    text = str(text)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + f"… [TRUNCATED: {len(text)} characters]"
    return {"mime": "text/plain", "data": text}


def _repr(obj):
    try:
        return repr(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} object: repr() failed: {_describe(exc)}>"


def _describe(exc):
    return f"{type(exc).__name__}: {exc}"


def _record(entry):
    fd = os.environ.get("TAKO_DISPLAY_FD")
    line = (json.dumps(entry) + "\n").encode()
    if fd is None:  # not under the launcher (run by hand): show it here
        sys.stdout.write(f"[display {entry['mime']}] {entry.get('data', entry.get('artifact'))}\n")
        return
    if _written[0] + len(line) > MAX_DISPLAY_BYTES:
        return
    try:
        os.write(int(fd), line)
        _written[0] += len(line)
    except (OSError, ValueError):
        pass


# -- figures ------------------------------------------------------------------------------------------
def save_figure(figure):
    """Save `figure` once as /output/figure-N.png; returns (artifact name, None) or (None, why not)."""
    if id(figure) in _saved:
        return _saved[id(figure)][1], None
    while True:
        name = f"figure-{_next_figure[0]}.png"
        _next_figure[0] += 1
        if not os.path.exists(os.path.join(OUTPUT_DIR, name)):  # the program's own file of that name stays
            break
    try:
        figure.savefig(os.path.join(OUTPUT_DIR, name), format="png")
    except Exception as exc:
        return None, f"Figure {name} could not be saved: {_describe(exc)}"
    _saved[id(figure)] = (figure, name)
    return name, None


def save_open_figures(close=False):
    """Save every open pyplot figure not saved yet (a failure is recorded as text); with `close`,
    close them as a window's show() would."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    from matplotlib._pylab_helpers import Gcf

    for manager in sorted(Gcf.get_all_fig_managers(), key=lambda m: m.num):
        _name, problem = save_figure(manager.canvas.figure)
        if problem:
            _record(_text(problem))
    if close:
        pyplot.close("all")
