"""`drx import`: XSF folders, extxyz and VASP run folders become slices; bad data stops early."""


import numpy as np
import pytest
from conftest import run_drx

from drx_workflows.errors import DrxError
from drx_workflows.mliap.readers import read_configurations
from drx_workflows.store.imports import import_slice, load_slice


def test_import_the_published_xsf_sample(fresh_store, shared_dir):
    report = import_slice(fresh_store, "drx-dft", shared_dir / "data" / "drx_dft", test_fraction=0.1, seed=0)
    assert report.n_read == 330
    assert set(report.excluded) == {"13", "474", "2217", "2240"}
    assert report.n_train + report.n_test == 326
    train, test = load_slice(fresh_store, "drx-dft")
    assert len(test) == report.n_test and {c.n_tm for c in test} >= {1, 2, 3, 4, 5, 6, 7, 8}
    assert not {c.id for c in train} & {c.id for c in test}
    again = import_slice(fresh_store, "drx-dft", shared_dir / "data" / "drx_dft", test_fraction=0.1, seed=0)
    assert again.n_test == report.n_test
    assert fresh_store.collection("configurations").count_documents({"slice": "drx-dft"}) == 326


def test_import_vasp_run_folders_matches_vasprun(shared_dir):
    from pymatgen.io.vasp.outputs import Vasprun

    configs = {c.id: c for c in read_configurations(shared_dir / "vasp")}
    assert "FeO_GGAU_custodian_postprocess" in configs
    feo = configs["FeO_GGAU_custodian_postprocess"]
    vr = Vasprun(str(shared_dir / "vasp/FeO_GGAU_custodian_postprocess/vasprun.xml"), parse_potcar_file=False)
    assert feo.energy == pytest.approx(vr.ionic_steps[-1]["e_0_energy"])
    assert np.allclose(feo.forces, vr.ionic_steps[-1]["forces"])
    assert len(configs) == 7


def test_import_extxyz(tmp_path, shared_dir):
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    confs = read_configurations(shared_dir / "data" / "drx_dft")[:3]
    frames = []
    for c in confs:
        atoms = c.to_atoms()
        atoms.calc = SinglePointCalculator(atoms, energy=c.energy, forces=c.forces)
        frames.append(atoms)
    write(tmp_path / "d.extxyz", frames)
    back = read_configurations(tmp_path / "d.extxyz")
    assert [b.energy for b in back] == pytest.approx([c.energy for c in confs])
    assert np.allclose(back[1].forces, confs[1].forces)


def test_cli_import_and_bad_file_stops_before_the_store(tmp_path, shared_dir):
    store = tmp_path / "s.json"
    r = run_drx("--store", store, "import", shared_dir / "data" / "drx_dft", "--name", "dft", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "326" in r.stdout or "4 excluded" in r.stdout
    assert "excluded 474" in r.stdout

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1.xsf").write_text("CRYSTAL\nPRIMVEC\n1 0 0\n0 1 0\n0 0 1\nPRIMCOORD\n1 1\nLi 0 0 0 0 0 0\n")
    other = tmp_path / "other.json"
    r = run_drx("--store", other, "import", bad, "--name", "bad", cwd=tmp_path)
    assert r.returncode == 2 and "no '# total energy" in r.stderr
    assert not other.exists()


def test_unknown_slice(fresh_store):
    with pytest.raises(DrxError, match="no slice named 'nope'"):
        load_slice(fresh_store, "nope")


def test_cli_train_and_report_on_an_imported_slice(tmp_path, shared_dir):
    """drx import -> drx train --json -> drx report, with the metrics recomputed independently."""
    import json

    from drx_workflows.mliap.data import read_xsf

    src = tmp_path / "xsf"
    src.mkdir()
    files = sorted((shared_dir / "data" / "drx_dft").glob("*.xsf"))
    picked = [f for f in files if read_xsf(f).n_atoms == 16 and {"Mn", "Ni"} >= set(read_xsf(f).species) - {"Li", "O"}][:20]
    for f in picked:
        (src / f.name).symlink_to(f)
    store = tmp_path / "s.json"
    assert run_drx("--store", store, "import", src, "--name", "mnni", "--test-fraction", "0.2", cwd=tmp_path).returncode == 0
    r = run_drx(
        "--store", store, "train", "--slice", "mnni", "--backend", "ann",
        "--set", "epochs=20", "--set", "ann.radial_order=4", "--set", "ann.angular_order=2",
        "--json", tmp_path / "m.json", cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "m.json").read_text())[0]
    assert metrics["backend"] == "ann" and metrics["hyperparameters"]["epochs"] == 20
    sane = [f for f in picked if f.stem not in {"13", "474", "2217", "2240"}]  # the README's unphysical ones
    assert metrics["n_train"] + metrics["n_test"] == len(sane)
    assert f"test MAE {metrics['test']['energy_mae']:.1f} meV/atom" in r.stdout
    rep = run_drx("--store", store, "report", "--out", tmp_path / "rep", cwd=tmp_path)
    assert rep.returncode == 0 and (tmp_path / "rep" / "report.md").exists()
    bad = run_drx("--store", store, "train", "--slice", "mnni", "--backend", "ann,nope", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown backend 'nope'" in bad.stderr
    bad = run_drx("--store", store, "train", "--slice", "mnni", "--set", "ann.nope=1", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown hyperparameter" in bad.stderr
    bad = run_drx("--store", store, "train", "--slice", "mnni", "--with-references", cwd=tmp_path)
    assert bad.returncode == 2 and "no finished reference calculation to train on" in bad.stderr
    assert len(json.loads(store.read_text())["drx"]["potentials"]["documents"]) == 1  # nothing trained or stored
