from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from executions.api.app import api
from executions.views.docs import api_docs

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="ui-executions", permanent=False)),
    path("ui/", include("executions.urls")),
    path("docs", api_docs, name="api-docs"),
    path("admin/", admin.site.urls),
    path("", api.urls),  # the JSON API at Tako VM's paths (/execute, /jobs/{id}, /health, …)
]

handler400 = "executions.views.errors.bad_request"
handler403 = "executions.views.errors.permission_denied"
handler404 = "executions.views.errors.not_found"
handler500 = "executions.views.errors.server_error"
