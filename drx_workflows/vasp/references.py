"""Reference calculations of the voltages: bcc Li metal, relaxed with the DRX input set.

One workflow per dataset (keyed on ``spec.drx_id = "ref-Li-bcc"``, so ``drx submit
--references`` is idempotent), with the same ``relax`` input set (DrxRelaxSet: ENCUT 520,
EDIFF 1e-5, EDIFFG -0.03, ISPIN 2, ISIF 3, 1000 k-points per reciprocal atom) and the same
double relaxation as the DRX structures, so DFT voltages come from one consistent set of
calculations.  MPRelaxSet applies +U only to TMs in oxides/fluorides: bcc Li gets plain GGA,
which is the Materials Project GGA/GGA+U mixing convention for a Li-metal reference.
"""

from __future__ import annotations

from drx_workflows.errors import DrxError

REF_ID_PREFIX = "ref-"
LI_REFERENCE_ID = "ref-Li-bcc"
WF_KIND_REFERENCE = "reference"
REFERENCE_SLICE = "references"
LI_BCC_A = 3.44  # Angstrom, conventional bcc cell; the relaxation (ISIF 3) fixes it


def li_bcc_structure():
    """Primitive (one-atom) bcc Li cell."""
    from pymatgen.core import Lattice, Structure

    a = LI_BCC_A
    lattice = Lattice([[-a / 2, a / 2, a / 2], [a / 2, -a / 2, a / 2], [a / 2, a / 2, -a / 2]])
    return Structure(lattice, ["Li"], [[0.0, 0.0, 0.0]])


def reference_structures() -> dict:
    """drx_id -> structure of every reference calculation the voltages need."""
    return {LI_REFERENCE_ID: li_bcc_structure()}


def reference_workflow(
    drx_id: str = LI_REFERENCE_ID,
    vasp_cmd: str = ">>vasp_cmd<<",
    db_file: str = ">>db_file<<",
    user_incar_settings: dict | None = None,
    max_errors: int | None = None,
    category: str | None = None,
):
    """The relaxation workflow of one reference structure (structure inline in the firework)."""
    from atomate.common.powerups import add_additional_fields_to_taskdocs
    from fireworks import Firework, Workflow

    from drx_workflows.enumeration.records import structure_to_compact
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
    write = {"structure": structure_json(structure_to_compact(structure)), "input_set": "relax"}
    if user_incar_settings:
        write["user_incar_settings"] = dict(user_incar_settings)
    run = {"vasp_cmd": vasp_cmd, "job_type": "double_relaxation_run"}
    if max_errors is not None:
        run["max_errors"] = max_errors
    spec = {k: meta[k] for k in ("drx_id", "n_tm", "tms", "li_free", "slices")}
    spec["drx_workflow"] = WF_KIND_REFERENCE
    if category:
        spec["_category"] = category
    name = f"{drx_id} {formula} reference relax"
    fw = Firework(
        [
            WriteDrxInputs(**write),
            RunVaspDrxCustodian(**run),
            DrxVaspToDb(db_file=db_file, additional_fields={"task_label": "reference relax"}),
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
        write_inputs(DrxRelaxSet(s), Path(directory) / drx_id, potcar_spec=True)
        for drx_id, s in reference_structures().items()
    ]
