#!/bin/bash -l
# Packed job: one SLURM allocation of N nodes runs N relaxations side by side, each on one
# node, one after the other until no READY relaxation is left (or the time limit approaches).
# Submit with: sbatch launchers/rlaunch_multi_slurm.sh
#SBATCH --job-name=drx_multi
#SBATCH --nodes=4                  # CHANGE: nodes = relaxations running at once (NJOBS below)
#SBATCH --ntasks-per-node=64       # CHANGE: cores per node
#SBATCH --time=48:00:00            # CHANGE: wall time (custodian's WalltimeHandler reads SBATCH_TIMELIMIT)
#SBATCH --partition=standard       # CHANGE
#SBATCH --account=myaccount        # CHANGE
#SBATCH --output=drx_multi-%j.out
set -euo pipefail

REPO=/path/to/drx_workflows               # CHANGE
LAUNCHPAD=$REPO/fw_configs/my_launchpad.yaml
# CHANGE: an fworker whose env.vasp_cmd starts VASP on ONE node of the allocation, e.g.
#   vasp_cmd: srun --nodes=1 --ntasks=64 --exclusive vasp_std
FWORKER=$REPO/fw_configs/my_fworker.yaml
RUN_DIR=/path/to/scratch/drx_runs         # CHANGE
NJOBS=$SLURM_JOB_NUM_NODES                # parallel rockets: one per node
TIMEOUT=$(( 47 * 3600 ))                  # CHANGE: stop starting new relaxations this long after the start (s)

module load vasp/6.4                      # CHANGE
export PMG_VASP_PSP_DIR=/path/to/potcars  # CHANGE
source "$REPO/.venv/bin/activate"
mkdir -p "$RUN_DIR" && cd "$RUN_DIR"
# --nlaunches 0: each rocket keeps pulling relaxations until none is READY.
rlaunch -l "$LAUNCHPAD" -w "$FWORKER" multi "$NJOBS" --nlaunches 0 --timeout "$TIMEOUT" --local_redirect
