"""delta backend: CHGNet + per-element shifts + residual heads on the real DRX DFT sample.

Reference values are computed here independently: CHGNet through its own
``predict_structure``, shifts with numpy least squares, forces and stress by finite
differences of the potential's energy.
"""

import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import SHARED, drx_dft, run_drx

from drx_workflows.errors import DrxError
from drx_workflows.mliap.base import backend_class
from drx_workflows.mliap.data import read_xsf, read_xsf_dir, split_sane
from drx_workflows.mliap.delta.bases import ChgnetBase
from drx_workflows.mliap.delta.potential import DeltaPotential

DATA = SHARED / "data" / "drx_dft"
# small Li-Mn-Ni-O cells of the sample (16 atoms, and one 8-atom cell of another arrangement)
TRAIN_IDS = ["37", "62", "90", "119", "146", "174", "205", "230", "254", "283", "550", "577"]
TEST_IDS = ["313", "338", "369", "396"]
# the CHGNet base, with heads free to move its forces (the path the tests below check)
FAST = {"base": "chgnet", "ensemble": 3, "epochs": 300, "seed": 0, "gradient_penalty": 0.0}


@pytest.fixture(scope="module")
def train_set():
    return drx_dft(TRAIN_IDS)


@pytest.fixture(scope="module")
def test_set():
    return drx_dft(TEST_IDS)


@pytest.fixture(scope="module")
def chgnet_reference(train_set, test_set):
    """CHGNet's total energies (eV) and forces through its own public API."""
    from chgnet.model import CHGNet
    from pymatgen.io.ase import AseAtomsAdaptor

    model = CHGNet.load(verbose=False, use_device="cpu")
    out = {}
    for c in train_set + test_set:
        p = model.predict_structure(AseAtomsAdaptor.get_structure(c.to_atoms()), task="ef")
        out[c.id] = (float(p["e"]) * c.n_atoms, np.asarray(p["f"], dtype=float))
    return out


@pytest.fixture(scope="module")
def trained(train_set):
    pot = DeltaPotential(**FAST)
    pot.report = pot.fit(train_set)
    return pot


def composition(configs, elements):
    return np.array([[c.species.count(e) for e in elements] for c in configs], dtype=float)


def test_registered_and_hyperparameters_checked():
    assert backend_class("delta") is DeltaPotential
    with pytest.raises(DrxError, match="unknown hyperparameter"):
        DeltaPotential(learning_rate=1)
    with pytest.raises(DrxError, match="unknown base"):
        DeltaPotential(base="m3gnet")


def test_shift_only_is_chgnet_plus_least_squares_shifts(train_set, test_set, chgnet_reference):
    pot = DeltaPotential(base="chgnet", residual="none")
    pot.fit(train_set)
    elements = sorted({s for c in train_set for s in c.species})
    a = composition(train_set, elements)
    b = np.array([c.energy - chgnet_reference[c.id][0] for c in train_set])
    shifts = np.linalg.lstsq(a, b, rcond=None)[0]
    expected = [chgnet_reference[c.id][0] + composition([c], elements)[0] @ shifts for c in test_set]
    preds = pot.predict(test_set)
    np.testing.assert_allclose([p.energy for p in preds], expected, atol=2e-3)
    for c, p in zip(test_set, preds):
        np.testing.assert_allclose(p.forces, chgnet_reference[c.id][1], atol=2e-3)
        assert p.uncertainty is None  # no ensemble, no spread


def test_heads_fit_the_residual_better_than_shifts(trained, train_set, chgnet_reference):
    elements = trained.elements
    a = composition(train_set, elements)
    b = np.array([c.energy - chgnet_reference[c.id][0] for c in train_set])
    shifts = np.linalg.lstsq(a, b, rcond=None)[0]
    n = a.sum(1)
    shift_mae = np.mean(np.abs(b - a @ shifts) / n)
    e = np.array([p.energy for p in trained.predict(train_set)])
    heads_mae = np.mean(np.abs(e - np.array([c.energy for c in train_set])) / n)
    assert heads_mae < 0.7 * shift_mae


def test_forces_and_stress_are_derivatives_of_the_energy(trained, test_set):
    from drx_workflows.mliap.calculator import numerical_stress

    c = test_set[0]
    pred = trained.predict([c])[0]
    h = 0.01  # energies are float32 (CHGNet): a larger step keeps rounding below 1e-3 eV/A
    for atom, axis in ((0, 0), (5, 2), (11, 1)):
        plus, minus = c.positions.copy(), c.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        e_p, e_m = (p.energy for p in trained.predict([replace(c, positions=plus), replace(c, positions=minus)]))
        assert pred.forces[atom, axis] == pytest.approx(-(e_p - e_m) / (2 * h), abs=5e-3)
    # float32 finite differences over strained cells: agreement to ~1 % (2e-4 eV/A^3 = 0.03 GPa) measured
    np.testing.assert_allclose(trained.predict_stress(c), numerical_stress(trained, c, step=1e-3), atol=4e-4)


def test_gradient_penalty_keeps_the_base_forces(trained, train_set, test_set, chgnet_reference):
    """The heads' forces are -N J^T dh/dc: penalising |dh/dc| pulls them back to CHGNet's."""

    def force_change(pot):
        return np.mean([np.abs(p.forces - chgnet_reference[c.id][1]).mean() for c, p in zip(test_set, pot.predict(test_set))])

    smooth = DeltaPotential(**{**FAST, "gradient_penalty": 1e-3})
    smooth.fit(train_set)
    assert force_change(trained) > 1e-3
    assert force_change(smooth) < 0.5 * force_change(trained)
    with pytest.raises(DrxError, match="gradient_penalty must be a number >= 0"):
        DeltaPotential(gradient_penalty=-1)


def test_uncertainty_is_the_ensemble_spread(trained, test_set):
    import torch

    preds = trained.predict(test_set)
    base = trained.base.evaluate(test_set)
    feats = torch.tensor(np.stack([r["feature"] for r in base]), dtype=torch.float32)
    with torch.no_grad():
        members = trained.heads.module(feats, trained.heads.fractions([c.species for c in test_set])).numpy()
    assert members.shape == (len(test_set), FAST["ensemble"])
    np.testing.assert_allclose([p.uncertainty for p in preds], members.std(1), rtol=1e-3, atol=1e-7)
    assert all(p.uncertainty > 0 for p in preds)
    # ranking's energy-only pass: the same energies and spreads, no forces
    lean = trained.predict_energies(test_set)
    assert all(p.forces is None for p in lean)
    np.testing.assert_allclose([p.energy for p in lean], [p.energy for p in preds], rtol=1e-6)
    np.testing.assert_allclose([p.uncertainty for p in lean], [p.uncertainty for p in preds], rtol=1e-4, atol=1e-8)


def test_kept_base_passes_give_the_same_scores_and_fit(trained, train_set, test_set):
    """With a base cache, scoring runs the heads on kept features: the same energies and spreads as
    the full pass, and a structure scored before costs no base pass; a refit reads its passes too."""
    from drx_workflows.mliap.delta.base_cache import MemoryBaseCache

    full = trained.predict(test_set, forces=False)
    cache = MemoryBaseCache()
    trained.base_cache = cache
    try:
        before = trained.base_passes
        first = trained.predict_energies(test_set)
        assert trained.base_passes - before == len(test_set) and len(cache.entries) == len(test_set)
        again = trained.predict_energies(test_set[1:] + test_set[:1])
        assert trained.base_passes - before == len(test_set)  # nothing new reached the base
    finally:
        trained.base_cache = None
    for p, q in zip(full, first):
        assert q.forces is None
        assert q.energy == pytest.approx(p.energy, abs=1e-4)
        assert q.uncertainty == pytest.approx(p.uncertainty, rel=1e-4, abs=1e-8)
        np.testing.assert_allclose(q.descriptor, p.descriptor, rtol=1e-6)
    assert [q.energy for q in again] == [q.energy for q in first[1:] + first[:1]]

    # a generation that grew: the kept passes of the earlier members, the base for the new ones
    pot = DeltaPotential(**{**FAST, "epochs": 50})
    pot.base_cache = MemoryBaseCache()
    pot.fit(train_set[:8])
    report = pot.fit(train_set)
    assert report.details["base_passes"] == len(train_set) - 8
    plain = DeltaPotential(**{**FAST, "epochs": 50})
    plain.fit(train_set)
    np.testing.assert_allclose(pot.shifts, plain.shifts, rtol=1e-6)


def test_save_load_roundtrip(trained, test_set, tmp_path):
    folder = trained.save(tmp_path / "m")
    again = DeltaPotential.load(folder)
    assert again.hyperparameters == trained.hyperparameters
    for p, q in zip(trained.predict(test_set), again.predict(test_set)):
        assert q.energy == pytest.approx(p.energy, abs=1e-6)
        np.testing.assert_allclose(q.forces, p.forces, atol=1e-6)
        assert q.uncertainty == pytest.approx(p.uncertainty, rel=1e-6)


def test_ase_calculator_relaxes(trained, test_set):
    from ase.optimize import BFGS

    atoms = test_set[0].to_atoms()
    atoms.rattle(0.05, seed=1)
    atoms.calc = trained.calculator()
    e0 = atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.get_forces(), trained.predict([test_set[0].from_atoms(atoms, "x")])[0].forces, atol=1e-6)
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=40)
    assert atoms.get_potential_energy() < e0
    assert atoms.get_stress().shape == (6,)


def test_bad_input_fails_before_the_base_runs(train_set, monkeypatch):
    def no_base(*_a, **_k):
        raise AssertionError("the base model must not see bad input")

    monkeypatch.setattr(ChgnetBase, "evaluate", no_base)
    collapsed = read_xsf(DATA / "474.xsf")  # 1.40 A^3/atom in the published data
    with pytest.raises(DrxError, match=r"474 is unphysical \(volume"):
        DeltaPotential(**FAST).fit(train_set + [collapsed])
    close = read_xsf(DATA / "13.xsf")  # atoms 0.77 A apart
    with pytest.raises(DrxError, match=r"13 is unphysical \(atoms"):
        DeltaPotential(**FAST).fit([close] + train_set)
    with pytest.raises(DrxError, match="2 training structure.*4 elements"):
        DeltaPotential(**FAST).fit(train_set[:2])
    alien = replace(train_set[0], species=["Am"] + train_set[0].species[1:])
    with pytest.raises(DrxError, match="Am not covered by base chgnet"):
        DeltaPotential(**FAST).fit(train_set + [alien])
    with pytest.raises(DrxError, match="not trained"):
        DeltaPotential().predict(train_set[:1])


def test_unseen_element_refused_at_prediction(trained):
    other = next(c for c in split_sane(read_xsf_dir(DATA))[0] if "Fe" in c.species)
    with pytest.raises(DrxError, match="Fe.*not in the training data"):
        trained.predict([other])


def test_cli_train_then_rank_by_uncertainty(tmp_path):
    """drx import -> drx train --backend delta -> drx enumerate -> drx rank --out csv."""
    from drx_workflows.enumeration.records import structure_from_doc
    from drx_workflows.mliap.data import Configuration
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.potentials import load_potential
    data = tmp_path / "xsf"
    data.mkdir()
    for i in TRAIN_IDS + TEST_IDS + ["474"]:  # 474 is unphysical: import leaves it out
        shutil.copy(DATA / f"{i}.xsf", data / f"{i}.xsf")
    store = tmp_path / "store.json"
    r = run_drx("--store", store, "import", data, "--name", "mn_ni", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "474" in r.stdout
    r = run_drx("--store", store, "train", "--slice", "mn_ni", "--backend", "delta",
                "--set", "delta.epochs=200", "--set", "delta.ensemble=4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "delta: train MAE" in r.stdout
    # the same training again: every cell's base pass is read from the store's base_evaluations
    r = run_drx("--store", store, "train", "--slice", "mn_ni", "--backend", "delta",
                "--set", "delta.epochs=200", "--set", "delta.ensemble=4", "--json", "again.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "again.json").read_text())[0]
    assert again["base_passes"] == 0
    r = run_drx("--store", store, "enumerate", "--tms", "Mn,Ni", "--n-tm", "1-2", "--per-ntm", "3",
                "--toc-per-ntm", "0", "--max-cation-sites", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_drx("--store", store, "rank", "--slice", "mn_ni", "--out", "ranked.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "ranked.csv").open()))
    assert rows
    unc = [float(row["uncertainty_mev_atom"]) for row in rows]
    assert unc == sorted(unc, reverse=True) and [int(row["rank"]) for row in rows] == list(range(1, len(rows) + 1))

    # ranking again reads every candidate's base pass from the store: the same ranks and numbers
    r = run_drx("--store", store, "rank", "--slice", "mn_ni", "--out", "again.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "ranked.csv").read_text()

    # the stored potential, reloaded here, gives the same uncertainty for the top structure
    st = open_store(StoreConfig.embedded(store))
    try:
        docs = list(st.potentials.find({"backend": "delta", "slice": "mn_ni"}).sort("created", 1))
        assert [d["base_passes"] for d in docs] == [docs[0]["n_train"], 0] and docs[0]["n_train"] > 0
        assert docs[1]["test"]["energy_mae"] == pytest.approx(docs[0]["test"]["energy_mae"], rel=1e-5)
        # one kept pass per training cell and per ranked candidate
        assert st.db["base_evaluations"].count_documents({}) == docs[0]["n_train"] + len(rows)
        doc = docs[0]
        pot = load_potential(st, doc, tmp_path / "model")
        sdoc = st.structures.find_one({"drx_id": rows[0]["drx_id"]})
        s = structure_from_doc(sdoc)
        conf = Configuration("x", [site.specie.symbol for site in s], s.cart_coords, s.lattice.matrix)
        assert pot.predict([conf])[0].uncertainty * 1000 == pytest.approx(unc[0], abs=1e-3)
    finally:
        st.close()

    bad = run_drx("--store", store, "rank", "--slice", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "no delta potential trained on slice 'nope'" in bad.stderr
    bad = run_drx("--store", store, "rank", "--slice", "mn_ni", "--out", "r.txt", cwd=tmp_path)
    assert bad.returncode == 2 and ".json or .csv" in bad.stderr
