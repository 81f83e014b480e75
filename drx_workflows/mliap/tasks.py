"""Training configurations from relaxation task documents (atomate ``VaspToDb`` schema).

Every ionic step of every calculation of a relaxation is a labelled configuration
(structure, energy, forces).  Frames of one structure are strongly correlated, so
splits are made per structure (``drx_id``), never per frame.
"""

from __future__ import annotations

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
