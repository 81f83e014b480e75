"""Workflows of the voltage reference calculations (bcc Li relaxation and single points; the structures are in vasp.references): one per calculation, keyed on drx_id, carrying the relaxations' duplicate finder."""

from __future__ import annotations

from drx_workflows.errors import DrxError
from drx_workflows.vasp.references import (
    LI_REFERENCE_ID,
    REFERENCE_SLICE,
    STATIC_INCAR,
    WF_KIND_REFERENCE,
    is_static,
    reference_structures,
)


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
    from drx_workflows.pipeline.relax.dupefinder import DrxRelaxDupeFinder
    from drx_workflows.pipeline.relax.firetasks import (
        DrxVaspToDb,
        RunVaspDrxCustodian,
        WriteDrxInputs,
    )
    from drx_workflows.pipeline.relax.workflows import structure_json
    from drx_workflows.vasp.metadata import SPEC_TASKDOC_FIELDS
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
    from drx_workflows.pipeline.relax.submit import add_workflows

    return add_workflows(store, reference_workflows(**wf_kwargs), progress=progress)
