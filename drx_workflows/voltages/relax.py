"""Relaxing a structure with a potential (ASE FIRE on a FrechetCellFilter) and checking it kept its rocksalt framework."""

from __future__ import annotations

from dataclasses import dataclass

from drx_workflows.constants import ISOLATED_ATOM_ENERGY
from drx_workflows.errors import DrxError

DEFAULT_FMAX = 0.05  # eV/A


DEFAULT_STEPS = 300


@dataclass
class RelaxResult:
    structure: object  # pymatgen Structure, relaxed
    energy: float  # eV, total (isolated-atom shifts added back for cohesive-target potentials)
    initial_energy: float
    steps: int
    converged: bool
    framework_kept: bool
    problem: str | None = None


def to_total(energy: float, species, target: str) -> float:
    """A potential's energy on the ``total`` reference (cohesive targets: add the isolated atoms back)."""
    if target == "cohesive":
        return float(energy) + sum(ISOLATED_ATOM_ENERGY[s] for s in species)
    return float(energy)


def relax_with_calculator(structure, calc, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_STEPS,
                          target: str = "total", check_framework: bool = True) -> RelaxResult:
    """Relax ions and cell (ASE FIRE on a FrechetCellFilter) and check the rocksalt framework."""
    import numpy as np
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    species = atoms.get_chemical_symbols()
    e0 = atoms.get_potential_energy()
    opt = FIRE(FrechetCellFilter(atoms), logfile=None, maxstep=0.1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    energy = atoms.get_potential_energy()
    if not np.isfinite(energy):
        raise DrxError(f"relaxation of {structure.composition.reduced_formula} gave a non-finite energy")
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    problem = rocksalt_problem(relaxed) if check_framework and "O" in species else None
    kept = problem is None
    return RelaxResult(relaxed, to_total(energy, species, target), to_total(e0, species, target),
                       int(opt.nsteps), converged, kept, problem)


FRAMEWORK_TOLERANCE = 1.35


def rocksalt_problem(structure, tolerance: float = FRAMEWORK_TOLERANCE) -> str | None:
    """Whether a *relaxed* structure kept the rocksalt framework: every cation still has exactly six O
    within ``tolerance`` x its own shortest cation-O distance (None), else what is wrong.

    Softer than :func:`drx_workflows.pipeline.relax.workflows.check_drx_structure`, which judges enumerated
    inputs against one global bond length: relaxed LiTMO2 has longer Li-O than TM-O bonds and
    Jahn-Teller-distorted octahedra, and fails that test while still rocksalt; a cation moved to a
    tetrahedral site (4 O) or a collapsed cell still fails this one.
    """
    import numpy as np

    cat = [i for i, site in enumerate(structure) if site.specie.symbol != "O"]
    if not cat:
        return "no cations"
    centers, points, _, dists = structure.get_neighbor_list(4.0, sites=[structure[i] for i in cat])
    is_o = np.array([site.specie.symbol == "O" for site in structure])
    for k, i in enumerate(cat):
        d = dists[(centers == k) & is_o[points]]
        if d.size == 0:
            return f"site {i} ({structure[i].specie.symbol}) has no O within 4 A"
        n = int(np.count_nonzero(d <= tolerance * d.min()))
        if n != 6:
            return f"site {i} ({structure[i].specie.symbol}) has {n} O neighbours instead of 6"
    return None


def potential_calculator(potential):
    """The potential's ASE calculator if it gives a stress (cell relaxation needs one), else the
    generic :class:`~drx_workflows.mliap.calculator.PotentialCalculator` (numerical stress)."""
    calc = potential.calculator()
    if "stress" in getattr(calc, "implemented_properties", ()):
        return calc
    from drx_workflows.mliap.calculator import PotentialCalculator

    return PotentialCalculator(potential)
