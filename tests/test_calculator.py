"""The ASE bridge over any potential: energies/forces from predict, stress by strain differences."""

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from drx_workflows.mliap.base import Prediction
from drx_workflows.mliap.calculator import PotentialCalculator


class EmtPotential:
    """A stand-in potential whose exact stress ASE knows (EMT's analytic one)."""

    def predict(self, configs):
        out = []
        for c in configs:
            atoms = c.to_atoms()
            atoms.calc = EMT()
            out.append(Prediction(atoms.get_potential_energy(), atoms.get_forces()))
        return out


def _skewed_cell():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.set_cell(atoms.cell @ np.array([[1, 0.02, 0], [0, 1, 0.01], [0, 0, 0.98]]), scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def test_numerical_stress_matches_analytic_stress():
    ours, ref = _skewed_cell(), _skewed_cell()
    ours.calc = PotentialCalculator(EmtPotential())
    ref.calc = EMT()
    assert np.allclose(ours.get_stress(), ref.get_stress(), atol=2e-6)
    assert np.allclose(ours.get_forces(), ref.get_forces())
    assert abs(ours.get_potential_energy() - ref.get_potential_energy()) < 1e-12
