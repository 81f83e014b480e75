"""delta on a SevenNet base: the base is chosen by name and matches sevenn's own calculator.

References come from sevenn's public ASE calculator and numpy least squares; forces and
stress of base + heads are checked against finite differences of the potential's energy.
"""

from dataclasses import replace

import numpy as np
import pytest
from conftest import drx_dft

from drx_workflows.errors import DrxError
from drx_workflows.mliap.delta.potential import DeltaPotential

TRAIN_IDS = ["37", "62", "90", "119", "146", "174", "205", "230"]
TEST_IDS = ["313", "338"]


@pytest.fixture(scope="module")
def train_set():
    return drx_dft(TRAIN_IDS)


@pytest.fixture(scope="module")
def test_set():
    return drx_dft(TEST_IDS)


@pytest.fixture(scope="module")
def sevenn_reference(train_set, test_set):
    """7net-l3i5 energies (eV), forces and stress through sevenn's own calculator."""
    from sevenn.calculator import SevenNetCalculator

    calc = SevenNetCalculator("7net-l3i5", device="cpu")
    out = {}
    for c in train_set + test_set:
        atoms = c.to_atoms()
        atoms.calc = calc
        out[c.id] = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False))
    return out


def test_shift_only_on_sevennet_is_sevenn_plus_least_squares_shifts(train_set, test_set, sevenn_reference):
    pot = DeltaPotential(base="sevenn-l3i5", residual="none")
    report = pot.fit(train_set)
    assert report.details["base"] == "sevenn-l3i5 7net-l3i5"
    elements = sorted({s for c in train_set for s in c.species})
    comp = np.array([[c.species.count(e) for e in elements] for c in train_set + test_set], dtype=float)
    b = np.array([c.energy - sevenn_reference[c.id][0] for c in train_set])
    shifts = np.linalg.lstsq(comp[: len(train_set)], b, rcond=None)[0]
    preds = pot.predict(test_set)
    for k, (c, p) in enumerate(zip(test_set, preds)):
        e_ref, f_ref, s_ref = sevenn_reference[c.id]
        assert p.energy == pytest.approx(e_ref + comp[len(train_set) + k] @ shifts, abs=2e-3)
        np.testing.assert_allclose(p.forces, f_ref, atol=1e-4)
        np.testing.assert_allclose(pot.predict_stress(c), s_ref, atol=1e-6)


def test_heads_on_sevennet_give_forces_and_stress_as_derivatives(train_set, test_set, sevenn_reference):
    from drx_workflows.mliap.calculator import numerical_stress

    pot = DeltaPotential(base="sevenn-l3i5", ensemble=2, epochs=200, seed=0)
    pot.fit(train_set)
    c = test_set[0]
    pred = pot.predict([c])[0]
    assert pred.uncertainty is not None and pred.uncertainty >= 0
    # the heads move the forces off the base's: they are part of the derivative
    assert np.abs(pred.forces - sevenn_reference[c.id][1]).max() > 1e-4
    h = 0.01
    for atom, axis in ((0, 0), (7, 1)):
        plus, minus = c.positions.copy(), c.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        e_p, e_m = (p.energy for p in pot.predict([replace(c, positions=plus), replace(c, positions=minus)]))
        assert pred.forces[atom, axis] == pytest.approx(-(e_p - e_m) / (2 * h), abs=5e-3)
    np.testing.assert_allclose(pot.predict_stress(c), numerical_stress(pot, c, step=1e-3), atol=4e-4)


def test_sevennet_base_saved_and_loaded_by_name(train_set, test_set, tmp_path):
    pot = DeltaPotential(base="sevenn-0", ensemble=2, epochs=50)
    pot.fit(train_set)
    again = DeltaPotential.load(pot.save(tmp_path / "m"))
    assert again.hyperparameters["base"] == "sevenn-0"
    assert [p.energy for p in again.predict(test_set)] == pytest.approx([p.energy for p in pot.predict(test_set)], abs=1e-4)


def test_base_choices_and_what_a_sevennet_base_cannot_do(train_set):
    with pytest.raises(DrxError, match="choose from chgnet, sevenn-0, sevenn-l3i5"):
        DeltaPotential(base="7net-omni")
    pot = DeltaPotential(base="sevenn-0", force_weight=1.0, force_structures=2)
    with pytest.raises(DrxError, match="need the chgnet base"):
        pot.fit(train_set)


@pytest.mark.parametrize("name", ["sevenn-0", "chgnet"])
def test_energy_only_pass_matches_the_full_pass(name, train_set):
    from drx_workflows.mliap.delta.bases import make_base

    base = make_base(name)
    full = base.evaluate(train_set[:3])
    lean = base.evaluate(train_set[:3], forces=False)
    for a, b in zip(full, lean):
        assert "forces" not in b and b["energy"] == pytest.approx(a["energy"], rel=1e-6)
        assert np.allclose(b["feature"], a["feature"], atol=1e-6)
    with pytest.raises(DrxError, match="stress"):
        base.evaluate(train_set[:1], stress=True, forces=False)
