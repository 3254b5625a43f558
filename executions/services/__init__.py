"""What the service does, independent of HTTP (keyword-only functions named <entity>_<action>).

runs.py: create and run one execution; jobs.py: the async lifecycle and crash recovery;
environments.py: building job-type images.
"""

from executions.services.cleanup import containers_reap, containers_reap_quietly, executions_prune
from executions.services.dlq import AlreadyRequeued, dead_letter_add, dlq_requeue, dlq_stats
from executions.services.environments import BuildInProgress, environment_build, environment_builds_reset
from executions.services.jobs import (
    AlreadyEnded,
    IdempotencyConflict,
    QueueFull,
    ensure_queue_has_room,
    execution_cancel,
    execution_derive,
    execution_dispatch,
    execution_submit,
    executions_recover,
    executions_redispatch,
    queue_position,
    queue_stats,
)
from executions.services.pool import PoolKeeper, pool_stats
from executions.services.runs import (
    StartupTimeout,
    canonical_json,
    execution_create,
    execution_run,
    sha256_hex,
    worker_name,
)

__all__ = [
    "AlreadyEnded",
    "AlreadyRequeued",
    "BuildInProgress",
    "IdempotencyConflict",
    "PoolKeeper",
    "QueueFull",
    "StartupTimeout",
    "canonical_json",
    "containers_reap",
    "containers_reap_quietly",
    "dead_letter_add",
    "dlq_requeue",
    "dlq_stats",
    "ensure_queue_has_room",
    "environment_build",
    "environment_builds_reset",
    "execution_cancel",
    "execution_create",
    "execution_derive",
    "execution_dispatch",
    "execution_run",
    "execution_submit",
    "executions_prune",
    "executions_recover",
    "executions_redispatch",
    "pool_stats",
    "queue_position",
    "queue_stats",
    "sha256_hex",
    "worker_name",
]
