"""Signal receivers that feed the audit log (services/audit.py) from outside the services:
changes made in /admin/, failed logins, lockouts."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.admin.models import LogEntry
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest

from executions.services.audit import audit_admin_change, audit_record


@receiver(post_save, sender=LogEntry, dispatch_uid="tako-audit-admin")
def admin_changed(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if created:
        audit_admin_change(instance)


def _address(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


@receiver(user_login_failed, dispatch_uid="tako-audit-login-failed")
def login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    name = str(credentials.get("username") or "")
    audit_record("login.failed", actor=name or "unknown", target=f"user:{name}", client_ip=_address(request))


@receiver(user_locked_out, dispatch_uid="tako-audit-locked-out")
def locked_out(sender: Any, request: HttpRequest | None = None, username: str = "", **kwargs: Any) -> None:
    audit_record(
        "login.locked_out", actor=username or "unknown", target=f"user:{username}", client_ip=_address(request)
    )
