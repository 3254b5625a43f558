"""Loaded by the user's Python before /code/main.py: imports the environment's preloaded modules,
waits for the job, then records the exception that ends the program, and saves the matplotlib
figures still open when it ends.

The interpreter is started before the job arrives (see launcher.py); Python opens /code/main.py
only after this module returns, so it blocks here (at the end) until the launcher says go. Before
that it imports the modules TAKO_PRELOAD names, so a pooled container's program finds them loaded,
and tells the launcher it is ready. A module that fails to import is skipped (the program may
still import it and see why); the failures are left in TAKO_PRELOAD_ERRORS as JSON. The launcher
classifies a failure from the exception record (its class hierarchy), never by searching stderr
text. The traceback itself is still printed by Python's own hook.
"""

import os
import sys

_fd = os.environ.pop("TAKO_REPORT_FD", None)
if _fd is not None:
    _fd = int(_fd)
    os.set_inheritable(_fd, False)  # the program's own subprocesses do not get it
    _print_traceback = sys.excepthook

    def _record_exception(exc_type, exc, tb):
        try:
            import json
            import traceback

            lines = traceback.format_exception_only(exc_type, exc)
            report = {
                "mro": [f"{cls.__module__}.{cls.__qualname__}" for cls in exc_type.__mro__],
                "message": (lines[-1].strip() if lines else exc_type.__name__)[:4000],
            }
            os.write(_fd, (json.dumps(report) + "\n").encode())
        except Exception:  # noqa: S110  (the traceback below still tells the user what happened)
            pass
        _print_traceback(exc_type, exc, tb)

    sys.excepthook = _record_exception


# Figures: headless by default (tako_matplotlib: Agg, plt.show() saves), and every figure still open
# at the end is saved (tako.save_open_figures). matplotlib registers its own exit handler, which
# closes every figure, when pyplot is imported; ours must be registered after it to run before it
# (exit handlers run last-registered first), so it is registered as pyplot finishes importing.
os.environ.setdefault("MPLBACKEND", "module://tako_matplotlib")


def _font_cache():
    """matplotlib's font cache, built with the image (prepare_image.py), copied to where this run's
    matplotlib looks (its config folder must be writable, and the image is read-only)."""
    built = "/opt/tako/matplotlib-cache"
    try:
        names = [name for name in os.listdir(built) if name.startswith("fontlist")]
    except OSError:
        return  # no matplotlib in this environment
    target = os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.environ.get("HOME", "/tmp"), ".matplotlib"))
    try:
        os.makedirs(target, exist_ok=True)
        for name in names:
            with open(os.path.join(built, name), "rb") as source, open(os.path.join(target, name), "wb") as copy:
                copy.write(source.read())
    except OSError:
        pass  # matplotlib builds its own


_font_cache()


def _save_open_figures():
    try:
        import tako

        tako.save_open_figures()
    except Exception:  # noqa: S110  (a figure that cannot be saved never changes how the run ended)
        pass


class _AfterPyplot:
    """A meta path finder that steps aside for every module but matplotlib.pyplot, whose loading it
    wraps once to register _save_open_figures when it is done."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "matplotlib.pyplot":
            return None
        sys.meta_path.remove(cls)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            import atexit

            atexit.register(_save_open_figures)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterPyplot)


def _preload(names):
    failed = {}
    for name in names:
        try:
            __import__(name)
        except (Exception, SystemExit) as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]
    if failed:
        import json

        os.environ["TAKO_PRELOAD_ERRORS"] = json.dumps(failed)


_modules = [name for name in os.environ.pop("TAKO_PRELOAD", "").split(",") if name]
if _modules:
    _preload(_modules)
    # The preloaded modules' objects live as long as the interpreter: moved out of the collector's
    # sight, the program's collections and the interpreter's end skip them (with numpy, pandas and
    # matplotlib loaded, ending took 200 ms, and 50 ms frozen).
    import gc

    gc.freeze()

_ready = os.environ.pop("TAKO_READY_FD", None)
if _ready is not None:
    # Held open for the interpreter's life (never by the program's own subprocesses): the launcher
    # reads the end of this pipe as the interpreter's end.
    os.set_inheritable(int(_ready), False)
    os.write(int(_ready), b"r")

_go = os.environ.pop("TAKO_GO_FD", None)
if _go is not None:
    if os.read(int(_go), 1) != b"g":  # the launcher ended without a job
        os._exit(0)
    os.close(int(_go))
