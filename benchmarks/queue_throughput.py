"""Queue throughput through the local one-node SLURM cluster, on the same surrogate relaxations
(same structures, same INCAR), in one run:

* **in-process**: one ``drx rlaunch rapidfire`` on the embedded store (the baseline);
* **queue, embedded store**: ``drx qlaunch rapidfire`` (each SLURM job runs ``drx rlaunch
  singleshot``); the jobs take turns on the store, one process at a time;
* **queue, server store**: FireWorks' own ``qlaunch rapidfire`` against ``drx server`` (each job
  runs FireWorks' own ``rlaunch singleshot``); the jobs run side by side.

Both queue runs keep at most ``--maxjobs-queue`` jobs queued (the local partition lets four
one-core jobs share a core). Wall time from the command's start until every relaxation is
COMPLETED; one run each.

    flock /tmp/drx_heavy.lock .venv/bin/python benchmarks/queue_throughput.py [--n 8] [--maxjobs-queue 4] [--out DIR]

Starts SLURM with launchers/local_slurm/slurm.sh (installing slurm-wlm/munge if needed).
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
from server_drill import free_port  # noqa: E402


def _check(store, ids) -> None:
    db = read_store(store)
    assert set(fw_states(db).values()) == {"COMPLETED"}, fw_states(db)
    assert tasks_per_structure(db) == {i: 1 for i in ids}
    assert all(t["state"] == "successful" for t in documents(db, "tasks"))


def _inprocess(out: Path, n: int) -> tuple[float, list]:
    a = prepare_slice(out / "inproc", n=n)
    t0 = time.monotonic()
    r = subprocess.run([DRX, "--store", a["store"], "rlaunch", "--fworker", a["fworker"], "--launch-dir",
                        str(out / "inproc" / "runs"), "rapidfire"], env=clean_env(), capture_output=True, text=True)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    _check(a["store"], a["drx_ids"])
    return seconds, a["drx_ids"]


def _queue_embedded(out: Path, n: int, maxjobs: int) -> tuple[float, int, list]:
    b = prepare_slice(out / "queue", n=n)
    qad = local_qadapter(out / "queue" / "my_qadapter.yaml", b["store"], b["fworker"])
    t0 = time.monotonic()
    r = subprocess.run([DRX, "--store", b["store"], "qlaunch", "-q", str(qad), "-w", b["fworker"], "--launch-dir",
                        str(out / "queue" / "jobs"), "rapidfire", "--maxjobs-queue", str(maxjobs),
                        "--sleep", "1"], env=clean_env(), capture_output=True, text=True)
    seconds = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    _check(b["store"], b["drx_ids"])
    return seconds, r.stdout.count("submitted job "), b["drx_ids"]


def _queue_server(out: Path, n: int, maxjobs: int) -> tuple[float, int, list]:
    import pymongo

    from drx_workflows.store.config import StoreConfig

    srv = out / "server"
    r = subprocess.run([DRX, "server", "start", "--dir", str(srv), "--port", str(free_port())], env=clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lp = str(srv / "my_launchpad.yaml")
    bin_dir = Path(DRX).parent
    try:
        c = prepare_slice(out / "queue_server", n=n, launchpad=lp)
        qad = local_qadapter(out / "queue_server" / "my_qadapter.yaml", None, c["fworker"],
                             rocket_launch=f"rlaunch -l {lp} -w {c['fworker']} singleshot")
        jobs = out / "queue_server" / "jobs"
        jobs.mkdir()
        cfg = StoreConfig.from_launchpad_file(lp)
        db = pymongo.MongoClient(cfg.host, cfg.port)[cfg.name]
        t0 = time.monotonic()
        q = subprocess.Popen([str(bin_dir / "qlaunch"), "-l", lp, "-w", c["fworker"], "-q", str(qad), "rapidfire",
                              "-m", str(maxjobs), "--sleep", "1"], cwd=jobs, env=clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        # qlaunch stops once nothing is READY; its last jobs are still running then
        while db.fireworks.count_documents({"state": {"$ne": "COMPLETED"}}) and time.monotonic() - t0 < 7200:
            assert not db.fireworks.count_documents({"state": "FIZZLED"}), "a relaxation fizzled"
            time.sleep(0.5)
        seconds = time.monotonic() - t0
        log = q.communicate(timeout=600)[0]
        per = {}
        for t in db.tasks.find({}, {"drx_id": 1, "state": 1}):
            assert t["state"] == "successful"
            per[t["drx_id"]] = per.get(t["drx_id"], 0) + 1
        assert per == {i: 1 for i in c["drx_ids"]}, per
        return seconds, log.count("job_id is "), c["drx_ids"]
    finally:
        subprocess.run([DRX, "server", "stop", "--dir", str(srv)], capture_output=True, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="relaxations per launcher")
    ap.add_argument("--maxjobs-queue", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="drx_queue_bench_"))
    started, why = slurm_up()
    if why:
        sys.exit(f"no SLURM: {why}")

    res = {"n": args.n, "maxjobs_queue": args.maxjobs_queue}
    res["inprocess_s"], ids = _inprocess(out, args.n)
    res["queue_s"], res["jobs"], ids_b = _queue_embedded(out, args.n, args.maxjobs_queue)
    res["server_queue_s"], res["server_jobs"], ids_c = _queue_server(out, args.n, args.maxjobs_queue)
    assert ids == ids_b == ids_c  # the same structures everywhere
    per_min = {k: 60 * args.n / res[f"{k}_s"] for k in ("inprocess", "queue", "server_queue")}
    res.update({f"{k}_per_min": v for k, v in per_min.items()})
    res["server_over_embedded_queue"] = per_min["server_queue"] / per_min["queue"]
    print(json.dumps(res, indent=2))
    print(f"| queue throughput, {args.n} surrogate relaxations, at most {args.maxjobs_queue} jobs queued | "
          f"in-process `drx rlaunch rapidfire`: {per_min['inprocess']:.2f}/min ({res['inprocess_s']:.0f} s) | "
          f"embedded store, `drx qlaunch rapidfire` ({res['jobs']} jobs): {per_min['queue']:.2f}/min "
          f"({res['queue_s']:.0f} s) | server store, FireWorks' `qlaunch rapidfire` ({res['server_jobs']} jobs): "
          f"{per_min['server_queue']:.2f}/min ({res['server_queue_s']:.0f} s), "
          f"{res['server_over_embedded_queue']:.1f}x the embedded queue |")
    (out / "queue_throughput.json").write_text(json.dumps(res, indent=2))
    if started:
        subprocess.run([str(REPO / "launchers" / "local_slurm" / "slurm.sh"), "stop"], capture_output=True)


if __name__ == "__main__":
    main()
