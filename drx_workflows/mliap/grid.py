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

import itertools
import json
import time
import uuid
from pathlib import Path

from fireworks import Firework, Workflow

from drx_workflows.errors import DrxError
from drx_workflows.vasp.submit import quiet_bulk_add

GRID_POINTS = "grid_points"
GRID_SEARCHES = "grid_searches"


def load_grid(path, backends=None) -> dict[str, list[dict]]:
    """backend -> list of hyperparameter settings; every setting checked against its backend."""
    from drx_workflows.mliap.base import BACKENDS, backend_class

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DrxError(f"grid file {p}: cannot read it ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except ValueError:
        from ruamel.yaml import YAML, YAMLError

        try:
            doc = YAML(typ="safe").load(text)
        except YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise DrxError(f"grid file {p} parses neither as JSON nor as YAML{where}") from None
    if not isinstance(doc, dict) or not doc:
        raise DrxError(f"grid file {p}: expected a mapping backend -> {{hyperparameter: [values, ...]}}")
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
    from drx_workflows.mliap.firetasks import GridPointTask, GridSelectTask
    from drx_workflows.mliap.flows import GRID_POINT_KIND, GRID_SELECT_KIND

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


def validation_split(train, validation_fraction: float, seed: int):
    """(fit set, validation set) from a training set, per structure, stratified by n-TM."""
    from drx_workflows.mliap.tasks import structure_key
    from drx_workflows.slices.definition import stratified_split

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
    from drx_workflows.mliap.tasks import slice_data
    from drx_workflows.mliap.training import train_and_evaluate

    data = slice_data(store, slice_name, None, frames)
    fit_set, val_set = validation_split(data.train, validation_fraction, seed)
    result = train_and_evaluate(backend, fit_set, val_set, slice_name, hyperparameters, target)
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
