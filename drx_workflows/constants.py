"""Facts from the reference study, in one place.

U values equal the Materials Project values that pymatgen's MPRelaxSet applies to oxides;
tests check that they agree.
"""

# The nine 3d transition metals of the study, in periodic-table order.
TMS: tuple[str, ...] = ("Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")

ELEMENTS: tuple[str, ...] = ("Li", "O", *TMS)

# Hubbard U (eV) of the GGA+U calculations.
HUBBARD_U: dict[str, float] = {
    "Mn": 3.9,
    "Ni": 6.2,
    "V": 3.25,
    "Cr": 3.7,
    "Fe": 5.3,
    "Co": 3.32,
    "Sc": 0.0,
    "Ti": 0.0,
    "Cu": 0.0,
    "Li": 0.0,
    "O": 0.0,
}

# Isolated-atom reference energies (eV) of the study, for cohesive-energy targets.
ISOLATED_ATOM_ENERGY: dict[str, float] = {
    "Li": -0.3,
    "O": -1.7,
    "Mn": -4.6,
    "Ni": -3.0,
    "Sc": -2.1,
    "Ti": -2.4,
    "V": -2.7,
    "Cr": -4.5,
    "Fe": -2.2,
    "Co": -1.1,
    "Cu": -0.2,
}

# Starting cubic rocksalt lattice parameters (Angstrom) of the LiTMO2 end members,
# from the cation-disordered / cubic-equivalent cells reported in the literature
# (rounded). Only a starting point: the full-cell relaxation fixes the lattice.
LITMO2_LATTICE_A: dict[str, float] = {
    "Sc": 4.30,
    "Ti": 4.14,
    "V": 4.12,
    "Cr": 4.10,
    "Mn": 4.16,
    "Fe": 4.16,
    "Co": 4.05,
    "Ni": 4.11,
    "Cu": 4.15,
}
