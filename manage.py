#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "takoweb.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from takoweb.env import exit_on_bad_settings

    # A bad setting: one line naming it, exit status 2. The settings are loaded here first, because
    # Django's own command line swallows the error for some commands and goes on without them.
    with exit_on_bad_settings():
        settings.INSTALLED_APPS  # noqa: B018
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
