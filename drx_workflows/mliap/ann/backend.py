"""``ann`` backend: the AENET method (Chebyshev descriptors + atomic neural networks) on torch.

The reference study's setup is the default: per element a 2 x 15 tanh network on
Artrith-Urban-Ceder descriptors (radial 8.0 A / order 16, angular 6.5 A / order 4),
full-batch L-BFGS for 2300 epochs, energies only.

Training is split in two so that epochs are cheap: descriptors of every training atom are
computed once (no autograd through positions) and standardised; the epochs then only run
the small nets.  Force training (``force_weight`` > 0) also precomputes, once, the exact
descriptor Jacobians dG_i/dR_n (analytic, (N, N, F, 3) per structure: ~1.4 MB for 36
atoms, ~35 MB for 180); forces in each epoch are then -sum_i dE/dG_i . dG_i/dR, with
dE/dG from the nets by autograd.  Prediction always returns forces, exactly -dE/dR by
autograd through the descriptors.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_path, atomic_write_text
from drx_workflows.mliap.ann.descriptors import (
    DescriptorSpec,
    Neighbours,
    chunks,
    descriptor_jacobian,
    descriptors,
    neighbours,
    species_weights,
)
from drx_workflows.mliap.ann.model import (
    ACTIVATIONS,
    DTYPE,
    AtomicNets,
)
from drx_workflows.mliap.ann.training import (
    TrainingData,
    descriptor_views,
    force_matrices,
    optimise,
    set_normalisation,
    torch_threads,
)
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration

_WEIGHTS = "model.pt"
_META = "meta.json"
_FORMAT = 1
# Hyperparameters that fix the model's shape and inputs: a warm start must keep them.
_STRUCTURAL = ("hidden_layers", "activation", "radial_cutoff", "radial_order", "angular_cutoff", "angular_order")


class AnnPotential(Potential):
    name = "ann"
    WARM_START = True
    DEFAULTS = {
        "hidden_layers": [15, 15],
        "activation": "tanh",
        "radial_cutoff": 8.0,  # Angstrom
        "radial_order": 16,
        "angular_cutoff": 6.5,  # Angstrom
        "angular_order": 4,
        "optimizer": "lbfgs",  # full-batch L-BFGS as aenet; "adam" for mini-batches
        "epochs": 2300,
        "learning_rate": None,  # None: 1.0 for L-BFGS (line search scales it), 1e-3 for Adam
        "batch_size": 32,  # structures per Adam step
        # 0 = energy-only, as the study; > 0: loss += w * MSE(forces, (eV/A)^2).  Energy-only
        # training leaves forces unconstrained: on the 295-structure DFT sample, test force MAE
        # 0.87 eV/A energy-only vs 0.14 with w = 0.1 (benchmarks/ann_drx_dft.py)
        "force_weight": 0.0,
        "seed": 0,
        # torch intra-op threads while fitting/predicting: these nets and per-centre matrices
        # are so small that thread hand-offs cost more than they save (25x slower on a busy
        # 2-core machine with 2 threads); run several fits in parallel instead
        "threads": 1,
    }

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self._check_hyperparameters()
        self.model: AtomicNets | None = None
        self.weights: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up

    def _check_hyperparameters(self) -> None:
        h = self.hyperparameters

        def bad(key, why):
            raise DrxError(f"backend ann: hyperparameter {key}={h[key]!r} {why}")

        try:
            h["hidden_layers"] = [int(x) for x in h["hidden_layers"]]
        except (TypeError, ValueError):
            bad("hidden_layers", "must be a list of layer widths, e.g. [15, 15]")
        if not h["hidden_layers"] or min(h["hidden_layers"]) < 1:
            bad("hidden_layers", "must be a non-empty list of positive widths")
        if h["activation"] not in ACTIVATIONS:
            bad("activation", f"is not one of {', '.join(ACTIVATIONS)}")
        if h["optimizer"] not in ("lbfgs", "adam"):
            bad("optimizer", "is not 'lbfgs' or 'adam'")
        for key in ("radial_cutoff", "angular_cutoff"):
            if not isinstance(h[key], (int, float)) or not h[key] > 0:
                bad(key, "must be a positive distance in Angstrom")
        for key in ("radial_order", "angular_order"):
            if not isinstance(h[key], int) or h[key] < 1:
                bad(key, "must be an integer >= 1")
        for key in ("epochs", "batch_size", "seed", "threads"):
            low = 1 if key in ("batch_size", "threads") else 0
            if not isinstance(h[key], int) or isinstance(h[key], bool) or h[key] < low:
                bad(key, f"must be an integer >= {low}")
        if h["learning_rate"] is not None and not (isinstance(h["learning_rate"], (int, float)) and h["learning_rate"] > 0):
            bad("learning_rate", "must be positive (or null for the optimizer's default)")
        if not isinstance(h["force_weight"], (int, float)) or h["force_weight"] < 0:
            bad("force_weight", "must be >= 0")

    @property
    def elements(self) -> list[str]:
        return list(self.model.elements) if self.model is not None else []

    def _spec(self, n_elements: int) -> DescriptorSpec:
        h = self.hyperparameters
        return DescriptorSpec(
            radial_cutoff=float(h["radial_cutoff"]),
            radial_order=h["radial_order"],
            angular_cutoff=float(h["angular_cutoff"]),
            angular_order=h["angular_order"],
            compositional=n_elements > 1,
        )

    @property
    def spec(self) -> DescriptorSpec:
        return self._spec(len(self.elements))

    def _neighbours(self, conf: Configuration) -> Neighbours:
        s = self.spec
        return neighbours(conf.positions, conf.cell, s.cutoff, s.angular_cutoff)

    def _weights_tensor(self, conf: Configuration) -> torch.Tensor:
        return torch.tensor([self.weights[s] for s in conf.species], dtype=DTYPE)

    def _inputs(self, conf: Configuration, nb: Neighbours | None):
        nb = nb or self._neighbours(conf)
        w = self._weights_tensor(conf)
        return nb, torch.as_tensor(conf.positions, dtype=DTYPE), torch.as_tensor(conf.cell, dtype=DTYPE), w

    def features(self, conf: Configuration, nb: Neighbours | None = None) -> torch.Tensor:
        """Raw (unnormalised) descriptors (N, F) of one configuration, without autograd."""
        nb, pos, cell, w = self._inputs(conf, nb)
        with torch.no_grad():
            return torch.cat([descriptors(pos, cell, w, nb, self.spec, c) for c in chunks(nb)])

    def jacobian(self, conf: Configuration, nb: Neighbours | None = None) -> torch.Tensor:
        """(N, N, F, 3) d(descriptor of atom i)/d(position of atom n), for force training."""
        nb, pos, cell, w = self._inputs(conf, nb)
        return torch.cat([descriptor_jacobian(pos, cell, w, nb, self.spec, c) for c in chunks(nb)])

    def force_matrix(self, conf: Configuration, nb: Neighbours | None = None, out: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """The Jacobian laid out for force training: (3N, N F), row 3n+x, column i F + f.

        Filled one chunk of centres at a time (into ``out``, 3 N N F numbers, when given), so the full
        (N, N, F, 3) Jacobian and a permuted copy never coexist.
        """
        nb, pos, cell, w = self._inputs(conf, nb)
        n, f = conf.n_atoms, self.spec.n_features
        out = (torch.empty(n, 3, n, f, dtype=DTYPE) if out is None else out).view(n, 3, n, f)
        for c0, c1 in chunks(nb):
            out[:, :, c0:c1, :] = descriptor_jacobian(pos, cell, w, nb, self.spec, (c0, c1)).permute(1, 3, 0, 2)
        return out.reshape(3 * n, n * f)

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _check_train(train: list[Configuration], need_forces: bool) -> None:
        if not train:
            raise DrxError("backend ann: no training configurations")
        for c in train:
            if c.energy is None:
                raise DrxError(f"backend ann: configuration {c.id} has no energy; every training structure needs one")
            if not math.isfinite(float(c.energy)):
                raise DrxError(f"backend ann: configuration {c.id} has a non-finite energy {c.energy}")
            if need_forces and c.forces is None:
                raise DrxError(f"backend ann: configuration {c.id} has no forces but force_weight > 0")
            if c.n_atoms == 0:
                raise DrxError(f"backend ann: configuration {c.id} has no atoms")

    def _check_elements(self, configs: list[Configuration], what: str) -> None:
        known = set(self.elements)
        for c in configs:
            unseen = sorted(set(c.species) - known)
            if unseen:
                raise DrxError(
                    f"backend ann: {what} configuration {c.id} contains {', '.join(unseen)}, "
                    f"which the model was not trained on (elements: {', '.join(self.elements)})"
                )

    # ------------------------------------------------------------------ training

    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        with torch_threads(self.hyperparameters["threads"]):
            return self._fit(train, warm_start)

    def _fit(self, train: list[Configuration], warm_start: Path | None) -> FitReport:
        h = self.hyperparameters
        t0 = time.perf_counter()
        self._check_train(train, need_forces=h["force_weight"] > 0)

        if warm_start is not None:
            self._adopt(AnnPotential.load(warm_start), warm_start)
            self._check_elements(train, "training")
            feats = descriptor_views(train, self.spec.n_features, self.features)
        else:
            from ase.data import atomic_numbers

            elements = sorted({s for c in train for s in c.species}, key=lambda e: atomic_numbers[e])
            self.weights = species_weights(elements)
            spec = self._spec(len(elements))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(h["seed"])
                self.model = AtomicNets(elements, spec.n_features, h["hidden_layers"], h["activation"])
            feats = descriptor_views(train, self.spec.n_features, self.features)
            set_normalisation(self.model, train, feats)
        t_desc = time.perf_counter() - t0

        data = TrainingData(self.model, train, feats)
        weight = float(h["force_weight"])
        if weight > 0:
            t1 = time.perf_counter()
            data.add_forces(train, force_matrices(train, self.spec.n_features, self.force_matrix))
            t_desc += time.perf_counter() - t1
            loss_fn = lambda idx: data.energy_force_loss(idx, weight)  # noqa: E731
        else:
            loss_fn = data.energy_loss

        all_idx = np.arange(len(train))
        # the force term differentiates the nets, so it cannot run under no_grad
        with torch.no_grad() if weight == 0 else contextlib.nullcontext():
            initial = float(loss_fn(all_idx).detach())
        history = optimise(self.model, h, loss_fn, len(train))
        with torch.no_grad() if weight == 0 else contextlib.nullcontext():
            final = float(loss_fn(all_idx).detach())
        self.model.eval()
        with torch.no_grad():
            rmse_mev = float(data.energy_rmse()) * 1000.0
        extra = {"train_force_rmse_eV_per_A": float(data.force_rmse().detach())} if weight > 0 else {}
        return FitReport(
            seconds=time.perf_counter() - t0,
            n_train=len(train),
            details={
                "epochs": h["epochs"],
                "optimizer": h["optimizer"],
                "initial_loss": initial,
                "final_loss": final,
                "loss_history": history,
                "train_energy_rmse_mev_per_atom": rmse_mev,
                "descriptor_seconds": t_desc,
                "elements": self.elements,
                "n_features": self.model.n_features,
                "warm_start": str(warm_start) if warm_start is not None else None,
                **extra,
            },
        )

    def _adopt(self, other: AnnPotential, where) -> None:
        mine = {k: self.hyperparameters[k] for k in _STRUCTURAL}
        theirs = {k: other.hyperparameters[k] for k in _STRUCTURAL}
        diff = {k for k in _STRUCTURAL if mine[k] != theirs[k]}
        if diff:
            raise DrxError(
                f"backend ann: warm start {where} was trained with "
                + ", ".join(f"{k}={theirs[k]!r}" for k in sorted(diff))
                + "; the new run asks for "
                + ", ".join(f"{k}={mine[k]!r}" for k in sorted(diff))
                + " (use the saved model's values to continue training it)"
            )
        self.model = other.model
        self.weights = other.weights

    # ------------------------------------------------------------------ prediction

    def _energy_forces(self, conf: Configuration, nb: Neighbours, with_stress: bool = False):
        """Total energy (eV), forces (eV/A) and, if asked, stress (eV/A^3, ASE sign); chunked over centres.

        E is a sum of atomic energies, so each chunk's gradient can be taken on its own and
        the graph freed before the next (bounded memory for large cells).  The stress is
        dE/d(strain) / V with positions and cell both deformed by (1 + strain), by autograd
        like the forces (the neighbour list holds integer image shifts only, so it does not move).
        """
        m = self.model
        pos0 = torch.as_tensor(conf.positions, dtype=DTYPE).clone().requires_grad_(True)
        cell0 = torch.as_tensor(conf.cell, dtype=DTYPE)
        strain = torch.zeros((3, 3), dtype=DTYPE, requires_grad=with_stress)
        w = self._weights_tensor(conf)
        species_idx = np.array([m.elements.index(s) for s in conf.species])
        n_of = torch.as_tensor(np.bincount(species_idx, minlength=len(m.elements)), dtype=DTYPE)
        energy = (n_of * m.shifts).sum()
        grad = torch.zeros_like(pos0)
        d_strain = torch.zeros((3, 3), dtype=DTYPE)
        inputs = (pos0, strain) if with_stress else (pos0,)
        for c0, c1 in chunks(nb):
            deform = torch.eye(3, dtype=DTYPE) + 0.5 * (strain + strain.T)
            g = descriptors(pos0 @ deform, cell0 @ deform, w, nb, self.spec, (c0, c1))
            local = species_idx[c0:c1]
            e_chunk = g.new_zeros(())
            for k in np.unique(local):
                e_chunk = e_chunk + m.atomic_residuals(int(k), g[local == k]).sum()
            grads = torch.autograd.grad(e_chunk, inputs)
            grad = grad + grads[0]
            if with_stress:
                d_strain = d_strain + grads[1]
            energy = energy + e_chunk.detach()
        stress = d_strain / abs(float(torch.linalg.det(cell0))) if with_stress else None
        return energy.detach(), -grad, stress

    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        if self.model is None:
            raise DrxError("backend ann: the potential is not trained; call fit() or load() first")
        self._check_elements(configs, "prediction")
        self.model.eval()
        out = []
        with torch_threads(self.hyperparameters["threads"]):
            for c in configs:
                energy, forces, _ = self._energy_forces(c, self._neighbours(c))
                out.append(Prediction(energy=float(energy.detach()), forces=forces.detach().numpy().copy()))
        return out

    def predict_stress(self, config: Configuration) -> np.ndarray:
        """Stress (eV/A^3, 3x3, ASE sign) of one configuration, the exact strain derivative of its energy."""
        if self.model is None:
            raise DrxError("backend ann: the potential is not trained; call fit() or load() first")
        self._check_elements([config], "prediction")
        self.model.eval()
        with torch_threads(self.hyperparameters["threads"]):
            _, _, stress = self._energy_forces(config, self._neighbours(config), with_stress=True)
        return stress.numpy().copy()

    # ------------------------------------------------------------------ files

    def save(self, directory: str | os.PathLike) -> Path:
        if self.model is None:
            raise DrxError("backend ann: nothing to save, the potential is not trained")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        m = self.model
        with atomic_path(d / _WEIGHTS) as tmp:
            torch.save(m.state_dict(), tmp)
        meta = {
            "backend": self.name,
            "format": _FORMAT,
            "hyperparameters": self.hyperparameters,
            "elements": m.elements,
            "species_weights": self.weights,
            "n_features": m.n_features,
            "normalisation": {
                e: {"mean": m.mean[k].tolist(), "std": m.std[k].tolist()} for k, e in enumerate(m.elements)
            },
            "element_shifts_eV": {e: float(m.shifts[k]) for k, e in enumerate(m.elements)},
            "energy_scale_eV_per_atom": float(m.scale),
        }
        atomic_write_text(d / _META, json.dumps(meta, indent=1) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> AnnPotential:
        d = Path(directory)
        try:
            meta = json.loads((d / _META).read_text())
        except FileNotFoundError:
            raise DrxError(f"{d}: no {_META}; not a folder written by the ann backend's save()") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise DrxError(f"{d / _META}: unreadable ({exc})") from None
        if meta.get("backend") != cls.name or meta.get("format") != _FORMAT:
            raise DrxError(f"{d / _META}: not an ann model of format {_FORMAT}")
        pot = cls(**meta["hyperparameters"])
        elements = meta["elements"]
        pot.weights = {e: float(v) for e, v in meta["species_weights"].items()}
        model = AtomicNets(elements, meta["n_features"], pot.hyperparameters["hidden_layers"], pot.hyperparameters["activation"])
        try:
            state = torch.load(d / _WEIGHTS, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise DrxError(f"{d}: no {_WEIGHTS}") from None
        except (RuntimeError, OSError) as exc:
            raise DrxError(f"{d / _WEIGHTS}: does not match {_META} ({exc})") from None
        pot.model = model
        if pot.spec.n_features != model.n_features:
            raise DrxError(f"{d / _META}: n_features {model.n_features} does not match the descriptor settings")
        return pot
