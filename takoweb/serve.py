"""The web server: `python -m takoweb.serve [daphne options]`.

Runs daphne on HOST:PORT as the settings read them (TAKO_BIND_ADDRESS, TAKO_PORT), after
Django's system checks, so the address the anonymous-use check judges (tako.E001) is the address
served. scripts/run.sh, the image and deploy/compose.yaml start the web this way. daphne's other
options pass through (e.g. --proxy-headers); its binding options are refused. The process is the
"web" role (TAKO_PROCESS_ROLE): no persistent database connections under ASGI.
"""

from __future__ import annotations

import os
import sys

APPLICATION = "takoweb.asgi:application"


def main(argv: list[str]) -> None:
    os.environ["TAKO_PROCESS_ROLE"] = "web"  # before the settings load
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "takoweb.settings")
    from daphne.cli import CommandLineInterface

    cli = CommandLineInterface()
    options = cli.parser.parse_args([*argv, APPLICATION])  # exits 2 on an unknown option, as daphne
    binding = (options.host, options.port, options.unix_socket, options.file_descriptor, options.socket_strings)
    if any(value not in (None, []) for value in binding):
        sys.exit("tako: the web server listens on HOST and PORT from the environment; pass no -b/-p/-u/--fd/-e")

    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from takoweb.env import exit_on_bad_settings

    with exit_on_bad_settings():
        django.setup()
    try:
        call_command("check")
    except SystemCheckError as exc:
        sys.exit(f"tako: the web server does not start: {exc}")
    cli.run(["-b", settings.TAKO_BIND_ADDRESS, "-p", str(settings.TAKO_PORT), *argv, APPLICATION])


if __name__ == "__main__":
    main(sys.argv[1:])
