"""Train one backend on a stored slice generation, in this process: warm start from the previous generation, evaluate on the test split, store model and metrics."""

from __future__ import annotations

import tempfile
from pathlib import Path

from drx_workflows.errors import DrxError


def open_task_store(task, fw_spec):
    from drx_workflows.pipeline.relax.firetasks import db_file_of
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.dbfile import load_db_file

    db_file = db_file_of(task, fw_spec)
    return open_store(load_db_file(db_file) if db_file else StoreConfig.resolve())


def fizzled_members(fw_spec) -> list[str]:
    """drx_ids of the parent relaxations that fizzled (FireWorks passes them to _allow_fizzled_parents children)."""
    return sorted({p.get("spec", {}).get("drx_id") for p in fw_spec.get("_fizzled_parents") or []} - {None})


def previous_model(store, backend: str, slice_name: str, generation: int, target: str):
    """The newest stored potential of ``backend`` on an earlier generation of the slice, or None."""
    docs = store.potentials.find(
        {"backend": backend, "slice": slice_name, "target": target, "generation": {"$lt": generation}},
        {"parity": 0},
    ).sort([("generation", -1), ("created", -1)]).limit(1)
    return next(iter(docs), None)


def train_slice(
    store,
    slice_name: str,
    backend: str,
    hyperparameters: dict | None = None,
    target: str = "total",
    generation: int | None = None,
    frames: str = "all",
    warm_start: bool = True,
    extra: dict | None = None,
    echo=print,
    references: bool = False,
) -> dict:
    """Train ``backend`` on a slice generation, evaluate on its test split, store model and metrics.

    A backend that can continue training (``Potential.WARM_START``) starts from the model of
    the slice's previous generation; one whose settings no longer fit it trains from scratch,
    and the potentials document says which happened.
    """
    from drx_workflows.mliap.base import backend_class
    from drx_workflows.mliap.duration import check_budget
    from drx_workflows.mliap.isolated import TrainingKilled, train_and_evaluate_isolated
    from drx_workflows.store.base_evaluations import StoredBaseEvaluations
    from drx_workflows.store.potentials import load_potential, store_result
    from drx_workflows.store.training_data import slice_data
    data = slice_data(store, slice_name, generation, frames, references)
    check_budget(backend, hyperparameters or {}, data.train)
    if generation is None:
        sl = store.slices.find_one({"name": slice_name}, {"generation": 1}) or {}
        generation = int(sl.get("generation") or 1)
    info = {
        "generation": generation,
        "n_train_structures": data.n_train_structures,
        "n_test_structures": data.n_test_structures,
        "missing_members": data.missing,
        "excluded_frames": len(data.excluded),
        "frames": frames,
        "reference_structures": data.references,
        # labels from the surrogate engine are not DFT: reports must say so
        "surrogate": any(c.meta.get("surrogate") for c in data.train + data.test),
        **(extra or {}),
    }
    # a generation's earlier members were seen by the base when the previous one trained
    kept = StoredBaseEvaluations(store)
    with tempfile.TemporaryDirectory(prefix="drx-warm-") as tmp:
        start = None
        prev = previous_model(store, backend, slice_name, generation, target) if warm_start else None
        if prev is not None and backend_class(backend).WARM_START:
            load_potential(store, prev, tmp)
            start = Path(tmp) / "model"
            info["warm_start_from"] = {"potential_id": str(prev["_id"]), "generation": prev.get("generation")}
        try:
            result = train_and_evaluate_isolated(backend, data.train, data.test, slice_name, hyperparameters, target, start,
                                                 base_cache=kept)
        except DrxError as exc:
            if start is None or isinstance(exc, TrainingKilled):  # killed or stopped: from scratch would be too
                raise
            echo(f"warm start from generation {prev.get('generation')} not possible ({exc}); training from scratch")
            info["warm_start_from"] = None
            info["warm_start_refused"] = str(exc)
            result = train_and_evaluate_isolated(backend, data.train, data.test, slice_name, hyperparameters, target,
                                                 base_cache=kept)
    doc = store_result(store, result, info)
    m = result.test_metrics
    echo(
        f"{backend} on {slice_name} (generation {generation}): {data.n_train_structures} training structures, "
        f"test energy MAE {m.energy_mae:.1f} meV/atom, trained in {result.train_seconds:.0f} s"
    )
    return doc
