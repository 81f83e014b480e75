#!/usr/bin/env bash
# Wall time of the main job from scratch and of a rerun, in a scratch folder (venv already installed).
# Run: bash benchmarks/demo_wall_time.sh
set -euo pipefail
DRX="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/drx"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
SECONDS=0; "$DRX" demo >first.log 2>&1; first=$SECONDS
SECONDS=0; "$DRX" demo >second.log 2>&1; second=$SECONDS
grep -E "test energy MAE|slice 'demo'" first.log || true
echo "demo from scratch: ${first} s"
echo "rerun (reuses everything): ${second} s"
