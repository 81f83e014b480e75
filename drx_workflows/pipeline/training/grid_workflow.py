"""Hyperparameter grid search on a validation split, as parallel fireworks.

Grid file (YAML or JSON): backend -> hyperparameter -> list of values; every
combination is one point, e.g.::

    ann:
      hidden_layers: [[10, 10], [15, 15]]
      epochs: [300, 1000]
    snap:
      twojmax: [4, 6]

Each point is its own firework (train on the slice's training split minus a seeded
validation split, stratified by n-TM and kept per structure; score on the validation
split).  A last firework, child of every point (``_allow_fizzled_parents``), records the
best setting per backend in ``grid_searches`` and adds the final training firework
with it (training split -> test split), so the test set never chooses hyperparameters.
"""

from __future__ import annotations

import json
import time
import uuid

from fireworks import Firework, Workflow

from drx_workflows.errors import DrxError
from drx_workflows.pipeline.relax.submit import quiet_bulk_add
from drx_workflows.pipeline.training.grid_search import GRID_SEARCHES


def grid_workflow(
    slice_name: str,
    grid: dict[str, list[dict]],
    grid_id: str,
    target: str = "total",
    frames: str = "all",
    validation_fraction: float = 0.2,
    seed: int = 0,
    train_best: bool = True,
    category: str | None = None,
) -> Workflow:
    from drx_workflows.pipeline.training.firetasks import (
        GRID_POINT_KIND,
        GRID_SELECT_KIND,
        GridPointTask,
        GridSelectTask,
    )

    base = {"_category": category} if category else {}
    points = []
    for backend, settings in grid.items():
        for index, hp in enumerate(settings):
            task = GridPointTask(
                grid_id=grid_id, slice=slice_name, backend=backend, hyperparameters=hp, index=index,
                target=target, validation_fraction=validation_fraction, seed=seed, frames=frames,
            )
            spec = {**base, "drx_workflow": GRID_POINT_KIND, "slice": slice_name, "backend": backend, "grid_id": grid_id}
            label = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in hp.items())
            points.append(Firework([task], spec=spec, name=f"grid {grid_id} {backend} #{index} {label}"))
    select = Firework(
        [GridSelectTask(grid_id=grid_id, slice=slice_name, target=target, frames=frames, train_best=train_best)],
        spec={**base, "drx_workflow": GRID_SELECT_KIND, "slice": slice_name, "grid_id": grid_id,
              "_allow_fizzled_parents": True},
        name=f"grid {grid_id}: pick the best settings",
        parents=points,
    )
    return Workflow(points + [select], name=f"grid search {grid_id} on {slice_name}",
                    metadata={"grid_id": grid_id, "slice": slice_name})


def submit_grid(store, slice_name: str, grid: dict[str, list[dict]], target: str = "total", frames: str = "all",
                validation_fraction: float = 0.2, seed: int = 0, train_best: bool = True,
                category: str | None = None) -> tuple[str, int]:
    """Add a grid search for a slice; returns (grid_id, number of points)."""
    if not 0 < validation_fraction < 1:
        raise DrxError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    if store.slices.find_one({"name": slice_name}, {"_id": 1}) is None:
        raise DrxError(f"no slice named {slice_name!r} in the store")
    grid_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    wf = grid_workflow(slice_name, grid, grid_id, target, frames, validation_fraction, seed, train_best, category)
    n_points = sum(len(v) for v in grid.values())
    store.collection(GRID_SEARCHES).insert_one(
        {"grid_id": grid_id, "slice": slice_name, "target": target, "grid": grid, "n_points": n_points,
         "validation_fraction": validation_fraction, "seed": seed, "state": "submitted",
         "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    )
    with quiet_bulk_add():
        store.launchpad().bulk_add_wfs([wf])
    store.save()
    return grid_id, n_points
