#!/usr/bin/env bash
# Starts the whole service in the foreground: the worker cluster (django-q2) and daphne (web +
# websockets) on $HOST:$PORT, through takoweb.serve (which reads both from the settings and runs
# the system checks first). Ctrl-C stops all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HOST=${HOST:-127.0.0.1}
export PORT=${PORT:-8000}

case "$HOST" in
  127.0.0.1|localhost|::1)
    export TAKO_ALLOW_ANONYMOUS=${TAKO_ALLOW_ANONYMOUS:-1}
    [ "$TAKO_ALLOW_ANONYMOUS" = 1 ] && echo "Anonymous API use is ON (loopback only); scripts elsewhere need an API key." ;;
esac

pids=()
# Each child runs in its own process group (setsid): Ctrl-C reaches only this script, whose trap
# asks each child to stop the way it expects (SIGTERM to its main process; a terminal's SIGINT
# to every django-q process at once would hang its shutdown). Whatever is left after 15 s is killed.
stop() {
  trap - INT TERM EXIT
  kill "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 150); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

"$PY" manage.py tako_cleanup
"$PY" manage.py tako_admin
# The heavier job-type images build in the background so the server answers at once; a job on
# an environment still being built waits for it (within its startup_timeout).
mkdir -p var
setsid "$PY" manage.py tako_images build > var/image-builds.log 2>&1 &
pids+=($!)
echo "Building missing job-type images in the background (log: var/image-builds.log)"
setsid "$PY" manage.py tako_worker &
pids+=($!)
echo "Tako VM on http://$HOST:$PORT/ (API docs at /docs). Ctrl-C stops it."
setsid "$PY" -m takoweb.serve &
pids+=($!)
wait -n "${pids[@]:1}"  # the worker cluster or the web server; the image build may end first
