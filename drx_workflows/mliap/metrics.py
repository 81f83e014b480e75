"""Error metrics of a potential against reference energies and forces, as the study reported them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Metrics:
    n_structures: int
    energy_mae: float  # meV/atom
    energy_rmse: float  # meV/atom
    energy_range_normalized_mae: float  # MAE / (max - min) of the reference energies per atom
    force_mae: float | None  # eV/Angstrom, over all force components
    energy_mae_per_ntm: dict = field(default_factory=dict)  # n_tm -> meV/atom

    def to_doc(self) -> dict:
        doc = asdict(self)
        doc["energy_mae_per_ntm"] = {str(k): v for k, v in self.energy_mae_per_ntm.items()}
        return doc


def compute_metrics(references, predictions) -> Metrics:
    """``references``: Configurations with energy (and forces); ``predictions``: Predictions, same order."""
    if len(references) != len(predictions) or not references:
        raise ValueError("need one prediction per reference structure, at least one")
    n = np.array([c.n_atoms for c in references], dtype=float)
    e_ref = np.array([c.energy for c in references]) / n
    e_pred = np.array([p.energy for p in predictions]) / n
    err = (e_pred - e_ref) * 1000.0
    span = float(e_ref.max() - e_ref.min()) * 1000.0
    per_ntm = defaultdict(list)
    for c, e in zip(references, err):
        per_ntm[c.n_tm].append(abs(e))
    f_err = [
        np.abs(np.asarray(p.forces) - c.forces).ravel()
        for c, p in zip(references, predictions)
        if c.forces is not None and p.forces is not None
    ]
    return Metrics(
        n_structures=len(references),
        energy_mae=float(np.mean(np.abs(err))),
        energy_rmse=float(np.sqrt(np.mean(err**2))),
        energy_range_normalized_mae=float(np.mean(np.abs(err)) / span) if span > 0 else float("nan"),
        force_mae=float(np.concatenate(f_err).mean()) if f_err else None,
        energy_mae_per_ntm={k: float(np.mean(v)) for k, v in sorted(per_ntm.items())},
    )
