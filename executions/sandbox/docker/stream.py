"""A container's standard streams: FIFOs in its host folder (runc) or the attach connection
(gVisor), and the program's output told apart from the launcher's lines (wire.py), capped, and
passed on live as it arrives."""

from __future__ import annotations

import codecs
import contextlib
import errno
import logging
import os
import select
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import docker
from docker.utils.socket import frames_iter

from executions.sandbox import wire

logger = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2  # stream ids of the attach protocol's frames
# The FIFOs of a run's channel folder, mounted read-only at /chan (launcher.py opens them there):
# the job line in, the launcher's and the program's stdout and stderr out.
# The sandbox's user reads job, and opens out and err read-write (see launcher.py): as readable as
# /code and /input are.
CHANNEL_FIFOS = {"job": 0o644, "out": 0o666, "err": 0o666}
FIFO_POLL_MS = 100


def make_channel(folder: Path) -> None:
    """The channel folder's FIFOs (a FIFO on a read-only mount may still be opened for writing)."""
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    for name, mode in CHANNEL_FIFOS.items():
        with contextlib.suppress(FileExistsError):  # (a retry's folder)
            os.mkfifo(folder / name)
        (folder / name).chmod(mode)


class FifoChannel:
    """The launcher's stdin, stdout and stderr as FIFOs in the run's host folder (runc only: gVisor
    opens no host FIFO). Nothing passes through the engine: no attach call, no copy through
    dockerd and the shim, so a pooled run's job line and output move as fast as a pipe's.

    The launcher holds each FIFO open (read-write) from its start to its end, and so does every
    process it starts: the output ends when the last of them has gone. Open the channel before the
    container starts, so that no output is lost; for a pooled container (its launcher may have
    started well before), what it wrote before its job is dropped (discard_waiting).
    """

    # A FIFO's reader is told of no writer's end unless that writer had opened it: a launcher that
    # died before opening the channel leaves its output open; the engine must be asked instead.
    ends_with_container = False

    def __init__(self, folder: Path) -> None:
        self._job_path = folder / "job"
        self._launcher_was_there = False
        self._readers = {
            os.open(folder / "out", os.O_RDONLY | os.O_NONBLOCK): STDOUT,
            os.open(folder / "err", os.O_RDONLY | os.O_NONBLOCK): STDERR,
        }
        self._job: int | None = None
        self._ended = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._reading = False

    def discard_waiting(self) -> None:
        """Drop what a pooled container wrote before its job (a preloaded module's warnings)."""
        for fd in self._readers:
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, 65536):
                    pass

    def send(self, data: bytes) -> None:
        """Write `data` (one line, under PIPE_BUF: written at once) for the launcher to read."""
        try:
            self._job = os.open(self._job_path, os.O_WRONLY | os.O_NONBLOCK)
            self._launcher_was_there = True  # (it opens out and err before job)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            # Its launcher has not opened the channel yet (or has gone): the line waits in the
            # FIFO, kept while this end stays open (until close).
            self._job = os.open(self._job_path, os.O_RDWR | os.O_NONBLOCK)
        os.write(self._job, data)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(stream id, data) as the container writes; ends when every writer is gone, or on close."""
        with self._lock:
            self._reading = True
        poller = select.poll()
        for fd in self._readers:
            poller.register(fd, select.POLLIN)
        open_fds = dict(self._readers)
        # A reader is told of a hang-up only by writers that opened after it did. The launcher had
        # opened the channel before send, or opens it later: in the first case, a read of
        # nothing means every writer has gone.
        writers_seen = self._launcher_was_there
        try:
            while open_fds and not self._closing.is_set():
                events = poller.poll(FIFO_POLL_MS)
                if events:
                    ready = [fd for fd, _ in events]
                elif writers_seen or self._ended.is_set():
                    ready = list(open_fds)  # (a read of nothing: no writer is left)
                else:
                    continue
                for fd in ready:
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        poller.unregister(fd)
                        del open_fds[fd]
                        continue
                    writers_seen = True
                    yield open_fds[fd], data
        finally:
            with self._lock:
                self._reading = False
                if self._closing.is_set():
                    self._close_fds()

    def end(self) -> None:
        """The container has ended: once what its writers left is read, the output is over."""
        self._ended.set()

    def close(self) -> None:
        with self._lock:
            self._closing.set()
            if not self._reading:  # else the reader closes them as it stops (within a poll)
                self._close_fds()

    def _close_fds(self) -> None:
        for fd in [*self._readers, *([self._job] if self._job is not None else [])]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._readers, self._job = {}, None


class Attachment:
    """stdin, stdout and stderr of one container over one attach connection.

    Open it before the container starts, so that no output is lost.
    """

    ends_with_container = True  # the engine ends the stream when the container ends

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

    def end(self) -> None:
        """(Nothing to do: the engine ends the stream itself when the container ends.)"""

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


Channel = Attachment | FifoChannel  # how a container's job line and output travel
