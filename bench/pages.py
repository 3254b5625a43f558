"""Server time of the dashboard's pages and the list API with 10,000 executions stored (or -n).

Makes a temporary database, stores the executions (each with 20 lines of output) by 5 users, then
times each page through Django's handler (no network), 20 requests each.
Usage: python bench/pages.py [-n 10000]   (-n 1000000: a million, about 5 minutes to store)
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="executions to store")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="tako-bench-pages-")
    os.environ.update(TAKO_DATA_DIR=data_dir, TAKO_LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="takoweb.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from executions.models import Execution

    call_command("migrate", verbosity=0)
    users = [
        User.objects.create_user(f"user{i}", password=secrets.token_urlsafe(), is_staff=(i == 0)) for i in range(5)
    ]
    statuses = ["succeeded", "failed", "timeout", "oom", "cancelled"]
    now = timezone.now()
    for start in range(0, args.n, 10_000):  # in chunks: a million objects at once would not fit in memory
        Execution.objects.bulk_create(
            [
                Execution(
                    job_type="default",
                    code="print(1)\n" * 20,
                    input_data={"n": n},
                    timeout=30,
                    status=statuses[n % 5],
                    error_type=None if n % 5 == 0 else "runtime_error",
                    stdout=f"line {n}\n" * 20,
                    code_hash="0" * 64,
                    input_hash="0" * 64,
                    submitted_by=users[n % 5],
                    created_at=now,
                    execution_ms=n % 1000,
                )
                for n in range(start, min(start + 10_000, args.n))
            ],
            batch_size=1000,
        )
    some = Execution.objects.first()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(users[0])
    pages = {
        "/ui/executions/": "executions list",
        "/ui/executions/?status=failed&page=20": "list, filtered, page 20",
        "/ui/executions/?user=user3": "list by user",
        f"/ui/executions/{some.pk}/": "execution page",
        "/ui/ops/": "operations page",
        "/executions?limit=100": "API list, 100 records",
    }
    print(f"{args.n} executions stored; server time per request, 20 requests each")
    print(f"{'page':<28} {'p50 ms':>8} {'max ms':>8}")
    for url, name in pages.items():
        client.get(url)  # warm up
        samples = []
        for _ in range(20):
            began = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(f"{name:<28} {statistics.median(samples):8.1f} {max(samples):8.1f}")


if __name__ == "__main__":
    main()
