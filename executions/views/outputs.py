"""What the execution page shows of a run's rich output: display() outputs in order, the figures,
previews of artifacts (CSV as a table, JSON, images), the input files; and every artifact as a zip.

Program-produced text never becomes the dashboard's markup: the templates escape everything here,
and a display()'s HTML is shown only inside an `<iframe sandbox srcdoc=…>` without allow-scripts
(its own origin, no scripts, no forms, no navigation of the page).
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from executions.models import Artifact, Execution

PREVIEW_ROWS = 50
PREVIEW_READ_BYTES = 1024 * 1024  # of a CSV: enough for 50 rows of any sane table
JSON_PREVIEW_BYTES = 256 * 1024
INLINE_IMAGES = {"image/png", "image/jpeg", "image/gif", "image/webp"}  # never SVG: it can hold scripts
FIGURE_NAME = re.compile(r"^figure-[0-9]+\.png$")
# A frame's height, by the rows of its table: a class of the stylesheet (the page's CSP allows no
# inline style, and the frame's document inherits that policy: pandas' own border attribute shows it).
FRAME_SIZES = ((10, "small"), (25, "medium"))  # up to N rows → size; more: "large"


@dataclass
class Preview:
    kind: str  # "csv" | "json" | "image" | "" (none)
    rows: list[list[str]] = field(default_factory=list)  # csv: the header first
    text: str = ""  # json, or why there is no preview
    truncated: bool = False


@dataclass
class Shown:
    """One display() output as the page shows it."""

    mime: str
    text: str = ""  # text/plain, application/json (pretty)
    srcdoc: str = ""  # text/html: the frame's whole document (escaped by the template)
    size: str = ""  # text/html: small | medium | large (the frame's height)
    artifact: str = ""  # image/png


def execution_outputs(execution: Execution) -> dict[str, Any]:
    """Everything the result section shows beyond the streams: displays, figures, artifacts with
    their previews, and whether there is anything to zip."""
    artifacts = list(execution.artifacts.all())
    displays = [_shown(entry) for entry in execution.displays or [] if isinstance(entry, dict)]
    displayed = {shown.artifact for shown in displays if shown.artifact}
    figures = [a for a in artifacts if FIGURE_NAME.match(a.name) and a.name not in displayed]
    previews = [(artifact, _preview(artifact)) for artifact in artifacts]
    return {"displays": displays, "figures": figures, "artifacts": previews}


def _shown(entry: dict[str, Any]) -> Shown:
    mime, data = str(entry.get("mime", "")), entry.get("data")
    if mime == "text/html" and isinstance(data, str):
        rows = data.count("<tr")
        size = next((name for most, name in FRAME_SIZES if rows <= most), "large")
        return Shown(mime, srcdoc=data, size=size)
    if mime == "image/png" and isinstance(entry.get("artifact"), str):
        return Shown(mime, artifact=entry["artifact"])
    if mime == "application/json":
        return Shown(mime, text=json.dumps(data, indent=2, ensure_ascii=False))
    return Shown("text/plain", text=str(data))


def _path_of(artifact: Artifact) -> Path | None:
    """The artifact's file, if it is where artifacts are kept (never a path from elsewhere)."""
    path = Path(artifact.path)
    root = Path(settings.DATA_DIR).resolve() / "artifacts" / str(artifact.execution_id)
    return path if path.resolve().parent == root and path.is_file() else None


def _preview(artifact: Artifact) -> Preview:
    kind = artifact.content_type
    if kind in INLINE_IMAGES:
        return Preview("image")
    path = _path_of(artifact)
    if path is None:
        return Preview("")
    if kind == "text/csv" or artifact.name.lower().endswith(".csv"):
        return _csv_preview(path)
    if kind == "application/json":
        if artifact.size_bytes > JSON_PREVIEW_BYTES:
            return Preview("", text=f"Too large to preview (over {JSON_PREVIEW_BYTES // 1024} KB)")
        try:
            parsed = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            return Preview("", text=f"Not valid JSON: {exc}")
        return Preview("json", text=json.dumps(parsed, indent=2, ensure_ascii=False))
    return Preview("")


def _csv_preview(path: Path) -> Preview:
    with path.open("rb") as source:
        head = source.read(PREVIEW_READ_BYTES)
    text = head.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    if len(head) == PREVIEW_READ_BYTES and lines:
        lines = lines[:-1]  # the last line may be cut
    rows = []
    try:
        for row in csv.reader(lines):
            rows.append(row)
            if len(rows) > PREVIEW_ROWS:
                break
    except csv.Error as exc:
        return Preview("", text=f"Not readable as CSV: {exc}")
    truncated = len(rows) > PREVIEW_ROWS or len(head) == PREVIEW_READ_BYTES
    return Preview("csv", rows=rows[: PREVIEW_ROWS + 1], truncated=truncated)


def artifacts_zip(execution: Execution) -> IO[bytes]:
    """Every artifact of `execution` in one zip (at most 50 MB of artifacts: spooled to disk)."""
    archive = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115  (returned open)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for artifact in execution.artifacts.all():
            path = _path_of(artifact)
            if path is not None:
                zipped.write(path, arcname=artifact.name)
    archive.seek(0)
    return archive
