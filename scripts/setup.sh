#!/usr/bin/env bash
# The one set-up step, run before anything else by `make run` (profile run) and `make test`
# (profile test). Idempotent: it installs only what is missing and starts only what is down.
#   run:  Docker engine (Debian's docker.io, containerd, runc) and debootstrap, the Python
#         dependencies of requirements.txt, the database, static files, the default image.
#   test: all of run, plus Chromium, PostgreSQL and Redis (started on loopback for the second test
#         pass), Docker Compose (to check deploy/compose.yaml), and requirements-dev.txt.
# It ends with one line that checks everything it promised, or fails naming what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-run}
case "$PROFILE" in run | test) ;; *) echo "usage: scripts/setup.sh run|test" >&2; exit 2 ;; esac
VENV=${VENV:-.venv}
mkdir -p var

# 1. System packages, all missing ones in one apt transaction.
have() { command -v "$1" >/dev/null 2>&1; }
pg_initdb() { ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1; }
missing=()
have dockerd || missing+=(docker.io)
have debootstrap || missing+=(debootstrap)
have runsc || missing+=(runsc)
if [ "$PROFILE" = test ]; then
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  have redis-server || missing+=(redis-server)
  [ -n "$(pg_initdb)" ] || missing+=(postgresql)
  { docker compose version >/dev/null 2>&1 || have docker-compose; } || missing+=(docker-compose)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "setup: install these (Debian package names) and run again: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]} (Debian packages)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Services: the Docker engine; for the tests also PostgreSQL and Redis on loopback.
scripts/ensure-docker.sh
scripts/ensure-runsc.sh
if [ "$PROFILE" = test ]; then
  scripts/ensure-pg-redis.sh > var/scaleout.env
fi

# 3. Python dependencies, exactly as locked (hashes required; a stale lock refuses to install).
LOCK=requirements.txt
[ "$PROFILE" = test ] && LOCK=requirements-dev.txt
python3 scripts/check_lock.py
stamp="$VENV/.installed-$(basename "$LOCK" .txt)"
lock_sum=$(sha256sum "$LOCK" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  echo "setup: installing Python dependencies from $LOCK..."
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$LOCK" 2>&1 |
    { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$lock_sum" > "$stamp"
fi

# 4. The service's own state: database, static files, the images of `default` and `strict` (the same
#    packages: the second build reuses the first's layers).
PY="$VENV/bin/python"
"$PY" manage.py migrate --noinput -v0
"$PY" manage.py collectstatic --noinput -v0
"$PY" manage.py tako_images build default strict

# 5. One line that checks what was promised.
scripts/check-setup.sh "$PROFILE"
