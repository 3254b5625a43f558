#!/usr/bin/env bash
# Writes the hashed lock files requirements.txt and requirements-dev.txt from pyproject.toml (`make lock`), with a pinned uv
# in a tools venv of its own. Installs never resolve: they take exactly these files (--require-hashes).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
TOOLS=var/lock-tools
if [ ! -x "$TOOLS/bin/uv" ] || [ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install --quiet "uv==$UV_VERSION"
fi
compile() {  # compile NAME ARGS...: the lock of NAME (check_lock.py) for every platform, Python 3.11
  local name=$1 path body
  shift
  path=$(python3 scripts/check_lock.py --path "$name")
  # --output-file: uv keeps the versions the lock already pins (adding a package moves no other);
  # `make lock UPGRADE=1` re-resolves everything to the newest allowed versions.
  "$TOOLS/bin/uv" pip compile --universal --python-version 3.11 --generate-hashes --no-header --quiet \
    ${UPGRADE:+--upgrade} --output-file "$path" "$@"
  body=$(grep -v '^# inputs: sha256:' "$path")
  { python3 scripts/check_lock.py --header "$name"; echo "$body"; } > "$path"
}
compile runtime pyproject.toml
# The test and browser tools, at the runtime's versions wherever they share a package.
compile dev pyproject.toml --group test --group browser -c requirements.txt
python3 scripts/check_lock.py
echo "requirements.txt and requirements-dev.txt written"
