#!/usr/bin/env bash
# The scale-out configuration for the second test pass: PostgreSQL and Redis on loopback, from
# Debian's packages (scripts/setup.sh test installs them), started when down. Prints the two URLs as shell exports:
#   eval "$(scripts/ensure-pg-redis.sh)"
set -euo pipefail
exec 3>&1 1>&2  # everything but the two exports goes to stderr (stdout is meant for `.`/eval)
PG_PORT="${TAKO_TEST_PG_PORT:-55432}"
REDIS_PORT="${TAKO_TEST_REDIS_PORT:-56379}"
# Outside the checkout: the postgres user must be able to reach its data folder, and a checkout
# in a private temporary folder (as CI's) is not reachable for it.
STATE="${TAKO_TEST_STATE_DIR:-/var/tmp/tako-test-services}"
mkdir -p "$STATE"
chmod 755 "$STATE"

if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "redis-server or PostgreSQL is missing: \`scripts/setup.sh test\` (run by \`make test\`) installs them" >&2
  exit 1
fi

# PostgreSQL: a cluster of our own (not the distribution's), owned by the postgres user.
PG_BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
PG_DATA="$STATE/pg"
as_postgres() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
# A cluster left by an earlier run is reused only if this PostgreSQL and its postgres user own it
# (a purge and reinstall can bring another major version or another uid): else it starts afresh.
if [ -f "$PG_DATA/PG_VERSION" ] && { [ "$(cat "$PG_DATA/PG_VERSION")" != "$("$PG_BIN/postgres" -V | sed -E 's/^[^0-9]*([0-9]+).*/\1/')" ] ||
  { [ "$(id -u)" = 0 ] && [ "$(stat -c %U "$PG_DATA")" != postgres ]; }; }; then
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast >/dev/null 2>&1 || true
  rm -rf "$PG_DATA"
fi
if [ ! -f "$PG_DATA/PG_VERSION" ]; then
  mkdir -p "$PG_DATA"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DATA"; fi
  as_postgres "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
  as_postgres "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k /tmp -c fsync=off -c synchronous_commit=off -c max_connections=200" start >&2
fi
as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
  "SELECT 1 FROM pg_roles WHERE rolname='tako'" | grep -q 1 ||
  as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc \
    "CREATE ROLE tako LOGIN SUPERUSER PASSWORD 'tako'" >&2
as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='tako'" | grep -q 1 ||
  as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE tako OWNER tako" >&2

# Redis, persisting its queue (appendonly): a restart keeps the jobs queued in it.
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE" --appendonly yes --save "" \
    --daemonize yes --logfile "$STATE/redis.log" >&2
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

echo "export DATABASE_URL=postgres://tako:tako@127.0.0.1:$PG_PORT/tako" >&3
echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" >&3
