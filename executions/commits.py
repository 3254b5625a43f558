"""Waiting for a commit to the embedded SQLite database, by any process.

A commit in WAL mode appends to the database's `-wal` file, so on Linux a waiter is woken by
inotify the moment another process commits: the queue's consumer (broker.py) and the web's watcher
(live.py) see a new job or a job's end within a millisecond, and sleep the rest of the time.
Whether something relevant was committed is still asked of SQLite (PRAGMA data_version): an event
is only a reason to ask. Where inotify is missing (another OS, a filesystem without it), waiting is
a plain sleep of the timeout, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import threading
import time

logger = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_IN_CREATE = 0x00000100
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
# The WAL is written just before the commit shows in the shared index (which no event reports):
# a woken waiter gives the writer this long to finish before it asks.
SETTLE_SECONDS = 0.0005

_libc: ctypes.CDLL | None = None
_libc_lock = threading.Lock()


def _inotify() -> ctypes.CDLL | None:
    global _libc
    with _libc_lock:
        if _libc is None:
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
                libc.inotify_init1  # noqa: B018  (missing outside Linux: AttributeError)
                _libc = libc
            except (OSError, AttributeError):
                return None
        return _libc


class CommitWatch:
    """Wakes whoever waits when the SQLite database at `path` is written (or `wake()` is called).
    One per waiting thread; close() it when done."""

    def __init__(self, path: str) -> None:
        self._names = {os.path.basename(path).encode(), os.path.basename(path).encode() + b"-wal"}
        self._inotify_fd: int | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        libc = _inotify()
        if libc is None:
            return
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            logger.info("No inotify (%s): commits are looked for by polling", os.strerror(ctypes.get_errno()))
            return
        folder = (os.path.dirname(os.path.abspath(path)) or ".").encode()
        if libc.inotify_add_watch(fd, folder, _IN_MODIFY | _IN_CREATE) < 0:
            reason = os.strerror(ctypes.get_errno())
            logger.info("Cannot watch %s (%s): commits are looked for by polling", folder, reason)
            os.close(fd)
            return
        self._inotify_fd = fd

    @property
    def notified(self) -> bool:
        """Whether commits wake waiters (else wait() sleeps its whole timeout)."""
        return self._inotify_fd is not None

    def wait(self, timeout: float) -> bool:
        """Until the database is written, wake() is called, or `timeout` seconds pass; True if woken."""
        watched = [self._wake_r] + ([self._inotify_fd] if self._inotify_fd is not None else [])
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                ready, _, _ = select.select(watched, [], [], remaining)
            except InterruptedError:
                continue
            if not ready:
                return False
            if self._wake_r in ready:
                self._drain(self._wake_r)
                return True
            if self._database_written():
                time.sleep(SETTLE_SECONDS)
                return True
        return False

    def wake(self) -> None:
        """Wake the waiter now (from any thread)."""
        with contextlib.suppress(BlockingIOError):  # (already woken, not yet drained)
            os.write(self._wake_w, b"w")

    def close(self) -> None:
        for fd in (self._inotify_fd, self._wake_r, self._wake_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._inotify_fd = None

    def _database_written(self) -> bool:
        """Whether the pending events name the database or its WAL (others in its folder do not count)."""
        assert self._inotify_fd is not None
        written = False
        while True:
            try:
                events = os.read(self._inotify_fd, 64 * 1024)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return written
                raise
            offset = 0
            while offset + _EVENT_HEADER.size <= len(events):
                _wd, _mask, _cookie, length = _EVENT_HEADER.unpack_from(events, offset)
                name = events[offset + _EVENT_HEADER.size : offset + _EVENT_HEADER.size + length].rstrip(b"\0")
                written = written or name in self._names
                offset += _EVENT_HEADER.size + length

    @staticmethod
    def _drain(fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 4096):
                pass
