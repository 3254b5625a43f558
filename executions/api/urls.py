from django.urls import path

from executions.api import views

urlpatterns = [
    path("execute", views.execute, name="api-execute"),
    path("executions", views.execution_list, name="api-execution-list"),
    path("executions/<uuid:execution_id>", views.execution_detail, name="api-execution-detail"),
    path("job-types", views.job_type_list, name="api-job-type-list"),
    path("job-types/<str:name>", views.job_type_detail, name="api-job-type-detail"),
    path("job-types/<str:name>/build", views.job_type_build, name="api-job-type-build"),
    path("openapi.json", views.openapi_json, name="api-openapi"),
]
