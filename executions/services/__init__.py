"""What the service does, independent of HTTP (keyword-only functions named <entity>_<action>).

job_requests.py: validating what a caller asks; submissions.py: admission, the one way a job is
created; limits.py: per-caller limits; lifecycle.py: claim, requeue and end, the only writer of a
job's status; runs.py: running one execution; jobs.py: dispatch, cancel and crash recovery;
environments.py: building job-type images; webhooks.py: a job's webhook, queued, sent, retried;
input_files.py: the files a request sends.
Refusals are executions.errors.ApplicationError.
"""

# api/operations.py catches these two as services.*; everything else imports executions.errors.
from executions.errors import AlreadyRequeued, QueueFull
from executions.services.audit import audit_events, audit_record
from executions.services.cleanup import containers_reap, containers_reap_quietly, executions_prune
from executions.services.dlq import dead_letter_add, dlq_delete, dlq_stats
from executions.services.environments import (
    environment_build,
    environment_build_queued,
    environment_build_request,
    environment_builds_reset,
)
from executions.services.input_files import input_blobs_sweep, input_file_find, input_files_of
from executions.services.job_requests import (
    BatchRequest,
    DeriveRequest,
    ExecuteRequest,
    batch_request_parse,
    canonical_json,
    derive_request_parse,
    execute_request_parse,
    sha256_hex,
)
from executions.services.jobs import (
    batch_cancel,
    execution_cancel,
    execution_dispatch,
    executions_dispatch_waiting,
    executions_recover,
    executions_redispatch,
    jobs_waiting_for_engine,
    queue_stats,
)
from executions.services.lifecycle import caller_use, host_use, queue_position
from executions.services.pool import PoolKeeper, pool_stats
from executions.services.runs import StartupTimeout, execution_hold_for_engine, execution_run, worker_name
from executions.services.submissions import (
    Admitted,
    Submitter,
    batch_submit,
    dlq_requeue,
    dlq_requeue_matching,
    execution_create,
    execution_derive,
    execution_submit,
    execution_submit_sync,
)
from executions.services.webhooks import webhook_deliver, webhooks_due, webhooks_recover

__all__ = [
    "Admitted",
    "AlreadyRequeued",
    "BatchRequest",
    "DeriveRequest",
    "ExecuteRequest",
    "PoolKeeper",
    "QueueFull",
    "StartupTimeout",
    "Submitter",
    "audit_events",
    "audit_record",
    "batch_cancel",
    "batch_request_parse",
    "batch_submit",
    "caller_use",
    "canonical_json",
    "containers_reap",
    "containers_reap_quietly",
    "dead_letter_add",
    "derive_request_parse",
    "dlq_delete",
    "dlq_requeue",
    "dlq_requeue_matching",
    "dlq_stats",
    "environment_build",
    "environment_build_queued",
    "environment_build_request",
    "environment_builds_reset",
    "execute_request_parse",
    "execution_cancel",
    "execution_create",
    "execution_derive",
    "execution_dispatch",
    "execution_hold_for_engine",
    "execution_run",
    "execution_submit",
    "execution_submit_sync",
    "executions_dispatch_waiting",
    "executions_prune",
    "executions_recover",
    "executions_redispatch",
    "host_use",
    "input_blobs_sweep",
    "input_file_find",
    "input_files_of",
    "jobs_waiting_for_engine",
    "pool_stats",
    "queue_position",
    "queue_stats",
    "sha256_hex",
    "webhook_deliver",
    "webhooks_due",
    "webhooks_recover",
    "worker_name",
]
