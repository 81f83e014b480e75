"""The active-learning fireworks: a selection firework after a training, and what it appends.

A round is: selection firework (child of the scoring backend's training) -> relaxations of the
structures it picked -> one training firework per backend of the slice -> the next selection
(while rounds remain). The selection returns the rest as ``FWAction(additions=...)``, so the
whole loop is one FireWorks workflow that grows as it runs.
"""

from __future__ import annotations

import tempfile

from fireworks import FiretaskBase, Firework, FWAction, Workflow, explicit_serialize

from drx_workflows.pipeline.training.active import ActiveRequest, select_next
from drx_workflows.pipeline.training.firetasks import (
    SELECT_KIND,
    TRAIN_KIND,
    training_firework,
)
from drx_workflows.pipeline.training.train import open_task_store

# the relaxation settings a selection hands on to the relaxations it appends
RELAX_KEYS = ("vasp_cmd", "db_file", "user_incar_settings", "max_errors", "category", "inline_structure")


@explicit_serialize
class SelectTask(FiretaskBase):
    """Choose the next structures of an actively learning slice and append their round (module docstring)."""

    required_params = ["slice", "backend", "generation", "round", "active", "training"]
    optional_params = ["relax_kwargs", "check", "db_file"]

    def run_task(self, fw_spec):
        store = open_task_store(self, fw_spec)
        request = ActiveRequest(**self["active"])
        training = dict(self["training"])
        with tempfile.TemporaryDirectory(prefix="drx-select-") as tmp:
            out = select_next(store, self["slice"], self["backend"], int(self["generation"]),
                              training.get("target", "total"), request, int(self["round"]), tmp)
        data = {"round": out.round, "after_generation": out.after, "picked": len(out.picked),
                "generation": out.generation, "stopped": out.stopped, "rerun": out.reused,
                "unscorable": out.skipped, "strategy": request.strategy}
        if out.stopped or not out.picked:
            return FWAction(stored_data=data)
        lp = store.launchpad()
        if out.reused and lp.fireworks.count_documents({"spec.drx_workflow": TRAIN_KIND, "spec.slice": out.slice,
                                                        "spec.generation": out.generation}):
            return FWAction(stored_data=data)  # this round's fireworks were appended by the first run
        wf = round_workflow(store, out.slice, out.generation, out.picked, training, request, self["backend"],
                            out.round + 1, self.get("relax_kwargs") or {}, bool(self.get("check", True)))
        return FWAction(stored_data=data, additions=[wf])


def selection_firework(slice_name: str, backend: str, generation: int, round_: int, request: ActiveRequest,
                       training: dict, relax_kwargs: dict, check: bool = True, parents=None) -> Firework:
    spec = {"drx_workflow": SELECT_KIND, "slice": slice_name, "backend": backend, "generation": generation,
            "active_round": round_}
    if training.get("category"):
        spec["_category"] = training["category"]
    task = SelectTask(slice=slice_name, backend=backend, generation=generation, round=round_,
                      active=request.to_doc(), training=training,
                      relax_kwargs={k: v for k, v in relax_kwargs.items() if k in RELAX_KEYS}, check=check)
    return Firework([task], spec=spec, parents=parents,
                    name=f"select {request.n} for {slice_name} after generation {generation} "
                         f"(round {round_} of {request.rounds}, {request.strategy})")


def round_workflow(store, slice_name: str, generation: int, drx_ids: list[str], training: dict,
                   request: ActiveRequest, backend: str, next_round: int, relax_kwargs: dict, check: bool) -> Workflow:
    """Relaxations of the picked structures, the generation's trainings and the next selection."""
    from drx_workflows.errors import DrxError
    from drx_workflows.pipeline.relax.workflows import relax_workflow
    from drx_workflows.vasp.checks import check_drx_structures

    docs = list(store.structures.find({"drx_id": {"$in": drx_ids}}, {"_id": 0}))
    if len(docs) != len(set(drx_ids)):
        raise DrxError(f"slice {slice_name!r}: picked structures missing from the structures collection")
    if check:
        check_drx_structures(docs)
    relax_fws = [relax_workflow(d, slices=[slice_name], check=False, **relax_kwargs).fws[0] for d in docs]
    train_fws = {b: training_firework(slice_name, b, (training.get("hyperparameters") or {}).get(b),
                                      training.get("target", "total"), generation, training.get("frames", "all"),
                                      category=training.get("category"), parents=relax_fws,
                                      references=bool(training.get("references")))
                 for b in training["backends"]}
    fws = relax_fws + list(train_fws.values())
    if next_round <= request.rounds:
        fws.append(selection_firework(slice_name, backend, generation, next_round, request, training, relax_kwargs,
                                      check, parents=[train_fws[backend]]))
    return Workflow(fws, name=f"slice {slice_name} generation {generation} (active learning)")
