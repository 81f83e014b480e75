"""The main job on the embedded default: the whole chain on a laptop, no VASP licence, no server.

enumerate -> submit relaxation workflows -> run them in this process with the surrogate
VASP engine under custodian -> task documents in the store -> train a potential on the
finished slice -> report folder.  Every step reuses what is already done, so a rerun
recomputes and duplicates nothing; ``fresh=True`` starts over.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from drx_workflows.enumeration import EnumerationSettings
from drx_workflows.store import StoreConfig, open_store

# The study's first slice composition LiMn0.5Ni0.5O2, a few 2- and 3-TM orderings over
# all nine TMs, and top-of-charge structures: 20 structures of 16 atoms or fewer.
DEMO_DATASETS = (
    EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=8, toc_per_ntm=2, max_cation_sites=8, seed=0),
    EnumerationSettings(n_tm=(2, 3), per_ntm=4, toc_per_ntm=1, max_cation_sites=8, seed=0),
)
DEMO_SLICE = "demo"
DEMO_BACKEND = "ann"
# Small and quick: the demo shows the chain working, the benchmarks measure accuracy.
DEMO_ANN = {"hidden_layers": [10, 10], "epochs": 300, "radial_order": 8, "angular_order": 2}


@dataclass
class DemoSettings:
    root: Path = Path("drx_demo")
    fresh: bool = False
    datasets: tuple = DEMO_DATASETS
    train: bool = True
    ann: dict = field(default_factory=lambda: dict(DEMO_ANN))
    echo: Callable[[str], None] = print
    # INCAR overrides for every relaxation (tests loosen EDIFFG; capping NSW would only
    # make custodian treat every run as ionically unconverged)
    extra_incar: dict = field(default_factory=dict)


def surrogate_command() -> str:
    """The surrogate engine beside this interpreter (the venv's console script)."""
    exe = Path(sys.executable).parent / "drx-surrogate-vasp"
    return str(exe) if exe.exists() else "drx-surrogate-vasp"


def write_demo_fworker(root: Path, store) -> Path:
    from drx_workflows.fileio import atomic_write_text
    from drx_workflows.vasp.dbfile import write_db_file

    db = write_db_file(root / "db.json", store.config)
    text = (
        "# written by `drx demo`: relaxations run by the surrogate VASP engine (CHGNet), not VASP\n"
        "name: drx demo worker\n"
        "category: ''\n"
        "query: '{}'\n"
        "env:\n"
        f"  vasp_cmd: {surrogate_command()}\n"
        f"  db_file: {db}\n"
        "  potcar_spec: true\n"
        "  custodian_polling_time_step: 1\n"
        "  custodian_monitor_freq: 5\n"
    )
    return atomic_write_text(root / "my_fworker.yaml", text)


def run_demo(settings: DemoSettings) -> dict:
    from drx_workflows.enumeration import enumerate_drx
    from drx_workflows.enumeration.dataset import save_records
    from drx_workflows.vasp import submit as sub
    from drx_workflows.vasp.status import relax_status

    echo = settings.echo
    root = settings.root.absolute()
    if settings.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    store = open_store(StoreConfig.embedded(root / "store.json"))
    steps = 5 if settings.train else 4

    echo(f"[1/{steps}] enumerate the demo dataset into {store.config.describe()}")
    new = 0
    for ds in settings.datasets:
        result = enumerate_drx(ds)
        new += save_records(store, result.records)
    n_structures = store.structures.count_documents({})
    echo(f"      {n_structures} structures ({new} new)")

    echo(f"[2/{steps}] submit one relaxation workflow per structure (slice '{DEMO_SLICE}')")
    docs = list(store.structures.find({}, {"_id": 0}))
    incar = dict(settings.extra_incar)
    submitted = sub.submit_structures(
        store, docs, slices=[DEMO_SLICE], progress=False, user_incar_settings=incar or None
    )
    echo(f"      {submitted.added} added, {submitted.already_submitted} already submitted")

    echo(f"[3/{steps}] relax them with the surrogate VASP engine (CHGNet) under custodian")
    fworker = write_demo_fworker(root, store)
    n_launches = _relax_with_progress(store, fworker, root / "launches", echo)
    status = relax_status(store)
    n_tasks = store.tasks.count_documents({"slices": DEMO_SLICE})
    states = status["total"]
    echo(f"      {n_launches} launches this run; states {states}")
    complete = n_tasks == n_structures
    echo(
        f"[4/{steps}] slice '{DEMO_SLICE}' "
        + ("complete" if complete else "INCOMPLETE")
        + f": {n_tasks} task documents for {n_structures} structures (surrogate: true)"
    )
    summary = {"structures": n_structures, "tasks": n_tasks, "complete": complete, "root": str(root)}
    if settings.train and complete:
        summary["report"] = str(_train_and_report(store, root, steps, echo, settings.ann))
    store.save()
    return summary


def _relax_with_progress(store, fworker: Path, launch_dir: Path, echo) -> int:
    """One launch at a time, so the user sees each relaxation finish (FireWorks' own log is quiet)."""
    import logging
    import warnings

    from drx_workflows.vasp.launch import launch

    import atomate.vasp.drones  # noqa: F401  (it sets its logger's level on import: import first)
    import fireworks.core.rocket as fw_rocket

    # One line per structure is enough here; FireWorks' rocket and atomate's drone log each
    # step at INFO (their logs still go to the launch folders).
    logging.getLogger("atomate.vasp.drones").setLevel(logging.ERROR)
    fw_rocket.ROCKET_STREAM_LOGLEVEL = "ERROR"

    lp = store.launchpad()
    todo = lp.fireworks.count_documents({"state": "READY"})
    done = 0
    with warnings.catch_warnings():
        # pymatgen warns on every parse that POTCAR.spec has no POTCAR to check against
        warnings.filterwarnings("ignore", message=".*POTCAR.*")
        while lp.fireworks.count_documents({"state": "READY"}):
            made = launch(store, fworker, nlaunches=1, launch_dir=launch_dir, strm_lvl="ERROR")
            if not made:
                break  # READY fireworks this worker may not run (another category)
            done += made
            last = lp.fireworks.find_one({"state": {"$in": ["COMPLETED", "FIZZLED"]}}, sort=[("updated_on", -1)])
            task = store.tasks.find_one({"drx_id": last["spec"].get("drx_id")}) if last else None
            fixes = f", {task.get('n_custodian_corrections', 0)} custodian corrections" if task else ""
            echo(f"      relaxed {done}/{todo}: {last['name'] if last else '?'} {last['state'] if last else ''}{fixes}")
    return done


def _train_and_report(store, root: Path, steps: int, echo, ann: dict) -> Path:
    from drx_workflows.analysis.report import write_report
    from drx_workflows.mliap.tasks import configurations_from_tasks
    from drx_workflows.mliap.training import store_result, train_and_evaluate
    from drx_workflows.slices import stratified_split

    existing = store.potentials.find_one({"slice": DEMO_SLICE, "backend": DEMO_BACKEND})
    if existing is None:
        groups = configurations_from_tasks(store.tasks.find({"slices": DEMO_SLICE}))
        # split by structure: frames of one relaxation are too alike to sit on both sides
        train_g, test_g = stratified_split(
            groups, lambda g: g[0].n_tm, test_fraction=0.2, seed=0, elements_of=lambda g: g[0].species
        )
        train, test = [c for g in train_g for c in g], [c for g in test_g for c in g]
        echo(
            f"[5/{steps}] train {DEMO_BACKEND} on {len(train)} relaxation frames of {len(train_g)} structures, "
            f"test on {len(test)} frames of {len(test_g)}"
        )
        result = train_and_evaluate(DEMO_BACKEND, train, test, DEMO_SLICE, ann)
        store_result(store, result, {"surrogate": True})
        echo(
            f"      test energy MAE {result.test_metrics.energy_mae:.1f} meV/atom, "
            f"trained in {result.train_seconds:.0f} s (reference: surrogate engine, not DFT)"
        )
    else:
        echo(f"[5/{steps}] {DEMO_BACKEND} on '{DEMO_SLICE}' is already trained")
    return write_report(store, root / "report")
