"""Δ-learning on a pretrained universal potential: ``delta`` backend.

    E = E_base(R) + sum_e n_e s_e + N * mean_k h_k(c(R), x)

* ``E_base``: a pretrained universal potential that loads offline (weights in the wheels),
  frozen: SevenNet ``7net-l3i5`` (default, the most accurate measured here), ``7net-0`` or
  CHGNet 0.3.0.  ``BASES`` maps names to base classes (``--set delta.base=...``).
* ``s_e``: per-element energy shifts, least squares on the training slice: the pretrained
  model's energy reference (MPtrj, with its own corrections) is ~0.7 eV/atom away from
  this dataset's GGA+U totals, but that offset is almost linear in composition.
* ``h_k``: an ensemble of small MLPs on the base model's crystal feature (the mean of its
  last-layer atom features, ``c``) and the composition fractions ``x``, giving a per-atom
  residual energy.  The base is frozen, so the Jacobian dc/dR of every training structure
  is computed once; training the heads on residual energies *and* forces
  (F_res = -N J^T dh/dc) is then a small full-batch problem that takes seconds, and an
  ensemble costs almost nothing more.  The spread of the members is the per-structure
  uncertainty (eV/atom) used to rank structures for DFT (``drx rank``).

Prediction runs the base model once with the heads attached and differentiates the total
energy, so forces and stress are its exact derivatives, as for CHGNet itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration
from drx_workflows.mliap.delta.base_cache import cached_evaluations
from drx_workflows.mliap.delta.bases import (
    BASES,
    base_label,
    check_configurations,
    make_base,
    torch_threads,
)
from drx_workflows.mliap.delta.heads import HeadAdapter, heads_module

_HEADS = "heads.pt"
_META = "meta.json"


class DeltaPotential(Potential):
    name = "delta"
    DEFAULTS = {
        # measured on the README split (benchmarks/delta_drx_dft.py, test E meV/atom / F eV/A, base +
        # shifts): sevenn-l3i5 6.5 / 0.082, chgnet 13.1 / 0.083; the SevenNet pass costs ~1.3 s per
        # structure on 2 cores against CHGNet's ~0.2 s
        "base": "sevenn-l3i5",
        "base_model": None,  # the base's own default (CHGNet 0.3.0, SevenNet 7net-l3i5 / 7net-0)
        "residual": "heads",  # "heads" or "none" (base + per-element shifts only)
        "ensemble": 5,
        "hidden": 32,
        "epochs": 1500,
        "lr": 0.005,
        "weight_decay": 1e-3,
        # Residual forces enter the loss through d feature / d positions, which costs one backward
        # pass of the base per feature (64) per batch: affordable for a few dozen structures only.
        "force_weight": 0.0,  # loss weight of residual forces (eV/A) relative to energies (eV/atom)
        "force_structures": 0,  # training structures whose Jacobians are computed for the force term
        # Penalty on |d h / d c|^2 (times N): the heads' residual forces are -N J^T dh/dc, so this
        # keeps them from disturbing the base's forces without any Jacobian.  Measured on the README
        # split (test E meV/atom / F eV/A): sevenn-l3i5 (base + shifts 6.53 / 0.0818): 0 -> 8.51 / 0.175,
        # 1e-5 -> 7.30 / 0.117, 1e-4 -> 6.73 / 0.094, 1e-3 -> 6.85 / 0.082, 1e-2 -> 6.24 / 0.0813,
        # 1e-1 -> 6.54 / 0.0817; chgnet (+ shifts 13.1 / 0.083): 0 -> 7.1 / 0.159, 1e-5 -> 12.6 / 0.084.
        # The default keeps the base's forces: heads that help energies but not at forces' cost.
        "gradient_penalty": 1e-2,
        # bootstrap resamples per member: measured worse (8.6 vs 7.1 meV/atom test MAE), so by
        # default members differ by their initialisation only
        "bootstrap": False,
        "batch_size": 16,  # most structures per base-model pass (also capped by angle count)
        "seed": 0,
    }

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        hp = self.hyperparameters
        if hp["base"] not in BASES:
            raise DrxError(f"delta: unknown base {hp['base']!r}; choose from {', '.join(sorted(BASES))}")
        if hp["residual"] not in ("heads", "none"):
            raise DrxError(f"delta: residual must be 'heads' or 'none', got {hp['residual']!r}")
        if int(hp["ensemble"]) < 1:
            raise DrxError(f"delta: ensemble must be >= 1, got {hp['ensemble']}")
        for key in ("force_weight", "gradient_penalty"):
            if not isinstance(hp[key], (int, float)) or isinstance(hp[key], bool) or hp[key] < 0:
                raise DrxError(f"delta: {key} must be a number >= 0, got {hp[key]!r}")
        self._base = None
        # where the base's energies-only passes are kept between runs (``base_cache.py``); the
        # orchestration layer attaches the store's, None evaluates every time
        self.base_cache = None
        self.base_passes = 0  # structures the base evaluated in this process (not read from the cache)
        self.elements: list[str] = []
        self.shifts: np.ndarray | None = None
        self.heads = None

    # -- pieces

    @property
    def base(self):
        if self._base is None:
            hp = self.hyperparameters
            self._base = make_base(hp["base"], hp["base_model"], batch_size=int(hp["batch_size"]))
        return self._base

    @classmethod
    def base_cache_keys(cls, configs, hyperparameters: dict) -> list[str]:
        """The cache keys ``base_energies`` looks up for ``configs`` under these hyperparameters."""
        from drx_workflows.mliap.delta.base_cache import config_key

        hp = {**cls.DEFAULTS, **hyperparameters}
        label = base_label(hp["base"], hp["base_model"])
        return [config_key(label, c) for c in configs]

    def base_energies(self, configs) -> list[dict]:
        """The base's ``energy`` and ``feature`` per configuration, from ``base_cache`` where it has them."""
        hp = self.hyperparameters
        if self.base_cache is None:
            self.base_passes += len(configs)
            return self.base.evaluate(configs, forces=False)
        evals, passes = cached_evaluations(self.base, base_label(hp["base"], hp["base_model"]), self.base_cache, configs)
        self.base_passes += passes
        return evals

    def _composition(self, configs):
        return np.array([[c.species.count(e) for e in self.elements] for c in configs], dtype=float)

    def _check_trained(self, configs):
        if self.shifts is None:
            raise DrxError("delta: the potential is not trained or loaded")
        unseen = sorted({s for c in configs for s in c.species} - set(self.elements))
        if unseen:
            raise DrxError(f"delta: element(s) {', '.join(unseen)} were not in the training data (no energy shift for them)")

    # -- Potential interface

    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        hp = self.hyperparameters
        t0 = time.perf_counter()
        if not train:
            raise DrxError("delta: the training set is empty")
        for c in train:
            if c.energy is None or c.forces is None:
                raise DrxError(f"delta: training configuration {c.id} needs an energy and forces")
        base = self.base
        check_configurations(train, base.covers, hp["base"], "training")
        elements = sorted({s for c in train for s in c.species})
        if len(train) < len(elements):
            raise DrxError(
                f"delta: {len(train)} training structure(s) cannot fit energy shifts of {len(elements)} "
                f"elements ({' '.join(elements)}); need at least one structure per element"
            )
        torch_threads()
        # energies and features only: the base's forces enter the fit only through the force term
        passes = self.base_passes
        evals = self.base_energies(train)
        jacobians = {}
        if hp["residual"] == "heads" and float(hp["force_weight"]) > 0 and int(hp["force_structures"]) > 0:
            rng = np.random.default_rng(int(hp["seed"]))
            pick = sorted(rng.choice(len(train), size=min(len(train), int(hp["force_structures"])), replace=False))
            for i, r in zip(pick, base.evaluate([train[i] for i in pick], jacobian=True)):
                jacobians[int(i)] = r["jacobian"]
                evals[int(i)] = r
        report = self.fit_from_base(train, evals, jacobians)
        report.details["base_seconds"] = time.perf_counter() - t0 - report.seconds
        report.details["base_passes"] = self.base_passes - passes  # the rest came from the cache
        if warm_start is not None:
            report.details["warm_start"] = "ignored: the heads retrain in seconds on the frozen base"
        report.seconds = time.perf_counter() - t0
        return report

    def fit_from_base(self, train, evals, jacobians=None) -> FitReport:
        """Shifts and heads from the base model's evaluations of ``train`` (``ChgnetBase.evaluate``).

        ``jacobians``: {index in train: d feature / d positions} for the structures whose
        residual forces enter the loss.  Split out so benchmarks evaluate the base once.
        """
        import torch

        hp = self.hyperparameters
        t0 = time.perf_counter()
        torch_threads()
        torch.manual_seed(int(hp["seed"]))
        self.elements = sorted({s for c in train for s in c.species})
        comp = self._composition(train)
        n = comp.sum(1)
        e_ref = np.array([c.energy for c in train])
        e_base = np.array([r["energy"] for r in evals])
        self.shifts, _, rank, _ = np.linalg.lstsq(comp, e_ref - e_base, rcond=None)
        resid_e = (e_ref - e_base - comp @ self.shifts) / n  # eV/atom
        details = {
            "base": f"{hp['base']} {self.base.model_name}",
            "elements": self.elements,
            "shifts": dict(zip(self.elements, map(float, self.shifts))),
            "composition_rank": int(rank),
            "shift_train_mae_mev": float(np.mean(np.abs(resid_e)) * 1000),
        }
        self.heads = None
        if hp["residual"] == "heads":
            details.update(self._fit_heads(train, evals, resid_e, jacobians or {}))
        return FitReport(seconds=time.perf_counter() - t0, n_train=len(train), details=details)

    def _fit_heads(self, train, evals, resid_e, jacobians) -> dict:
        import torch

        hp = self.hyperparameters
        k_models = int(hp["ensemble"])
        module = heads_module(evals[0]["feature"].shape[0], len(self.elements), int(hp["hidden"]), k_models)
        adapter = HeadAdapter(module, self.elements)
        feats = torch.tensor(np.stack([r["feature"] for r in evals]), dtype=torch.float32)
        fracs = adapter.fractions([c.species for c in train])
        x_all = torch.cat([feats, fracs], 1)
        module.mean.copy_(x_all.mean(0))
        module.std.copy_(x_all.std(0).clamp_min(1e-3) if len(train) > 1 else torch.ones(x_all.shape[1]))
        target_e = torch.tensor(resid_e, dtype=torch.float32)

        rng = np.random.default_rng(int(hp["seed"]))
        if hp["bootstrap"] and k_models > 1:
            draws = [np.bincount(rng.integers(len(train), size=len(train)), minlength=len(train)) for _ in range(k_models)]
            weights = np.stack(draws, axis=1).astype(float)
        else:
            weights = np.ones((len(train), k_models))
        w_struct = torch.tensor(weights, dtype=torch.float32)  # (B, K)

        fw = float(hp["force_weight"])
        gp = float(hp["gradient_penalty"])
        n_struct = torch.tensor([c.n_atoms for c in train], dtype=torch.float32)
        idx = sorted(jacobians)
        if fw > 0 and idx:
            sub = torch.tensor(idx)
            n_atoms = torch.tensor([train[i].n_atoms for i in idx], dtype=torch.float32)
            owner = torch.repeat_interleave(torch.arange(len(idx)), n_atoms.long())
            jac = torch.tensor(np.concatenate([jacobians[i] for i in idx]), dtype=torch.float32)  # (A, 3, F)
            d_forces = torch.tensor(
                np.concatenate([train[i].forces - evals[i]["forces"] for i in idx]), dtype=torch.float32
            )
            w_atoms = w_struct[sub][owner]  # (A, K)

        opt = torch.optim.AdamW(module.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]))
        epochs = int(hp["epochs"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
        first = last = None
        t0 = time.perf_counter()
        for _ in range(epochs):
            opt.zero_grad()
            feature = feats.clone().requires_grad_(True)
            members = module(feature, fracs)  # (B, K) eV/atom
            loss = (w_struct * (members - target_e[:, None]) ** 2).sum() / w_struct.sum()
            if gp > 0:
                (g,) = torch.autograd.grad(members.sum(), feature, create_graph=True)  # (B, F), summed over members
                loss = loss + gp * ((g**2).sum(1) * n_struct).mean() / k_models
            if fw > 0 and idx:
                f_res = []
                for k in range(k_models):
                    (g,) = torch.autograd.grad(members[:, k].sum(), feature, create_graph=True)  # (B, F)
                    # E_res = N h(c) with c the mean atom feature: F_res = -N J^T dh/dc
                    f_res.append(-torch.einsum("aif,af->ai", jac, g[sub][owner]) * n_atoms[owner, None])
                f_res = torch.stack(f_res, dim=-1)  # (A, 3, K)
                loss_f = (w_atoms[:, None, :] * (f_res - d_forces[:, :, None]) ** 2).sum() / (3 * w_atoms.sum())
                loss = loss + fw * loss_f
            loss.backward()
            opt.step()
            sched.step()
            last = float(loss.detach())
            first = last if first is None else first
        self.heads = adapter
        return {
            "head_seconds": time.perf_counter() - t0,
            "epochs": epochs,
            "force_structures": len(idx) if fw > 0 else 0,
            "initial_loss": first,
            "final_loss": last,
        }

    def _evaluate(self, configs, stress=False, forces=True):
        check_configurations(configs, self.base.covers, self.hyperparameters["base"], "input")
        self._check_trained(configs)
        torch_threads()
        if self.heads is not None:
            self.heads.module.eval()
        self.base_passes += len(configs)
        evals = self.base.evaluate(configs, head=self.heads, stress=stress, forces=forces)
        shift = self._composition(configs) @ self.shifts
        return evals, shift

    def predict(self, configs: list[Configuration], forces: bool = True) -> list[Prediction]:
        if not configs:
            return []
        evals, shift = self._evaluate(configs, forces=forces)
        out = []
        for r, s in zip(evals, shift):
            spread = float(np.std(r["head"])) if "head" in r and len(r["head"]) > 1 else None
            out.append(Prediction(energy=r["energy"] + float(s), forces=r.get("forces"), uncertainty=spread,
                                  descriptor=r.get("feature")))
        return out

    def predict_energies(self, configs: list[Configuration]) -> list[Prediction]:
        """Energies, spreads and features without the base's backward pass (~3x faster): for ranking.

        With a ``base_cache`` the heads run on the kept features, so a structure scored before
        (an earlier round's candidate) costs no base pass."""
        if self.base_cache is None or not configs:
            return self.predict(configs, forces=False)
        import torch

        check_configurations(configs, self.base.covers, self.hyperparameters["base"], "input")
        self._check_trained(configs)
        torch_threads()
        evals = self.base_energies(configs)
        energy = np.array([r["energy"] for r in evals]) + self._composition(configs) @ self.shifts
        members = None
        if self.heads is not None:
            self.heads.module.eval()
            feats = torch.tensor(np.stack([r["feature"] for r in evals]), dtype=torch.float32)
            with torch.no_grad():
                members = self.heads(feats, [c.species for c in configs]).numpy().astype(float)  # (B, K) eV/atom
            energy = energy + members.mean(1) * np.array([c.n_atoms for c in configs])
        rows = members if members is not None else [None] * len(evals)
        return [Prediction(energy=float(e), forces=None, descriptor=r["feature"],
                           uncertainty=float(np.std(m)) if m is not None and len(m) > 1 else None)
                for e, m, r in zip(energy, rows, evals)]

    def predict_stress(self, config: Configuration) -> np.ndarray:
        """Stress (eV/A^3, ASE sign) as the strain derivative of the same energy, by autograd."""
        evals, _ = self._evaluate([config], stress=True)
        return evals[0]["stress"]

    def save(self, directory) -> Path:
        import torch

        if self.shifts is None:
            raise DrxError("delta: nothing to save, the potential is not trained")
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "hyperparameters": self.hyperparameters,
            "elements": self.elements,
            "shifts": self.shifts.tolist(),
            "n_features": None if self.heads is None else int(self.heads.module.w1.shape[1] - len(self.elements)),
        }
        if self.heads is not None:
            torch.save(self.heads.module.state_dict(), d / _HEADS)
        (d / _META).write_text(json.dumps(meta, indent=1))
        return d

    @classmethod
    def load(cls, directory) -> DeltaPotential:
        import torch

        d = Path(directory)
        try:
            meta = json.loads((d / _META).read_text())
        except (OSError, ValueError) as exc:
            raise DrxError(f"{d}: not a delta model folder ({exc})") from None
        pot = cls(**meta["hyperparameters"])
        pot.elements = meta["elements"]
        pot.shifts = np.array(meta["shifts"], dtype=float)
        if meta.get("n_features") is not None:
            hp = pot.hyperparameters
            module = heads_module(meta["n_features"], len(pot.elements), int(hp["hidden"]), int(hp["ensemble"]))
            module.load_state_dict(torch.load(d / _HEADS, map_location="cpu", weights_only=True))
            pot.heads = HeadAdapter(module, pot.elements)
        return pot
