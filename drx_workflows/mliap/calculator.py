"""Any trained :class:`~drx_workflows.mliap.base.Potential` as an ASE calculator.

Relaxations (voltages), MD and ranking use potentials through ASE.  Energies and
forces come from ``Potential.predict``; the stress is the potential's own when it
offers one (``Potential.predict_stress``) and otherwise the strain derivative of the
energy by central differences, all twelve strained cells predicted in one batch.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from drx_workflows.mliap.data import Configuration

STRAIN_STEP = 1e-4


def strained_cells(config: Configuration, step: float = STRAIN_STEP) -> tuple[list[Configuration], list[tuple]]:
    """The 12 configurations of :func:`numerical_stress` and which (i, j, sign) each is."""
    out, keys = [], []
    frac = np.linalg.solve(config.cell.T, config.positions.T).T
    for i in range(3):
        for j in range(i, 3):
            for sign in (1, -1):
                strain = np.eye(3)
                strain[i, j] += sign * step
                if i != j:
                    strain[j, i] += sign * step
                cell = config.cell @ strain
                out.append(Configuration(f"{config.id}-strain", list(config.species), frac @ cell, cell))
                keys.append((i, j, sign))
    return out, keys


def numerical_stress(potential, config: Configuration, step: float = STRAIN_STEP) -> np.ndarray:
    """Stress (eV/A^3, 3x3, ASE's sign: positive is tensile) = dE/d(strain) / V."""
    configs, keys = strained_cells(config, step)
    energies = [p.energy for p in potential.predict(configs)]
    volume = abs(np.linalg.det(config.cell))
    stress = np.zeros((3, 3))
    for (i, j, sign), e in zip(keys, energies):
        stress[i, j] += sign * e
    for i in range(3):
        for j in range(i, 3):
            # an off-diagonal step strains both (i, j) and (j, i): twice the derivative
            stress[i, j] /= 2 * step * volume * (1 if i == j else 2)
            stress[j, i] = stress[i, j]
    return stress


class PotentialCalculator(Calculator):
    """ASE calculator over a trained potential (``atoms.calc = PotentialCalculator(pot)``)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        config = Configuration.from_atoms(self.atoms, id="ase")
        pred = self.potential.predict([config])[0]
        self.results["energy"] = self.results["free_energy"] = float(pred.energy)
        self.results["forces"] = np.asarray(pred.forces, dtype=float).reshape(-1, 3)
        if "stress" in properties:
            own = getattr(self.potential, "predict_stress", None)
            stress = own(config) if own is not None else numerical_stress(self.potential, config)
            s = np.asarray(stress, dtype=float)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
