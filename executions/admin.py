from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from executions.models import ApiKey, Environment, Execution


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("name", "memory_limit", "cpu_limit", "timeout", "network_enabled", "pool_size", "updated_at")
    list_editable = ("pool_size",)
    search_fields = ("name",)


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "job_type", "error_type", "created_at", "total_ms")
    list_filter = ("status", "job_type", "error_type")
    search_fields = ("id", "correlation_id")
    readonly_fields = [f.name for f in Execution._meta.fields]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued here; the secret is shown once, in the message after saving."""

    list_display = ("name", "prefix", "owner", "scope", "weight", "created_at", "last_used_at", "revoked_at")
    list_editable = ("weight",)  # its share of the workers when callers' jobs wait together
    list_filter = ("scope",)
    fields = ("name", "owner", "scope", "weight", "revoked_at")
    actions = ["revoke"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, secret = ApiKey.issue(name=obj.name, owner=obj.owner, scope=obj.scope)
        ApiKey.objects.filter(pk=key.pk).update(weight=obj.weight)
        obj.pk, obj.prefix, obj.key_hash = key.pk, key.prefix, key.key_hash
        messages.warning(request, f"The new key (shown once, copy it now): {secret}")

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: object) -> None:
        queryset.filter(revoked_at=None).update(revoked_at=timezone.now())  # type: ignore[attr-defined]
