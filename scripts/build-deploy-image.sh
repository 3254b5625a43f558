#!/usr/bin/env bash
# Builds the service's own image (deploy/Dockerfile) as TAG (default tako-vm-django:latest).
# Online, its base is the digest-pinned python:3.11-slim of the Dockerfile. Where no container
# registry answers, the same Dockerfile is built on a base made offline from the machine's Debian
# mirror (debootstrap + docker import: python3, venv, CA certificates), kept as tako-deploy-base.
# Python packages come from requirements.txt in both cases (--require-hashes); where the
# host's pip trusts its index through a CA bundle of its own, the build is given the same bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-tako-vm-django:latest}
OFFLINE_BASE=tako-deploy-base:bookworm
PINNED_BASE=$(sed -nE 's/^ARG BASE_IMAGE=(.*)$/\1/p' deploy/Dockerfile)

base_args=()
used_base=$PINNED_BASE
if ! docker image inspect "$PINNED_BASE" >/dev/null 2>&1 && ! docker pull -q "$PINNED_BASE" >/dev/null 2>&1; then
  if ! docker image inspect "$OFFLINE_BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: scripts/setup.sh installs it" >&2; exit 1; }
    mirror=${TAKO_DEBIAN_MIRROR:-$(sed -nE 's/^URIs: *([^ ]+).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)}
    [ -n "$mirror" ] || { echo "no registry answers and no Debian mirror is known: set TAKO_DEBIAN_MIRROR" >&2; exit 1; }
    echo "No registry answers: making $OFFLINE_BASE from $mirror (about a minute)..."
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,debootstrap \
      bookworm "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | docker import - "$OFFLINE_BASE" >/dev/null
  fi
  base_args=(--build-arg "BASE_IMAGE=$OFFLINE_BASE")
  used_base=$OFFLINE_BASE
fi
rm -f deploy/pip/ca.pem
ca=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$ca" ] && [ -f "$ca" ]; then cp "$ca" deploy/pip/ca.pem; fi
docker build -q -f deploy/Dockerfile ${base_args[@]+"${base_args[@]}"} -t "$TAG" . >/dev/null
echo "$TAG built on $used_base"
