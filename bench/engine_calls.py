"""Counts the Docker engine API calls a service makes: a unix socket in front of the real engine
that forwards everything and counts each HTTP request it sees going to the engine, by method and
path (container ids and names as {id}). Used by execute_latency.py: the service under count is
started with DOCKER_HOST pointing at it, so every process of it (web, workers, pool keeper) counts.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections import Counter
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"
REQUEST_LINE = re.compile(rb"(GET|POST|PUT|DELETE|HEAD) (/[^ ?]*)[^ ]* HTTP/1\.[01]\r\n")
VERSION = re.compile(r"^/v[0-9.]+")
RESOURCE = re.compile(r"^/(containers|images|exec)/(?!json$|create$)[^/]+")


class CountingProxy:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(path))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def take(self) -> Counter[str]:
        """The calls counted since the last take."""
        with self._lock:
            calls, self.calls = self.calls, Counter()
        return calls

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(ENGINE_SOCKET)
            threading.Thread(target=self._pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                if count:
                    for method, path in REQUEST_LINE.findall(data):
                        name = RESOURCE.sub(r"/\1/{id}", VERSION.sub("", path.decode()))
                        with self._lock:
                            self.calls[f"{method.decode()} {name}"] += 1
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        self.path.unlink(missing_ok=True)
