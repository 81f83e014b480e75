"""Training the atomic networks: per-element normalisation and shifts, the precomputed training set and its energy/force losses, the L-BFGS/Adam loop."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from drx_workflows.mliap.ann.model import (
    DTYPE,
    AtomicNets,
    composition_matrix,
    fit_element_shifts,
)
from drx_workflows.mliap.data import Configuration


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TrainingData:
    """Standardised descriptors of all training atoms, grouped per element, for energy epochs."""

    def __init__(self, model: AtomicNets, train: list[Configuration], feats: list[torch.Tensor]):
        self.model = model
        self.n_struct = len(train)
        self.n_atoms = torch.tensor([c.n_atoms for c in train], dtype=DTYPE)
        comp = torch.as_tensor(composition_matrix([c.species for c in train], model.elements), dtype=DTYPE)
        energies = torch.tensor([float(c.energy) for c in train], dtype=DTYPE)
        # the shifts are fixed during training, so the residual target is precomputed
        self.target = energies - comp @ model.shifts
        self.atom_start = np.concatenate([[0], np.cumsum([c.n_atoms for c in train])])
        self.x, self.owner, self.atom = [], [], []
        for k, e in enumerate(model.elements):
            rows, owner, atom = [], [], []
            for s, (c, f) in enumerate(zip(train, feats)):
                mask = np.array([sp == e for sp in c.species])
                if mask.any():
                    rows.append(f[torch.as_tensor(mask)])
                    owner.append(torch.full((int(mask.sum()),), s, dtype=torch.long))
                    atom.append(torch.as_tensor(self.atom_start[s] + np.flatnonzero(mask)))
            if rows:
                self.x.append((torch.cat(rows) - model.mean[k]) / model.std[k])
                self.owner.append(torch.cat(owner))
                self.atom.append(torch.cat(atom))
            else:
                self.x.append(None)
                self.owner.append(None)
                self.atom.append(None)
        self.jac: list[torch.Tensor] = []
        self.forces: list[torch.Tensor] = []

    def add_forces(self, train: list[Configuration], force_matrices: list[torch.Tensor]) -> None:
        # one (3N, N F) Jacobian matrix per structure (AnnPotential.force_matrix): forces become one
        # matrix-vector product per structure, ~50x faster than the equivalent einsum over (N, N, F, 3)
        # (which copies and permutes every epoch)
        self.jac = force_matrices
        self.forces = [torch.as_tensor(c.forces, dtype=DTYPE) for c in train]

    def residuals(self, idx=None, with_gradient: bool = False):
        """Predicted residual energy (eV) of every structure (or only of ``idx``, others 0).

        ``with_gradient``: also dE_i/dG_i (eV per descriptor unit) of every atom (rows in
        training order), kept differentiable with respect to the weights for force losses.
        """
        m = self.model
        pred = torch.zeros(self.n_struct, dtype=DTYPE)
        dedg = torch.zeros(int(self.atom_start[-1]), m.n_features, dtype=DTYPE) if with_gradient else None
        sel = None
        if idx is not None and len(idx) < self.n_struct:
            sel = torch.zeros(self.n_struct, dtype=torch.bool)
            sel[torch.as_tensor(idx)] = True
        for k in range(len(m.elements)):
            x, owner, atom = self.x[k], self.owner[k], self.atom[k]
            if x is None:
                continue
            if sel is not None:
                keep = sel[owner]
                x, owner, atom = x[keep], owner[keep], atom[keep]
                if not len(x):
                    continue
            if with_gradient:
                x = x.detach().requires_grad_(True)
            e = m.atomic_residuals_normalised(k, x)
            pred = pred.index_add(0, owner, e)
            if with_gradient:
                (gx,) = torch.autograd.grad(e.sum(), x, create_graph=True)
                dedg = dedg.index_add(0, atom, gx / m.std[k])
        return (pred, dedg) if with_gradient else pred

    def _forces(self, s: int, dedg: torch.Tensor) -> torch.Tensor:
        a0, a1 = int(self.atom_start[s]), int(self.atom_start[s + 1])
        return -(self.jac[s] @ dedg[a0:a1].reshape(-1)).reshape(-1, 3)

    def energy_force_loss(self, idx, force_weight: float) -> torch.Tensor:
        """Energy loss + force_weight * MSE(forces, (eV/A)^2), both over scale^2."""
        idx_t = torch.as_tensor(idx)
        pred, dedg = self.residuals(idx, with_gradient=True)
        err = (pred[idx_t] - self.target[idx_t]) / self.n_atoms[idx_t] / self.model.scale
        f_mse = torch.stack([((self._forces(int(s), dedg) - self.forces[int(s)]) ** 2).mean() for s in idx]).mean()
        return (err**2).mean() + force_weight * f_mse / self.model.scale**2

    def force_rmse(self) -> torch.Tensor:
        with torch.enable_grad():
            _, dedg = self.residuals(with_gradient=True)
        sq = torch.cat([((self._forces(s, dedg) - self.forces[s]) ** 2).ravel() for s in range(self.n_struct)])
        return torch.sqrt(sq.mean())

    def energy_loss(self, idx) -> torch.Tensor:
        idx_t = torch.as_tensor(idx)
        pred = self.residuals(idx)
        err = (pred[idx_t] - self.target[idx_t]) / self.n_atoms[idx_t] / self.model.scale
        return (err**2).mean()

    def energy_rmse(self) -> torch.Tensor:
        err = (self.residuals() - self.target) / self.n_atoms
        return torch.sqrt((err**2).mean())


def descriptor_views(train: list[Configuration], n_features: int, describe) -> list[torch.Tensor]:
    """Every training cell's descriptors (``describe(conf)``, (N, F)), copied into views of one buffer.

    Kept as one small tensor per cell between the descriptors' large temporaries, they fragmented the heap:
    measured on 3,000 DRX cells (96,414 atoms), 1.43 GB peak against 0.50 GB when nothing small outlives
    its cell (glibc's heap cannot return the holes); at 10,000 cells 2.4 GB were held through training.
    """
    buffer = torch.empty(sum(c.n_atoms for c in train), n_features, dtype=DTYPE)
    out, start = [], 0
    for c in train:
        view = buffer[start : start + c.n_atoms]
        view.copy_(describe(c))
        out.append(view)
        start += c.n_atoms
    return out


def force_matrices(train: list[Configuration], n_features: int, fill) -> list[torch.Tensor]:
    """Every training cell's force matrix (``fill(conf, out=...)``), as views of one buffer allocated up front.

    Kept one allocation per cell, they fragmented the heap with the temporaries freed between them:
    measured on the 295 sample cells, 1.33 GB peak for 0.43 GB of matrices (1.23 GB in one buffer).
    """
    sizes = [3 * c.n_atoms * c.n_atoms * n_features for c in train]
    buffer = torch.empty(sum(sizes), dtype=DTYPE)
    out, start = [], 0
    for c, size in zip(train, sizes):
        out.append(fill(c, out=buffer[start : start + size]))
        start += size
    return out


def set_normalisation(m: AtomicNets, train: list[Configuration], feats: list[torch.Tensor]) -> None:
    """Per-element feature standardisation, least-squares element shifts and the residual energy scale."""
    for k, e in enumerate(m.elements):
        rows = torch.cat([f[[s == e for s in c.species]] for c, f in zip(train, feats)])
        mean = rows.mean(0)
        std = rows.std(0, unbiased=False) if len(rows) > 1 else torch.zeros_like(mean)
        # constant features (e.g. an element seen once) carry no information: leave them unscaled
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        m.mean[k] = mean
        m.std[k] = std
    energies = np.array([c.energy for c in train], dtype=float)
    shifts = fit_element_shifts([c.species for c in train], energies, m.elements)
    m.shifts.copy_(torch.as_tensor(shifts, dtype=DTYPE))
    comp = composition_matrix([c.species for c in train], m.elements)
    resid = (energies - comp @ shifts) / comp.sum(1)
    spread = float(np.std(resid))
    m.scale.fill_(spread if spread > 1e-6 else 1.0)


def optimise(model: AtomicNets, h: dict, loss_fn, n_train: int) -> list[float]:
    """Run ``h["epochs"]`` epochs of L-BFGS (full batch) or Adam (minibatches); the loss after each."""
    params = list(model.parameters())
    history: list[float] = []
    if h["epochs"] == 0:
        return history
    model.train()
    if h["optimizer"] == "lbfgs":
        opt = torch.optim.LBFGS(
            params,
            lr=h["learning_rate"] or 1.0,
            max_iter=1,  # one L-BFGS iteration per epoch, so epochs count as in aenet
            # torch's default budget is 1.25 * max_iter evaluations, which with max_iter=1
            # leaves the line search no evaluations at all and stalls it at step 0
            max_eval=25,
            history_size=50,
            line_search_fn="strong_wolfe",
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
        )
        all_idx = np.arange(n_train)

        def closure():
            opt.zero_grad()
            loss = loss_fn(all_idx)
            loss.backward()
            return loss

        for _ in range(h["epochs"]):
            history.append(float(opt.step(closure).detach()))
    else:
        opt = torch.optim.Adam(params, lr=h["learning_rate"] or 1e-3)
        rng = np.random.default_rng(h["seed"])
        for _ in range(h["epochs"]):
            order = rng.permutation(n_train)
            total = 0.0
            for s in range(0, n_train, h["batch_size"]):
                idx = order[s : s + h["batch_size"]]
                opt.zero_grad()
                loss = loss_fn(idx)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / n_train)
    return history
