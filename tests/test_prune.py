"""Executions past their retention are deleted, with their artifacts; nothing in progress is."""

from __future__ import annotations

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from executions import services
from executions.models import Artifact, DeadLetter, Environment, Execution


def _execution(days_old: int, status: str = "succeeded") -> Execution:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="1", input_data={}, environment=environment)
    Execution.objects.filter(pk=execution.pk).update(
        status=status, created_at=timezone.now() - timedelta(days=days_old)
    )
    return Execution.objects.get(pk=execution.pk)


def test_old_executions_go_with_their_artifacts_and_dlq_entries(db, settings, tmp_path, capsys) -> None:
    settings.DATA_DIR = tmp_path
    old, recent, old_running = _execution(40), _execution(5), _execution(40, status="running")
    folder = tmp_path / "artifacts" / str(old.pk)
    folder.mkdir(parents=True)
    (folder / "a.txt").write_text("x")
    Artifact.objects.create(execution=old, name="a.txt", size_bytes=1, sha256="0", content_type="text/plain",
                            path=str(folder / "a.txt"))  # fmt: skip
    Execution.objects.filter(pk=old.pk).update(status="failed", error_type="internal_error")
    old.refresh_from_db()
    services.dead_letter_add(old)

    call_command("tako_prune", "--days", "30")
    assert "Deleted 1 execution(s) older than 30 day(s)." in capsys.readouterr().out
    assert set(Execution.objects.values_list("pk", flat=True)) == {recent.pk, old_running.pk}
    assert not folder.exists() and Artifact.objects.count() == 0 and DeadLetter.objects.count() == 0


def test_zero_days_keeps_everything(db) -> None:
    _execution(400)
    assert services.executions_prune(older_than_days=0) == 0
    assert Execution.objects.count() == 1


def test_it_works_in_batches(db) -> None:
    for _ in range(5):
        _execution(60)
    assert services.executions_prune(older_than_days=30, batch_size=2) == 5
    assert Execution.objects.count() == 0
