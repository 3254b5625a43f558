#!/usr/bin/env bash
# Makes sure a Docker engine answers: starts the installed dockerd in the background when none
# does (scripts/setup.sh installs it); elsewhere says how to start one.
set -euo pipefail

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null && engine_answers; then
  exit 0
fi

if ! command -v dockerd >/dev/null; then
  cat >&2 <<'MSG'
No Docker engine answers and none is installed here. `scripts/setup.sh` (run by `make run` and
`make test`) installs Debian's docker.io as root; elsewhere start one, for example:
  sudo systemctl start docker        (Linux with systemd)
  open -a Docker                     (macOS, Docker Desktop)
or point DOCKER_HOST at a running engine.
MSG
  exit 1
fi

echo "Starting dockerd (log: /var/log/tako-dockerd.log)..."
setsid nohup dockerd >/var/log/tako-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 60); do
  if engine_answers; then
    echo "Docker engine is up."
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; see /var/log/tako-dockerd.log" >&2
exit 1
