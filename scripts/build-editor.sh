#!/usr/bin/env bash
# Rebuilds the New page's code editor (static/vendor/codemirror/, committed) from frontend/editor/:
# the packages pinned in its package-lock.json, from the npm registry the machine is configured
# with, bundled by esbuild. Only needed after changing frontend/editor/; the service itself needs
# no node. Node and npm come from Debian when missing (apt-get install -y nodejs npm).
set -euo pipefail
cd "$(dirname "$0")/../frontend/editor"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node/npm missing: installing Debian's nodejs and npm" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi

# The lock file decides every version (npm ci refuses a lock that disagrees with package.json).
npm ci --no-audit --no-fund
node build.mjs
