"""The browser pages, under /ui/."""

from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from executions.views import accounts, operations, pages

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="ui-executions", permanent=False), name="ui-home"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("new/", pages.execution_new, name="ui-new"),
    path("executions/", pages.execution_list, name="ui-executions"),
    path("executions/<uuid:execution_id>/", pages.execution_detail, name="ui-execution"),
    path("executions/<uuid:fork_of>/fork/", pages.execution_new, name="ui-fork"),
    path("executions/<uuid:execution_id>/cancel/", pages.execution_cancel, name="ui-cancel"),
    path("executions/<uuid:execution_id>/rerun/", pages.execution_rerun, name="ui-rerun"),
    path("batches/<uuid:batch_id>/", pages.batch_detail, name="ui-batch"),
    path("batches/<uuid:batch_id>/cancel/", pages.batch_cancel, name="ui-batch-cancel"),
    path("executions/<uuid:execution_id>/artifacts.zip", pages.execution_artifacts_zip, name="ui-artifacts-zip"),
    path("ops/", operations.operations, name="ui-ops"),
    path("ops/dlq/<int:entry_id>/", operations.dlq_entry, name="ui-dlq-entry"),
    path("ops/dlq/<str:action>/", operations.dlq_action, name="ui-dlq-action"),
    path("ops/environments/<str:name>/build/", operations.environment_build, name="ui-build"),
    path("audit/", operations.audit, name="ui-audit"),
]
