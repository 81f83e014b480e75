"""Handlers against real VASP output, and relaxation workflows run by FireWorks on an embedded store."""

import gzip
import json
import os
import shutil
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Vasprun

from drx_workflows.enumeration.records import structure_to_compact
from drx_workflows.vasp.handlers import MAX_ERRORS, drx_handlers, drx_validators

FEO = "FeO_GGAU_custodian_postprocess"
V2O5 = "V2O5_GGAU_pymatgen_unconverged"
HANDLERS = [
    "VaspErrorHandler",
    "MeshSymmetryErrorHandler",
    "UnconvergedErrorHandler",
    "NonConvergingErrorHandler",
    "PotimErrorHandler",
    "PositiveEnergyErrorHandler",
    "FrozenJobErrorHandler",
    "StdErrHandler",
    "LargeSigmaHandler",
    "IncorrectSmearingHandler",
]


def drx_doc(drx_id="drx-0000000000a1", slices=("test-slice",)):
    # conventional rocksalt cell (4 Li + 4 O) written out: Structure.from_spacegroup takes seconds
    s = Structure(
        Lattice.cubic(4.15),
        ["Li"] * 4 + ["O"] * 4,
        [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]],
    )
    s.make_supercell([2, 1, 1])
    s.replace(0, "Mn")
    s.replace(1, "Ni")
    return {
        "drx_id": drx_id,
        "formula": s.composition.formula.replace(" ", ""),
        "reduced_formula": s.composition.reduced_formula,
        "tms": ["Mn", "Ni"],
        "n_tm": 2,
        "tm_counts": {"Mn": 1, "Ni": 1},
        "cation_sites": 8,
        "li_free": False,
        "source": "hnf-random",
        "lattice_a": 4.15,
        "parent_id": None,
        "supercell": [[2, 0, 0], [0, 1, 0], [0, 0, 1]],
        "slices": list(slices),
        "structure": structure_to_compact(s),
    }


def copy_vasprun(src_dir, dest_dir):
    """vasprun.xml from a shared run into dest_dir, gunzipped."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    gz = src_dir / "vasprun.xml.gz"
    if gz.exists():
        with gzip.open(gz, "rb") as fi, open(dest_dir / "vasprun.xml", "wb") as fo:
            shutil.copyfileobj(fi, fo)
    else:
        shutil.copyfile(src_dir / "vasprun.xml", dest_dir / "vasprun.xml")
    return dest_dir / "vasprun.xml"


# ---------------------------------------------------------------- handlers


def test_handler_set_outside_queue(monkeypatch):
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    assert [type(h).__name__ for h in drx_handlers()] == HANDLERS
    assert [type(v).__name__ for v in drx_validators()] == ["VasprunXMLValidator", "VaspFilesValidator"]
    assert MAX_ERRORS == 5


def test_walltime_handler_only_in_queue_jobs(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    names = [type(h).__name__ for h in drx_handlers()]
    assert names == HANDLERS + ["WalltimeHandler"]
    wall = drx_handlers(wall_time=3600)[-1]
    assert type(wall).__name__ == "WalltimeHandler" and wall.wall_time == 3600


def test_unconverged_handler_detects_real_unconverged_run(tmp_path, shared_dir):
    run = tmp_path / "v2o5"
    vasprun = copy_vasprun(shared_dir / "vasp" / V2O5, run)
    assert not Vasprun(str(vasprun), parse_potcar_file=False).converged_electronic
    handler = next(h for h in drx_handlers(queue=False) if type(h).__name__ == "UnconvergedErrorHandler")
    assert handler.check(str(run)) is True
    # and it leaves a converged run alone
    ok = tmp_path / "feo"
    copy_vasprun(shared_dir / "vasp" / FEO, ok)
    assert handler.check(str(ok)) is False


# ---------------------------------------------------------------- end to end


def _fake_ref_dir(tmp_path, shared_dir):
    """atomate's RunVaspFake layout: inputs/ and outputs/ of the real FeO run (symlinks)."""
    src = shared_dir / "vasp" / FEO
    ref = tmp_path / "ref_feo"
    (ref / "inputs").mkdir(parents=True)
    (ref / "outputs").mkdir()
    for f in ("INCAR", "KPOINTS", "POSCAR"):
        os.symlink(src / f, ref / "inputs" / f)
    for f in ("vasprun.xml", "OUTCAR", "OSZICAR", "CONTCAR"):
        os.symlink(src / f, ref / "outputs" / f)
    return ref


def _fworker(tmp_path, **env):
    from ruamel.yaml import YAML

    p = tmp_path / "fworker.yaml"
    with open(p, "w") as fh:
        YAML().dump({"name": "test", "category": "", "query": "{}", "env": {"potcar_spec": True, **env}}, fh)
    return p


def test_relax_workflow_end_to_end_with_fake_vasp(tmp_path, monkeypatch, shared_dir, fresh_store):
    from atomate.vasp.powerups import use_fake_vasp

    from drx_workflows.pipeline.launch.local import launch
    from drx_workflows.pipeline.relax.workflows import relax_workflow

    monkeypatch.chdir(tmp_path)
    store = fresh_store
    doc = drx_doc()
    store.structures.insert_one(dict(doc))
    wf = relax_workflow(doc)
    assert doc["drx_id"] in wf.name and doc["drx_id"] in wf.fws[0].name
    ref = _fake_ref_dir(tmp_path, shared_dir)
    wf = use_fake_vasp(
        wf,
        {doc["drx_id"]: str(ref)},
        # checked against the real run's INCAR/KPOINTS: our set must agree on these
        params_to_check=["ENCUT", "ISPIN", "IBRION", "ISIF", "LORBIT", "LMAXMIX", "LDAU", "NSW"],
        check_poscar=False,  # the reference is FeO, our structure is Li-Mn-Ni-O
        check_potcar=False,  # no POTCARs (licensed): POTCAR.spec is written instead
    )
    lp = store.launchpad()
    lp.add_wf(wf)
    n = launch(store, _fworker(tmp_path, vasp_cmd="fake"), launch_dir=tmp_path / "runs")
    assert n == 1
    fw = lp.fireworks.find_one({"spec.drx_id": doc["drx_id"]})
    assert fw["state"] == "COMPLETED"

    task = store.tasks.find_one({"drx_id": doc["drx_id"]})
    assert task is not None
    vr = Vasprun(str(shared_dir / "vasp" / FEO / "vasprun.xml"), parse_potcar_file=False)
    final = vr.final_structure
    assert task["output"]["energy"] == pytest.approx(vr.final_energy, abs=1e-6)
    assert task["output"]["energy_per_atom"] == pytest.approx(vr.final_energy / len(final), abs=1e-6)
    np.testing.assert_allclose(task["output"]["forces"], vr.ionic_steps[-1]["forces"], atol=1e-8)
    np.testing.assert_allclose(task["output"]["stress"], vr.ionic_steps[-1]["stress"], atol=1e-8)
    out_structure = Structure.from_dict(task["output"]["structure"])
    np.testing.assert_allclose(out_structure.lattice.matrix, final.lattice.matrix, atol=1e-6)
    np.testing.assert_allclose(out_structure.frac_coords, final.frac_coords, atol=1e-6)
    assert [s.specie.symbol for s in out_structure] == [s.specie.symbol for s in final]
    assert Structure.from_dict(task["input"]["structure"]).composition == vr.initial_structure.composition
    # INCAR actually run, run statistics, custodian record (none: fake VASP bypasses custodian)
    assert task["input"]["incar"]["LDAUU"] == vr.incar["LDAUU"]
    assert task["calcs_reversed"][0]["input"]["incar"]["ENCUT"] == vr.incar["ENCUT"]
    assert "overall" in task["run_stats"]
    assert task["custodian_corrections"] == []
    assert task["state"] == "successful" and isinstance(task["task_id"], int)
    assert task["surrogate"] is False  # real VASP output
    # DRX metadata
    for key in ("drx_id", "n_tm", "tms", "li_free", "formula", "source"):
        assert task[key] == doc[key], key
    assert task["slices"] == ["test-slice"]
    assert task["task_label"] == "drx relax"
    assert "drx" in task["tags"] and "n_tm=2" in task["tags"]
    # durable: launch() saved the embedded store file
    assert doc["drx_id"] in store.config.path.read_text()


FAKE_VASP = r"""
import gzip, json, shutil, sys
from pathlib import Path
plan = json.loads(Path(sys.argv[1]).read_text())
counter = Path(".fake_vasp_calls")
n = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(n + 1))
for name, src in plan[min(n, len(plan) - 1)].items():
    if src.endswith(".gz"):
        with gzip.open(src, "rb") as fi, open(name, "wb") as fo:
            shutil.copyfileobj(fi, fo)
    else:
        shutil.copyfile(src, name)
print("fake vasp call", n + 1)
"""


def _fake_vasp_cmd(tmp_path, shared_dir, plan_names):
    """A 'VASP' that copies real outputs: call k gets plan_names[k] ('unconverged' or 'ok')."""
    feo = shared_dir / "vasp" / FEO
    steps = {
        "ok": {f: str(feo / f) for f in ("vasprun.xml", "OUTCAR", "OSZICAR", "CONTCAR")},
        "unconverged": {
            "vasprun.xml": str(shared_dir / "vasp" / V2O5 / "vasprun.xml.gz"),
            **{f: str(feo / f) for f in ("OUTCAR", "OSZICAR", "CONTCAR")},
        },
    }
    (tmp_path / "fake_vasp.py").write_text(FAKE_VASP)
    (tmp_path / "plan.json").write_text(json.dumps([steps[p] for p in plan_names]))
    return f"{sys.executable} {tmp_path / 'fake_vasp.py'} {tmp_path / 'plan.json'}"


def _fast_custodian(wf):
    # custodian polls monitors every 10 s by default; a fake VASP finishes at once
    for fw in wf.fws:
        for t in fw.tasks:
            if "RunVaspDrxCustodian" in t._fw_name:
                t["polling_time_step"] = 0.05
                t["monitor_freq"] = 1
    return wf


def test_custodian_corrections_reach_task_document(tmp_path, monkeypatch, shared_dir, fresh_store):
    """Real custodian run (double relaxation, handler set) on a fake VASP fed with real outputs:
    the first run is electronically unconverged, UnconvergedErrorHandler fixes INCAR, the rest converge."""
    from drx_workflows.pipeline.launch.local import launch
    from drx_workflows.pipeline.relax.workflows import relax_workflow

    monkeypatch.chdir(tmp_path)
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    store = fresh_store
    doc = drx_doc("drx-0000000000c1")
    store.structures.insert_one(dict(doc))  # the worker reads the structure by drx_id
    lp = store.launchpad()
    lp.add_wf(_fast_custodian(relax_workflow(doc)))
    cmd = _fake_vasp_cmd(tmp_path, shared_dir, ["unconverged", "ok", "ok"])
    launch(store, _fworker(tmp_path, vasp_cmd=cmd), launch_dir=tmp_path / "runs")
    assert lp.fireworks.find_one({"spec.drx_id": doc["drx_id"]})["state"] == "COMPLETED"
    task = store.tasks.find_one({"drx_id": doc["drx_id"]})
    assert [c["task"]["name"] for c in task["calcs_reversed"]] == ["relax2", "relax1"]
    corr = task["custodian_corrections"]
    assert len(corr) == 1 and task["n_custodian_corrections"] == 1
    assert corr[0]["handler"] == "UnconvergedErrorHandler"
    assert corr[0]["job"] == "relax1"
    assert corr[0]["errors"] == ["Unconverged"]
    assert corr[0]["actions"] and corr[0]["actions"][0]["dict"] == "INCAR"
    assert len(task["custodian"]) == 2  # both jobs of the double relaxation
    # the correction is what the rerun of relax1 used; the original INCAR is kept in orig_inputs
    from pymatgen.io.vasp import Incar

    changed = corr[0]["actions"][0]["action"]["_set"]
    run_dir = task["dir_name"].split(":", 1)[-1]
    from monty.os.path import zpath

    incar1 = Incar.from_file(zpath(os.path.join(run_dir, "INCAR.relax1")))  # custodian gzips outputs
    for key, value in changed.items():
        assert incar1[key] == value
        assert task["orig_inputs"]["incar"].get(key) != value


def test_fizzled_grouped_by_custodian_error_and_rerun(tmp_path, monkeypatch, shared_dir, fresh_store):
    from drx_workflows.pipeline.launch.local import launch
    from drx_workflows.pipeline.relax.status import relax_status, rerun_fizzled
    from drx_workflows.pipeline.relax.workflows import relax_workflow

    monkeypatch.chdir(tmp_path)
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    store = fresh_store
    lp = store.launchpad()
    bad, good = drx_doc("drx-0000000000f1"), drx_doc("drx-0000000000f2", slices=("other",))
    store.structures.insert_many([dict(bad), dict(good)])
    lp.add_wf(_fast_custodian(relax_workflow(bad, max_errors=2)))
    lp.add_wf(relax_workflow(good))
    cmd = _fake_vasp_cmd(tmp_path, shared_dir, ["unconverged"])
    launch(store, _fworker(tmp_path, vasp_cmd=cmd), launch_dir=tmp_path / "runs", nlaunches=1)
    st = relax_status(store)
    assert st["total"] == {"FIZZLED": 1, "READY": 1}
    assert st["fizzled_by_error"] == {"UnconvergedErrorHandler": 1}
    assert st["by_slice"]["test-slice"] == {"FIZZLED": 1}
    assert st["by_slice"]["other"] == {"READY": 1}
    assert st["by_n_tm"]["2"] == {"FIZZLED": 1, "READY": 1}
    assert rerun_fizzled(store, "NoSuchError") == []
    fw_ids = rerun_fizzled(store, "unconvergederrorhandler")
    assert len(fw_ids) == 1
    assert relax_status(store)["total"] == {"READY": 2}


def test_cli_submit_launch_status(tmp_path, monkeypatch, shared_dir, fresh_store):
    """The CLI path: drx submit -> drx launch (custodian + fake VASP) -> drx status."""
    import click
    from click.testing import CliRunner

    from drx_workflows.cli.relax import COMMANDS

    monkeypatch.chdir(tmp_path)
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    store = fresh_store
    doc = drx_doc("drx-0000000000d1")
    store.structures.insert_one(dict(doc))

    @click.group()
    @click.pass_context
    def grp(ctx):
        ctx.obj = {"store_config": store.config}

    for c in COMMANDS:
        grp.add_command(c)
    runner = CliRunner()
    cmd = _fake_vasp_cmd(tmp_path, shared_dir, ["ok"])
    worker = _fworker(tmp_path, vasp_cmd=cmd)
    r = runner.invoke(grp, ["submit", "--quiet", "--fworker", str(worker)], catch_exceptions=False)
    assert "1 workflows added" in r.output
    # custodian's monitors would poll every 10 s; make this run fast
    lp = store.launchpad()
    fw = lp.fireworks.find_one({"spec.drx_id": doc["drx_id"]})
    lp.fireworks.update_one(
        {"fw_id": fw["fw_id"]},
        {"$set": {"spec._tasks.1.polling_time_step": 0.05, "spec._tasks.1.monitor_freq": 1}},
    )
    r = runner.invoke(grp, ["launch", "--fworker", str(worker), "--launch-dir", "runs"], catch_exceptions=False)
    assert r.exit_code == 0 and "1 launches" in r.output
    r = runner.invoke(grp, ["status", "--json"], catch_exceptions=False)
    st = json.loads(r.output)
    assert st["total"] == {"COMPLETED": 1}
    task = store.tasks.find_one({"drx_id": doc["drx_id"]})
    assert task["state"] == "successful" and task["formula_pretty"] == "FeO"
    assert task["source"] == "hnf-random" and task["slices"] == ["test-slice"]


def test_write_inputs_reads_structure_by_drx_id(tmp_path, monkeypatch, fresh_store):
    from pymatgen.io.vasp import Poscar

    from drx_workflows.errors import DrxError
    from drx_workflows.pipeline.relax.firetasks import WriteDrxInputs
    from drx_workflows.store.dbfile import write_db_file

    monkeypatch.chdir(tmp_path)
    doc = drx_doc("drx-0000000000e1")
    fresh_store.structures.insert_one(dict(doc))
    db = write_db_file(tmp_path / "db.json", fresh_store.config)
    spec = {"_fw_env": {"db_file": str(db), "potcar_spec": True}}
    WriteDrxInputs(drx_id=doc["drx_id"]).run_task(spec)
    written = Poscar.from_file("POSCAR").structure
    from drx_workflows.enumeration.records import structure_from_doc

    assert written.composition == structure_from_doc(doc).composition
    with pytest.raises(DrxError) as err:
        WriteDrxInputs(drx_id="drx-missing").run_task(spec)
    assert "drx-missing" in str(err.value) and "\n" not in str(err.value)


def test_status_names_errors_from_launch_records():
    from drx_workflows.pipeline.relax.status import error_of_launch

    def launch(details=None, trace=""):
        return {"action": {"stored_data": {"_exception": {"_details": details, "_stacktrace": trace}}}}

    assert error_of_launch(launch({"custodian_error": "MaxCorrectionsError", "handler": "PotimErrorHandler"})) == "PotimErrorHandler"
    assert error_of_launch(launch({"error": "NotConverged"})) == "NotConverged"
    trace = "Traceback (most recent call last):\n  File x\ndrx_workflows.errors.DrxError: PMG_VASP_PSP_DIR is not set"
    assert error_of_launch(launch(None, trace)) == "DrxError"
    assert error_of_launch(None) == "no launch record"


def test_isolated_atom_workflow_meets_a_real_handler(tmp_path, monkeypatch, shared_dir, fresh_store):
    """The atom runs as one custodian job with Gaussian smearing; fed the FeO run's outputs,
    its smearing entropy is too large for LargeSigmaHandler, which lowers SIGMA until max_errors."""
    import glob

    from pymatgen.io.vasp import Incar

    from drx_workflows.pipeline.launch.local import launch
    from drx_workflows.pipeline.relax.status import relax_status
    from drx_workflows.pipeline.relax.submit import submit_isolated_atoms
    from drx_workflows.vasp.handlers import read_custodian_log

    monkeypatch.chdir(tmp_path)
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    store = fresh_store
    assert submit_isolated_atoms(store, elements=["Li"]).added == 1
    lp = store.launchpad()
    lp.fireworks.update_one(
        {"spec.drx_id": "atom-Li"},
        {"$set": {"spec._tasks.1.polling_time_step": 0.05, "spec._tasks.1.monitor_freq": 1, "spec._tasks.1.max_errors": 2}},
    )
    launch(store, _fworker(tmp_path, vasp_cmd=_fake_vasp_cmd(tmp_path, shared_dir, ["ok"])), launch_dir=tmp_path / "runs")
    assert lp.fireworks.find_one({"spec.drx_id": "atom-Li"})["state"] == "FIZZLED"
    assert relax_status(store)["fizzled_by_error"] == {"LargeSigmaHandler": 1}
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "launcher_*"))
    log = read_custodian_log(run_dir)
    assert len(log) == 1  # job_type normal: a single job, no relax1/relax2
    corrections = log[0]["corrections"]
    assert [c["handler"]["@class"] for c in corrections] == ["LargeSigmaHandler", "LargeSigmaHandler"]
    sigmas = [c["actions"][0]["action"]["_set"]["SIGMA"] for c in corrections]
    assert sigmas[0] < 0.05 and sigmas[1] < sigmas[0]
    from monty.os.path import zpath

    incar = Incar.from_file(zpath(os.path.join(run_dir, "INCAR")))
    assert incar["ISYM"] == 0 and incar["ISPIN"] == 2 and incar["SIGMA"] == pytest.approx(sigmas[-1])
