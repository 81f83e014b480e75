"""Read and validate the VASP inputs of a run directory before any heavy import.

Every failure raises `InputError` whose message is written to vasp.out in VASP's style, so custodian and
FireWorks record why the job stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

# CHGNet's atom embedding covers H..Pu.
MAX_Z = 94
MIN_DISTANCE = 0.5  # Angstrom; closer atoms mean a broken cell, not physics

# Tags the surrogate acts on, with VASP's defaults and the type each must parse to.
_NUMERIC_TAGS: dict[str, tuple[type, object]] = {
    "NSW": (int, 0),
    "IBRION": (int, None),  # default depends on NSW
    "ISIF": (int, None),  # default depends on IBRION
    "NELM": (int, 60),
    "NELMIN": (int, 2),
    "ISPIN": (int, 1),
    "EDIFF": (float, 1e-4),
    "EDIFFG": (float, None),  # default 10 * EDIFF
    "POTIM": (float, 0.5),
}


class InputError(Exception):
    """Input that real VASP would refuse; the message is what vasp.out reports."""


@dataclass
class RunInputs:
    incar: object  # pymatgen Incar
    structure: object  # pymatgen Structure
    kpoints: object | None  # pymatgen Kpoints or None (KSPACING runs)
    potcar_symbols: list[str]  # e.g. ["PAW_PBE Li_sv", ...], one per POSCAR species
    settings: dict = field(default_factory=dict)  # validated numeric tags with defaults applied


def _read_incar(directory: str):
    from pymatgen.io.vasp.inputs import Incar

    path = os.path.join(directory, "INCAR")
    if not os.path.isfile(path):
        raise InputError("No INCAR found, STOPPING")
    try:
        incar = Incar.from_file(path)
    except Exception as exc:  # pymatgen raises a mix of ValueError/IndexError on garbage
        raise InputError(f"Error reading INCAR: {exc}") from exc
    return incar


def _settings(incar) -> dict:
    values: dict = {}
    for tag, (kind, default) in _NUMERIC_TAGS.items():
        raw = incar.get(tag, default)
        if raw is None:
            values[tag] = None
            continue
        try:
            if isinstance(raw, bool):
                raise TypeError
            values[tag] = kind(float(raw)) if kind is int else kind(raw)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Error reading item '{tag}' from file INCAR: '{raw}' is not a number") from exc
    if values["IBRION"] is None:
        values["IBRION"] = -1 if values["NSW"] in (0, 1) else 0
    if values["ISIF"] is None:
        values["ISIF"] = 0 if values["IBRION"] == 0 else 2
    if values["EDIFFG"] is None:
        values["EDIFFG"] = 10 * values["EDIFF"]
    if values["NELM"] < 1:
        raise InputError(f"NELM = {values['NELM']} must be positive")
    if values["NSW"] < 0:
        raise InputError(f"NSW = {values['NSW']} must not be negative")
    return values


def _read_poscar(directory: str):
    from pymatgen.io.vasp.inputs import Poscar

    path = os.path.join(directory, "POSCAR")
    if not os.path.isfile(path):
        raise InputError("No POSCAR found, STOPPING")
    try:
        structure = Poscar.from_file(path, check_for_potcar=False).structure
    except Exception as exc:
        raise InputError(f"Error reading POSCAR: {exc}") from exc
    if len(structure) == 0:
        raise InputError("POSCAR contains no ions")
    volume = structure.lattice.volume
    if not np.isfinite(volume) or volume <= 1e-6:
        raise InputError("the triple product of the basis vectors is zero or negative; check the POSCAR lattice")
    return structure


def _check_structure(structure) -> None:
    for species in structure.composition.elements:
        z = getattr(species, "Z", 0)
        if not 1 <= z <= MAX_Z:
            raise InputError(
                f"element {species} is not supported by the surrogate potential (CHGNet covers Z = 1..{MAX_Z})"
            )
    centers, _, _, distances = structure.get_neighbor_list(MIN_DISTANCE)
    if len(centers):
        closest = float(np.min(distances))
        raise InputError(
            f"The distance between some ions is very small: {closest:.3f} A < {MIN_DISTANCE} A. "
            "Please check the POSCAR (overlapping atoms)"
        )


def _read_kpoints(directory: str, incar):
    from pymatgen.io.vasp.inputs import Kpoints

    path = os.path.join(directory, "KPOINTS")
    if not os.path.isfile(path):
        if "KSPACING" in incar:
            return None
        raise InputError("No KPOINTS found and KSPACING not set, STOPPING")
    try:
        return Kpoints.from_file(path)
    except Exception as exc:
        raise InputError(f"Error reading KPOINTS: {exc}") from exc


def _read_potcar_symbols(directory: str, structure) -> list[str]:
    """POTCAR labels per species; POTCAR.spec (pymatgen's potcar_spec output) when there is no POTCAR."""
    species = [str(s) for s in _species_order(structure)]
    spec = os.path.join(directory, "POTCAR.spec")
    potcar = os.path.join(directory, "POTCAR")
    symbols: list[str] = []
    if os.path.isfile(potcar):
        with open(potcar, errors="replace") as handle:
            for line in handle:
                if "TITEL" in line and "=" in line:
                    symbols.append(line.split("=", 1)[1].strip())
    elif os.path.isfile(spec):
        with open(spec) as handle:
            symbols = [f"PAW_PBE {line.strip()}" for line in handle if line.strip()]
    else:
        raise InputError("No POTCAR found (neither POTCAR nor POTCAR.spec), STOPPING")
    if len(symbols) != len(species):
        raise InputError(
            f"POTCAR has {len(symbols)} species but POSCAR has {len(species)} ({' '.join(species)}), STOPPING"
        )
    for sym, el in zip(symbols, species, strict=True):
        parts = sym.split()
        label = parts[1] if len(parts) > 1 else parts[0]
        if label.split("_")[0] != el:
            raise InputError(f"POTCAR species {label} does not match POSCAR species {el}, STOPPING")
    return symbols


def _species_order(structure) -> list:
    """Species in POSCAR order (first appearance), as VASP groups them."""
    seen: list = []
    for site in structure:
        if site.specie not in seen:
            seen.append(site.specie)
    return seen


def read_inputs(directory: str = ".") -> RunInputs:
    """Read INCAR, POSCAR, KPOINTS and POTCAR(.spec); raise InputError on anything VASP would reject."""
    incar = _read_incar(directory)
    settings = _settings(incar)
    structure = _read_poscar(directory)
    _check_structure(structure)
    kpoints = _read_kpoints(directory, incar)
    symbols = _read_potcar_symbols(directory, structure)
    return RunInputs(incar=incar, structure=structure, kpoints=kpoints, potcar_symbols=symbols, settings=settings)
