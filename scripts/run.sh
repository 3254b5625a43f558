#!/usr/bin/env bash
# Starts the whole service in the foreground under a supervisor that restarts whatever dies: the
# worker cluster (django-q2) and daphne (web + websockets) on $HOST:$PORT, through takoweb.serve
# (which reads both from the settings and runs the system checks first). Ctrl-C stops all of it.
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

"$PY" manage.py tako_cleanup
"$PY" manage.py tako_admin
mkdir -p var
echo "Tako VM on http://$HOST:$PORT/ (API docs at /docs). Ctrl-C stops it."
echo "Missing job-type images build in the background; a job on one still being built waits for it."
# The web server, the worker cluster (with its warm pool keeper) and the image build, each
# restarted if it dies (takoweb/supervise.py).
exec "$PY" -m takoweb.supervise
