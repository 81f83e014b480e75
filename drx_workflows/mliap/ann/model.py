"""Atomic neural networks: one feed-forward net per element, atomic energies summed per cell.

Energy model (eV)::

    E(cell) = sum_s n_s e_s  +  scale * sum_i net_{s(i)}((G_i - mean_s) / std_s)

``e_s`` are per-element reference energies from a linear least-squares fit of the training
total energies to the composition; the nets learn only the residual.  Without that shift
the nets would have to produce per-element offsets of several eV from tanh units, and the
composition part would dominate the loss surface; with it, the target is a few tens of
meV/atom and training is well conditioned.  ``scale`` (the spread of the residual per atom)
makes the nets' output O(1) for the same reason.  Descriptors are standardised per element
because Li, O and each TM see very different environments.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DTYPE = torch.float64  # finite-difference-exact forces and stable L-BFGS line searches
ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU, "softplus": nn.Softplus}


def composition_matrix(species_lists: list[list[str]], elements: list[str]) -> np.ndarray:
    col = {e: k for k, e in enumerate(elements)}
    a = np.zeros((len(species_lists), len(elements)))
    for r, species in enumerate(species_lists):
        for s in species:
            a[r, col[s]] += 1
    return a


def fit_element_shifts(species_lists: list[list[str]], energies: np.ndarray, elements: list[str]) -> np.ndarray:
    """Per-element energies e_s minimising sum (E - sum_s n_s e_s)^2.

    DRX compositions are collinear (n_O = 2 n_TM in both LiTMO2 and TMO2), so the system is
    rank deficient; lstsq's minimum-norm solution gives the same fitted energies as any other.
    """
    a = composition_matrix(species_lists, elements)
    shifts, *_ = np.linalg.lstsq(a, np.asarray(energies, dtype=float), rcond=None)
    return shifts


class AtomicNets(nn.Module):
    """The per-element nets plus the normalisation and shifts they are trained with."""

    def __init__(self, elements: list[str], n_features: int, hidden: list[int], activation: str):
        super().__init__()
        self.elements = list(elements)
        self.n_features = n_features
        act = ACTIVATIONS[activation]
        nets = {}
        for e in elements:
            layers, width = [], n_features
            for h in hidden:
                layers += [nn.Linear(width, h), act()]
                width = h
            layers.append(nn.Linear(width, 1))
            nets[e] = nn.Sequential(*layers)
        self.nets = nn.ModuleDict(nets)
        self.register_buffer("mean", torch.zeros(len(elements), n_features))
        self.register_buffer("std", torch.ones(len(elements), n_features))
        self.register_buffer("shifts", torch.zeros(len(elements)))
        self.register_buffer("scale", torch.ones(()))
        self.double()

    def atomic_residuals(self, element_index: int, features: torch.Tensor) -> torch.Tensor:
        """Nets' outputs (eV, before shifts) of atoms of one element, from raw descriptors."""
        e = self.elements[element_index]
        x = (features - self.mean[element_index]) / self.std[element_index]
        return self.nets[e](x).squeeze(-1) * self.scale

    def atomic_residuals_normalised(self, element_index: int, x: torch.Tensor) -> torch.Tensor:
        return self.nets[self.elements[element_index]](x).squeeze(-1) * self.scale
