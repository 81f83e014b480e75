"""Hyperparameter grid search without FireWorks: the grid file, the validation split, one scored point, and the choice of the best setting."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.fileio import read_mapping

GRID_POINTS = "grid_points"


GRID_SEARCHES = "grid_searches"


def load_grid(path, backends=None) -> dict[str, list[dict]]:
    """backend -> list of hyperparameter settings; every setting checked against its backend."""
    from drx_workflows.mliap.base import BACKENDS, backend_class

    p = Path(path)
    expected = "a mapping backend -> {hyperparameter: [values, ...]}"
    doc = read_mapping(p, "grid file", json_too=True, expected=expected)
    if not doc:
        raise DrxError(f"grid file {p}: expected {expected}")
    grid = {}
    for backend, axes in doc.items():
        if backend not in BACKENDS:
            raise DrxError(f"grid file {p}: unknown backend {backend!r}; choose from {', '.join(sorted(BACKENDS))}")
        if backends is not None and backend not in backends:
            raise DrxError(f"grid file {p}: backend {backend!r} is not among --backend {','.join(backends)}")
        if not isinstance(axes, dict) or not axes:
            raise DrxError(f"grid file {p}: {backend} needs a mapping hyperparameter -> list of values")
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise DrxError(f"grid file {p}: {backend}.{key} must be a non-empty list of values")
        keys = list(axes)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]
        cls = backend_class(backend)
        for point in points:
            cls(**point)  # unknown names fail here, before anything is submitted
        grid[backend] = points
    return grid


def validation_split(train, validation_fraction: float, seed: int):
    """(fit set, validation set) from a training set, per structure, stratified by n-TM."""
    from drx_workflows.slices.definition import stratified_split
    from drx_workflows.store.training_data import structure_key

    groups: dict[str, list] = {}
    for c in train:
        groups.setdefault(structure_key(c), []).append(c)
    fit_g, val_g = stratified_split(
        list(groups.values()), lambda g: g[0].n_tm, test_fraction=validation_fraction, seed=seed,
        elements_of=lambda g: g[0].species,
    )
    return [c for g in fit_g for c in g], [c for g in val_g for c in g]


def run_grid_point(store, grid_id, slice_name, backend, hyperparameters, index, target="total",
                   validation_fraction=0.2, seed=0, frames="all") -> dict:
    from drx_workflows.mliap.duration import check_budget
    from drx_workflows.mliap.isolated import train_and_evaluate_isolated
    from drx_workflows.store.base_evaluations import StoredBaseEvaluations
    from drx_workflows.store.training_data import slice_data

    data = slice_data(store, slice_name, None, frames)
    fit_set, val_set = validation_split(data.train, validation_fraction, seed)
    check_budget(backend, hyperparameters or {}, fit_set)  # a point that cannot fit the worker fizzles in one line
    # every point of a delta grid fits on the same cells: the base evaluates each once for all of them
    result = train_and_evaluate_isolated(backend, fit_set, val_set, slice_name, hyperparameters, target,
                                         base_cache=StoredBaseEvaluations(store))
    doc = {
        "grid_id": grid_id,
        "slice": slice_name,
        "backend": backend,
        "index": index,
        "hyperparameters": result.hyperparameters,
        "requested": dict(hyperparameters),
        "n_fit": len(fit_set),
        "n_validation": len(val_set),
        "train": result.train_metrics.to_doc(),
        "validation": result.test_metrics.to_doc(),
        "train_seconds": result.train_seconds,
    }
    store.collection(GRID_POINTS).insert_one(doc)
    store.save()
    return doc


def select_best(store, grid_id: str, metric: str = "energy_mae") -> dict:
    """Rank the finished points of a grid per backend by validation ``metric``; record and return the search."""
    searches = store.collection(GRID_SEARCHES)
    search = searches.find_one({"grid_id": grid_id}, {"_id": 0})
    if search is None:
        raise DrxError(f"no grid search {grid_id!r} in the store")
    points = list(store.collection(GRID_POINTS).find({"grid_id": grid_id}, {"_id": 0}))
    if not points:
        raise DrxError(f"grid search {grid_id}: no point finished (all fizzled); see `drx status`")
    best, ranking = {}, {}
    for backend in sorted({p["backend"] for p in points}):
        mine = sorted((p for p in points if p["backend"] == backend), key=lambda p: p["validation"][metric])
        ranking[backend] = [
            {"index": p["index"], "requested": p["requested"], metric: p["validation"][metric],
             "train_seconds": p["train_seconds"]}
            for p in mine
        ]
        top = mine[0]
        best[backend] = {"index": top["index"], "hyperparameters": top["requested"], "validation": top["validation"]}
    update = {"best": best, "ranking": ranking, "metric": metric, "points_finished": len(points),
              "state": "selected", "selected": time.strftime("%Y-%m-%dT%H:%M:%S")}
    searches.update_one({"grid_id": grid_id}, {"$set": update})
    store.save()
    return {**search, **update}
