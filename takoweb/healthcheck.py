"""The image's HEALTHCHECK: `python -m takoweb.healthcheck` exits 0 only when GET /health/ready on
this machine's web server answers 200.

Standard library only (the slim image has no curl) and no Django (it runs every few seconds). It
reads the variables the server reads: HOST and PORT for where to knock (loopback when the server
listens on every interface), TAKO_ALLOWED_HOSTS for a Host header the server accepts. It says it
came over HTTPS, which only a server behind a TLS proxy (TAKO_HTTPS, which trusts that header)
reads, so that one does not answer with a redirect to https.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 5.0
EVERY_INTERFACE = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104  (what they are, not a bind)


def ready_url() -> str:
    host = os.environ.get("HOST", "127.0.0.1").strip()
    host = EVERY_INTERFACE.get(host, host)
    port = os.environ.get("PORT", "8000").strip()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/health/ready"


def host_header(url_host: str) -> str:
    """The first name in TAKO_ALLOWED_HOSTS, or the address knocked on when any name will do."""
    allowed = [h.strip() for h in os.environ.get("TAKO_ALLOWED_HOSTS", "").split(",") if h.strip()]
    if not allowed or allowed[0] == "*":
        return url_host
    return allowed[0].lstrip(".")  # ".example.com" allows example.com


def main() -> int:
    url = ready_url()
    request = urllib.request.Request(  # noqa: S310  (an http:// URL built above)
        url, headers={"Host": host_header(url.split("/")[2]), "X-Forwarded-Proto": "https"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: name the checks that failed
        try:
            checks = json.loads(exc.read())["checks"]
            failed = ", ".join(f"{name}: {c['detail']}" for name, c in checks.items() if not c["ok"])
        except (ValueError, KeyError, TypeError):
            failed = ""
        print(f"not ready ({exc.code}) {failed}".rstrip(), file=sys.stderr)
    except OSError as exc:
        print(f"no answer from {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
