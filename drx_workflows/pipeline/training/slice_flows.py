"""Slice workflows: a slice generation's relaxations with its training fireworks as children.

``submit_slice`` adds, for the newest generation of a slice, one FireWorks workflow:

* a relaxation firework for each member not finished yet — new ones for structures never
  submitted, and for structures already submitted elsewhere a copy that FireWorks links to
  the existing launch (see ``pipeline.relax.dupefinder``), so nothing is relaxed twice;
* one training firework per backend whose parents are all those relaxations, with
  ``_allow_fizzled_parents``: it waits until every member has finished, then starts by
  itself and records which members fizzled.

Members already finished need no firework at all: their task documents are in the store.
Growing the slice (``store.slices.define_slice``) makes a new generation; submitting it
again adds the newcomers and new training fireworks, which warm-start where the backend can.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from fireworks import Firework, FWorker, Workflow

from drx_workflows.errors import DrxError
from drx_workflows.pipeline.relax.submit import quiet_bulk_add
from drx_workflows.pipeline.training.firetasks import (
    ML_KINDS,
    TRAIN_KIND,
    training_firework,
)

_ACTIVE = {"WAITING", "READY", "RESERVED", "RUNNING", "PAUSED"}


@dataclass
class TrainingRequest:
    """What the training fireworks of a slice train."""

    backends: list[str]
    hyperparameters: dict[str, dict] = field(default_factory=dict)  # backend -> overrides
    target: str = "total"
    frames: str = "all"  # "all" ionic steps of each relaxation, or its "final" structure
    category: str | None = None  # FireWorks _category, to send training to particular workers
    references: bool = False  # also train on the voltage reference calculations (bcc Li metal)

    def to_doc(self) -> dict:
        return {"backends": list(self.backends), "hyperparameters": self.hyperparameters, "target": self.target,
                "frames": self.frames, "category": self.category, "references": self.references}

    @classmethod
    def of_slice(cls, store, slice_name: str) -> TrainingRequest | None:
        """The training a slice was last submitted with (its later generations get the same)."""
        doc = (store.slices.find_one({"name": slice_name}, {"training": 1}) or {}).get("training")
        return cls(**doc) if doc else None

    def check(self) -> None:
        """Every backend and hyperparameter checked before anything is submitted."""
        from drx_workflows.mliap.base import backend_class
        from drx_workflows.mliap.training import TARGETS

        if self.target not in TARGETS:
            raise DrxError(f"target {self.target!r} unknown; choose from {', '.join(TARGETS)}")
        if self.frames not in ("all", "final"):
            raise DrxError(f"frames {self.frames!r} unknown; use all or final")
        for b in self.backends:
            backend_class(b)(**self.hyperparameters.get(b, {}))


@dataclass
class SliceSubmitResult:
    slice: str
    generation: int
    members: int
    relaxations_added: int = 0
    linked: int = 0  # copies of relaxations submitted in other workflows
    finished: int = 0  # members whose relaxation had already finished
    references: int = 0  # reference calculations the training waits for (with TrainingRequest.references)
    training_added: list = field(default_factory=list)
    training_existing: list = field(default_factory=list)
    active: bool = False  # a selection firework follows the training (active learning)

    def summary(self) -> str:
        parts = [
            f"slice {self.slice} generation {self.generation} ({self.members} structures): "
            f"{self.relaxations_added} relaxations added, {self.linked} linked to runs submitted before, "
            f"{self.finished} already finished"
        ]
        if self.references:
            parts.append(f"{self.references} voltage reference calculations in the workflow (trained on too)")
        if self.training_added:
            parts.append(f"training fireworks added: {', '.join(self.training_added)} (they start when the relaxations finish)")
        if self.active:
            parts.append("active learning: a selection firework follows the training and appends the next rounds")
        if self.training_existing:
            parts.append(f"already submitted for this generation: {', '.join(self.training_existing)}")
        return "; ".join(parts)


def member_states(lp, drx_ids, kind: str | None = None) -> dict[str, set]:
    """drx_id -> the states of its relaxation fireworks (a structure may have several: see pipeline.relax.dupefinder).

    ``kind``: the fireworks' ``spec.drx_workflow`` (default: DRX relaxations).
    """
    from drx_workflows.vasp.metadata import WF_KIND_RELAX

    states: dict[str, set] = defaultdict(set)
    query = {"spec.drx_id": {"$in": list(drx_ids)}, "spec.drx_workflow": kind or WF_KIND_RELAX}
    for fw in lp.fireworks.find(query, {"_id": 0, "spec.drx_id": 1, "state": 1}):
        states[fw["spec"]["drx_id"]].add(fw["state"])
    return states


def submit_slice(store, slice_name: str, request: TrainingRequest, check: bool = True, active=None,
                 **wf_kwargs) -> SliceSubmitResult:
    """Add the newest generation of a slice as one workflow (see the module docstring); idempotent.

    ``active`` (``pipeline.training.active.ActiveRequest``): a selection firework follows the
    training of ``active.backend`` and the workflow grows by itself, round after round.
    """
    from drx_workflows.pipeline.relax.workflows import relax_workflow
    from drx_workflows.store.slices import load_slice_state
    from drx_workflows.vasp.checks import check_drx_structures
    request.check()
    if active is not None:
        active.check(request.backends)
    state = load_slice_state(store, slice_name)
    generation = state.generation
    members, _, _ = state.members_of()
    lp = store.launchpad()
    result = SliceSubmitResult(slice_name, generation, len(members))
    existing = {
        fw["spec"]["backend"]
        for fw in lp.fireworks.find(
            {"spec.drx_workflow": TRAIN_KIND, "spec.slice": slice_name, "spec.generation": generation},
            {"_id": 0, "spec.backend": 1},
        )
    }
    backends = [b for b in request.backends if b not in existing]
    result.training_existing = [b for b in request.backends if b in existing]
    states = member_states(lp, members)
    pending = []
    for drx_id in members:
        s = states.get(drx_id)
        if _finished(s):
            result.finished += 1
        else:
            pending.append(drx_id)
            result.linked += bool(s)
    if not backends:  # this generation's workflow is in already
        result.linked = 0
        return result
    docs = list(store.structures.find({"drx_id": {"$in": pending}}, {"_id": 0}))
    if len(docs) != len(pending):
        lost = sorted(set(pending) - {d["drx_id"] for d in docs})
        raise DrxError(f"slice {slice_name!r}: {len(lost)} members are not in the structures collection (e.g. {lost[0]})")
    if check:
        check_drx_structures(docs)
    relax_fws = [relax_workflow(doc, slices=[slice_name], check=False, **wf_kwargs).fws[0] for doc in docs]
    ref_fws = _pending_reference_fws(lp, wf_kwargs) if request.references else []
    parents = relax_fws + ref_fws
    train_fws = [
        training_firework(
            slice_name,
            b,
            request.hyperparameters.get(b),
            request.target,
            generation,
            request.frames,
            category=request.category,
            parents=parents or None,
            references=request.references,
        )
        for b in backends
    ]
    select_fws = []
    if active is not None and active.backend in backends:
        from drx_workflows.pipeline.training.active_flows import selection_firework

        scorer = train_fws[backends.index(active.backend)]
        select_fws.append(selection_firework(slice_name, active.backend, generation, 1, active, request.to_doc(),
                                             wf_kwargs, check, parents=[scorer]))
    wf = Workflow(
        parents + train_fws + select_fws,
        name=f"slice {slice_name} generation {generation}: train {','.join(backends)}",
        metadata={"slice": slice_name, "generation": generation, "backends": backends},
    )
    with quiet_bulk_add():
        lp.bulk_add_wfs([wf])
    store.slices.update_one({"name": slice_name}, {"$set": {"training": request.to_doc()}})
    store.save()
    result.relaxations_added = len(relax_fws) - result.linked
    result.references = len(ref_fws)
    result.training_added = backends
    result.active = bool(select_fws)
    return result


def _finished(states: set | None) -> bool:
    return bool(states) and ("COMPLETED" in states or not states & _ACTIVE)


def _pending_reference_fws(lp, wf_kwargs: dict) -> list[Firework]:
    """Fireworks of the reference calculations not finished yet, for a training that needs them.

    A reference already submitted on its own gets a copy here that its duplicate finder links
    to the existing launch (as for shared slice members), so it never runs twice.
    """
    from drx_workflows.pipeline.relax.references import reference_workflow
    from drx_workflows.vasp.references import WF_KIND_REFERENCE, reference_structures
    ids = list(reference_structures())
    states = member_states(lp, ids, WF_KIND_REFERENCE)
    keep = {k: v for k, v in wf_kwargs.items() if k in ("vasp_cmd", "db_file", "user_incar_settings", "max_errors", "category")}
    return [reference_workflow(i, **keep).fws[0] for i in ids if not _finished(states.get(i))]


def training_status(store) -> list[dict]:
    """One row per training / grid-search firework: slice, generation, backend, state."""
    lp = store.launchpad()
    rows = []
    query = {"spec.drx_workflow": {"$in": list(ML_KINDS)}}
    for fw in lp.fireworks.find(query, {"_id": 0, "fw_id": 1, "name": 1, "state": 1, "spec.slice": 1,
                                        "spec.generation": 1, "spec.backend": 1, "spec.drx_workflow": 1}):
        spec = fw.get("spec", {})
        rows.append(
            {
                "fw_id": fw["fw_id"],
                "kind": spec.get("drx_workflow"),
                "slice": spec.get("slice"),
                "generation": spec.get("generation"),
                "backend": spec.get("backend"),
                "state": fw["state"],
                "name": fw.get("name"),
            }
        )
    _attach_errors(lp, rows)
    _attach_selections(lp, rows)
    return sorted(rows, key=lambda r: r["fw_id"])


def _attach_selections(lp, rows) -> None:
    """A finished selection firework's outcome: what it picked for which generation, or why the loop stopped."""
    from drx_workflows.pipeline.training.firetasks import SELECT_KIND

    done = {r["fw_id"]: r for r in rows if r["kind"] == SELECT_KIND and r["state"] == "COMPLETED"}
    for fw in lp.fireworks.find({"fw_id": {"$in": list(done)}}, {"_id": 0, "fw_id": 1, "launches": 1}):
        if not fw.get("launches"):
            continue
        launch = lp.launches.find_one({"launch_id": fw["launches"][-1]}, {"_id": 0, "action.stored_data": 1}) or {}
        data = (launch.get("action") or {}).get("stored_data") or {}
        if data.get("stopped"):
            done[fw["fw_id"]]["outcome"] = f"round {data.get('round')}: stopped - {data['stopped']}"
        elif data.get("picked"):
            done[fw["fw_id"]]["outcome"] = (f"round {data.get('round')}: picked {data['picked']} ({data.get('strategy')}) "
                                            f"-> generation {data.get('generation')}")


def _attach_errors(lp, rows) -> None:
    """A fizzled training firework's reason: the last line of its exception (e.g. MTP's missing `mlp`)."""
    fizzled = {r["fw_id"]: r for r in rows if r["state"] == "FIZZLED"}
    if not fizzled:
        return
    for fw in lp.fireworks.find({"fw_id": {"$in": list(fizzled)}}, {"_id": 0, "fw_id": 1, "launches": 1}):
        if not fw.get("launches"):
            continue
        launch = lp.launches.find_one({"launch_id": fw["launches"][-1]}, {"_id": 0, "action": 1}) or {}
        trace = (((launch.get("action") or {}).get("stored_data") or {}).get("_exception") or {}).get("_stacktrace")
        lines = [ln.strip() for ln in (trace or "").strip().splitlines() if ln.strip()]
        if lines:
            fizzled[fw["fw_id"]]["error"] = lines[-1].split(": ", 1)[-1][:300]


def launch_ml_fireworks(store, launch_dir, nlaunches: int = 0, strm_lvl: str = "WARNING") -> int:
    """Run READY training and grid-search fireworks in this process (no VASP worker needed)."""
    from fireworks.core.rocket_launcher import rapidfire

    from drx_workflows.store.dbfile import write_db_file

    launch_dir = Path(launch_dir).absolute()
    launch_dir.mkdir(parents=True, exist_ok=True)
    db_file = write_db_file(launch_dir / "db.json", store.config)
    worker = FWorker(name="drx mliap", query={"spec.drx_workflow": {"$in": list(ML_KINDS)}}, env={"db_file": str(db_file)})
    lp = store.launchpad()
    before = lp.launches.count_documents({})
    try:
        rapidfire(lp, worker, m_dir=str(launch_dir), nlaunches=nlaunches, strm_lvl=strm_lvl)
    finally:
        store.save()
    return lp.launches.count_documents({}) - before
