"""`drx-surrogate-vasp`: a stand-in for `vasp_std` driven by the CHGNet universal potential.

VASP is licensed and absent, so this executable reads the VASP inputs of the current directory and
writes VASP-format outputs (vasprun.xml, OUTCAR, OSZICAR, CONTCAR, vasp.out) that pymatgen, custodian
and atomate parse unchanged. Every output carries a surrogate marker; `marker.is_surrogate_run` finds it.

Only light modules are imported here: torch/CHGNet load lazily in `engine`.
"""
