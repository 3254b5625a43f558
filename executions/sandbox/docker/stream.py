"""A container's standard streams: the attach connection, and the program's output told apart
from the launcher's lines (wire.py), capped, and passed on live as it arrives."""

from __future__ import annotations

import codecs
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import docker
from docker.utils.socket import frames_iter

from executions.sandbox import wire

logger = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2  # stream ids of the attach protocol's frames


class Attachment:
    """stdin, stdout and stderr of one container over one attach connection.

    Open it before the container starts, so that no output is lost.
    """

    def __init__(self, api: docker.APIClient, container_id: str) -> None:
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        self._connection: Any = api.attach_socket(container_id, params=params)

    def send(self, data: bytes) -> None:
        """Write all of `data` to the container's stdin."""
        # attach_socket hands back what the transport has: a socket over TLS, a channel over SSH
        # (both have sendall), or over a Unix socket a socket.SocketIO that the SDK opened for
        # reading only, so the bytes go to its file descriptor.
        if hasattr(self._connection, "sendall"):
            self._connection.sendall(data)
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._connection.fileno(), view) :]

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(stream id, data) as the container writes; ends when the connection does."""
        yield from frames_iter(self._connection, tty=False)

    def close(self) -> None:
        self._connection.close()


def _truncation_marker(cap: int) -> str:
    return f"\n[TRUNCATED: output exceeded {cap} bytes]"


class CappedStream:
    """Keeps the first `cap` bytes of a stream, counts the rest, decodes on a UTF-8 boundary."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> bytes:
        """Store what fits; return the bytes that were kept (for live streaming)."""
        self.total += len(data)
        room = self.cap - len(self.kept)
        kept = data[: max(room, 0)]
        self.kept += kept
        return kept

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    @property
    def marker(self) -> str:
        """What the text of a truncated stream ends with."""
        return _truncation_marker(self.cap)

    def text(self) -> str:
        data = _without_cut_character(bytes(self.kept)) if self.truncated else bytes(self.kept)
        text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        return text + self.marker if self.truncated else text


def _without_cut_character(data: bytes) -> bytes:
    """Drop a multi-byte UTF-8 character whose tail was cut off at the end of `data`."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # ASCII or a lead byte: the last character starts here
            needed = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if needed <= back else data[:-back]
    return data


class StdoutSplitter:
    """Separates the program's stdout from the launcher's messages around it.

    The stream is: STARTED marker (the code starts now), the program's output, ENVELOPE marker,
    the envelope. `on_started` is called once, when the code starts.
    """

    def __init__(self, nonce: str, user: CappedStream, on_started: Callable[[], None]) -> None:
        self.started_marker = wire.started_line(nonce)
        self.marker = wire.envelope_header(nonce)
        self.user = user
        self.on_started: Callable[[], None] | None = on_started
        self.pending = b""
        self.envelope: bytearray | None = None
        self.envelope_overflow = False

    def feed(self, data: bytes) -> bytes:
        """Feed a chunk of the container's stdout; return the user-visible bytes kept."""
        if self.envelope is not None:
            self._feed_envelope(data)
            return b""
        buf = self.pending + data
        if self.on_started is not None:
            if len(buf) < len(self.started_marker) and self.started_marker.startswith(buf):
                self.pending = buf  # not all of the marker yet
                return b""
            if buf.startswith(self.started_marker):
                buf = buf[len(self.started_marker) :]
            self._started()
        index = buf.find(self.marker)
        if index >= 0:
            self.pending = b""
            self.envelope = bytearray()
            self._feed_envelope(buf[index + len(self.marker) :])
            return self.user.feed(buf[:index])
        held = _marker_prefix_length(buf, self.marker)  # may be the marker's start: wait for more
        self.pending = buf[len(buf) - held :] if held else b""
        return self.user.feed(buf[: len(buf) - held])

    def finish(self) -> bytes:
        if self.on_started is not None and self.pending and self.started_marker.startswith(self.pending):
            self.pending = b""  # the stream ended before the code started
        kept = self.user.feed(self.pending)
        self.pending = b""
        return kept

    def _started(self) -> None:
        callback, self.on_started = self.on_started, None
        if callback is not None:
            callback()

    @property
    def complete(self) -> bool:
        """The whole envelope has arrived (it is one JSON line)."""
        return self.envelope is not None and not self.envelope_overflow and self.envelope.endswith(b"\n")

    def _feed_envelope(self, data: bytes) -> None:
        assert self.envelope is not None
        if len(self.envelope) + len(data) > wire.MAX_ENVELOPE_BYTES:
            self.envelope_overflow = True
            return
        self.envelope += data


class StderrSplitter:
    """Passes the program's stderr on until the launcher's END marker (then the stream is complete)."""

    def __init__(self, nonce: str, user: CappedStream) -> None:
        self.marker = wire.end_line(nonce)
        self.user = user
        self.pending = b""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self.ended:
            return b""
        buf = self.pending + data
        index = buf.find(self.marker)
        if index >= 0:
            self.ended, self.pending = True, b""
            return self.user.feed(buf[:index])
        held = _marker_prefix_length(buf, self.marker)
        self.pending = buf[len(buf) - held :] if held else b""
        return self.user.feed(buf[: len(buf) - held])

    def finish(self) -> bytes:
        kept = self.user.feed(self.pending)
        self.pending = b""
        return kept


def _marker_prefix_length(buf: bytes, marker: bytes) -> int:
    """Length of the longest tail of `buf` that is a proper prefix of `marker`."""
    index = buf.find(marker[:1], max(0, len(buf) - len(marker) + 1))
    while index != -1:
        if marker.startswith(buf[index:]):
            return len(buf) - index
        index = buf.find(marker[:1], index + 1)
    return 0


class Emit(Protocol):
    def __call__(self, stream: str, data: bytes, capped: CappedStream | None = None) -> None: ...


def emitter(on_output: Callable[[str, str], None] | None, on_truncated: Callable[[str], None] | None = None) -> Emit:
    """Decode each stream incrementally (a character may span two chunks) and pass it on. Called as
    `emit(stream, kept_bytes, capped)`: once `capped` has passed its cap, the marker its stored text
    ends with is passed on too, then `on_truncated(stream)`, once; so what was passed on live is
    what is stored (a character cut by the cap stays in the decoder, as text() drops it)."""
    decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("stdout", "stderr")}
    told: set[str] = set()

    def call(callback: Callable[..., None] | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            logger.exception("Live output callback failed")

    def emit(stream: str, data: bytes, capped: CappedStream | None = None) -> None:
        if data and on_output is not None:
            text = decoders[stream].decode(data)
            if text:
                call(on_output, stream, text.replace("\x00", "\ufffd"))
        if capped is not None and capped.truncated and stream not in told:
            told.add(stream)
            call(on_output, stream, capped.marker)
            call(on_truncated, stream)

    return emit
