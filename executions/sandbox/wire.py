"""What the in-container launcher and the host say to each other, defined once for both sides.

This file travels into every image beside bootstrap/launcher.py (images.py copies it, and its
content is part of the image's definition hash), where the launcher imports it under
`python3 -I -S`: it may use the standard library only, and it stays cheap to import.

The conversation, per run (the nonce comes from the host on stdin only, so the program cannot
learn it and cannot forge the launcher's lines):

    host → stdin    job_line(nonce)            {"nonce": "…"}: the code may start
    stdout          started_line(nonce)        the code starts now (its timeout counts from here)
    stdout          …the program's own output…
    stderr          …the program's own errors… then end_line(nonce): stderr is complete
    stdout          envelope_lines(nonce, …)   a header line, then the envelope as one JSON line

The envelope (every key optional; the host trusts nothing in it):
    returncode        int: the program's exit status (negative: killed by that signal)
    dependency_error  str: the run's own packages could not be installed (nothing ran)
    exception         {"mro": [qualified class names, most specific first], "message": str}
    result_json       str: the text of /output/result.json
    artifacts         [{"name": str, "data": base64 str}]: the other files of /output
    skipped_outputs   int: files of /output left out (not regular, too big, too many)
    dep_install_ms    int: time spent unpacking the run's wheels
    resource_usage    {"max_rss_mb": float, "cpu_time_ms": int, "wall_time_ms": int}
    displays          [{"mime": one of DISPLAY_MIMES, "data": …} or {"mime": "image/png", "artifact": name}]:
                      the program's display() calls, in order (hook/tako.py writes them as JSON lines
                      to the file at DISPLAY_FD_ENV, which the launcher reads with display_entries)
"""

from __future__ import annotations

import json

STARTED_MARKER = b"\x1eTAKO-STARTED "
END_MARKER = b"\x1eTAKO-END "
ENVELOPE_MARKER = b"\x1eTAKO-ENVELOPE "
MAX_ENVELOPE_BYTES = 80 * 1024 * 1024  # 50 MB of /output, base64-encoded, plus JSON
RESOURCE_USAGE_KEYS = ("max_rss_mb", "cpu_time_ms", "wall_time_ms")
DISPLAY_FD_ENV = "TAKO_DISPLAY_FD"
DISPLAY_MIMES = ("text/html", "image/png", "application/json", "text/plain")
MAX_DISPLAYS = 100
MAX_DISPLAY_BYTES = 8 * 1024 * 1024  # all of a run's displays, as written


def job_line(nonce: str) -> bytes:
    return json.dumps({"nonce": nonce}).encode() + b"\n"


def nonce_of(line: bytes) -> str | None:
    """The nonce of a job line, or None when it is not one."""
    try:
        job = json.loads(line)
    except ValueError:
        return None
    nonce = job.get("nonce") if isinstance(job, dict) else None
    return nonce if isinstance(nonce, str) else None


def started_line(nonce: str) -> bytes:
    return STARTED_MARKER + nonce.encode() + b"\n"


def end_line(nonce: str) -> bytes:
    return END_MARKER + nonce.encode() + b"\n"


def envelope_header(nonce: str) -> bytes:
    return ENVELOPE_MARKER + nonce.encode() + b"\n"


def envelope_lines(nonce: str, envelope: dict) -> bytes:
    return envelope_header(nonce) + json.dumps(envelope).encode() + b"\n"


def parse_envelope(raw: bytes | None) -> dict:
    """The envelope as a dict; empty when it is missing or is not a JSON object."""
    if not raw:
        return {}
    try:
        envelope = json.loads(raw)
    except ValueError:
        return {}
    return envelope if isinstance(envelope, dict) else {}


def display_entries(raw: bytes) -> list:
    """The program's displays from the JSON lines it wrote: at most MAX_DISPLAYS, each an object
    with a known mime (anything else is dropped; the host checks them again)."""
    entries = []
    for line in raw[:MAX_DISPLAY_BYTES].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("mime") in DISPLAY_MIMES:
            entries.append(entry)
            if len(entries) == MAX_DISPLAYS:
                break
    return entries
