"""FireWorks workflows: one full-cell relaxation per DRX structure, isolated-atom references.

Every firework's ``spec`` carries ``drx_id``, ``n_tm``, ``tms``, ``li_free``, ``slices`` and
``drx_workflow`` (status groups on them, submission de-duplicates on ``drx_id``); DrxVaspToDb copies
them into the task document, and the rest of the structure's metadata (formula, source,
parent_id, ...) gets there through atomate's ``add_additional_fields_to_taskdocs``.
"""

from __future__ import annotations

import json

from fireworks import Firework, Workflow

from drx_workflows.constants import ELEMENTS, TMS
from drx_workflows.errors import DrxError
from drx_workflows.pipeline.relax.dupefinder import DrxRelaxDupeFinder
from drx_workflows.pipeline.relax.firetasks import (
    DrxVaspToDb,
    RunVaspDrxCustodian,
    WriteDrxInputs,
)
from drx_workflows.vasp.checks import check_drx_structure
from drx_workflows.vasp.metadata import (
    ATOM_ID_PREFIX,
    SPEC_TASKDOC_FIELDS,
    WF_KIND_ATOM,
    WF_KIND_RELAX,
    drx_metadata,
)


def structure_json(compact: dict) -> str:
    """The structure as one compact JSON string in the firework.

    FireWorks and mongomock walk every element of nested lists when serialising and
    inserting; one string per structure makes bulk submission several times faster.
    """
    return json.dumps(
        {"lattice": compact["lattice"], "species": compact["species"], "frac_coords": compact["frac_coords"]},
        separators=(",", ":"),
    )


def relax_workflow(
    doc: dict,
    slices=None,
    vasp_cmd: str = ">>vasp_cmd<<",
    db_file: str = ">>db_file<<",
    user_incar_settings: dict | None = None,
    max_errors: int | None = None,
    check: bool = True,
    category: str | None = None,
    inline_structure: bool = False,
) -> Workflow:
    """One relaxation workflow for a ``structures`` document (see enumeration.records).

    By default the firework names its structure by ``drx_id`` and the worker reads it
    from the store's ``structures`` collection (drx_id is derived from the content, so
    it cannot go stale); that keeps a copy of every structure out of the fireworks
    collection. ``inline_structure=True`` embeds it instead, for workflow files meant
    for another database (``drx submit --to-file``).
    """
    from atomate.common.powerups import add_additional_fields_to_taskdocs

    from drx_workflows.enumeration.records import (
        structure_from_doc,
        structure_to_compact,
    )

    drx_id = doc.get("drx_id")
    if not drx_id:
        raise DrxError("a structure document has no drx_id")
    raw = doc.get("structure")
    if not isinstance(raw, dict):
        raise DrxError(f"structure {drx_id}: the document has no structure")
    meta = drx_metadata(doc, slices)
    compact = raw
    if "@class" in raw or not {"tms", "n_tm", "formula"} <= set(meta):
        # Only build a pymatgen Structure when the document lacks what the spec needs.
        try:
            structure = structure_from_doc(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise DrxError(f"structure {drx_id}: cannot read its structure ({type(exc).__name__}: {exc})") from None
        compact = structure_to_compact(structure)
        meta.setdefault("formula", structure.composition.formula.replace(" ", ""))
        if "n_tm" not in meta or "tms" not in meta:
            tms = sorted({s.specie.symbol for s in structure if s.specie.symbol in TMS})
            meta["tms"], meta["n_tm"] = tms, len(tms)
    if not {"lattice", "species", "frac_coords"} <= set(compact):
        raise DrxError(f"structure {drx_id}: structure needs lattice, species and frac_coords")
    if check:
        try:
            check_drx_structure(compact, drx_id)
        except (TypeError, ValueError, IndexError) as exc:
            raise DrxError(f"structure {drx_id}: malformed structure ({type(exc).__name__}: {exc})") from None
    meta.setdefault("li_free", "Li" not in compact["species"])

    if inline_structure:
        write = {"structure": structure_json(compact), "input_set": "relax"}
    else:
        # drx_id comes from the spec and the store from db_file (the fworker's by default)
        write = {"input_set": "relax"}
        if db_file != ">>db_file<<":
            write["db_file"] = db_file
    if user_incar_settings:
        write["user_incar_settings"] = user_incar_settings
    run = {"vasp_cmd": vasp_cmd, "job_type": "double_relaxation_run"}
    if max_errors is not None:
        run["max_errors"] = max_errors
    spec = {
        "drx_id": drx_id,
        "n_tm": meta["n_tm"],
        "tms": meta["tms"],
        "li_free": meta["li_free"],
        "slices": meta["slices"],
        "drx_workflow": WF_KIND_RELAX,
    }
    if category:
        spec["_category"] = category
    spec["_dupefinder"] = DrxRelaxDupeFinder()
    name = f"{drx_id} {meta['formula']} relax"
    fw = Firework(
        [
            WriteDrxInputs(**write),
            RunVaspDrxCustodian(**run),
            DrxVaspToDb(db_file=db_file, additional_fields={"task_label": "drx relax"}),
        ],
        spec=spec,
        name=name,
    )
    wf = Workflow([fw], name=f"{name} n_tm={meta['n_tm']}", metadata={"drx_id": drx_id, **_wf_meta(meta)})
    # The spec fields reach the task document through DrxVaspToDb; the rest of the metadata here.
    return add_additional_fields_to_taskdocs(wf, {k: v for k, v in meta.items() if k not in SPEC_TASKDOC_FIELDS})


def _wf_meta(meta: dict) -> dict:
    return {k: meta[k] for k in ("n_tm", "tms", "li_free", "slices", "formula") if k in meta}


def isolated_atom_workflow(
    element: str,
    vasp_cmd: str = ">>vasp_cmd<<",
    db_file: str = ">>db_file<<",
    category: str | None = None,
) -> Workflow:
    """Single-point energy of one spin-polarised atom in an 18 x 19 x 20 A box."""
    from atomate.common.powerups import add_additional_fields_to_taskdocs

    from drx_workflows.enumeration.records import structure_to_compact
    from drx_workflows.vasp.sets import isolated_atom_structure

    structure = isolated_atom_structure(element)
    drx_id = f"{ATOM_ID_PREFIX}{element}"
    meta = {
        "drx_id": drx_id,
        "element": element,
        "formula": element,
        "tms": [element] if element in TMS else [],
        "n_tm": 1 if element in TMS else 0,
        "li_free": element != "Li",
        "slices": ["isolated-atoms"],
    }
    spec = {k: meta[k] for k in ("drx_id", "n_tm", "tms", "li_free", "slices")}
    spec["drx_workflow"] = WF_KIND_ATOM
    if category:
        spec["_category"] = category
    name = f"{drx_id} isolated atom"
    fw = Firework(
        [
            WriteDrxInputs(structure=structure_json(structure_to_compact(structure)), input_set="atom"),
            RunVaspDrxCustodian(vasp_cmd=vasp_cmd, job_type="normal"),
            DrxVaspToDb(db_file=db_file, additional_fields={"task_label": "isolated atom"}),
        ],
        spec=spec,
        name=name,
    )
    wf = Workflow([fw], name=name, metadata={"drx_id": drx_id, "element": element})
    return add_additional_fields_to_taskdocs(wf, {k: v for k, v in meta.items() if k not in SPEC_TASKDOC_FIELDS})


def isolated_atom_workflows(elements=ELEMENTS, **kwargs) -> list[Workflow]:
    """The 11 reference atoms (Li, O and the nine 3d TMs)."""
    return [isolated_atom_workflow(el, **kwargs) for el in elements]
