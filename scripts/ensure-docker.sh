#!/usr/bin/env bash
# Makes sure a Docker engine answers. On a Debian machine as root with none running, installs
# Debian's docker.io (if needed) and starts dockerd in the background; elsewhere says how to.
set -euo pipefail

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

if command -v docker >/dev/null && engine_answers; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  cat >&2 <<'MSG'
No Docker engine answers. Start one and try again, for example:
  sudo systemctl start docker        (Linux with systemd)
  open -a Docker                     (macOS, Docker Desktop)
or point DOCKER_HOST at a running engine.
MSG
  exit 1
fi

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "Installing Docker engine (Debian's docker.io) and debootstrap..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
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
