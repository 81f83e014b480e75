"""Submission of relaxation workflows: idempotent, batched, all-or-nothing per batch.

The FireWorks ``fireworks`` collection is the record of what was submitted: a
structure counts as submitted when a firework with its ``spec.drx_id`` exists,
so resubmitting a dataset (or an overlapping one) adds only the new structures.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.vasp.checks import check_drx_structures

DEFAULT_BATCH = 1000


@dataclass
class SubmitResult:
    selected: int = 0
    already_submitted: int = 0
    duplicates: int = 0
    added: int = 0
    batches: int = 0
    seconds: float = 0.0
    added_ids: list = field(default_factory=list, repr=False)

    def summary(self) -> str:
        rate = self.added / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.added} workflows added in {self.batches} batches ({self.seconds:.1f} s, {rate:.0f}/s); "
            f"{self.already_submitted} already submitted, {self.duplicates} duplicate ids in the input, "
            f"{self.selected} selected"
        )


def submitted_ids(launchpad) -> set[str]:
    """drx_ids that already have a firework on this LaunchPad."""
    return {i for i in launchpad.fireworks.distinct("spec.drx_id") if i}


def select_structures(
    store,
    query: dict | None = None,
    drx_ids=None,
    slice_name: str | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Structure documents to submit: a Mongo query, explicit ids and/or a slice.

    A slice is either a ``slices`` document ``{"name": ..., "drx_ids": [...]}`` or the
    structures whose ``slices`` field lists the name.
    """
    q = dict(query or {})
    if drx_ids is not None:
        q["drx_id"] = {"$in": list(drx_ids)}
    if slice_name:
        sl = store.slices.find_one({"name": slice_name}, {"drx_ids": 1})
        if sl and sl.get("drx_ids") is not None:
            ids = set(sl["drx_ids"])
            if "drx_id" in q:
                ids &= set(q["drx_id"]["$in"])
            q["drx_id"] = {"$in": sorted(ids)}
        else:
            q["slices"] = slice_name
    cursor = store.structures.find(q, {"_id": 0}).sort("drx_id", 1)
    if limit:
        cursor = cursor.limit(int(limit))
    docs = list(cursor)
    if not docs:
        where = f" of slice {slice_name!r}" if slice_name else ""
        raise DrxError(f"no structures{where} match the selection in the store's structures collection")
    return docs


def build_workflows(docs, slices=None, check: bool = True, **wf_kwargs) -> list:
    # wf_kwargs go to relax_workflow (vasp_cmd, db_file, max_errors, inline_structure, ...)
    """One relaxation workflow per document; a bad document stops everything before any insert."""
    from drx_workflows.pipeline.relax.workflows import relax_workflow

    if check:
        check_drx_structures(docs)
    return [relax_workflow(doc, slices=slices, check=False, **wf_kwargs) for doc in docs]


@contextlib.contextmanager
def quiet_bulk_add():
    """bulk_add_wfs draws its own progress bar per call; one bar over all batches is enough."""
    import fireworks.core.launchpad as fw_lp

    original = fw_lp.tqdm
    fw_lp.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        fw_lp.tqdm = original


def _rollback(launchpad, wfs) -> None:
    """Remove whatever part of a failed batch reached the database."""
    fw_ids = [fw.fw_id for wf in wfs for fw in wf.fws]
    if fw_ids:
        launchpad.fireworks.delete_many({"fw_id": {"$in": fw_ids}})
        launchpad.workflows.delete_many({"nodes": {"$in": fw_ids}})


def add_workflows(
    store, workflows, batch_size: int = DEFAULT_BATCH, progress: bool = True, submitted: set | None = None
) -> SubmitResult:
    """Add workflows (keyed on the ``drx_id`` of their fireworks' spec), skipping submitted ones.

    Each batch goes in with ``LaunchPad.bulk_add_wfs``; a batch that fails is removed
    again, earlier batches stay, and rerunning adds the rest.  ``submitted`` (the ids
    already on the LaunchPad) saves a second scan when the caller has just read them.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    lp = store.launchpad()
    result = SubmitResult(selected=len(workflows))
    done = submitted_ids(lp) if submitted is None else submitted
    todo, seen = [], set()
    for wf in workflows:
        key = wf.fws[0].spec.get("drx_id")
        if key is None:
            raise DrxError(f"workflow {wf.name!r} has no spec.drx_id; it cannot be submitted idempotently")
        if key in done:
            result.already_submitted += 1
        elif key in seen:
            result.duplicates += 1
        else:
            seen.add(key)
            todo.append(wf)
    batch_size = max(1, int(batch_size))
    bar = tqdm(total=len(todo), unit="wf", desc="submitting", disable=not progress or not todo)
    try:
        with quiet_bulk_add():
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                try:
                    lp.bulk_add_wfs(batch)
                except Exception as exc:
                    _rollback(lp, batch)
                    store.save()
                    raise DrxError(
                        f"batch {result.batches + 1} failed ({type(exc).__name__}: {exc}); it was rolled back, "
                        f"{result.added} workflows are in; rerun the same submit to add the rest"
                    ) from exc
                result.batches += 1
                result.added += len(batch)
                result.added_ids.extend(wf.fws[0].spec["drx_id"] for wf in batch)
                bar.update(len(batch))
    finally:
        bar.close()
    if result.added:
        store.save()
    result.seconds = time.perf_counter() - t0
    return result


def submit_structures(
    store,
    docs,
    slices=None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
    check: bool = True,
    **wf_kwargs,
) -> SubmitResult:
    """Relaxation workflows for structure documents not submitted yet."""
    lp = store.launchpad()
    done = submitted_ids(lp)
    fresh = [d for d in docs if d.get("drx_id") not in done]
    if check:
        check_drx_structures(fresh)  # the whole set first: a bad structure stops everything
    wfs = build_workflows(fresh, slices=slices, check=False, **wf_kwargs)
    result = add_workflows(store, wfs, batch_size=batch_size, progress=progress, submitted=done)
    result.selected = len(docs)
    result.already_submitted += len(docs) - len(fresh)
    return result


def submit_isolated_atoms(store, elements=None, progress: bool = False, **wf_kwargs) -> SubmitResult:
    from drx_workflows.constants import ELEMENTS
    from drx_workflows.pipeline.relax.workflows import isolated_atom_workflows

    return add_workflows(store, isolated_atom_workflows(elements or ELEMENTS, **wf_kwargs), progress=progress)


def dry_run(docs, directory, n: int = 3, atoms: bool = False, slices=None) -> list[Path]:
    """Write the inputs (POTCAR.spec instead of POTCAR) of the first ``n`` structures."""
    from drx_workflows.enumeration.records import structure_from_doc
    from drx_workflows.vasp.checks import check_drx_structure
    from drx_workflows.vasp.sets import (
        DrxIsolatedAtomSet,
        DrxRelaxSet,
        isolated_atom_structure,
        write_inputs,
    )

    out = Path(directory)
    written = []
    for doc in list(docs)[: max(0, n)]:
        drx_id = doc.get("drx_id") or "?"
        check_drx_structure(doc["structure"] if "@class" not in doc["structure"] else structure_from_doc(doc), drx_id)
        target = write_inputs(DrxRelaxSet(structure_from_doc(doc)), out / drx_id, potcar_spec=True)
        (target / "drx_metadata.json").write_text(
            json.dumps({k: v for k, v in doc.items() if k != "structure"}, indent=2, default=str) + "\n"
        )
        written.append(target)
    if atoms:
        from drx_workflows.constants import ELEMENTS

        for el in ELEMENTS:
            written.append(write_inputs(DrxIsolatedAtomSet(isolated_atom_structure(el)), out / f"atom-{el}", True))
    return written


def write_workflow_file(workflows, path) -> Path:
    """Workflows as a file for ``lpad add`` (YAML or JSON by extension).

    ``lpad add`` reads one workflow per file, so several workflows are written as one
    workflow of independent fireworks; each firework keeps its drx_id, so status,
    rerun and later submissions see them exactly like individually added ones.
    """
    from fireworks import Workflow

    p = Path(path)
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise DrxError(f"--to-file {p}: use a .yaml or .json file name")
    if not workflows:
        raise DrxError("no workflows to write (every selected structure is already submitted)")
    if len(workflows) == 1:
        wf = workflows[0]
    else:
        fws = [fw for w in workflows for fw in w.fws]
        wf = Workflow(fws, name=f"drx relaxations ({len(fws)} structures)", metadata={"drx_ids": [fw.spec["drx_id"] for fw in fws]})
    p.parent.mkdir(parents=True, exist_ok=True)
    wf.to_file(str(p), f_format="json" if p.suffix.lower() == ".json" else "yaml")
    return p


def write_workflow_dir(workflows, directory) -> list[Path]:
    """One file per workflow, for ``lpad add -d DIR``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for wf in workflows:
        p = d / f"{wf.fws[0].spec['drx_id']}.yaml"
        wf.to_file(str(p), f_format="yaml")
        paths.append(p)
    return paths
