#!/usr/bin/env bash
# Headless Chromium for the webgui tests and for looking at the monitor without a desktop:
#   launchers/browser/chromium.sh install   install Debian's chromium if it is missing (root, apt)
#   launchers/browser/chromium.sh path      print the browser's path (exit 1 when not installed)
#   launchers/browser/chromium.sh shot URL PNG [DOM.html]   screenshot URL (and dump its DOM)
set -euo pipefail

log() { echo "browser: $*" >&2; }

find_browser() {
  for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null; then command -v "$b"; return 0; fi
  done
  return 1
}

install() {
  if find_browser >/dev/null; then return 0; fi
  if ! command -v apt-get >/dev/null; then log "apt-get not available: cannot install chromium"; exit 3; fi
  log "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  find_browser >/dev/null
}

FLAGS=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --disable-dev-shm-usage --hide-scrollbars)

shot() {
  local url=$1 png=$2 dom=${3:-}
  local b; b=$(find_browser)
  local profile; profile=$(mktemp -d)
  trap 'rm -rf "$profile"' RETURN
  "$b" "${FLAGS[@]}" --user-data-dir="$profile" --window-size=1280,1600 --virtual-time-budget=5000 \
       --screenshot="$png" "$url" >/dev/null 2>&1
  if [ -n "$dom" ]; then
    "$b" "${FLAGS[@]}" --user-data-dir="$profile" --virtual-time-budget=5000 --dump-dom "$url" > "$dom" 2>/dev/null
  fi
}

case "${1:-}" in
  install) install ;;
  path) find_browser ;;
  shot) shift; shot "$@" ;;
  *) echo "usage: $0 install|path|shot URL PNG [DOM.html]" >&2; exit 2 ;;
esac
