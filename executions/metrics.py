"""Prometheus metrics computed from the database at scrape time (web and workers agree)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from executions.models import DeadLetter, Execution
from executions.resilience import breaker_state

RUN_TIME_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, 300000)
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
