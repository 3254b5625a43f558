"""API keys for scripts: `manage.py tako_apikey create NAME --user U [--scope admin] [--expires-in-days N]`,
`list`, `revoke ID`, `rotate ID [--grace-hours H]`, `rotate-webhook-secret ID`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from executions.models import ApiKey
from executions.services.audit import audit_record

COMMAND_LINE = "manage.py tako_apikey"


class Command(BaseCommand):
    help = "Create, list and revoke API keys. A new key is printed once and stored only as a hash."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="issue a key")
        create.add_argument("name")
        create.add_argument("--user", required=True, help="the owner (an existing user name)")
        create.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.EXECUTE)
        create.add_argument("--expires-in-days", type=int, help="refused (401) after this many days")
        sub.add_parser("list", help="list keys (never their secrets)")
        revoke = sub.add_parser("revoke", help="revoke a key by id")
        revoke.add_argument("id", type=int)
        rotate_key = sub.add_parser("rotate", help="a new secret for a key, printed once; the old one works a while")
        rotate_key.add_argument("id", type=int)
        rotate_key.add_argument(
            "--grace-hours",
            type=int,
            default=None,
            help="how long the old secret still works (TAKO_KEY_ROTATION_GRACE_HOURS)",
        )
        rotate = sub.add_parser("rotate-webhook-secret", help="a new webhook secret for a key, printed once")
        rotate.add_argument("id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            owner = get_user_model().objects.filter(username=options["user"]).first()
            if owner is None:
                raise CommandError(f"No user named {options['user']!r}")
            key, secret = ApiKey.issue(name=options["name"], owner=owner, scope=options["scope"])
            if options["expires_in_days"] is not None:
                if options["expires_in_days"] < 1:
                    raise CommandError("--expires-in-days must be at least 1")
                key.expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
                key.save(update_fields=["expires_at"])
            audit_record("apikey.create", actor=COMMAND_LINE, target=f"apikey:{key.pk} {key.name}")
            self.stdout.write(f"API key {key.pk} ({key.scope}) for {owner.get_username()}:\n{secret}")
            self.stdout.write(f"Webhook secret (verifies X-Tako-Signature):\n{key.webhook_secret}")
            self.stdout.write("Both shown once; send the key as X-API-Key.")
        elif options["action"] == "list":
            for key in ApiKey.objects.select_related("owner"):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                if key.expires_at and not key.revoked_at:
                    state += f", expires {key.expires_at:%Y-%m-%d}"
                self.stdout.write(
                    f"{key.pk}\t{key.prefix}…\t{key.scope}\t{key.owner.get_username()}\t{key.name}\t{state}"
                )
        elif options["action"] == "rotate":
            found = ApiKey.objects.filter(pk=options["id"], revoked_at=None).first()
            if found is None:
                raise CommandError(f"No active key {options['id']}")
            hours = (
                options["grace_hours"] if options["grace_hours"] is not None else settings.TAKO_KEY_ROTATION_GRACE_HOURS
            )
            secret = found.rotate(grace=timedelta(hours=max(hours, 0)))
            audit_record("apikey.rotate", actor=COMMAND_LINE, target=f"apikey:{found.pk} {found.name}")
            self.stdout.write(f"New secret of key {found.pk} (shown once):\n{secret}")
            self.stdout.write(f"The old one works until {found.previous_valid_until:%Y-%m-%d %H:%M} UTC.")
        elif options["action"] == "rotate-webhook-secret":
            found = ApiKey.objects.filter(pk=options["id"]).first()
            if found is None:
                raise CommandError(f"No key {options['id']}")
            self.stdout.write(f"New webhook secret of key {found.pk} (shown once):\n{found.rotate_webhook_secret()}")
            audit_record("apikey.rotate_webhook_secret", actor=COMMAND_LINE, target=f"apikey:{found.pk} {found.name}")
        else:
            updated = ApiKey.objects.filter(pk=options["id"], revoked_at=None).update(revoked_at=timezone.now())
            if not updated:
                raise CommandError(f"No active key {options['id']}")
            audit_record("apikey.revoke", actor=COMMAND_LINE, target=f"apikey:{options['id']}")
            self.stdout.write(f"Revoked key {options['id']}")
