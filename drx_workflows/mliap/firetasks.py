"""Firetasks of the ML-IAP stage: train on a slice, one grid-search point, pick the best point.

They find the store the way the relaxation firetasks do (``db_file``, default
``>>db_file<<`` from the fworker env), so a training firework runs on any worker of
the LaunchPad, in the queue or in ``drx launch``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from fireworks import FiretaskBase, FWAction, explicit_serialize

from drx_workflows.errors import DrxError


def _store(task, fw_spec):
    from drx_workflows.store import StoreConfig, open_store
    from drx_workflows.vasp.dbfile import load_db_file
    from drx_workflows.vasp.firetasks import db_file_of

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
    from drx_workflows.mliap.tasks import slice_data
    from drx_workflows.mliap.training import load_potential, store_result, train_and_evaluate

    data = slice_data(store, slice_name, generation, frames, references)
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
    with tempfile.TemporaryDirectory(prefix="drx-warm-") as tmp:
        start = None
        prev = previous_model(store, backend, slice_name, generation, target) if warm_start else None
        if prev is not None and backend_class(backend).WARM_START:
            load_potential(store, prev, tmp)
            start = Path(tmp) / "model"
            info["warm_start_from"] = {"potential_id": str(prev["_id"]), "generation": prev.get("generation")}
        try:
            result = train_and_evaluate(backend, data.train, data.test, slice_name, hyperparameters, target, start)
        except DrxError as exc:
            if start is None:
                raise
            echo(f"warm start from generation {prev.get('generation')} not possible ({exc}); training from scratch")
            info["warm_start_from"] = None
            info["warm_start_refused"] = str(exc)
            result = train_and_evaluate(backend, data.train, data.test, slice_name, hyperparameters, target)
    doc = store_result(store, result, info)
    m = result.test_metrics
    echo(
        f"{backend} on {slice_name} (generation {generation}): {data.n_train_structures} training structures, "
        f"test energy MAE {m.energy_mae:.1f} meV/atom, trained in {result.train_seconds:.0f} s"
    )
    return doc


@explicit_serialize
class TrainSliceTask(FiretaskBase):
    """Train one backend on one generation of a slice (the firework whose parents are its relaxations)."""

    required_params = ["slice", "backend"]
    optional_params = ["hyperparameters", "target", "generation", "frames", "warm_start", "db_file", "grid_id", "references"]

    def run_task(self, fw_spec):
        store = _store(self, fw_spec)
        extra = {"fizzled_members": fizzled_members(fw_spec), "trained_by": "firework"}
        if self.get("grid_id"):
            extra["grid_id"] = self["grid_id"]
        doc = train_slice(
            store,
            self["slice"],
            self["backend"],
            self.get("hyperparameters") or {},
            self.get("target", "total"),
            self.get("generation"),
            self.get("frames", "all"),
            self.get("warm_start", True),
            extra,
            references=bool(self.get("references", False)),
        )
        return FWAction(
            stored_data={
                "potential_id": str(doc["_id"]),
                "test_energy_mae_mev_per_atom": doc["test"]["energy_mae"],
                "fizzled_members": extra["fizzled_members"],
            }
        )


@explicit_serialize
class GridPointTask(FiretaskBase):
    """Train one hyperparameter setting on the training split minus a validation split; keep the score."""

    required_params = ["grid_id", "slice", "backend", "hyperparameters", "index"]
    optional_params = ["target", "validation_fraction", "seed", "frames", "db_file"]

    def run_task(self, fw_spec):
        from drx_workflows.mliap.grid import run_grid_point

        store = _store(self, fw_spec)
        doc = run_grid_point(
            store,
            self["grid_id"],
            self["slice"],
            self["backend"],
            self["hyperparameters"],
            int(self["index"]),
            target=self.get("target", "total"),
            validation_fraction=float(self.get("validation_fraction", 0.2)),
            seed=int(self.get("seed", 0)),
            frames=self.get("frames", "all"),
        )
        return FWAction(stored_data={"validation_energy_mae_mev_per_atom": doc["validation"]["energy_mae"]})


@explicit_serialize
class GridSelectTask(FiretaskBase):
    """After every point: record the best setting per backend and add its final training firework."""

    required_params = ["grid_id", "slice"]
    optional_params = ["target", "frames", "db_file", "metric", "train_best"]

    def run_task(self, fw_spec):
        from drx_workflows.mliap.flows import training_firework
        from drx_workflows.mliap.grid import select_best

        store = _store(self, fw_spec)
        search = select_best(store, self["grid_id"], self.get("metric", "energy_mae"))
        if not self.get("train_best", True):
            return FWAction(stored_data={"best": search["best"]})
        additions = [
            training_firework(
                self["slice"],
                backend,
                best["hyperparameters"],
                target=self.get("target", "total"),
                frames=self.get("frames", "all"),
                db_file=self.get("db_file"),
                grid_id=self["grid_id"],
                warm_start=False,
            )
            for backend, best in sorted(search["best"].items())
        ]
        return FWAction(stored_data={"best": search["best"]}, additions=additions)
