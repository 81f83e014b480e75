"""CHGNet evaluation and the ionic loop that stands in for VASP's IBRION/ISIF/NSW/EDIFFG behaviour.

torch and CHGNet are imported here only, so input validation stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

EV_PER_A3_TO_KBAR = 1602.1766208

_MODEL = None


class UnsupportedRun(Exception):
    """A VASP mode the surrogate does not emulate (MD, phonons); reported as bad input."""


@dataclass
class IonicStep:
    structure: object  # pymatgen Structure
    energy: float  # eV, total
    forces: np.ndarray  # (n, 3) eV/A
    stress_kbar: np.ndarray  # (3, 3), VASP sign convention (positive = compressive)
    magmoms: np.ndarray  # (n,) mu_B, CHGNet's (unsigned) site moments
    wall_time: float  # seconds spent on this step


def granted_cpus() -> int:
    """Threads for CHGNet: what the job was given (``OMP_NUM_THREADS``, then SLURM's CPUs), else one.

    torch busy-waits one thread per core by default, and the surrogate usually runs many at once
    (queue jobs, parallel launchers). Measured on 2 cores with 8-atom cells: four relaxations at once
    took 92 s with 2 threads each and 25.5 s with 1; one launcher alone 26.4 s vs 26.6 s for two.
    """
    import os

    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_ON_NODE"):
        try:
            n = int(os.environ.get(name, ""))
        except ValueError:
            continue
        if n > 0:
            return min(n, os.cpu_count() or n)
    return 1


def load_calculator():
    """One CHGNet calculator per process: loading the weights costs seconds, each step milliseconds."""
    global _MODEL
    if _MODEL is None:
        import torch

        torch.set_num_threads(granted_cpus())
        import contextlib
        import sys

        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        # CHGNet prints device banners to stdout, which is vasp.out under custodian.
        with contextlib.redirect_stdout(sys.stderr):
            model = CHGNet.load(verbose=False, use_device="cpu")
            _MODEL = CHGNetCalculator(model=model, use_device="cpu")
    return _MODEL


def check_supported(settings: dict) -> None:
    nsw, ibrion = settings["NSW"], settings["IBRION"]
    if nsw > 0 and ibrion == 0:
        raise UnsupportedRun("IBRION = 0 (molecular dynamics) is not emulated by the surrogate")
    if ibrion in (5, 6, 7, 8):
        raise UnsupportedRun(f"IBRION = {ibrion} (finite differences / DFPT) is not emulated by the surrogate")
    if ibrion == 44:
        raise UnsupportedRun("IBRION = 44 (dimer) is not emulated by the surrogate")


def _snapshot(atoms, calc, adaptor, started: float) -> IonicStep:
    energy = float(atoms.get_potential_energy())
    forces = np.array(atoms.get_forces(), dtype=float)
    # ASE: stress = (1/V) dE/d(strain); VASP reports the opposite sign, in kBar.
    stress = -np.array(atoms.get_stress(voigt=False), dtype=float) * EV_PER_A3_TO_KBAR
    magmoms = np.array(calc.results.get("magmoms", np.zeros(len(atoms))), dtype=float).reshape(-1)
    structure = adaptor.get_structure(atoms)
    return IonicStep(structure, energy, forces, stress, magmoms, time.time() - started)


def _make_target(atoms, isif: int, pstress_kbar: float):
    if isif < 3:
        return atoms
    from ase.filters import FrechetCellFilter

    pressure = pstress_kbar / EV_PER_A3_TO_KBAR
    if isif in (4, 5):
        return FrechetCellFilter(atoms, constant_volume=True, scalar_pressure=pressure)
    if isif == 7:
        return FrechetCellFilter(atoms, hydrostatic_strain=True, scalar_pressure=pressure)
    return FrechetCellFilter(atoms, scalar_pressure=pressure)


def _make_optimizer(target, ibrion: int, potim: float):
    from ase.optimize import BFGS, FIRE

    if ibrion == 1:
        return BFGS(target, logfile=None)
    # VASP's CG (2) and damped MD (3) are both robust, step-limited descents; FIRE is ASE's closest.
    return FIRE(target, logfile=None, maxstep=max(0.05, min(0.2, potim * 0.4)))


def _converged(steps: list[IonicStep], target, ediffg: float) -> bool:
    if ediffg < 0:
        forces = target.get_forces()
        return float(np.sqrt((forces**2).sum(axis=1)).max()) < abs(ediffg)
    if ediffg == 0 or len(steps) < 2:
        return False
    return abs(steps[-1].energy - steps[-2].energy) < ediffg


def run(structure, settings: dict, incar, on_step: Callable[[IonicStep, int], None]) -> tuple[list[IonicStep], bool]:
    """Single point (NSW 0 / IBRION -1) or relaxation; `on_step(step, index)` runs after every ionic step.

    Returns the ionic steps and whether the ionic loop met EDIFFG before NSW ran out.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    check_supported(settings)
    calc = load_calculator()
    adaptor = AseAtomsAdaptor()
    atoms = adaptor.get_atoms(structure)
    atoms.calc = calc

    nsw, ibrion, isif = settings["NSW"], settings["IBRION"], settings["ISIF"]
    steps: list[IonicStep] = []
    relax = nsw > 0 and ibrion in (1, 2, 3)
    if not relax:
        step = _snapshot(atoms, calc, adaptor, time.time())
        steps.append(step)
        on_step(step, 0)
        return steps, True

    target = _make_target(atoms, isif, float(incar.get("PSTRESS", 0.0) or 0.0))
    optimizer = _make_optimizer(target, ibrion, settings["POTIM"])
    converged = False
    started = time.time()
    for index in range(nsw):
        step = _snapshot(atoms, calc, adaptor, started)
        steps.append(step)
        on_step(step, index)
        if _converged(steps, target, settings["EDIFFG"]):
            converged = True
            break
        if index == nsw - 1:
            break
        started = time.time()
        optimizer.step()
    return steps, converged
