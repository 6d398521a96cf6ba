#!/usr/bin/env bash
# Prepare this machine to build and run RideShare's containers without a registry.
#
#   scripts/docker-setup.sh install   apt-get install docker.io docker-compose debootstrap (root)
#   scripts/docker-setup.sh engine    start dockerd in the background if no engine answers;
#                                     prints "started dockerd <pid>" when it started one
#   scripts/docker-setup.sh base      a bookworm base image from debootstrap (no registry needed)
#   scripts/docker-setup.sh wheels    the Python wheels the image installs, into docker/wheels/
#   scripts/docker-setup.sh all       all four, in that order (the default)
#
# Everything is idempotent and every wait is bounded. With a registry and PyPI reachable from
# builds, none of this is needed: `docker compose up --build` pulls the official images.
# Settings (environment): RIDESHARE_BASE_IMAGE (default rideshare-debootstrap:bookworm),
# RIDESHARE_DOCKERD_LOG (default build/dockerd.log), RIDESHARE_DEBIAN_MIRROR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_IMAGE=${RIDESHARE_BASE_IMAGE:-rideshare-debootstrap:bookworm}
DOCKERD_LOG=${RIDESHARE_DOCKERD_LOG:-$ROOT/build/dockerd.log}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
# Debian's client first: it matches Debian's engine.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=docker

say() { echo "docker-setup: $*" >&2; }

install() {
  local need=()
  command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || need+=(docker.io)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { say "installing ${need[*]} needs root"; return 1; }
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

engine_answers() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

engine() {
  if engine_answers; then
    say "a Docker engine is answering"
    return 0
  fi
  [ "$(id -u)" = 0 ] || { say "no Docker engine answers, and starting one needs root"; return 1; }
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # A dockerd that was killed (not stopped) leaves its pid file, and a new one refuses to start.
  local stale
  stale=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [ -n "$stale" ] && ! kill -0 "$stale" 2>/dev/null; then
    say "removing the stale /var/run/docker.pid (pid $stale is gone)"
    rm -f /var/run/docker.pid
  fi
  say "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the engine outlives this script; the caller stops it by the pid printed below.
  setsid /usr/sbin/dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local pid=$! i
  for ((i = 0; i < 120; i++)); do
    if engine_answers; then
      echo "started dockerd $pid"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { say "dockerd exited; see $DOCKERD_LOG"; tail -20 "$DOCKERD_LOG" >&2; return 1; }
    sleep 0.5
  done
  say "dockerd did not answer within 60 s; see $DOCKERD_LOG"
  kill "$pid" 2>/dev/null || true
  return 1
}

mirror() {
  if [ -n "${RIDESHARE_DEBIAN_MIRROR:-}" ]; then echo "$RIDESHARE_DEBIAN_MIRROR"; return; fi
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '/^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

base() {
  if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE is there"
    return 0
  fi
  [ "$(id -u)" = 0 ] || { say "debootstrap needs root"; return 1; }
  local dir="$ROOT/build/debootstrap-bookworm" url
  url=$(mirror)
  rm -rf "$dir"
  mkdir -p "$dir"
  say "debootstrap --variant=minbase bookworm from $url (about a minute)"
  if ! timeout 900 debootstrap --variant=minbase bookworm "$dir" "$url" >"$ROOT/build/debootstrap.log" 2>&1; then
    say "debootstrap failed; see $ROOT/build/debootstrap.log"
    tail -20 "$ROOT/build/debootstrap.log" >&2
    return 1
  fi
  # A smaller image: no package lists or caches.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  timeout 300 tar -C "$dir" -c . | timeout 300 "$DOCKER" import \
    -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir"
  say "base image $BASE_IMAGE imported"
}

requirements() { "$PYTHON" "$ROOT/docker/requirements.py" "$ROOT/pyproject.toml"; }

wheels() {
  local dir="$ROOT/docker/wheels" want have
  want=$( (requirements; "$PYTHON" -m pip freeze --exclude-editable 2>/dev/null) | sha256sum | cut -c1-16)
  have=$(cat "$dir/.requirements-hash" 2>/dev/null || true)
  if [ "$want" = "$have" ] && ls "$dir"/*.whl >/dev/null 2>&1; then
    say "wheels in docker/wheels are up to date"
    return 0
  fi
  say "collecting wheels into docker/wheels"
  find "$dir" -name '*.whl' -delete 2>/dev/null || true
  mkdir -p "$dir"
  requirements >"$dir/requirements.txt"
  # The image runs Debian bookworm's CPython 3.11 (or the official 3.11 image): the same ABI as
  # this venv, so `pip wheel` here gives wheels that install there.
  # Pinned to what this venv runs, so that the containers run what the tests ran here.
  "$PYTHON" -m pip freeze --exclude-editable 2>/dev/null | grep -v '^-e ' >"$dir/constraints.txt" || true
  timeout 600 "$PYTHON" -m pip wheel -q --wheel-dir "$dir" -r "$dir/requirements.txt" \
    -c "$dir/constraints.txt"
  echo "$want" >"$dir/.requirements-hash"
}

case "${1:-all}" in
  install) install ;;
  engine) engine ;;
  base) base ;;
  wheels) wheels ;;
  all) install; engine; base; wheels ;;
  *) echo "usage: $0 [install|engine|base|wheels|all]" >&2; exit 2 ;;
esac
