"""finetune: SevenNet's pretrained weights trained further on a slice.

Zero-shot references come from sevenn's public ASE calculator and numpy least squares; the
tuned model's forces and stress are checked against finite differences of its own energy;
a warm start is checked to continue from the saved weights, not from the pretrained ones.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import SHARED, drx_dft

from drx_workflows.errors import DrxError
from drx_workflows.mliap.calculator import numerical_stress
from drx_workflows.mliap.finetune import FinetunePotential

DATA = SHARED / "data" / "drx_dft"
TRAIN_IDS = ["37", "62", "90", "119", "146", "174", "205", "230", "254", "283"]
TEST_IDS = ["313", "338"]
FAST = {"base": "sevenn-0", "epochs": 1, "batch_size": 4, "validation": 0.2, "lr": 3e-4}


@pytest.fixture(scope="module")
def train_set():
    return drx_dft(TRAIN_IDS)


@pytest.fixture(scope="module")
def test_set():
    return drx_dft(TEST_IDS)


@pytest.fixture(scope="module")
def tuned(train_set):
    pot = FinetunePotential(**FAST)
    report = pot.fit(train_set)
    return pot, report


def test_zero_epochs_is_sevenn_plus_least_squares_shifts(train_set, test_set):
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator("7net-0", device="cpu")

    def reference(c):
        atoms = c.to_atoms()
        atoms.calc = calc
        return atoms.get_potential_energy(), atoms.get_forces()

    pot = FinetunePotential(base="sevenn-0", epochs=0)
    report = pot.fit(train_set)
    assert report.details["best_epoch"] == 0 and report.details["steps"] == 0
    elements = sorted({s for c in train_set for s in c.species})
    comp = np.array([[c.species.count(e) for e in elements] for c in train_set + test_set], dtype=float)
    b = np.array([c.energy - reference(c)[0] for c in train_set])
    shifts = np.linalg.lstsq(comp[: len(train_set)], b, rcond=None)[0]
    for k, (c, p) in enumerate(zip(test_set, pot.predict(test_set))):
        e_ref, f_ref = reference(c)
        assert p.energy == pytest.approx(e_ref + comp[len(train_set) + k] @ shifts, abs=2e-3)
        np.testing.assert_allclose(p.forces, f_ref, atol=1e-4)


def test_tuning_keeps_the_best_validated_state(tuned):
    pot, report = tuned
    history = report.details["history"]
    assert [h["epoch"] for h in history] == [0, 1]
    best = min(history, key=lambda h: h["validation_loss"])
    assert report.details["best_epoch"] == best["epoch"]
    assert report.details["steps"] == 2  # 8 fitted structures in batches of 4
    assert report.details["validation_structures"] == 2


def test_tuned_forces_and_stress_are_derivatives_of_the_energy(tuned, test_set):
    pot, _ = tuned
    c = test_set[0]
    pred = pot.predict([c])[0]
    h = 0.01  # float32 energies
    for atom, axis in ((0, 0), (7, 2)):
        plus, minus = c.positions.copy(), c.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        e_p, e_m = (p.energy for p in pot.predict([replace(c, positions=plus), replace(c, positions=minus)]))
        assert pred.forces[atom, axis] == pytest.approx(-(e_p - e_m) / (2 * h), abs=5e-3)
    np.testing.assert_allclose(pot.predict_stress(c), numerical_stress(pot, c, step=1e-3), atol=5e-4)


def test_save_load_roundtrip(tuned, test_set, tmp_path):
    pot, _ = tuned
    again = FinetunePotential.load(pot.save(tmp_path / "m"))
    assert again.hyperparameters == pot.hyperparameters
    for p, q in zip(pot.predict(test_set), again.predict(test_set)):
        assert q.energy == pytest.approx(p.energy, abs=1e-5)
        np.testing.assert_allclose(q.forces, p.forces, atol=1e-5)


def test_warm_start_continues_from_the_saved_weights(train_set, test_set, tmp_path):
    import torch

    saved = FinetunePotential(**{**FAST, "epochs": 0})
    saved.fit(train_set)
    with torch.no_grad():  # a model unlike the pretrained one, whatever a short tuning gives
        for p in saved.base.model.parameters():
            p.mul_(1.01)
    folder = saved.save(tmp_path / "m")
    expected = saved.predict(test_set)

    warm = FinetunePotential(**{**FAST, "epochs": 0})
    report = warm.fit(train_set, warm_start=folder)
    assert report.details["warm_start"] == str(folder)
    cold = FinetunePotential(**{**FAST, "epochs": 0})
    cold.fit(train_set)
    for e, w, c in zip(expected, warm.predict(test_set), cold.predict(test_set)):
        np.testing.assert_allclose(w.forces, e.forces, atol=1e-5)
        assert np.abs(c.forces - e.forces).max() > 1e-3

    other = FinetunePotential(base="sevenn-l3i5", epochs=0)
    with pytest.raises(DrxError, match="tuned from sevenn-0, not sevenn-l3i5"):
        other.fit(train_set, warm_start=folder)


def test_time_limit_stops_tuning(train_set):
    pot = FinetunePotential(**{**FAST, "epochs": 5, "time_limit": 0.0})
    report = pot.fit(train_set)
    assert report.details["stopped"] == "time_limit"
    assert report.details["steps"] == 1


def test_bad_settings_and_data_are_refused(train_set, test_set, tmp_path):
    with pytest.raises(DrxError, match="unknown base 'mace'; choose from sevenn-0, sevenn-l3i5"):
        FinetunePotential(base="mace")
    with pytest.raises(DrxError, match="validation must be a fraction"):
        FinetunePotential(validation=0.9)
    with pytest.raises(DrxError, match="epochs must be a whole number"):
        FinetunePotential(epochs=-1)
    with pytest.raises(DrxError, match="not trained"):
        FinetunePotential().predict(test_set)
    with pytest.raises(DrxError, match="lack energies or forces"):
        FinetunePotential(epochs=0).fit([replace(train_set[0], forces=None)] + train_set[1:])
    with pytest.raises(DrxError, match="not a finetune model folder"):
        FinetunePotential.load(tmp_path)


@pytest.mark.slow
def test_drx_train_stores_a_reloadable_finetune_model(tmp_path):
    """drx import -> drx train --backend finetune (in its child process) -> the stored model predicts as trained."""
    import shutil

    from conftest import run_drx

    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.potentials import load_potential

    data = tmp_path / "xsf"
    data.mkdir()
    for i in TRAIN_IDS + TEST_IDS:
        shutil.copy(DATA / f"{i}.xsf", data / f"{i}.xsf")
    store = tmp_path / "store.json"
    assert run_drx("--store", store, "import", data, "--name", "mn_ni", cwd=tmp_path).returncode == 0
    r = run_drx("--store", store, "train", "--slice", "mn_ni", "--backend", "finetune",
                "--set", 'finetune.base="sevenn-0"', "--set", "finetune.epochs=1", "--set", "finetune.validation=0.2",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "finetune on mn_ni" in r.stdout
    st = open_store(StoreConfig.embedded(store))
    try:
        doc = st.potentials.find_one({"backend": "finetune", "slice": "mn_ni"})
        pot = load_potential(st, doc, tmp_path / "model")
    finally:
        st.close()
    assert pot.hyperparameters["base"] == "sevenn-0"
    # the import chose its own test split: every stored (DFT, predicted) energy pair must be one the
    # reloaded model gives for one of the imported structures
    configs = drx_dft(TRAIN_IDS + TEST_IDS)
    pairs = np.array([[c.energy / c.n_atoms, p.energy / c.n_atoms] for c, p in zip(configs, pot.predict(configs))])
    stored = doc["parity"]["test"]["energies"]
    assert stored and doc["n_test"] == len(stored)
    for ref, pred, _ in stored:
        assert np.abs(pairs - [ref, pred]).max(axis=1).min() < 1e-4

    bad = run_drx("--store", store, "train", "--slice", "mn_ni", "--backend", "finetune",
                  "--set", "finetune.lr=-1", cwd=tmp_path)
    assert bad.returncode != 0 and "finetune: lr must be a number >= 0, got -1" in bad.stderr
