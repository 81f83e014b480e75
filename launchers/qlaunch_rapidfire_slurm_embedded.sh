#!/usr/bin/env bash
# Keep the SLURM queue filled with one-relaxation jobs on the EMBEDDED store (no MongoDB server).
# `drx qlaunch` opens the store only to count READY relaxations and releases it at once; each
# job runs `drx rlaunch singleshot` (see rocket_launch in the qadapter), which waits for the
# store, runs one relaxation, saves after it and releases the store. Jobs take turns on the
# store, so this suits a workstation or a small partition; use MongoDB for many nodes.
# After a crash (kill -9, node failure, walltime) put lost relaxations back with: drx --store "$STORE" recover
set -euo pipefail

REPO=/path/to/drx_workflows                          # CHANGE: checkout of this project
STORE=$REPO/drx_store/store.json                     # CHANGE if the store lives elsewhere
FWORKER=$REPO/fw_configs/my_fworker.yaml             # CHANGE: env.vasp_cmd; env.db_file may be omitted
QADAPTER=$REPO/fw_configs/my_qadapter_slurm_embedded.yaml   # CHANGE: partition, walltime, rocket_launch paths
LAUNCH_DIR=/path/to/scratch/drx_runs                 # CHANGE: where the launcher_* job directories are made
MAX_QUEUED=4                                         # jobs queued at once (they take turns on the store)

source "$REPO/.venv/bin/activate"
drx check-config -q "$QADAPTER" -w "$FWORKER"
drx --store "$STORE" qlaunch -q "$QADAPTER" -w "$FWORKER" --launch-dir "$LAUNCH_DIR" \
    rapidfire --maxjobs-queue "$MAX_QUEUED" --sleep 30
