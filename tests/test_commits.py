"""Waiting for commits to the SQLite database (executions/commits.py)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from executions import commits
from executions.commits import CommitWatch


def _database(folder: Path) -> Path:
    path = folder / "tako.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (n INTEGER)")
    return path


def _later(seconds: float, action) -> threading.Thread:  # type: ignore[no-untyped-def]
    thread = threading.Thread(target=lambda: (threading.Event().wait(seconds), action()))
    thread.start()
    return thread


def _commit(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO t VALUES (1)")
    db.close()


def test_a_commit_wakes_the_waiter_and_other_files_in_the_folder_do_not(tmp_path: Path) -> None:
    path = _database(tmp_path)
    watch = CommitWatch(str(path))
    keep_open = sqlite3.connect(path)  # (the WAL stays while a connection is open, as in the service)
    keep_open.execute("SELECT 1").fetchall()
    try:
        assert watch.notified
        writer = _later(0.2, lambda: (tmp_path / "service.log").write_text("a line\n"))
        assert watch.wait(1.0) is False  # another file of the folder: no reason to look
        writer.join()
        writer = _later(0.2, lambda: _commit(path))
        assert watch.wait(30) is True
        writer.join()
    finally:
        keep_open.close()
        watch.close()


def test_wake_wakes_the_waiter_at_once(tmp_path: Path) -> None:
    watch = CommitWatch(str(_database(tmp_path)))
    try:
        waker = _later(0.2, watch.wake)
        assert watch.wait(30) is True
        waker.join()
        assert watch.wait(0.05) is False  # drained: one wake, one return
    finally:
        watch.close()


def test_without_inotify_waiting_is_a_sleep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commits, "_inotify", lambda: None)
    path = _database(tmp_path)
    watch = CommitWatch(str(path))
    try:
        assert not watch.notified
        writer = _later(0.05, lambda: _commit(path))
        assert watch.wait(0.3) is False  # the commit is found by the caller's next look, not here
        writer.join()
    finally:
        watch.close()
