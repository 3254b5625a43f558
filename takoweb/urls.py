from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from executions import views

urlpatterns = [
    path("", RedirectView.as_view(url="/docs", permanent=False)),
    path("docs", views.api_docs, name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("executions.api.urls")),
]

handler400 = "executions.views.bad_request"
handler403 = "executions.views.permission_denied"
handler404 = "executions.views.not_found"
handler500 = "executions.views.server_error"
