"""Every list the API and the pages show is served by an index, never a sort of the whole table,
so they stay fast however many executions are stored (checked with the database's query plan)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import QuerySet

from executions.models import DeadLetter, Execution


def plan(queryset: QuerySet) -> str:
    """The query plan, in SQLite's words (USING INDEX, TEMP B-TREE for a sort) whichever the engine."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return " | ".join(str(row[-1]) for row in cursor.fetchall())
        # PostgreSQL: as on a big table (an empty one is cheapest to scan), can an index serve it?
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        lines = [str(row[0]) for row in cursor.fetchall()]
    text = " | ".join(lines)
    sort = any(line.strip().lstrip("->").strip().startswith(("Sort", "Incremental Sort")) for line in lines)
    return text.replace("Index Scan", "USING INDEX").replace("Index Only Scan", "USING INDEX") + (
        " | TEMP B-TREE (a Sort node)" if sort else ""
    )


@pytest.mark.parametrize(
    "queryset",
    [
        lambda: Execution.objects.all()[100:201],
        lambda: Execution.objects.filter(status="failed")[:101],
        lambda: Execution.objects.filter(job_type="default")[:101],
        lambda: Execution.objects.filter(submitted_by_id=1)[:101],
        lambda: DeadLetter.objects.all()[:51],
        lambda: DeadLetter.objects.filter(error_type="internal_error")[:51],
    ],
    ids=["all", "by-status", "by-job-type", "by-owner", "dlq", "dlq-by-type"],
)
def test_lists_use_an_index_and_never_sort_the_table(db, queryset) -> None:
    query_plan = plan(queryset())
    assert "USING INDEX" in query_plan, query_plan
    assert "TEMP B-TREE" not in query_plan, query_plan
