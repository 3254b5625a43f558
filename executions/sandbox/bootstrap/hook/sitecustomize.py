"""Loaded by the user's Python before /code/main.py: records the exception that ends the program.

The launcher classifies the failure from this record (the exception's class hierarchy), never by
searching stderr text. The traceback itself is still printed by Python's own hook.
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
