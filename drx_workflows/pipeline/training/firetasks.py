"""Firetasks of the ML-IAP stage (train on a slice, one grid-search point, pick the best point) and the training firework.

They find the store the way the relaxation firetasks do (``db_file``, default
``>>db_file<<`` from the fworker env), so a training firework runs on any worker of
the LaunchPad, in the queue or in ``drx launch``.
"""

from __future__ import annotations

from fireworks import FiretaskBase, Firework, FWAction, explicit_serialize

from drx_workflows.pipeline.training.train import (
    fizzled_members,
    open_task_store,
    train_slice,
)


@explicit_serialize
class TrainSliceTask(FiretaskBase):
    """Train one backend on one generation of a slice (the firework whose parents are its relaxations)."""

    required_params = ["slice", "backend"]
    optional_params = ["hyperparameters", "target", "generation", "frames", "warm_start", "db_file", "grid_id", "references"]

    def run_task(self, fw_spec):
        store = open_task_store(self, fw_spec)
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
        from drx_workflows.pipeline.training.grid_search import run_grid_point

        store = open_task_store(self, fw_spec)
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
        from drx_workflows.pipeline.training.grid_search import select_best

        store = open_task_store(self, fw_spec)
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


TRAIN_KIND = "drx-train"


GRID_POINT_KIND = "drx-grid-point"


GRID_SELECT_KIND = "drx-grid-select"


SELECT_KIND = "drx-select"  # active learning: choose the next structures after a training


ML_KINDS = (TRAIN_KIND, GRID_POINT_KIND, GRID_SELECT_KIND, SELECT_KIND)


def training_firework(
    slice_name: str,
    backend: str,
    hyperparameters: dict | None = None,
    target: str = "total",
    generation: int | None = None,
    frames: str = "all",
    db_file: str | None = None,
    grid_id: str | None = None,
    warm_start: bool = True,
    category: str | None = None,
    parents=None,
    references: bool = False,
) -> Firework:
    from drx_workflows.pipeline.training.firetasks import TrainSliceTask

    params = {
        "slice": slice_name,
        "backend": backend,
        "hyperparameters": dict(hyperparameters or {}),
        "target": target,
        "frames": frames,
        "warm_start": warm_start,
    }
    if generation is not None:
        params["generation"] = generation
    if db_file:
        params["db_file"] = db_file
    if grid_id:
        params["grid_id"] = grid_id
    if references:
        params["references"] = True
    spec = {
        "drx_workflow": TRAIN_KIND,
        "slice": slice_name,
        "backend": backend,
        "generation": generation,
        "_allow_fizzled_parents": True,
    }
    if category:
        spec["_category"] = category
    gen = f" generation {generation}" if generation is not None else ""
    tag = f" (grid {grid_id} best)" if grid_id else ""
    return Firework([TrainSliceTask(**params)], spec=spec, name=f"train {backend} on {slice_name}{gen}{tag}", parents=parents)
