"""The main job on a laptop: the whole chain, no VASP licence, on the local database server.

enumerate -> a slice workflow: one relaxation per structure and a training firework whose
parents are all of them -> run it in this process with the surrogate VASP engine under
custodian -> task documents in the store -> the training firework starts by itself when
the last relaxation finishes -> report folder.  Every step reuses what is already done, so a rerun
recomputes and duplicates nothing; ``fresh=True`` starts over.

The store is the project's local server in ``<root>/server`` (started for the demo, stopped at its end
unless ``keep_server``), so FireWorks' webgui can watch the run while it goes; ``server=False`` (or
a machine without the server extra) uses the embedded file ``<root>/store.json`` instead.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from drx_workflows.enumeration.sampling import EnumerationSettings

# The study's first slice composition LiMn0.5Ni0.5O2, a few 2- and 3-TM orderings over
from drx_workflows.store.client import open_store
from drx_workflows.store.config import StoreConfig

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
    server: bool = True  # the local server in root/server; False: the embedded file root/store.json
    keep_server: bool = False  # leave the demo's server running at the end (to browse the results)


def demo_server_dir(root: Path) -> Path:
    return Path(root).absolute() / "server"


def _open_demo_store(settings: DemoSettings, root: Path):
    """The demo's store and, when it is the demo's own server, that server's folder."""
    from drx_workflows.store.config import server_installed
    from drx_workflows.store.server import on_demand

    if settings.server and not server_installed():
        settings.echo("      the local server is not installed (pip install 'drx_workflows[server]'): "
                      "the demo uses the embedded file store")
    if not (settings.server and server_installed()):
        return open_store(StoreConfig.embedded(root / "store.json")), None
    server_dir = demo_server_dir(root)
    store = open_store(on_demand(StoreConfig.local_server(server_dir)))
    lpad = Path(sys.executable).parent / "lpad"
    settings.echo(f"      database: the local server of {server_dir} ({store.config.describe()})")
    settings.echo(f"      watch it live in FireWorks' webgui: {lpad} -l {server_dir / 'my_launchpad.yaml'} webgui")
    return store, server_dir


def surrogate_command() -> str:
    """The surrogate engine beside this interpreter (the venv's console script)."""
    exe = Path(sys.executable).parent / "drx-surrogate-vasp"
    return str(exe) if exe.exists() else "drx-surrogate-vasp"


def write_demo_fworker(root: Path, store) -> Path:
    from drx_workflows.fileio import atomic_write_text
    from drx_workflows.store.dbfile import write_db_file

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
    from drx_workflows.store.server import stop as stop_server

    root = settings.root.absolute()
    if settings.fresh and root.exists():
        stop_server(demo_server_dir(root))
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    store, server_dir = _open_demo_store(settings, root)
    try:
        return _run(settings, store, root)
    finally:
        store.close()
        if server_dir is not None and not settings.keep_server:
            settings.echo(f"      database: {stop_server(server_dir)} (start it again: drx server start --dir {server_dir})")


def _run(settings: DemoSettings, store, root: Path) -> dict:
    from drx_workflows.enumeration.sampling import enumerate_drx
    from drx_workflows.pipeline.relax import submit as sub
    from drx_workflows.pipeline.relax.references import submit_references
    from drx_workflows.pipeline.relax.status import relax_status
    from drx_workflows.pipeline.training.slice_flows import (
        TrainingRequest,
        submit_slice,
    )
    from drx_workflows.slices.definition import SliceDefinition
    from drx_workflows.store.slices import define_slice
    from drx_workflows.store.structures import save_records

    echo = settings.echo
    steps = 5 if settings.train else 4

    echo(f"[1/{steps}] enumerate the demo dataset into {store.config.describe()}")
    new = 0
    for ds in settings.datasets:
        result = enumerate_drx(ds)
        new += save_records(store, result.records)
    n_structures = store.structures.count_documents({})
    echo(f"      {n_structures} structures ({new} new)")

    incar = dict(settings.extra_incar)
    wf_kwargs = {"user_incar_settings": incar or None}
    if settings.train:
        echo(f"[2/{steps}] slice '{DEMO_SLICE}': its relaxations and an {DEMO_BACKEND} training firework that waits for them")
        define_slice(store, SliceDefinition(DEMO_SLICE, kind="all", test_fraction=0.2, seed=0))
        # the voltage references (bcc Li metal) go into the same workflow, so the ANN trains on Li metal
        # too and its own Li reference (its voltages) is not an extrapolation
        request = TrainingRequest([DEMO_BACKEND], {DEMO_BACKEND: dict(settings.ann)}, references=True)
        submitted = submit_slice(store, DEMO_SLICE, request, **wf_kwargs)
        added, already = submitted.relaxations_added, submitted.finished + submitted.linked
        training = "training firework added" if submitted.training_added else "training firework already there"
        echo(f"      {added} added, {already} already submitted; {training}")
        if submitted.references:
            echo(f"      with {submitted.references} bcc Li voltage reference calculations (relaxation + single points)")
    else:
        echo(f"[2/{steps}] submit one relaxation workflow per structure (slice '{DEMO_SLICE}')")
        docs = list(store.structures.find({}, {"_id": 0}))
        submitted = sub.submit_structures(store, docs, slices=[DEMO_SLICE], progress=False, **wf_kwargs)
        echo(f"      {submitted.added} added, {submitted.already_submitted} already submitted")
        refs = submit_references(store, user_incar_settings=incar or None)
        echo(f"      bcc Li voltage references: {refs.added} added, {refs.already_submitted} already submitted")

    echo(f"[3/{steps}] relax them with the surrogate VASP engine (CHGNet) under custodian"
         + ("; the training firework starts by itself when the last one finishes" if settings.train else ""))
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
    summary = {"structures": n_structures, "tasks": n_tasks, "complete": complete, "root": str(root),
               "store": store.config}
    if settings.train:
        summary["report"] = str(_report(store, root, steps, echo))
    store.save()
    return summary


def _relax_with_progress(store, fworker: Path, launch_dir: Path, echo) -> int:
    """One launch at a time, so the user sees each relaxation finish (FireWorks' own log is quiet)."""
    import logging
    import warnings

    import atomate.vasp.drones  # noqa: F401  (it sets its logger's level on import: import first)
    import fireworks.core.rocket as fw_rocket

    from drx_workflows.pipeline.launch.local import launch
    from drx_workflows.pipeline.training.firetasks import TRAIN_KIND

    # One line per structure is enough here; FireWorks' rocket and atomate's drone log each
    # step at INFO (their logs still go to the launch folders).
    logging.getLogger("atomate.vasp.drones").setLevel(logging.ERROR)
    fw_rocket.ROCKET_STREAM_LOGLEVEL = "ERROR"

    lp = store.launchpad()
    todo = lp.fireworks.count_documents({"state": "READY", "spec.drx_workflow": {"$ne": TRAIN_KIND}})
    done = relaxed = 0
    with warnings.catch_warnings():
        # pymatgen warns on every parse that POTCAR.spec has no POTCAR to check against
        warnings.filterwarnings("ignore", message=".*POTCAR.*")
        while lp.fireworks.count_documents({"state": "READY"}):
            made = launch(store, fworker, nlaunches=1, launch_dir=launch_dir, strm_lvl="ERROR")
            if not made:
                break  # READY fireworks this worker may not run (another category)
            done += made
            last = lp.fireworks.find_one({"state": {"$in": ["COMPLETED", "FIZZLED"]}}, sort=[("updated_on", -1)])
            if last is None:
                continue
            if last["spec"].get("drx_workflow") == TRAIN_KIND:
                echo(f"      training firework '{last['name']}' started by itself: {last['state']}")
                continue
            relaxed += 1
            task = store.tasks.find_one({"drx_id": last["spec"].get("drx_id")})
            fixes = f", {task.get('n_custodian_corrections', 0)} custodian corrections" if task else ""
            echo(f"      relaxed {relaxed}/{todo}: {last['name']} {last['state']}{fixes}")
    return done


def _report(store, root: Path, steps: int, echo) -> Path:
    from drx_workflows.pipeline.report import write_report

    doc = store.potentials.find_one({"slice": DEMO_SLICE, "backend": DEMO_BACKEND}, sort=[("generation", -1)])
    if doc is None:
        echo(f"[5/{steps}] {DEMO_BACKEND} on '{DEMO_SLICE}' was not trained (see `drx status`); report without it")
    else:
        echo(
            f"[5/{steps}] {DEMO_BACKEND} trained on '{DEMO_SLICE}' by its firework: {doc['n_train']} relaxation frames of "
            f"{doc.get('n_train_structures', '?')} structures, test energy MAE {doc['test']['energy_mae']:.1f} meV/atom "
            f"against the surrogate engine's own energies (trained in {doc['train_seconds']:.0f} s)"
        )
        _voltages(store, echo)
    return write_report(store, root / "report")


# The study's first slice composition: the one whose voltage the demo's potential recomputes
# (potential relaxations are the slow part; every composition gets the engine's voltage).
DEMO_VOLTAGE_POTENTIAL = ("Mn0.5Ni0.5",)


def _voltages(store, echo) -> None:
    from drx_workflows.pipeline.voltages import demo_voltages

    echo("      average Li-intercalation voltages (surrogate engine, NOT DFT):")
    demo_voltages(store, echo, max_per_state=1, potential_keys=DEMO_VOLTAGE_POTENTIAL)
