"""Reference calculations of the voltages: bcc Li metal with the DRX input set.

* ``ref-Li-bcc``: bcc Li relaxed with the same ``relax`` input set (DrxRelaxSet: ENCUT 520,
  EDIFF 1e-5, EDIFFG -0.03, ISPIN 2, ISIF 3, 1000 k-points per reciprocal atom) and the same
  double relaxation as the DRX structures, so DFT voltages come from one consistent set of
  calculations.  MPRelaxSet applies +U only to TMs in oxides/fluorides: bcc Li gets plain GGA,
  which is the Materials Project GGA/GGA+U mixing convention for a Li-metal reference.
* ``ref-Li-bcc-v0.85`` ... ``-v1.15``: single points of bcc Li compressed and stretched (volume
  factors ``LI_EV_SCALES``), the same settings without relaxation.  They cost nothing next to
  one oxide relaxation and are what a potential needs to know Li metal: trained on oxides and
  a relaxation that barely moves, a potential relaxes its own bcc Li into a volume it has never
  seen (measured: the ann's Li 1.6 eV/atom too low, voltages 52 % off).  Training runs take them
  with ``--with-references``.

One workflow per calculation, keyed on ``spec.drx_id``, so ``drx submit --references`` is
idempotent; each carries the relaxations' duplicate finder, so a slice workflow that needs the
references for its training can hold copies of them without running them twice.
"""

from __future__ import annotations

REF_ID_PREFIX = "ref-"
LI_REFERENCE_ID = "ref-Li-bcc"
WF_KIND_REFERENCE = "reference"
REFERENCE_SLICE = "references"
LI_BCC_A = 3.44  # Angstrom, conventional bcc cell; the relaxation (ISIF 3) fixes it
LI_EV_SCALES = (0.85, 0.92, 1.08, 1.15)  # volume factors of the bcc Li single points
# a single point in the relax set's settings: no ionic steps, no cell change
STATIC_INCAR = {"NSW": 0, "IBRION": -1, "ISIF": 2}


def li_bcc_structure(volume_scale: float = 1.0):
    """Primitive (one-atom) bcc Li cell, its volume scaled by ``volume_scale``."""
    from pymatgen.core import Lattice, Structure

    a = LI_BCC_A * volume_scale ** (1 / 3)
    lattice = Lattice([[-a / 2, a / 2, a / 2], [a / 2, -a / 2, a / 2], [a / 2, a / 2, -a / 2]])
    return Structure(lattice, ["Li"], [[0.0, 0.0, 0.0]])


def li_ev_id(scale: float) -> str:
    return f"{LI_REFERENCE_ID}-v{scale:.2f}"


def is_static(drx_id: str) -> bool:
    """True for the single points, False for the relaxation."""
    return drx_id != LI_REFERENCE_ID


def reference_structures() -> dict:
    """drx_id -> structure of every reference calculation (the relaxation first)."""
    out = {LI_REFERENCE_ID: li_bcc_structure()}
    out.update({li_ev_id(v): li_bcc_structure(v) for v in LI_EV_SCALES})
    return out


def dry_run_references(directory) -> list:
    """Write the inputs (POTCAR.spec) of the reference calculations, one folder each."""
    from pathlib import Path

    from drx_workflows.vasp.sets import DrxRelaxSet, write_inputs

    return [
        write_inputs(DrxRelaxSet(s, user_incar_settings=STATIC_INCAR if is_static(drx_id) else None),
                     Path(directory) / drx_id, potcar_spec=True)
        for drx_id, s in reference_structures().items()
    ]
