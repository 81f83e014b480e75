"""drx-surrogate-vasp: outputs parse with pymatgen/custodian/atomate, match CHGNet, faults drive custodian.

Structures are an 8-atom rocksalt Li2MnNiO4 cell; runs are subprocesses of the real console script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("chgnet")

from drx_workflows.vasp.surrogate import faults  # noqa: E402
from drx_workflows.vasp.surrogate.marker import is_surrogate_run  # noqa: E402
from drx_workflows.vasp.surrogate.scf import electronic_energies  # noqa: E402

SHARED_VASP = Path(__file__).resolve().parents[2] / "shared" / "vasp"


def surrogate_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "drx-surrogate-vasp"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("drx-surrogate-vasp")
    return [found] if found else [sys.executable, "-m", "drx_workflows.vasp.surrogate.cli"]


def drx_cell(rattle: float = 0.0, a: float = 4.15):
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    # Conventional rocksalt: cation sites 0-3, anions 4-7 -> Li2MnNiO4.
    s.replace(2, "Mn")
    s.replace(3, "Ni")
    if rattle:
        rng = np.random.default_rng(7)
        for i in range(len(s)):
            s.translate_sites([i], rng.normal(0, rattle, 3), frac_coords=False)
    return s


def write_inputs(directory: Path, structure=None, **incar) -> None:
    from pymatgen.io.vasp.sets import MPRelaxSet

    structure = structure if structure is not None else drx_cell()
    settings = {"NSW": 0, **incar}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MPRelaxSet(structure, user_incar_settings=settings).write_input(str(directory), potcar_spec=True)


def run_surrogate(directory: Path, env_extra: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
    env.update(env_extra or {})
    return subprocess.run(surrogate_cmd(), cwd=directory, env=env, capture_output=True, text=True, timeout=timeout)


def vasprun(directory: Path):
    from pymatgen.io.vasp.outputs import Vasprun

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Vasprun(str(directory / "vasprun.xml"), parse_potcar_file=False)


# --------------------------------------------------------------------------- fast unit tests


def test_synthetic_scf_histories():
    conv = electronic_energies(-10.0, nelm=60, nelmin=2, ediff=1e-4, first=True, unconverged=False)
    assert 1 < len(conv) < 60 and conv[-1] == -10.0 and abs(conv[-1] - conv[-2]) < 1e-4
    bad = electronic_energies(-10.0, nelm=30, nelmin=2, ediff=1e-4, first=False, unconverged=True)
    assert len(bad) == 30 and abs(bad[-1] - bad[-2]) > 1e-4
    assert len(electronic_energies(-1.0, nelm=3, nelmin=2, ediff=1e-4, first=True, unconverged=False)) == 2


def test_fault_claimed_once(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.ENV_VAR, "zbrent, unconverged")
    assert faults.claim(str(tmp_path), {}) == {"zbrent", "unconverged"}
    assert faults.claim(str(tmp_path), {}) == set()
    monkeypatch.delenv(faults.ENV_VAR)
    assert faults.claim(str(tmp_path), {"DRX_FAULT": "brmix"}) == {"brmix"}
    assert sorted(json.loads((tmp_path / faults.MARKER_FILE).read_text())) == ["brmix", "unconverged", "zbrent"]
    with pytest.raises(ValueError, match="unknown surrogate fault"):
        faults.claim(str(tmp_path), {"DRX_FAULT": "nonsense"})


def test_real_vasp_is_not_surrogate(tmp_path):
    assert not is_surrogate_run(tmp_path)
    if SHARED_VASP.exists():
        assert not is_surrogate_run(SHARED_VASP / "FeO_GGAU_custodian_postprocess")
        assert not is_surrogate_run(SHARED_VASP / "TbZnB5O10_GGA_pymatgendb_success_mp_aflow_relax1")


def test_ionic_convergence_criteria():
    """EDIFFG < 0: largest force below |EDIFFG|; EDIFFG > 0: energy change below EDIFFG; 0: never (run NSW)."""
    from drx_workflows.vasp.surrogate.engine import _converged

    class Target:
        def __init__(self, fmax):
            self.forces = np.array([[fmax, 0.0, 0.0], [0.0, 0.0, 0.0]])

        def get_forces(self):
            return self.forces

    class Step:
        def __init__(self, energy):
            self.energy = energy

    assert _converged([Step(-1.0)], Target(0.01), -0.03)
    assert not _converged([Step(-1.0)], Target(0.05), -0.03)
    assert not _converged([Step(-1.0)], Target(0.0), 1e-3)  # needs two steps to compare
    assert _converged([Step(-1.0), Step(-1.0005)], Target(1.0), 1e-3)
    assert not _converged([Step(-1.0), Step(-1.01)], Target(0.0), 1e-3)
    assert not _converged([Step(-1.0), Step(-1.0)], Target(0.0), 0.0)


# --------------------------------------------------------------------------- bad input: no model load


def _overlapping():
    s = drx_cell()
    s.translate_sites([1], s[0].coords - s[1].coords + np.array([0.3, 0, 0]), frac_coords=False)
    return s


def _unsupported_element():
    s = drx_cell()
    s.replace(3, "Am")  # Z = 95, beyond CHGNet's element table
    return s


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no_incar", "No INCAR found"),
        ("bad_incar", "Error reading item 'NSW'"),
        ("no_poscar", "No POSCAR found"),
        ("bad_poscar", "Error reading POSCAR"),
        ("unsupported_element", "element Am is not supported"),
        ("overlap", "distance between some ions is very small"),
    ],
)
def test_bad_input_exits_nonzero_with_vasp_out_message(tmp_path, monkeypatch, case, expected):
    monkeypatch.chdir(tmp_path)
    structure = {"unsupported_element": _unsupported_element(), "overlap": _overlapping()}.get(case)
    if case == "unsupported_element":
        # MPRelaxSet has no POTCAR for Am; write the inputs by hand.
        write_inputs(tmp_path)
        from pymatgen.io.vasp.inputs import Poscar

        Poscar(structure).write_file(tmp_path / "POSCAR")
        (tmp_path / "POTCAR.spec").write_text("\n".join(["Li_sv", "O", "Mn_pv", "Am"]) + "\n")
    else:
        write_inputs(tmp_path, structure)
    if case == "no_incar":
        (tmp_path / "INCAR").unlink()
    elif case == "bad_incar":
        (tmp_path / "INCAR").write_text((tmp_path / "INCAR").read_text().replace("NSW = 0", "NSW = many"))
    elif case == "no_poscar":
        (tmp_path / "POSCAR").unlink()
    elif case == "bad_poscar":
        (tmp_path / "POSCAR").write_text("garbage\n1.0\nnot a lattice\n")
    started = time.time()
    proc = run_surrogate(tmp_path)
    assert proc.returncode != 0
    text = (tmp_path / "vasp.out").read_text()
    assert expected in text and "ERROR" in text
    assert "surrogate" in text.lower()
    assert not (tmp_path / "vasprun.xml").exists()
    assert time.time() - started < 60  # fails fast: no model load


@pytest.mark.slow
def test_bad_input_under_custodian_is_recorded(tmp_path, monkeypatch):
    from custodian import Custodian
    from custodian.custodian import CustodianError
    from custodian.vasp.handlers import UnconvergedErrorHandler, VaspErrorHandler
    from custodian.vasp.jobs import VaspJob

    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path, _overlapping())
    c = Custodian(
        [VaspErrorHandler(), UnconvergedErrorHandler()],
        [VaspJob(surrogate_cmd(), auto_npar=False)],
        max_errors=2,
        polling_time_step=0.5,
        monitor_freq=2,
        directory=str(tmp_path),
    )
    with pytest.raises(CustodianError):
        c.run()
    assert "distance between some ions is very small" in (tmp_path / "vasp.out").read_text()


# --------------------------------------------------------------------------- a normal single point


@pytest.fixture(scope="module")
def single_point(tmp_path_factory):
    directory = tmp_path_factory.mktemp("single_point")
    write_inputs(directory)
    proc = run_surrogate(directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return directory


@pytest.fixture(scope="module")
def chgnet_reference(single_point):
    from chgnet.model import CHGNet
    from pymatgen.io.vasp.inputs import Poscar

    structure = Poscar.from_file(single_point / "POSCAR").structure
    model = CHGNet.load(verbose=False, use_device="cpu")
    pred = model.predict_structure(structure)
    return {
        "energy": float(pred["e"]) * len(structure),
        "forces": np.asarray(pred["f"]),
        # CHGNet: GPa, ASE sign; VASP: kBar, opposite sign.
        "stress_kbar": -10.0 * np.asarray(pred["s"]),
        "magmoms": np.asarray(pred["m"]),
    }


def test_single_point_vasprun_matches_chgnet(single_point, chgnet_reference):
    v = vasprun(single_point)
    assert len(v.ionic_steps) == 1
    assert v.converged and v.converged_electronic and v.converged_ionic
    assert v.final_energy == pytest.approx(chgnet_reference["energy"], abs=1e-4)
    np.testing.assert_allclose(v.ionic_steps[-1]["forces"], chgnet_reference["forces"], atol=1e-4)
    np.testing.assert_allclose(v.ionic_steps[-1]["stress"], chgnet_reference["stress_kbar"], atol=0.05)
    assert v.final_structure.composition.reduced_formula == "Li2MnNiO4"
    assert v.incar["NSW"] == 0 and v.parameters["NELM"] == 100
    assert v.run_type == "GGA+U" and v.is_hubbard
    assert v.potcar_symbols == ["PAW_PBE Li_sv", "PAW_PBE Mn_pv", "PAW_PBE Ni_pv", "PAW_PBE O"]
    assert v.generator["program"].lower().startswith("vasp")


def test_single_point_outcar_oszicar(single_point, chgnet_reference):
    from pymatgen.io.vasp.outputs import Oszicar, Outcar

    outcar = Outcar(str(single_point / "OUTCAR"))
    assert outcar.final_energy == pytest.approx(chgnet_reference["energy"], abs=1e-4)
    for key in ("Total CPU time used (sec)", "Elapsed time (sec)", "Maximum memory used (kb)"):
        assert outcar.run_stats[key] is not None
    assert outcar.run_stats["cores"] == 1
    mags = [m["tot"] for m in outcar.magnetization]
    np.testing.assert_allclose(mags, chgnet_reference["magmoms"], atol=2e-3)
    assert "TOTAL-FORCE" in (single_point / "OUTCAR").read_text()
    oszicar = Oszicar(str(single_point / "OSZICAR"))
    assert oszicar.final_energy == pytest.approx(chgnet_reference["energy"], abs=1e-4)
    assert len(oszicar.ionic_steps) == 1 and oszicar.ionic_steps[0]["mag"] == pytest.approx(
        chgnet_reference["magmoms"].sum(), abs=1e-3
    )


def test_single_point_validators_and_marker(single_point):
    from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator

    assert VasprunXMLValidator().check(str(single_point)) is False
    assert VaspFilesValidator().check(str(single_point)) is False
    assert is_surrogate_run(single_point)
    for name in ("vasprun.xml", "OUTCAR", "OSZICAR", "vasp.out"):
        assert "drx-surrogate-vasp" in (single_point / name).read_text()[:4096], name
    assert '<i name="surrogate" type="string">drx-surrogate-vasp CHGNet 0.4.2</i>' in (
        single_point / "vasprun.xml"
    ).read_text()
    assert not list(single_point.glob(".*.tmp"))


def test_single_point_builds_atomate_task_doc(single_point, tmp_path):
    from atomate.vasp.drones import VaspDrone

    run_dir = tmp_path / "run"
    shutil.copytree(single_point, run_dir)
    doc = VaspDrone().assimilate(str(run_dir))
    assert doc["state"] == "successful"
    assert doc["output"]["energy"] == pytest.approx(vasprun(single_point).final_energy, abs=1e-6)
    assert doc["formula_pretty"] == "Li2MnNiO4"


# --------------------------------------------------------------------------- relaxation


@pytest.mark.slow
def test_isif3_relaxation_lowers_energy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path, drx_cell(rattle=0.05, a=4.25), NSW=6, ISIF=3, EDIFFG=-0.02)
    proc = run_surrogate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    v = vasprun(tmp_path)
    energies = [step["e_0_energy"] for step in v.ionic_steps]
    assert len(energies) >= 3
    assert energies[-1] < energies[0] - 1e-3
    assert v.final_structure.volume != pytest.approx(v.initial_structure.volume, rel=1e-4)
    assert all(np.asarray(step["forces"]).shape == (8, 3) for step in v.ionic_steps)
    contcar = (tmp_path / "CONTCAR").read_text()
    from pymatgen.io.vasp.inputs import Poscar

    assert Poscar.from_str(contcar).structure.lattice.volume == pytest.approx(v.final_structure.volume, rel=1e-6)


@pytest.mark.slow
def test_killed_run_leaves_incomplete_vasprun(tmp_path):
    from custodian.vasp.validators import VasprunXMLValidator

    write_inputs(tmp_path, NSW=3, ISIF=3)
    env = {k: v for k, v in os.environ.items() if k != faults.ENV_VAR}
    env[faults.ENV_VAR] = "frozen"
    with open(tmp_path / "vasp.out", "w") as out:
        proc = subprocess.Popen(surrogate_cmd(), cwd=tmp_path, env=env, stdout=out, stderr=subprocess.DEVNULL)
    try:
        oszicar = tmp_path / "OSZICAR"
        deadline = time.time() + 120
        while time.time() < deadline and not (oszicar.exists() and " F= " in oszicar.read_text()):
            time.sleep(0.5)
        assert proc.poll() is None, "frozen run should still be sleeping"
        assert (tmp_path / "vasprun.xml").exists()
        assert "</modeling>" not in (tmp_path / "vasprun.xml").read_text()
        assert VasprunXMLValidator().check(str(tmp_path)) is True  # True = validation failed
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- custodian: detect -> correct -> rerun


def run_custodian(tmp_path, handlers, fault: str | None, monkeypatch, **custodian_kwargs):
    from custodian import Custodian
    from custodian.vasp.jobs import VaspJob
    from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator

    if fault:
        monkeypatch.setenv(faults.ENV_VAR, fault)
    else:
        monkeypatch.delenv(faults.ENV_VAR, raising=False)
    kwargs = {"max_errors": 5, "polling_time_step": 0.5, "monitor_freq": 2, **custodian_kwargs}
    c = Custodian(
        handlers,
        [VaspJob(surrogate_cmd(), auto_npar=False)],
        validators=[VasprunXMLValidator(), VaspFilesValidator()],
        directory=str(tmp_path),
        **kwargs,
    )
    c.run()
    return json.loads((tmp_path / "custodian.json").read_text())


def corrections_of(log) -> list[dict]:
    return [corr for job in log for corr in job["corrections"]]


@pytest.mark.slow
def test_custodian_fixes_unconverged(tmp_path, monkeypatch):
    from custodian.vasp.handlers import UnconvergedErrorHandler, VaspErrorHandler

    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path, NSW=0, NELM=12)
    log = run_custodian(tmp_path, [VaspErrorHandler(), UnconvergedErrorHandler()], "unconverged", monkeypatch)
    corrections = corrections_of(log)
    assert [c["errors"] for c in corrections] == [["Unconverged"]]
    assert corrections[0]["actions"] == [{"dict": "INCAR", "action": {"_set": {"ALGO": "Normal"}}}]
    from pymatgen.io.vasp.inputs import Incar

    assert Incar.from_file(tmp_path / "INCAR")["ALGO"] == "Normal"
    assert list(tmp_path.glob("error.1.tar.gz"))
    assert vasprun(tmp_path).converged


@pytest.mark.slow
def test_custodian_fixes_zbrent_via_incar_tag(tmp_path, monkeypatch):
    from custodian.vasp.handlers import UnconvergedErrorHandler, VaspErrorHandler

    monkeypatch.chdir(tmp_path)
    # Injected through the INCAR so only this job's directory fails, whatever the environment says.
    write_inputs(tmp_path, drx_cell(rattle=0.04), NSW=4, ISIF=2, EDIFFG=-0.05, DRX_FAULT="zbrent")
    log = run_custodian(tmp_path, [VaspErrorHandler(), UnconvergedErrorHandler()], None, monkeypatch)
    corrections = corrections_of(log)
    assert corrections[0]["errors"] == ["zbrent"]
    actions = corrections[0]["actions"]
    assert {"file": "CONTCAR", "action": {"_file_copy": {"dest": "POSCAR"}}} in actions
    assert {"dict": "INCAR", "action": {"_set": {"EDIFF": 1e-06}}} in actions
    from pymatgen.io.vasp.inputs import Incar

    incar = Incar.from_file(tmp_path / "INCAR")
    assert incar["EDIFF"] == 1e-6 and incar["NELMIN"] == 8
    v = vasprun(tmp_path)
    assert v.converged_electronic
    assert "ZBRENT" not in (tmp_path / "vasp.out").read_text()


@pytest.mark.slow
def test_custodian_fixes_brmix(tmp_path, monkeypatch):
    from custodian.vasp.handlers import UnconvergedErrorHandler, VaspErrorHandler

    monkeypatch.chdir(tmp_path)
    write_inputs(tmp_path, NSW=0)
    log = run_custodian(tmp_path, [VaspErrorHandler(), UnconvergedErrorHandler()], "brmix", monkeypatch)
    corrections = corrections_of(log)
    assert corrections[0]["errors"] == ["brmix"]
    assert corrections[0]["actions"]
    assert vasprun(tmp_path).converged


@pytest.mark.slow
def test_custodian_fixes_frozen_job(tmp_path, monkeypatch):
    from custodian.vasp.handlers import FrozenJobErrorHandler, UnconvergedErrorHandler

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(faults.FROZEN_SECONDS_ENV, "600")
    write_inputs(tmp_path, NSW=0)
    log = run_custodian(
        tmp_path, [FrozenJobErrorHandler(timeout=20), UnconvergedErrorHandler()], "frozen", monkeypatch
    )
    corrections = corrections_of(log)
    assert corrections[0]["errors"] == ["Frozen job"]
    assert corrections[0]["actions"] == [{"dict": "INCAR", "action": {"_set": {"ALGO": "Normal"}}}]
    assert vasprun(tmp_path).converged


def test_the_engine_uses_the_cpus_the_job_was_given(monkeypatch):
    import os

    from drx_workflows.vasp.surrogate.engine import granted_cpus

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_ON_NODE", raising=False)
    assert granted_cpus() == 1  # many surrogates run at once; one busy thread each
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "1000")
    assert granted_cpus() == os.cpu_count()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert granted_cpus() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "x")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "2")
    assert granted_cpus() == min(2, os.cpu_count())
