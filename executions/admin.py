from django.contrib import admin

from executions.models import Environment, Execution


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("name", "memory_limit", "cpu_limit", "timeout", "network_enabled", "updated_at")
    search_fields = ("name",)


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "job_type", "error_type", "created_at", "total_ms")
    list_filter = ("status", "job_type", "error_type")
    search_fields = ("id", "correlation_id")
    readonly_fields = [f.name for f in Execution._meta.fields]
