"""What every calculation of a DRX structure carries: workflow kinds, the metadata copied into firework specs and task documents, and task tags."""

from __future__ import annotations

WF_KIND_RELAX = "drx-relax"


WF_KIND_ATOM = "isolated-atom"


ATOM_ID_PREFIX = "atom-"


# Firework spec fields that DrxVaspToDb copies into the task document.
SPEC_TASKDOC_FIELDS = ("drx_id", "n_tm", "tms", "li_free", "slices", "drx_workflow")


def task_tags(spec: dict) -> list[str]:
    """Tags of a task document, from the firework spec (kept out of the spec itself: every
    extra spec field costs time for each of thousands of fireworks at submission)."""
    tags = ["drx", spec.get("drx_workflow") or WF_KIND_RELAX]
    if spec.get("n_tm") is not None:
        tags.append(f"n_tm={spec['n_tm']}")
    return tags + [s for s in spec.get("slices") or [] if s not in tags]


# Fields of a ``structures`` document copied into spec and task documents.
METADATA_FIELDS = ("drx_id", "formula", "reduced_formula", "tms", "n_tm", "tm_counts", "li_free", "source", "parent_id")


def drx_metadata(doc: dict, slices=None) -> dict:
    """The DRX fields every firework spec and task document of a structure carries."""
    meta = {k: doc.get(k) for k in METADATA_FIELDS if k in doc}
    slices = list(slices or [])
    for s in doc.get("slices") or []:
        if s not in slices:
            slices.append(s)
    meta["slices"] = slices
    return meta
