"""The launcher's wire format (executions/sandbox/wire.py): pinned, and the same module on both sides.

The markers are written out literally here, so that changing one is a deliberate act: an image
built before the change speaks the old format until it is rebuilt.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import docker
import pytest

from executions.sandbox import wire
from executions.sandbox.images import BOOTSTRAP_DIR

LAUNCHER = BOOTSTRAP_DIR / "launcher.py"
# Loads the launcher as a module (its main() does not run) and names the wire module it imported.
PROBE = "import runpy, sys; print(runpy.run_path(sys.argv[1], run_name='probe')['wire'].__file__)"
IMAGE_PROBE = (
    "import hashlib, runpy\n"
    "wire = runpy.run_path('/opt/tako/launcher.py', run_name='probe')['wire']\n"
    "print(hashlib.sha256(open(wire.__file__, 'rb').read()).hexdigest())\n"
)


def test_the_markers_are_pinned() -> None:
    assert wire.STARTED_MARKER == b"\x1eTAKO-STARTED "
    assert wire.END_MARKER == b"\x1eTAKO-END "
    assert wire.ENVELOPE_MARKER == b"\x1eTAKO-ENVELOPE "
    assert wire.MAX_ENVELOPE_BYTES == 80 * 1024 * 1024
    assert wire.RESOURCE_USAGE_KEYS == ("max_rss_mb", "cpu_time_ms", "wall_time_ms")
    assert wire.DISPLAY_FD_ENV == "TAKO_DISPLAY_FD"
    assert wire.DISPLAY_MIMES == ("text/html", "image/png", "application/json", "text/plain")
    assert (wire.MAX_DISPLAYS, wire.MAX_DISPLAY_BYTES) == (100, 8 * 1024 * 1024)


def test_the_hooks_display_limit_is_the_wires() -> None:
    """hook/tako.py runs in the program's interpreter, where wire.py is not importable: its copy
    of the limit must match."""
    text = (BOOTSTRAP_DIR / "hook" / "tako.py").read_text()
    assert "MAX_DISPLAY_BYTES = 8 * 1024 * 1024  # wire.MAX_DISPLAY_BYTES" in text
    assert f'os.environ.get("{wire.DISPLAY_FD_ENV}")' in text


def test_the_lines_are_pinned() -> None:
    assert wire.job_line("abc") == b'{"nonce": "abc"}\n'
    assert wire.started_line("abc") == b"\x1eTAKO-STARTED abc\n"
    assert wire.end_line("abc") == b"\x1eTAKO-END abc\n"
    assert wire.envelope_header("abc") == b"\x1eTAKO-ENVELOPE abc\n"
    assert wire.envelope_lines("abc", {"returncode": 0}) == b'\x1eTAKO-ENVELOPE abc\n{"returncode": 0}\n'


def test_it_reads_the_nonce_back_from_a_job_line() -> None:
    assert wire.nonce_of(wire.job_line("0f3a")) == "0f3a"


@pytest.mark.parametrize("line", [b"", b"not json\n", b"[]\n", b"{}\n", b'{"nonce": 1}\n', b'"abc"\n'])
def test_it_rejects_what_is_not_a_job_line(line: bytes) -> None:
    assert wire.nonce_of(line) is None


@pytest.mark.parametrize("raw", [None, b"", b"{", b"[1, 2]\n", b'"text"\n'])
def test_a_missing_or_malformed_envelope_parses_as_empty(raw: bytes | None) -> None:
    assert wire.parse_envelope(raw) == {}


def test_an_envelope_round_trips() -> None:
    envelope = {"returncode": -9, "result_json": '{"a": 1}', "artifacts": []}
    lines = wire.envelope_lines("n", envelope)
    assert wire.parse_envelope(lines[len(wire.envelope_header("n")) :]) == envelope


def test_the_launcher_imports_the_hosts_wire_module() -> None:
    """Run as in the container (`python3 -I -S`, stdlib only), the launcher finds wire.py beside it."""
    found = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(LAUNCHER)], capture_output=True, text=True, check=True
    )
    launchers_wire = Path(found.stdout.strip())
    assert launchers_wire.parent == BOOTSTRAP_DIR  # what images.py copies into the image
    assert launchers_wire.read_bytes() == Path(wire.__file__).read_bytes()


@pytest.mark.docker
def test_the_image_carries_the_hosts_wire_module(default_image: str) -> None:
    client = docker.from_env(version="auto")
    output = client.containers.run(
        default_image, ["python3", "-I", "-S", "-c", IMAGE_PROBE], remove=True, network_disabled=True
    )
    assert output.decode().strip() == hashlib.sha256(Path(wire.__file__).read_bytes()).hexdigest()
