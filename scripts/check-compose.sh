#!/usr/bin/env bash
# Validates deploy/compose.yaml with `docker compose config` (Compose v2) or, where only Debian's
# Compose v1 exists, `docker-compose config` (scripts/setup.sh test installs Debian's when neither is there).
set -euo pipefail
cd "$(dirname "$0")/.."
export POSTGRES_PASSWORD=check TAKO_SECRET_KEY=check
if docker compose version >/dev/null 2>&1; then
  exec docker compose -f deploy/compose.yaml config --quiet
fi
if ! command -v docker-compose >/dev/null; then
  echo "Docker Compose is missing: \`scripts/setup.sh test\` (run by \`make test\`) installs it" >&2
  exit 1
fi
exec docker-compose -f deploy/compose.yaml config --quiet
