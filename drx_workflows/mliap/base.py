"""The one small interface every ML-IAP backend implements, and the registry of backends.

A backend is a :class:`Potential` subclass in its own module, registered under a
name (``ann``, ``gap``, ``snap``, ``qsnap``, ``mtp``, ``mace``, ...).  It is built from
hyperparameters (the study's values are the defaults; every one can be overridden),
``fit`` on training configurations, ``predict`` energies and forces, and ``save``/``load``
its model files in one folder.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration


@dataclass
class Prediction:
    energy: float  # total energy of the cell, eV
    forces: np.ndarray | None  # (N, 3) eV/Angstrom; None from predict_energies
    uncertainty: float | None = None  # eV/atom, from backends that estimate it (delta: ensemble spread)
    # the structure as the model sees it (delta: its base's crystal feature): active learning's diversity
    descriptor: np.ndarray | None = None


@dataclass
class FitReport:
    """What training did: wall time, epochs/iterations, final training loss, anything else."""

    seconds: float
    n_train: int
    details: dict = field(default_factory=dict)


class Potential(ABC):
    """An ML interatomic potential backend."""

    name: ClassVar[str]
    # The reference study's hyperparameters; ``__init__`` merges user overrides into them.
    DEFAULTS: ClassVar[dict] = {}
    # True when ``fit(..., warm_start=folder)`` continues from a saved model of the backend
    WARM_START: ClassVar[bool] = False

    def __init__(self, **hyperparameters):
        unknown = set(hyperparameters) - set(self.DEFAULTS)
        if unknown:
            raise DrxError(
                f"backend {self.name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(self.DEFAULTS))}"
            )
        self.hyperparameters = {**self.DEFAULTS, **hyperparameters}

    @abstractmethod
    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        """Train on ``train`` (total energies and forces), optionally from a saved model folder."""

    @abstractmethod
    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        """Energies and forces of ``configs`` (their reference labels are ignored)."""

    def predict_energies(self, configs: list[Configuration]) -> list[Prediction]:
        """Energies (with uncertainty and descriptor where the backend has them) for scoring many
        structures; backends that can skip the forces' cost override this, and their forces are None."""
        return self.predict(configs)

    @abstractmethod
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model files into ``directory`` (created if needed)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | os.PathLike) -> Potential:
        """A trained potential from a folder written by :meth:`save`."""

    def calculator(self):
        """This potential as an ASE calculator (energy, forces, stress) for relaxations and MD."""
        from drx_workflows.mliap.calculator import PotentialCalculator

        return PotentialCalculator(self)


# name -> "module:Class"; modules are imported only when their backend is asked for, so a
# backend with heavy or missing dependencies costs nothing to the others.
BACKENDS: dict[str, str] = {
    "ann": "drx_workflows.mliap.ann.backend:AnnPotential",
    "gap": "drx_workflows.mliap.gap:GapPotential",
    "snap": "drx_workflows.mliap.snap:SnapPotential",
    "qsnap": "drx_workflows.mliap.snap:QSnapPotential",
    "mtp": "drx_workflows.mliap.mtp:MtpPotential",
    "mace": "drx_workflows.mliap.mace:MacePotential",
    "delta": "drx_workflows.mliap.delta.potential:DeltaPotential",
    "finetune": "drx_workflows.mliap.finetune:FinetunePotential",
}


def backend_class(name: str) -> type[Potential]:
    if name not in BACKENDS:
        raise DrxError(f"unknown backend {name!r}; choose from {', '.join(sorted(BACKENDS))}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def parse_backends(text: str) -> list[str]:
    """``"ann,gap"`` -> ["ann", "gap"], every name checked before anything runs."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise DrxError("--backend: give at least one backend name")
    for name in names:
        if name not in BACKENDS:
            raise DrxError(f"unknown backend {name!r}; choose from {', '.join(sorted(BACKENDS))}")
    return names
