"""Input files (`files`): stored once by content under DATA_DIR/inputs/<sha256[:2]>/<sha256>, listed
per execution (models.InputFile), written read-only under /input for its run.

A rerun or fork lists its parent's files again and shares their content; content no execution
lists any more is removed by `input_blobs_sweep` (after pruning, or a refused admission that had
already written it).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.conf import settings

from executions.errors import NotFound
from executions.models import Execution, InputFile
from executions.services.job_requests import InputFile as RequestedFile

SWEEP_GRACE_SECONDS = 3600  # content younger than this may belong to an admission under way


def _root() -> Path:
    return Path(settings.DATA_DIR) / "inputs"


def input_blob_path(sha256: str) -> Path:
    return _root() / sha256[:2] / sha256


def input_files_store(execution: Execution, files: Iterable[RequestedFile]) -> list[InputFile]:
    """Write the content of new files (once per sha256, atomically) and list them all on `execution`."""
    stored = input_files_store_for([execution], files)
    # Known here: a run of this same instance (a sync request's) need not read them back.
    execution.admitted_input_files = stored  # type: ignore[attr-defined]
    return stored


def input_files_store_for(executions: Sequence[Execution], files: Iterable[RequestedFile]) -> list[InputFile]:
    """As input_files_store, for several executions sharing the same files (a batch's jobs): the
    content is written once, and each execution lists every file."""
    files = list(files)
    for file in files:
        if file.data is not None:
            _write_blob(file.sha256, file.data)
        elif not input_blob_path(file.sha256).is_file():  # a parent's file whose content is gone
            raise NotFound(f"The content of input file {file.path!r} is no longer stored")
    rows = [
        InputFile(execution=execution, path=f.path, size_bytes=f.size_bytes, sha256=f.sha256)
        for execution in executions
        for f in files
    ]
    return InputFile.objects.bulk_create(rows) if rows else []


def input_files_of(execution: Execution) -> list[RequestedFile]:
    """What an execution was sent, as a request lists it (content left stored): for reruns and forks."""
    return [RequestedFile(f.path, f.size_bytes, f.sha256) for f in execution.input_files.all()]


def input_files_for_run(execution: Execution) -> tuple[tuple[str, Path], ...]:
    """(path under /input, where its content is stored) for each of an execution's files."""
    rows = getattr(execution, "admitted_input_files", None)
    if rows is None:
        rows = execution.input_files.all()
    return tuple((f.path, input_blob_path(f.sha256)) for f in rows)


def input_file_find(execution: Execution, path: str) -> tuple[InputFile, Path]:
    """One of an execution's files by exact path, and its stored content; NotFound if there is none."""
    row = execution.input_files.filter(path=path).first()
    blob = input_blob_path(row.sha256) if row is not None else None
    if row is None or blob is None or not blob.is_file():
        raise NotFound("Input file not found")
    return row, blob


def input_blobs_sweep(*, grace_seconds: float = SWEEP_GRACE_SECONDS) -> int:
    """Remove stored content no execution lists (and older than the grace); returns how many."""
    root = _root()
    if not root.is_dir():
        return 0
    listed = set(InputFile.objects.values_list("sha256", flat=True).distinct())
    removed = 0
    cutoff = time.time() - grace_seconds
    for blob in root.glob("*/*"):
        if blob.name in listed or blob.name.startswith("."):
            continue
        try:
            if blob.stat().st_mtime < cutoff:
                blob.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def _write_blob(sha256: str, data: bytes) -> None:
    final = input_blob_path(sha256)
    if final.is_file():
        os.utime(final)  # a fresh use: the sweep's grace starts again
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=".", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(staging, 0o644)
        os.replace(staging, final)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
