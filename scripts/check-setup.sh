#!/usr/bin/env bash
# Checks, in one line, everything `scripts/setup.sh PROFILE` promises; exits 1 naming what is not there.
set -uo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-run}
VENV=${VENV:-.venv}
ok=()
bad=()
check() {  # check LABEL COMMAND...: the command prints a short version or state
  local out
  if out=$("${@:2}" 2>/dev/null) && [ -n "$out" ]; then ok+=("$1 $out"); else bad+=("$1"); fi
}
check "docker engine" docker version --format '{{.Server.Version}}'
check "image" docker image inspect --format 'tako-vm-default' tako-vm-default:latest
check "debootstrap" sh -c 'command -v debootstrap >/dev/null && echo ok'
check "runsc" sh -c "docker info --format '{{json .Runtimes}}' | grep -q '\"runsc\"' && runsc --version 2>/dev/null | head -1 | cut -d' ' -f3"
check "python deps" sh -c "$VENV/bin/python -c 'import django, docker, django_q; print(\"django\", django.get_version())'"
if [ "$PROFILE" = test ]; then
  check "chromium" sh -c '/usr/bin/chromium --version | cut -d" " -f2'
  check "compose" sh -c '(docker compose version --short || docker-compose version --short) 2>/dev/null | head -1'
  check "postgresql" sh -c '. var/scaleout.env && '"$VENV"'/bin/python -c "import os, psycopg; c = psycopg.connect(os.environ[\"DATABASE_URL\"]); v = c.info.server_version; print(f\"{v // 10000}.{v % 10000}\")"'
  check "redis" sh -c '. var/scaleout.env && '"$VENV"'/bin/python -c "import os, redis; print(redis.Redis.from_url(os.environ[\"REDIS_URL\"]).info()[\"redis_version\"])"'
  check "test tools" sh -c "$VENV/bin/python -c 'import pytest, playwright; print(\"pytest\", pytest.__version__)'"
fi
line=$(IFS=,; echo "${ok[*]}" | sed 's/,/ · /g')
if [ ${#bad[@]} -gt 0 ]; then
  echo "setup ($PROFILE) INCOMPLETE: missing ${bad[*]}; have: $line" >&2
  exit 1
fi
echo "setup ($PROFILE) ok: $line"
