"""Queue throughput through the local one-node SLURM cluster: relaxations per minute with
`drx qlaunch rapidfire` (each SLURM job runs `drx rlaunch singleshot`) versus one in-process
`drx rlaunch rapidfire`, on the same surrogate relaxations (same structures, same INCAR),
on the embedded store. One run each; wall time from the command's start until every
relaxation is COMPLETED.

    flock /tmp/drx_heavy.lock .venv/bin/python benchmarks/queue_throughput.py [--n 6] [--maxjobs-queue 2] [--out DIR]

Starts SLURM with launchers/local_slurm/slurm.sh (installing slurm-wlm/munge if needed).
On the embedded store the queue jobs take turns on the store (one process at a time), so the
queue path cannot beat the in-process launcher here; the figure is its overhead (batch
start-up, Python/CHGNet start-up per job, waiting for the store lock).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from drx_drill import (  # noqa: E402
    DRX,
    clean_env,
    documents,
    fw_states,
    local_qadapter,
    prepare_slice,
    read_store,
    slurm_up,
    tasks_per_structure,
)


def _check(store, ids) -> None:
    db = read_store(store)
    assert set(fw_states(db).values()) == {"COMPLETED"}, fw_states(db)
    assert tasks_per_structure(db) == {i: 1 for i in ids}
    assert all(t["state"] == "successful" for t in documents(db, "tasks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="relaxations per launcher")
    ap.add_argument("--maxjobs-queue", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="drx_queue_bench_"))
    started, why = slurm_up()
    if why:
        sys.exit(f"no SLURM: {why}")

    res = {"n": args.n, "maxjobs_queue": args.maxjobs_queue}
    # in-process: one rlaunch rapidfire
    a = prepare_slice(out / "inproc", n=args.n)
    t0 = time.monotonic()
    r = subprocess.run([DRX, "--store", a["store"], "rlaunch", "--fworker", a["fworker"], "--launch-dir",
                        str(out / "inproc" / "runs"), "rapidfire"], env=clean_env(), capture_output=True, text=True)
    res["inprocess_s"] = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    _check(a["store"], a["drx_ids"])

    # queue: qlaunch rapidfire through SLURM, same structures
    b = prepare_slice(out / "queue", n=args.n)
    assert b["drx_ids"] == a["drx_ids"]
    qad = local_qadapter(out / "queue" / "my_qadapter.yaml", b["store"], b["fworker"])
    t0 = time.monotonic()
    r = subprocess.run([DRX, "--store", b["store"], "qlaunch", "-q", str(qad), "-w", b["fworker"], "--launch-dir",
                        str(out / "queue" / "jobs"), "rapidfire", "--maxjobs-queue", str(args.maxjobs_queue),
                        "--sleep", "1"], env=clean_env(), capture_output=True, text=True)
    res["queue_s"] = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    res["jobs"] = r.stdout.count("submitted job ")
    _check(b["store"], b["drx_ids"])

    res["inprocess_per_min"] = 60 * args.n / res["inprocess_s"]
    res["queue_per_min"] = 60 * args.n / res["queue_s"]
    res["queue_overhead_s_per_relaxation"] = (res["queue_s"] - res["inprocess_s"]) / args.n
    print(json.dumps(res, indent=2))
    print(f"| queue throughput, {args.n} surrogate relaxations | in-process `drx rlaunch rapidfire`: "
          f"{res['inprocess_per_min']:.2f}/min ({res['inprocess_s']:.0f} s) | `drx qlaunch rapidfire` via local SLURM "
          f"({res['jobs']} jobs, max {args.maxjobs_queue} queued): {res['queue_per_min']:.2f}/min ({res['queue_s']:.0f} s) |")
    (out / "queue_throughput.json").write_text(json.dumps(res, indent=2))
    if started:
        subprocess.run([str(REPO / "launchers" / "local_slurm" / "slurm.sh"), "stop"], capture_output=True)


if __name__ == "__main__":
    main()
