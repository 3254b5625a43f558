#!/usr/bin/env bash
# Validates deploy/compose.yaml with `docker compose config` (Compose v2) or, where only Debian's
# Compose v1 exists, `docker-compose config`; installs Debian's docker-compose when neither is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export POSTGRES_PASSWORD=check TAKO_SECRET_KEY=check
if docker compose version >/dev/null 2>&1; then
  exec docker compose -f deploy/compose.yaml config --quiet
fi
if ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  else
    echo "Install Docker Compose (docker compose or docker-compose) to check deploy/compose.yaml." >&2
    exit 1
  fi
fi
exec docker-compose -f deploy/compose.yaml config --quiet
