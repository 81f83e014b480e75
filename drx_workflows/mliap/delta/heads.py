"""The residual heads of the Δ model: an ensemble of small MLPs on the base's crystal feature and the composition, evaluated as one batched module."""

from __future__ import annotations

import numpy as np


def heads_module(n_features: int, n_elements: int, hidden: int, n_models: int):
    import torch
    from torch import nn

    class ResidualHeads(nn.Module):
        """``n_models`` independent one-hidden-layer MLPs evaluated as one batched einsum."""

        def __init__(self):
            super().__init__()
            n_in = n_features + n_elements
            self.w1 = nn.Parameter(torch.randn(n_models, n_in, hidden) / n_in**0.5)
            self.b1 = nn.Parameter(torch.zeros(n_models, hidden))
            self.w2 = nn.Parameter(torch.randn(n_models, hidden) / hidden**0.5 * 0.1)
            self.b2 = nn.Parameter(torch.zeros(n_models))
            self.register_buffer("mean", torch.zeros(n_in))
            self.register_buffer("std", torch.ones(n_in))

        def forward(self, feature, fractions):
            x = (torch.cat([feature, fractions], dim=1) - self.mean) / self.std
            # SiLU: smooth, so forces (derivatives of the energy) are continuous
            h = nn.functional.silu(torch.einsum("bi,kih->bkh", x, self.w1) + self.b1)
            return torch.einsum("bkh,kh->bk", h, self.w2) + self.b2  # (B, K) eV/atom

    return ResidualHeads()


class HeadAdapter:
    """The heads as the base's ``evaluate`` calls them: (features, species lists) -> (B, K)."""

    def __init__(self, module, elements):
        self.module = module
        self.elements = elements

    def fractions(self, species_lists):
        import torch

        comp = np.array([[s.count(e) / len(s) for e in self.elements] for s in species_lists])
        return torch.tensor(comp, dtype=torch.float32)

    def __call__(self, feature, species_lists):
        return self.module(feature, self.fractions(species_lists).to(feature.dtype))
