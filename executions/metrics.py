"""Prometheus metrics computed from the database at scrape time (web and workers agree)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, Q, Sum, Value, When
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from executions.models import DeadLetter, Execution
from executions.resilience import breaker_state

RUN_TIME_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BREAKER_STATES = ("closed", "half_open", "open")


class DatabaseCollector:
    def collect(self) -> Iterator[Metric]:
        executions = CounterMetricFamily(
            "tako_executions", "Executions that ended, by status and error type", labels=["status", "error_type"]
        )
        ended = Execution.objects.filter(status__in=Execution.TERMINAL)
        for row in ended.values("status", "error_type").annotate(n=Count("id")).order_by():
            executions.add_metric([row["status"], row["error_type"] or ""], row["n"])
        yield executions

        queue = GaugeMetricFamily("tako_queue_jobs", "Jobs waiting or running", labels=["state"])
        for status in (Execution.Status.QUEUED, Execution.Status.RUNNING):
            queue.add_metric([status], Execution.objects.filter(status=status).count())
        yield queue

        breaker = breaker_state()
        breaker_states = GaugeMetricFamily("tako_circuit_breaker_state", "1 for the breaker's state", labels=["state"])
        for name in BREAKER_STATES:
            breaker_states.add_metric([name], 1.0 if breaker["state"] == name else 0.0)
        yield breaker_states
        yield GaugeMetricFamily(
            "tako_circuit_breaker_failures", "Consecutive Docker failures", value=breaker["failure_count"]
        )
        yield GaugeMetricFamily("tako_dlq_entries", "Dead letter queue entries", value=DeadLetter.objects.count())

        timed = Execution.objects.filter(execution_ms__isnull=False)
        aggregates = timed.aggregate(
            total=Count("id"),
            **{f"le_{b}": Count("id", filter=Q(execution_ms__lte=b)) for b in RUN_TIME_BUCKETS_MS},
        )
        seconds_sum = (timed.aggregate(total=Sum("execution_ms"))["total"] or 0) / 1000
        histogram = HistogramMetricFamily("tako_execution_run_seconds", "Run time of the user's code")
        buckets = [(str(b / 1000), aggregates[f"le_{b}"]) for b in RUN_TIME_BUCKETS_MS]
        histogram.add_metric([], [*buckets, ("+Inf", aggregates["total"])], sum_value=seconds_sum)
        yield histogram

        yield queue_wait_histogram()


def queue_wait_histogram() -> HistogramMetricFamily:
    """Time from submission to start, by kind of caller (api_key, user, anonymous) and of job
    (sync, quick, long): what fair sharing promises, measured."""
    waited = ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField())
    caller_class = Case(
        When(caller__startswith="key:", then=Value("api_key")),
        When(caller__startswith="user:", then=Value("user")),
        default=Value("anonymous"),
    )
    job_class = Case(
        When(is_async=False, then=Value("sync")), When(quick=True, then=Value("quick")), default=Value("long")
    )
    started = Execution.objects.filter(started_at__isnull=False).annotate(
        waited=waited, caller_class=caller_class, job_class=job_class
    )
    rows = (
        started.values("caller_class", "job_class")
        .annotate(
            total=Count("id"),
            waited_sum=Sum("waited"),
            **{f"le_{i}": Count("id", filter=Q(waited__lte=timedelta(seconds=b))) for i, b in enumerate(WAIT_BUCKETS)},
        )
        .order_by("caller_class", "job_class")
    )
    histogram = HistogramMetricFamily(
        "tako_queue_wait_seconds", "Time from submission to start", labels=["caller_class", "job_class"]
    )
    for row in rows:
        buckets = [(str(b), row[f"le_{i}"]) for i, b in enumerate(WAIT_BUCKETS)]
        waited_sum = row["waited_sum"]
        seconds = waited_sum.total_seconds() if waited_sum is not None else 0.0
        histogram.add_metric(
            [row["caller_class"], row["job_class"]], [*buckets, ("+Inf", row["total"])], sum_value=seconds
        )
    return histogram
