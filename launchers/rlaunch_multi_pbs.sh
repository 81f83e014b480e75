#!/bin/bash
# Packed job: one PBS allocation of N nodes runs N relaxations side by side, each on one
# node, one after the other until no READY relaxation is left (or the time limit approaches).
# Submit with: qsub launchers/rlaunch_multi_pbs.sh
#PBS -N drx_multi
#PBS -l nodes=4:ppn=64              # CHANGE: nodes = relaxations at once; ppn = cores per node
#PBS -l walltime=48:00:00           # CHANGE (custodian's WalltimeHandler reads PBS_WALLTIME)
#PBS -q workq                       # CHANGE
#PBS -A myaccount                   # CHANGE (or delete)
#PBS -j oe
set -euo pipefail

REPO=/path/to/drx_workflows               # CHANGE
LAUNCHPAD=$REPO/fw_configs/my_launchpad.yaml
# CHANGE: an fworker whose env.vasp_cmd starts VASP on ONE node, e.g. with a per-rocket host list:
#   vasp_cmd: mpirun -np 64 -hostfile $FW_NODEFILE vasp_std   (or your site's launcher)
FWORKER=$REPO/fw_configs/my_fworker.yaml
RUN_DIR=/path/to/scratch/drx_runs         # CHANGE
NJOBS=$(sort -u "$PBS_NODEFILE" | wc -l)  # parallel rockets: one per node
TIMEOUT=$(( 47 * 3600 ))                  # CHANGE: stop starting new relaxations after this (s)

module load vasp/6.4                      # CHANGE
export PMG_VASP_PSP_DIR=/path/to/potcars  # CHANGE
source "$REPO/.venv/bin/activate"
mkdir -p "$RUN_DIR" && cd "$RUN_DIR"
rlaunch -l "$LAUNCHPAD" -w "$FWORKER" multi "$NJOBS" --nlaunches 0 --timeout "$TIMEOUT" \
    --nodefile PBS_NODEFILE --ppn 64 --local_redirect   # CHANGE --ppn to cores per node
