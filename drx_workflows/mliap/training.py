"""Train a backend on configurations and evaluate it: targets, training results, parity points.

Targets: ``total`` energies as computed, or ``cohesive`` energies (the study's
isolated-atom reference energies subtracted), chosen per run.  Metrics are reported on
the same target the model was trained on; per-atom errors are the same either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from drx_workflows.constants import ISOLATED_ATOM_ENERGY
from drx_workflows.errors import DrxError
from drx_workflows.mliap.base import Potential, backend_class
from drx_workflows.mliap.data import Configuration
from drx_workflows.mliap.metrics import Metrics, compute_metrics

TARGETS = ("total", "cohesive")
# Training-set metrics come from at most this many training structures (a seeded sample): predicting
# all 10,000 of a large slice cost as much as a third of the ann's run and a second full base pass for
# delta, for a figure that a sample of 1,000 pins down to a few per cent.
TRAIN_SCORE_LIMIT = 1000


@dataclass
class TrainingResult:
    backend: str
    slice: str
    target: str
    hyperparameters: dict
    n_train: int
    n_test: int
    train_seconds: float
    predict_seconds: float
    train_metrics: Metrics
    test_metrics: Metrics
    potential: Potential
    train_set: list  # the configurations on the model's target, for parity data
    test_set: list
    predictions: dict  # "train"/"test" -> list[Prediction], same order as the sets
    n_train_scored: int = 0  # training structures behind train_metrics (train_set holds them)
    base_passes: int | None = None  # delta: training cells the base evaluated (the rest were kept)

    def to_doc(self) -> dict:
        return {
            "parity": {
                "train": parity_points(self.train_set, self.predictions["train"]),
                "test": parity_points(self.test_set, self.predictions["test"]),
            },
            "backend": self.backend,
            "slice": self.slice,
            "target": self.target,
            "hyperparameters": self.hyperparameters,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_train_scored": self.n_train_scored,
            **({} if self.base_passes is None else {"base_passes": self.base_passes}),
            "train_seconds": self.train_seconds,
            "predict_seconds": self.predict_seconds,
            "train": self.train_metrics.to_doc(),
            "test": self.test_metrics.to_doc(),
        }


def to_target(configs: list[Configuration], target: str) -> list[Configuration]:
    """The configurations with energies on ``target``'s reference."""
    if target not in TARGETS:
        raise DrxError(f"target {target!r} unknown; choose from {', '.join(TARGETS)}")
    if target == "total":
        return configs
    out = []
    for c in configs:
        missing = sorted({s for s in c.species if s not in ISOLATED_ATOM_ENERGY})
        if missing:
            raise DrxError(f"{c.id}: no isolated-atom reference energy for {', '.join(missing)}")
        shift = sum(ISOLATED_ATOM_ENERGY[s] for s in c.species)
        out.append(replace(c, energy=c.energy - shift))
    return out


def metrics_sample(configs: list[Configuration], limit: int = TRAIN_SCORE_LIMIT, seed: int = 0) -> list[Configuration]:
    """``configs`` when there are at most ``limit``, else a seeded sample of ``limit`` of them in their order."""
    if len(configs) <= limit:
        return configs
    import numpy as np

    keep = np.sort(np.random.default_rng(seed).choice(len(configs), size=limit, replace=False))
    return [configs[i] for i in keep]


def check_training_data(configs: list[Configuration], what: str) -> None:
    if not configs:
        raise DrxError(f"the {what} set is empty")
    for c in configs:
        if c.energy is None:
            raise DrxError(f"{what} configuration {c.id} has no energy")


def train_and_evaluate(
    backend: str,
    train: list[Configuration],
    test: list[Configuration],
    slice_name: str = "",
    hyperparameters: dict | None = None,
    target: str = "total",
    warm_start: Path | None = None,
    base_cache=None,
) -> TrainingResult:
    """Fit ``backend`` on ``train``, predict the test set and (a sample of) the training set, compute the study's metrics.

    ``base_cache``: kept base passes for a backend that takes them (delta; ``mliap.delta.base_cache``)."""
    cls = backend_class(backend)
    potential = cls(**(hyperparameters or {}))  # unknown hyperparameters fail before training
    if base_cache is not None and hasattr(potential, "base_cache"):
        potential.base_cache = base_cache
    check_training_data(train, "training")
    check_training_data(test, "test")
    train_t, test_t = to_target(train, target), to_target(test, target)
    t0 = time.perf_counter()
    report = potential.fit(train_t, warm_start=warm_start)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    scored = metrics_sample(train_t, TRAIN_SCORE_LIMIT)
    pred_train = potential.predict(scored)
    pred_test = potential.predict(test_t)
    predict_seconds = time.perf_counter() - t1
    return TrainingResult(
        backend=backend,
        slice=slice_name,
        target=target,
        hyperparameters=dict(potential.hyperparameters),
        n_train=len(train),
        n_test=len(test),
        train_seconds=train_seconds,
        predict_seconds=predict_seconds,
        train_metrics=compute_metrics(scored, pred_train),
        test_metrics=compute_metrics(test_t, pred_test),
        potential=potential,
        train_set=scored,
        test_set=test_t,
        predictions={"train": pred_train, "test": pred_test},
        n_train_scored=len(scored),
        base_passes=(report.details or {}).get("base_passes") if report is not None else None,
    )


MAX_FORCE_POINTS = 3000  # force components kept per set for parity plots


def parity_points(refs: list[Configuration], preds) -> dict:
    """Per-structure energies per atom (reference, predicted, n_tm) and a sample of force components."""
    import numpy as np

    energies = [[c.energy / c.n_atoms, p.energy / c.n_atoms, c.n_tm] for c, p in zip(refs, preds)]
    ref_f = [c.forces.ravel() for c in refs if c.forces is not None]
    pred_f = [np.asarray(p.forces).ravel() for c, p in zip(refs, preds) if c.forces is not None]
    forces = []
    if ref_f:
        rf, pf = np.concatenate(ref_f), np.concatenate(pred_f)
        step = max(1, len(rf) // MAX_FORCE_POINTS)
        forces = np.stack([rf[::step], pf[::step]], axis=1).round(5).tolist()
    return {"energies": energies, "forces": forces}
