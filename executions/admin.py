from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from executions.models import ApiKey, AuditEvent, Environment, Execution
from executions.services.audit import audit_record


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("name", "memory_limit", "cpu_limit", "timeout", "network_enabled", "pool_size", "updated_at")
    list_editable = ("pool_size",)
    search_fields = ("name",)
    readonly_fields = ("preload_state",)

    @admin.display(description="Preload check")
    def preload_state(self, environment: Environment) -> str:
        status = environment.preload_status
        if status["state"] == "failed":
            problems = status["failure"] or "; ".join(f"{m}: {e}" for m, e in status["errors"].items())
            return f"failed (pools run without the preload): {problems}"
        if status["state"] == "ok" and status["resident_bytes"]:
            return f"ok: {status['resident_bytes'] // 1024**2} MB per waiting container"
        return {"none": "no preload", "unchecked": "not checked on the current image yet"}.get(status["state"], "ok")


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "job_type", "error_type", "created_at", "total_ms")
    list_filter = ("status", "job_type", "error_type")
    search_fields = ("id", "correlation_id")
    readonly_fields = [f.name for f in Execution._meta.fields]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued here; the key and its webhook secret are shown once, in the message after
    saving. Rotating a webhook secret shows the new one once, the same way."""

    list_display = (
        "name", "prefix", "owner", "scope", "weight", "rate_limit_per_minute", "created_at", "last_used_at",
        "expires_at", "rotated_at", "revoked_at",
    )  # fmt: skip
    list_editable = ("weight",)  # its share of the workers when callers' jobs wait together
    list_filter = ("scope",)
    fields = ("name", "owner", "scope", "weight", "rate_limit_per_minute", "expires_at", "revoked_at")
    actions = ["revoke", "rotate", "rotate_webhook_secret"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, secret = ApiKey.issue(name=obj.name, owner=obj.owner, scope=obj.scope)
        ApiKey.objects.filter(pk=key.pk).update(
            weight=obj.weight, rate_limit_per_minute=obj.rate_limit_per_minute, expires_at=obj.expires_at
        )
        obj.pk, obj.prefix, obj.key_hash = key.pk, key.prefix, key.key_hash
        messages.warning(request, f"The new key (shown once, copy it now): {secret}")
        messages.warning(
            request, f"Its webhook secret (signs its jobs' webhooks; shown once, copy it now): {key.webhook_secret}"
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for key in queryset.filter(revoked_at=None):
            ApiKey.objects.filter(pk=key.pk, revoked_at=None).update(revoked_at=timezone.now())
            audit_record("apikey.revoke", actor=request.user.get_username(), target=f"apikey:{key.pk} {key.name}")

    @admin.action(description="Rotate the selected keys (a new secret; the old one works for the grace period)")
    def rotate(self, request: HttpRequest, queryset: Any) -> None:
        grace = timedelta(hours=settings.TAKO_KEY_ROTATION_GRACE_HOURS)
        for key in queryset.filter(revoked_at=None):
            secret = key.rotate(grace=grace)
            messages.warning(
                request,
                f"New secret of {key} (shown once, copy it now; the old one works until "
                f"{key.previous_valid_until:%Y-%m-%d %H:%M} UTC): {secret}",
            )
            audit_record("apikey.rotate", actor=request.user.get_username(), target=f"apikey:{key.pk} {key.name}")

    @admin.action(description="Rotate the webhook secret of the selected keys")
    def rotate_webhook_secret(self, request: HttpRequest, queryset: object) -> None:
        for key in queryset:  # type: ignore[attr-defined]
            secret = key.rotate_webhook_secret()
            messages.warning(request, f"New webhook secret of {key} (shown once, copy it now): {secret}")
            audit_record(
                "apikey.rotate_webhook_secret", actor=request.user.get_username(), target=f"apikey:{key.pk} {key.name}"
            )


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is written by the service, never edited."""

    list_display = ("at", "actor", "action", "target", "client_ip", "correlation_id")
    list_filter = ("action",)
    search_fields = ("actor", "target", "correlation_id")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
