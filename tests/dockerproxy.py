"""A unix-socket proxy in front of the real Docker engine, whose availability a test controls.

`up`: every connection is forwarded to the engine; `down`: the socket refuses connections and
open ones are cut (as when dockerd stops); `hang`: connections are accepted and never answered
(a daemon that hangs). The engine behind it is real, so nothing about Docker is mocked.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
import time
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"


class DockerProxy:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.mode = "down"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def up(self) -> None:
        self._set("up")

    def hang(self) -> None:
        self._set("hang")

    def down(self) -> None:
        with self._lock:
            self.mode = "down"
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._open.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _set(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            if self._listener is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(str(self.path))
                listener.listen(64)
                self._listener = listener
                threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            with self._lock:
                self._open.add(client)
                mode = self.mode
            if mode == "up":
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()
            # in "hang" mode the connection is held open and never answered

    def _forward(self, client: socket.socket) -> None:
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            engine.connect(ENGINE_SOCKET)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.add(engine)
        pair = {client: engine, engine: client}
        # A selector, not select(): a long test session has file descriptors past select's 1024.
        watch = selectors.DefaultSelector()
        for sock in pair:
            watch.register(sock, selectors.EVENT_READ)
        try:
            while True:
                if self.mode == "hang":  # open connections go silent too
                    time.sleep(0.1)
                    continue
                readable = [key.fileobj for key, _ in watch.select(0.2)]
                if self.mode == "down":
                    return
                for sock in readable:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    pair[sock].sendall(data)  # type: ignore[index]
        except OSError:
            return
        finally:
            watch.close()
            for sock in (client, engine):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._open.discard(client)
                self._open.discard(engine)
