#!/usr/bin/env bash
# Registers gVisor's runsc (installed by scripts/setup.sh) with the Docker engine as the runtime
# "runsc", for environments whose runtime is runsc (the shipped `strict`). Merges it into
# /etc/docker/daemon.json, keeping whatever else is configured there, and makes the running dockerd
# reload its configuration (SIGHUP; no restart, no container stops). `--network=none` is among its
# arguments: runsc cannot start in the host's network namespace, and sandboxes have no network.
set -euo pipefail

registered() { docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; }
registered && exit 0

RUNSC=$(command -v runsc || true)
if [ -z "$RUNSC" ]; then
  echo "runsc (gVisor) is not installed: scripts/setup.sh installs Debian's runsc" >&2
  exit 1
fi
CONFIG=/etc/docker/daemon.json
if [ "$(id -u)" != 0 ]; then
  echo "Register runsc with the engine as root: add to $CONFIG" \
    "{\"runtimes\": {\"runsc\": {\"path\": \"$RUNSC\", \"runtimeArgs\": [\"--network=none\"]}}} and reload dockerd" >&2
  exit 1
fi
mkdir -p "$(dirname "$CONFIG")"
python3 - "$CONFIG" "$RUNSC" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
with open(path + ".tmp", "w") as out:
    json.dump(config, out, indent=2)
os.replace(path + ".tmp", path)
PY
kill -HUP "$(cat /var/run/docker.pid)"
for _ in $(seq 20); do
  registered && { echo "runsc registered with the Docker engine."; exit 0; }
  sleep 0.5
done
echo "dockerd did not pick up runsc from $CONFIG (see its log)" >&2
exit 1
