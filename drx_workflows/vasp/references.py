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

from drx_workflows.errors import DrxError

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


def reference_workflow(
    drx_id: str = LI_REFERENCE_ID,
    vasp_cmd: str = ">>vasp_cmd<<",
    db_file: str = ">>db_file<<",
    user_incar_settings: dict | None = None,
    max_errors: int | None = None,
    category: str | None = None,
):
    """The workflow of one reference calculation (structure inline in the firework)."""
    from atomate.common.powerups import add_additional_fields_to_taskdocs
    from fireworks import Firework, Workflow

    from drx_workflows.enumeration.records import structure_to_compact
    from drx_workflows.vasp.dupefinder import DrxRelaxDupeFinder
    from drx_workflows.vasp.firetasks import DrxVaspToDb, RunVaspDrxCustodian, WriteDrxInputs
    from drx_workflows.vasp.workflows import SPEC_TASKDOC_FIELDS, structure_json

    structures = reference_structures()
    if drx_id not in structures:
        raise DrxError(f"unknown reference {drx_id!r}; known: {', '.join(sorted(structures))}")
    structure = structures[drx_id]
    formula = structure.composition.reduced_formula
    meta = {
        "drx_id": drx_id,
        "formula": formula,
        "reduced_formula": formula,
        "tms": [],
        "n_tm": 0,
        "li_free": "Li" not in [s.specie.symbol for s in structure],
        "slices": [REFERENCE_SLICE],
        "source": "reference",
    }
    static = is_static(drx_id)
    write = {"structure": structure_json(structure_to_compact(structure)), "input_set": "relax"}
    incar = {**(STATIC_INCAR if static else {}), **(user_incar_settings or {})}
    if incar:
        write["user_incar_settings"] = incar
    run = {"vasp_cmd": vasp_cmd, "job_type": "normal" if static else "double_relaxation_run"}
    if max_errors is not None:
        run["max_errors"] = max_errors
    spec = {k: meta[k] for k in ("drx_id", "n_tm", "tms", "li_free", "slices")}
    spec["drx_workflow"] = WF_KIND_REFERENCE
    spec["_dupefinder"] = DrxRelaxDupeFinder()
    if category:
        spec["_category"] = category
    label = "reference static" if static else "reference relax"
    name = f"{drx_id} {formula} {label}"
    fw = Firework(
        [
            WriteDrxInputs(**write),
            RunVaspDrxCustodian(**run),
            DrxVaspToDb(db_file=db_file, additional_fields={"task_label": label}),
        ],
        spec=spec,
        name=name,
    )
    wf = Workflow([fw], name=name, metadata={"drx_id": drx_id, "reference": True})
    return add_additional_fields_to_taskdocs(wf, {k: v for k, v in meta.items() if k not in SPEC_TASKDOC_FIELDS})


def reference_workflows(**kwargs) -> list:
    return [reference_workflow(drx_id, **kwargs) for drx_id in reference_structures()]


def submit_references(store, progress: bool = False, **wf_kwargs):
    """Add the reference workflows not submitted yet (idempotent on drx_id); a SubmitResult."""
    from drx_workflows.vasp.submit import add_workflows

    return add_workflows(store, reference_workflows(**wf_kwargs), progress=progress)


def dry_run_references(directory) -> list:
    """Write the inputs (POTCAR.spec) of the reference calculations, one folder each."""
    from pathlib import Path

    from drx_workflows.vasp.sets import DrxRelaxSet, write_inputs

    return [
        write_inputs(DrxRelaxSet(s, user_incar_settings=STATIC_INCAR if is_static(drx_id) else None),
                     Path(directory) / drx_id, potcar_spec=True)
        for drx_id, s in reference_structures().items()
    ]
