#!/usr/bin/env bash
# Keep the PBS queue filled with one-relaxation jobs (run on a login node, e.g. in tmux or cron).
# Each queued job runs `rlaunch singleshot` (see rocket_launch in the qadapter) = one relaxation.
# Needs a MongoDB launchpad: FireWorks' rlaunch/qlaunch cannot share the embedded store (on it use
# `drx qlaunch`, see qlaunch_rapidfire_slurm_embedded.sh, or `drx launch`).
set -euo pipefail

REPO=/path/to/drx_workflows                 # CHANGE: checkout of this project
CONFIG=$REPO/fw_configs
LAUNCHPAD=$CONFIG/my_launchpad.yaml         # CHANGE if your launchpad file lives elsewhere
FWORKER=$CONFIG/my_fworker.yaml             # CHANGE: env.vasp_cmd / env.db_file must be right for the nodes
QADAPTER=$CONFIG/my_qadapter_pbs.yaml       # CHANGE: queue, account, walltime, rocket_launch paths
LAUNCH_DIR=/path/to/scratch/drx_runs        # CHANGE: where the launcher_* run directories are created
MAX_QUEUED=50                               # CHANGE: jobs you may keep queued at once (site policy)
LOOP_SLEEP=300                              # seconds between queue checks

source "$REPO/.venv/bin/activate"
mkdir -p "$LAUNCH_DIR"
# one-line errors naming the file and field for a missing/malformed config, before anything is queued
drx check-config -q "$QADAPTER" -w "$FWORKER" -l "$LAUNCHPAD"
# --nlaunches infinite keeps topping up the queue; use a number to stop after that many submissions.
qlaunch -l "$LAUNCHPAD" -w "$FWORKER" -q "$QADAPTER" --launch_dir "$LAUNCH_DIR" \
    rapidfire --maxjobs_queue "$MAX_QUEUED" --nlaunches infinite --sleep "$LOOP_SLEEP"
