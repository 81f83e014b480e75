"""Training configurations from relaxation task documents (atomate ``VaspToDb`` schema).

Every ionic step of every calculation of a relaxation is a labelled configuration
(structure, energy, forces).  Frames of one structure are strongly correlated, so
splits are made per structure (``drx_id``), never per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pymatgen.core import Structure

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration


def frames_of_task(task: dict, frames: str = "all") -> list[Configuration]:
    """The labelled ionic steps of one task document, oldest first; ``frames='final'`` keeps the last."""
    drx_id = task.get("drx_id") or str(task.get("task_id"))
    steps = []
    for calc in reversed(task.get("calcs_reversed") or []):  # calcs_reversed is newest first
        steps += (calc.get("output") or {}).get("ionic_steps") or []
    if not steps:
        raise DrxError(f"task {task.get('task_id')} ({drx_id}) has no ionic steps")
    if frames == "final":
        steps = steps[-1:]
    out = []
    for k, step in enumerate(steps):
        s = Structure.from_dict(step["structure"])
        energy = step.get("e_0_energy", step.get("e_fr_energy"))
        if energy is None or step.get("forces") is None:
            continue
        out.append(
            Configuration(
                id=f"{drx_id}-{k}",
                species=[site.specie.symbol for site in s],
                positions=s.cart_coords,
                cell=s.lattice.matrix,
                energy=float(energy),
                forces=step["forces"],
                meta={"drx_id": drx_id, "task_id": task.get("task_id"), "surrogate": bool(task.get("surrogate"))},
            )
        )
    return out


def configurations_from_tasks(tasks, frames: str = "all") -> list[list[Configuration]]:
    """One list of frames per successful task, in task order."""
    groups = [frames_of_task(t, frames) for t in tasks if t.get("state", "successful") == "successful"]
    return [g for g in groups if g]


def latest_tasks(store, drx_ids) -> dict[str, dict]:
    """The newest successful relaxation task document of each structure (reruns leave older ones)."""
    out: dict[str, dict] = {}
    query = {"drx_id": {"$in": list(drx_ids)}, "state": "successful"}
    for task in store.tasks.find(query, {"_id": 0, "drx_id": 1, "task_id": 1, "calcs_reversed": 1, "surrogate": 1,
                                         "state": 1, "last_updated": 1}):
        key = task["drx_id"]
        if key not in out or _recency(task) > _recency(out[key]):
            out[key] = task
    return out


def _recency(task: dict) -> tuple:
    return str(task.get("last_updated", "")), task.get("task_id") or 0


@dataclass
class SliceData:
    """Training and test configurations of one slice generation, and what was left out."""

    train: list[Configuration]
    test: list[Configuration]
    n_train_structures: int
    n_test_structures: int
    missing: list[str] = field(default_factory=list)  # members without a successful task document
    excluded: dict = field(default_factory=dict)  # configuration id -> why (unphysical)
    references: list[str] = field(default_factory=list)  # reference calculations added to the training side


def reference_frames(store, frames: str = "all") -> tuple[list[Configuration], list[str]]:
    """Frames of the finished voltage reference calculations (bcc Li and its single points), and their ids."""
    from drx_workflows.vasp.references import reference_structures

    tasks = latest_tasks(store, reference_structures())
    return [c for i in sorted(tasks) for c in frames_of_task(tasks[i], frames)], sorted(tasks)


def slice_data(store, name: str, generation: int | None = None, frames: str = "all", references: bool = False) -> SliceData:
    """Configurations of a slice: imported ones, or the relaxation frames of its members' task documents.

    Frames of one structure stay on its side of the split (the split is per structure).
    ``references``: the finished reference calculations (bcc Li metal) join the training side, so
    a potential knows the Li metal its voltages need; they never enter the test side.
    """
    data = _slice_data(store, name, generation, frames)
    if references:
        extra, ids = reference_frames(store, frames)
        if not ids:
            raise DrxError(
                "no finished reference calculation to train on: submit them (`drx submit --references`, "
                "or `--with-references` with --train) and relax them first"
            )
        data.train = data.train + extra
        data.references = ids
    return data


def _slice_data(store, name: str, generation: int | None, frames: str) -> SliceData:
    from drx_workflows.mliap.data import split_sane
    from drx_workflows.store.imports import load_slice
    from drx_workflows.store.slices import load_slice_state

    doc = store.slices.find_one({"name": name}, {"kind": 1})
    if doc is not None and doc.get("kind") == "imported":
        train, test = load_slice(store, name)
        return SliceData(train, test, len(train), len(test))
    state = load_slice_state(store, name)
    members, train_ids, test_ids = state.members_of(generation)
    tasks = latest_tasks(store, members)
    groups = {i: frames_of_task(tasks[i], frames) for i in members if i in tasks}
    excluded: dict = {}
    for i, group in list(groups.items()):
        sane, bad = split_sane(group)
        excluded.update(bad)
        groups[i] = sane
    train_s = [i for i in train_ids if groups.get(i)]
    test_s = [i for i in test_ids if groups.get(i)]
    if not train_s:
        raise DrxError(f"slice {name!r}: none of its {len(train_ids)} training structures has a finished relaxation")
    if not test_s:
        raise DrxError(f"slice {name!r}: none of its {len(test_ids)} test structures has a finished relaxation")
    return SliceData(
        train=[c for i in train_s for c in groups[i]],
        test=[c for i in test_s for c in groups[i]],
        n_train_structures=len(train_s),
        n_test_structures=len(test_s),
        missing=sorted(set(members) - set(tasks)),
        excluded=excluded,
    )


def structure_key(config: Configuration) -> str:
    """The structure a configuration belongs to (a relaxation frame's drx_id, else its own id)."""
    return str(config.meta.get("drx_id") or config.id)
