#!/usr/bin/env bash
# Run relaxations on the embedded store (one JSON file; no MongoDB server) on one machine,
# e.g. an interactive node. Only one process may hold the store, so this uses
# `drx launch` (rapidfire inside the drx process), never rlaunch/qlaunch.
set -euo pipefail
REPO=/path/to/drx_workflows                              # CHANGE
STORE=$REPO/drx_store/store.json                         # CHANGE if the store lives elsewhere
FWORKER=$REPO/fw_configs/my_fworker.yaml                 # CHANGE: env.vasp_cmd; env.db_file may be omitted
NLAUNCHES=0                                              # 0 = until no READY relaxation is left
export PMG_VASP_PSP_DIR=/path/to/potcars                 # CHANGE
source "$REPO/.venv/bin/activate"
drx --store "$STORE" launch --fworker "$FWORKER" --nlaunches "$NLAUNCHES"
