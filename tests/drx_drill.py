"""Helpers of the queue / recovery drills: a tiny relaxation slice run by the surrogate VASP engine.

Used by tests/test_queue_slurm.py, tests/test_recovery.py, tests/test_webgui.py and
benchmarks/queue_throughput.py. Everything that opens the embedded store runs in a
subprocess, so the calling process never holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRX = str(Path(sys.executable).parent / "drx")

_PREPARE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from drx_workflows.demo import write_demo_fworker
    from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
    from drx_workflows.store.structures import save_records
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.client import open_store
    from drx_workflows.pipeline.relax import submit as sub

    root, n, seed, per_ntm = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    launchpad = sys.argv[5]
    inline = sys.argv[6] == "inline"
    train = json.loads(sys.argv[7])
    config = StoreConfig.from_launchpad_file(launchpad) if launchpad else StoreConfig.embedded(root / "store.json")
    store = open_store(config)
    settings = EnumerationSettings(tms=tuple(sys.argv[8].split(",")), n_tm=(2,), per_ntm=per_ntm, toc_per_ntm=0,
                                   max_cation_sites=4, seed=seed)
    save_records(store, enumerate_drx(settings).records)
    docs = sorted(store.structures.find({}, {"_id": 0}), key=lambda d: d["drx_id"])[:n]
    loose = {"EDIFFG": -0.1}
    if train:  # a slice of the first n structures whose training firework waits for them all
        from drx_workflows.pipeline.training.slice_flows import TrainingRequest, submit_slice
        from drx_workflows.slices.definition import SliceDefinition
        from drx_workflows.store.slices import define_slice

        store.structures.delete_many({"drx_id": {"$nin": [d["drx_id"] for d in docs]}})
        define_slice(store, SliceDefinition("drill", kind="all", test_fraction=train["test_fraction"]))
        added = submit_slice(store, "drill", TrainingRequest(train["backends"], train["hyperparameters"]),
                             user_incar_settings=loose).relaxations_added
    else:
        added = sub.submit_structures(store, docs, slices=["drill"], progress=False, user_incar_settings=loose,
                                      inline_structure=inline).added
    fworker = write_demo_fworker(root, store)
    store.save()
    print("PREPARED " + json.dumps({"drx_ids": [d["drx_id"] for d in docs], "added": added,
                                    "fworker": str(fworker), "store": str(store.config.path or launchpad)}))
    """
)


def prepare_slice(root: Path, n: int = 2, seed: int = 0, per_ntm: int | None = None, launchpad: str | None = None,
                  inline: bool = False, train: dict | None = None, tms: str = "Mn,Ni") -> dict:
    """An embedded store in ``root`` (or the server of the ``launchpad`` YAML): ``per_ntm`` enumerated
    structures of two of ``tms`` (default ``n``), the first ``n`` submitted as relaxations (``inline``: with
    their structures in the fireworks), and a surrogate fworker.

    ``train`` ({"backends": [...], "hyperparameters": {...}, "test_fraction": f}): only those ``n``
    are kept, as slice ``drill``, submitted with its training fireworks."""
    root.mkdir(parents=True, exist_ok=True)
    args = [str(root), str(n), str(seed), str(max(per_ntm or n, n, 2)), str(launchpad or ""),
            "inline" if inline else "", json.dumps(train) if train else "null", tms]
    r = subprocess.run([sys.executable, "-c", _PREPARE, *args], capture_output=True,
                       text=True, timeout=600, env=clean_env())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    info = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("PREPARED ")][-1][len("PREPARED "):])
    assert len(info["drx_ids"]) == n, info
    return info


def clean_env(**extra) -> dict:
    # MONGOMOCK_SERVERSTORE_FILE is left in os.environ by any embedded store this test process
    # opened; FireWorks' rlaunch obeys it over -l, so a child would silently run another store
    dropped = ("DRX_STORE", "DRX_LAUNCHPAD", "DRX_STORE_WAIT", "MONGOMOCK_SERVERSTORE_FILE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def read_store(path) -> dict:
    """The store file as the next process would load it (bson JSON), database ``drx``."""
    from bson import json_util

    doc = json_util.loads(Path(path).read_text(encoding="utf-8"))
    return doc.get("drx", {})


def documents(db: dict, collection: str) -> list[dict]:
    return [d for _, d in (db.get(collection) or {}).get("documents", [])]


def fw_states(db: dict) -> dict:
    return {fw["fw_id"]: fw["state"] for fw in documents(db, "fireworks")}


def tasks_per_structure(db: dict) -> dict:
    counts: dict = {}
    for t in documents(db, "tasks"):
        counts[t.get("drx_id")] = counts.get(t.get("drx_id"), 0) + 1
    return counts


def local_qadapter(dst: Path, store, fworker, wait: float = 600, template: Path | None = None,
                   rocket_launch: str | None = None) -> Path:
    """The project's SLURM qadapter template filled in for the local one-node cluster.

    Only the CHANGE fields differ: the job runs ``rocket_launch`` (default ``drx rlaunch singleshot``
    on the embedded ``store``), in the ``debug`` partition with one core and this venv; everything
    else is the template's.
    """
    from ruamel.yaml import YAML

    from drx_workflows.pipeline.launch.queue import job_rocket_command
    from drx_workflows.store.config import StoreConfig

    template = template or REPO / "fw_configs" / "my_qadapter_slurm.yaml"
    yaml = YAML(typ="safe")
    doc = yaml.load(template.read_text())
    doc.update(
        rocket_launch=rocket_launch or job_rocket_command(StoreConfig.embedded(store), fworker, wait=wait),
        queue="debug",
        ntasks_per_node=1,
        walltime="00:30:00",
        pre_rocket=f"source {Path(sys.executable).parent / 'activate'}",
        logdir=str(dst.parent / "fw_logs"),
    )
    doc.pop("account", None)
    Path(doc["logdir"]).mkdir(parents=True, exist_ok=True)  # FireWorks' adapter cannot count jobs without it
    yaml.default_flow_style = False
    with open(dst, "w") as fh:
        yaml.dump(doc, fh)
    return dst


def slurm_up() -> tuple[bool, str]:
    """Start the local SLURM cluster through the project's script; (started_here, reason_if_unavailable)."""
    script = REPO / "launchers" / "local_slurm" / "slurm.sh"
    if subprocess.run([str(script), "status"], capture_output=True).returncode == 0:
        return False, ""
    r = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=600)
    if r.returncode == 3:
        return False, "apt-get is not available to install slurm-wlm/munge: " + r.stderr.strip()
    if r.returncode != 0:
        raise RuntimeError(f"launchers/local_slurm/slurm.sh start failed: {r.stderr[-2000:]}")
    return True, ""


def slurm_down() -> None:
    subprocess.run([str(REPO / "launchers" / "local_slurm" / "slurm.sh"), "stop"], capture_output=True, timeout=120)


def wait_for_jobs(job_ids, timeout: float = 600) -> None:
    """Until none of ``job_ids`` is pending or running."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(map(str, job_ids))], capture_output=True, text=True)
        if not r.stdout.strip():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"SLURM jobs {job_ids} still in the queue: {r.stdout}")
        time.sleep(1)


def job_states(job_ids) -> dict:
    """Final states from SLURM's job completion log (JobCompType=jobcomp/filetxt)."""
    import re

    states = {}
    try:
        text = Path("/var/log/slurm/jobcomp.log").read_text()
    except OSError:
        return states
    for line in text.splitlines():
        m = re.search(r"JobId=(\d+) .*JobState=(\S+)", line)
        if m and m.group(1) in {str(j) for j in job_ids}:
            states[m.group(1)] = m.group(2)
    return states
