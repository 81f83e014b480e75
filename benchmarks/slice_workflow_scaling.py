"""What a slice workflow costs FireWorks on the embedded store, against per-structure workflows.

A slice generation is one workflow: N relaxation fireworks and a training firework with
all N as parents.  This script enumerates N structures, submits them (a) as a slice
workflow with one training firework and (b) as N independent relaxation workflows, then
drives every relaxation through FireWorks' life cycle (checkout -> complete_launch, no
VASP) and reports the submission time and the bookkeeping time per finished relaxation.

    .venv/bin/python benchmarks/slice_workflow_scaling.py --n 500 1000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from fireworks import FWAction, FWorker

from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.pipeline.relax.submit import submit_structures
from drx_workflows.pipeline.training.slice_flows import TrainingRequest, submit_slice
from drx_workflows.slices.definition import SliceDefinition
from drx_workflows.store.client import open_store
from drx_workflows.store.config import StoreConfig
from drx_workflows.store.slices import define_slice
from drx_workflows.store.structures import save_records


def drive(lp, n) -> float:
    """Seconds per relaxation to check out and complete every READY relaxation."""
    worker = FWorker(name="bench", query={"spec.drx_workflow": "drx-relax"})
    t0 = time.perf_counter()
    done = 0
    while True:
        fw, launch_id = lp.checkout_fw(worker, ".")
        if fw is None:
            break
        lp.complete_launch(launch_id, action=FWAction())
        done += 1
    assert done == n, (done, n)
    return (time.perf_counter() - t0) / n


def run(n: int, slice_workflow: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreConfig.embedded(Path(tmp) / "store.json"))
        per_ntm = -(-n // 7)
        ds = EnumerationSettings(n_tm=tuple(range(1, 8)), per_ntm=per_ntm, toc_per_ntm=0, seed=0)
        save_records(store, enumerate_drx(ds).records[:n])
        n = store.structures.count_documents({})
        t0 = time.perf_counter()
        if slice_workflow:
            define_slice(store, SliceDefinition("bench", kind="all"))
            submit_slice(store, "bench", TrainingRequest(["ann"]))
        else:
            submit_structures(store, list(store.structures.find({}, {"_id": 0})), progress=False)
        submit_s = time.perf_counter() - t0
        lp = store.launchpad()
        per_fw = drive(lp, n)
        train = lp.fireworks.find_one({"spec.drx_workflow": "drx-train"}, {"state": 1})
        store.close()
    return {"n": n, "submit_s": submit_s, "ms_per_relaxation": 1000 * per_fw,
            "training_state": train["state"] if train else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[500, 1000])
    args = ap.parse_args(argv)
    for n in args.n:
        for slice_workflow in (False, True):
            r = run(n, slice_workflow)
            kind = "slice workflow + training" if slice_workflow else "per-structure workflows"
            print(f"{r['n']:>6} structures, {kind:<26}: submit {r['submit_s']:.1f} s, "
                  f"{r['ms_per_relaxation']:.1f} ms of FireWorks bookkeeping per finished relaxation"
                  + (f"; training firework {r['training_state']}" if r["training_state"] else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
