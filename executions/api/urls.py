from django.urls import path

from executions.api import jobs, operations, views

urlpatterns = [
    path("execute", views.execute, name="api-execute"),
    path("execute/async", jobs.execute_async, name="api-execute-async"),
    path("jobs/<uuid:job_id>", jobs.job_status, name="api-job-status"),
    path("jobs/<uuid:job_id>/result", jobs.job_result, name="api-job-result"),
    path("jobs/<uuid:job_id>/cancel", jobs.job_cancel, name="api-job-cancel"),
    path("jobs/<uuid:job_id>/rerun", jobs.job_rerun, name="api-job-rerun"),
    path("jobs/<uuid:job_id>/fork", jobs.job_fork, name="api-job-fork"),
    path("jobs/<uuid:job_id>/artifacts/<str:name>", jobs.job_artifact, name="api-job-artifact"),
    path("pool/stats", jobs.pool_stats, name="api-pool-stats"),
    path("executions", views.execution_list, name="api-execution-list"),
    path("executions/<uuid:execution_id>", views.execution_detail, name="api-execution-detail"),
    path("job-types", views.job_type_list, name="api-job-type-list"),
    path("job-types/<str:name>", views.job_type_detail, name="api-job-type-detail"),
    path("job-types/<str:name>/build", views.job_type_build, name="api-job-type-build"),
    path("health", operations.health, name="api-health"),
    path("health/ready", operations.ready, name="api-health-ready"),
    path("dlq", operations.dlq_list, name="api-dlq-list"),
    path("dlq/stats", operations.dlq_stats, name="api-dlq-stats"),
    path("dlq/<int:entry_id>", operations.dlq_entry, name="api-dlq-entry"),
    path("dlq/<int:entry_id>/requeue", operations.dlq_requeue, name="api-dlq-requeue"),
    path("metrics", operations.metrics, name="api-metrics"),
    path("openapi.json", views.openapi_json, name="api-openapi"),
]
