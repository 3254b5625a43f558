"""Make sure an admin account exists: `manage.py tako_admin` (run by `make run`).

The first time, creates `admin` with TAKO_ADMIN_PASSWORD or a generated password, and prints
the credentials once; afterwards it only says that an admin exists.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin account if there is none, printing its credentials once."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self.stdout.write("An admin account exists (change passwords in /admin/).")
            return
        password = os.environ.get("TAKO_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser("admin", "admin@localhost", password)
        self.stdout.write(self.style.SUCCESS(f"Created the admin account: user admin, password {password}"))
        self.stdout.write("(shown once; set TAKO_ADMIN_PASSWORD to choose it)")
