"""Build the images of job types: `manage.py tako_images build [--missing] [--force] [NAME ...]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions.errors import BuildInProgress
from executions.models import Environment
from executions.sandbox import SandboxError, SandboxUnavailable
from executions.sandbox.images import ImageBuildError
from executions.services import environment_build


class Command(BaseCommand):
    help = "Build job-type images (tako-vm-NAME:latest); an up-to-date image is never rebuilt."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        build = sub.add_parser("build", help="build images of the named job types (default: all)")
        build.add_argument("names", nargs="*")
        build.add_argument("--force", action="store_true", help="rebuild even if up to date")

    def handle(self, *args: Any, **options: Any) -> None:
        names = options["names"]
        environments = Environment.objects.all()
        if names:
            environments = environments.filter(name__in=names)
            missing = set(names) - {e.name for e in environments}
            if missing:
                raise CommandError(f"Unknown job type(s): {', '.join(sorted(missing))}")
        for environment in environments:
            self.stdout.write(f"{environment.name}: checking {environment.image}")
            try:
                result = environment_build(environment=environment, force=options["force"])
            except (ImageBuildError, SandboxUnavailable, SandboxError, BuildInProgress) as exc:
                raise CommandError(f"{environment.name}: {exc}") from exc
            verb = "built" if result.built else "up to date"
            size_mb = result.size_bytes / 1e6
            self.stdout.write(f"{result.image}: {verb} in {result.seconds:.1f}s, {size_mb:.0f} MB (base {result.base})")
