"""VASP input sets of the study, as configurations of pymatgen's MPRelaxSet.

Only the settings the study changes are overridden; everything else (POTCAR
choices, U values, MAGMOM defaults, LASPH, ...) is inherited from MPRelaxSet
so that energies stay compatible with Materials Project data.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.vasp.inputs import Kpoints
from pymatgen.io.vasp.sets import MPRelaxSet

from drx_workflows.constants import ELEMENTS, HUBBARD_U
from drx_workflows.errors import DrxError

ISOLATED_ATOM_BOX = (18.0, 19.0, 20.0)  # Angstrom; unequal edges break the cubic symmetry of the atom
KPOINT_DENSITY = 1000  # k-points per reciprocal atom (Kpoints.automatic_density)

# MPRelaxSet scales EDIFF with the number of atoms; the study uses a fixed, tighter criterion.
_RELAX_CONFIG = deepcopy(MPRelaxSet.CONFIG)
_RELAX_CONFIG["INCAR"].pop("EDIFF_PER_ATOM", None)
_RELAX_CONFIG["INCAR"].update({"EDIFF": 1e-5, "EDIFFG": -0.03, "ENCUT": 520, "ISPIN": 2, "ISIF": 3})
_RELAX_CONFIG["KPOINTS"] = {"grid_density": KPOINT_DENSITY}


@dataclass
class DrxRelaxSet(MPRelaxSet):
    """Full-cell GGA+U relaxation of a DRX structure (MP U values and high-spin MAGMOMs).

    ENCUT 520 eV, EDIFF 1e-5 eV, EDIFFG -0.03 eV/A, ISPIN 2, ISIF 3, Gamma-centred
    mesh of 1000 k-points per reciprocal atom.
    """

    CONFIG = _RELAX_CONFIG
    force_gamma: bool = True


_ATOM_CONFIG = deepcopy(MPRelaxSet.CONFIG)
_ATOM_CONFIG["INCAR"].pop("EDIFF_PER_ATOM", None)
_ATOM_CONFIG["INCAR"].update(
    {
        "EDIFF": 1e-5,
        "ENCUT": 520,
        "ISPIN": 2,
        "ISYM": 0,
        # A single static point: nothing to relax, and tetrahedron smearing (ISMEAR -5)
        # needs at least four k-points, so Gaussian smearing with a small width.
        "NSW": 0,
        "IBRION": -1,
        "ISMEAR": 0,
        "SIGMA": 0.05,
        "NELM": 200,
    }
)
for _key in ("ISIF", "EDIFFG"):
    _ATOM_CONFIG["INCAR"].pop(_key, None)


@dataclass
class DrxIsolatedAtomSet(MPRelaxSet):
    """One atom in an 18 x 19 x 20 A box: Gamma point only, spin-polarised, no symmetry."""

    CONFIG = _ATOM_CONFIG

    @property
    def kpoints_updates(self) -> Kpoints:
        return Kpoints.gamma_automatic((1, 1, 1))


def isolated_atom_structure(element: str) -> Structure:
    """The box of an isolated-atom reference calculation."""
    check_elements([element])
    return Structure(Lattice.orthorhombic(*ISOLATED_ATOM_BOX), [element], [[0.0, 0.0, 0.0]])


def check_elements(symbols) -> None:
    """Refuse elements the study has no U value / POTCAR mapping for."""
    potcars = MPRelaxSet.CONFIG["POTCAR"]
    for sym in symbols:
        sym = str(sym)
        if sym not in HUBBARD_U or sym not in ELEMENTS:
            raise DrxError(
                f"element {sym} has no Hubbard U in drx_workflows.constants.HUBBARD_U; "
                f"the study covers {', '.join(ELEMENTS)}"
            )
        if sym not in potcars:
            raise DrxError(f"element {sym} has no POTCAR mapping in MPRelaxSet")
        Element(sym)


def check_psp_dir() -> None:
    """Refuse to write real inputs when pymatgen cannot find the POTCARs."""
    import os

    from pymatgen.core import SETTINGS

    psp = os.environ.get("PMG_VASP_PSP_DIR") or SETTINGS.get("PMG_VASP_PSP_DIR")
    if not psp:
        raise DrxError(
            "PMG_VASP_PSP_DIR is not set: point it at your POTCAR library "
            "(or use --dry-run, which writes POTCAR.spec instead)"
        )
    if not Path(psp).is_dir():
        raise DrxError(f"PMG_VASP_PSP_DIR={psp} is not a directory")


def write_inputs(input_set, directory, potcar_spec: bool = True) -> Path:
    """Write INCAR/KPOINTS/POSCAR and POTCAR (or POTCAR.spec when ``potcar_spec``)."""
    if not potcar_spec:
        check_psp_dir()
    directory = Path(directory)
    input_set.write_input(str(directory), potcar_spec=potcar_spec)
    return directory
