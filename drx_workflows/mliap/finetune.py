"""Fine-tuning a pretrained SevenNet model on the slice's energies, forces and stresses: ``finetune`` backend.

    E = E_tuned(R) + sum_e n_e s_e

The pretrained weights (``7net-l3i5`` by default, or ``7net-0``; both in sevenn's wheel) are trained
further on the slice.  What keeps this affordable and safe on a CPU node:

* graphs are built once and cached; structures go through the model in small batches;
* the loss weighs energies and forces by the base's own zero-shot errors on the training set,
  so neither term swamps the other (in raw units a force MSE is ~300x an energy-per-atom MSE);
* forgetting is held back three ways: a small learning rate, an L2 pull of every weight towards
  its pretrained value (``anchor``), and early stopping on a held-out validation split that
  keeps the best state seen -- the zero-shot model included, so tuning never ends worse than
  the base on the validation structures;
* ``time_limit`` (minutes) stops tuning at a known cost; the per-element shifts ``s_e`` are
  refitted on the tuned model at the end;
* a grown slice warm-starts from the previous generation's tuned weights (``WARM_START``).
"""

from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_path, atomic_write_text
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration
from drx_workflows.mliap.delta.bases import check_configurations, torch_threads
from drx_workflows.mliap.delta.sevennet import SEVENNET_MODELS, SevennetBase

_WEIGHTS = "weights.pt"
_META = "meta.json"


class FinetunePotential(Potential):
    name = "finetune"
    WARM_START = True
    DEFAULTS = {
        # sevenn-l3i5: the most accurate zero-shot base measured, and never worse than it on the validation
        # split; sevenn-0 costs ~1/3 per step, so it tunes for ~8 epochs where l3i5 gets ~1.5 (README)
        "base": "sevenn-l3i5",
        "epochs": 8,  # most passes over the training structures
        "time_limit": 45.0,  # minutes of tuning at most; the best validated state is kept
        "lr": 1e-4,
        "batch_size": 4,
        # relative weights of the (zero-shot-normalised) force and stress terms against energies
        "force_weight": 1.0,
        "stress_weight": 0.0,  # the shared DFT sample has no stresses; used when every structure has them
        "anchor": 1e-3,  # L2 pull towards the pretrained weights (per weight, loss units)
        "validation": 0.1,  # fraction of the training structures held out for early stopping
        "patience": 2,  # epochs without a better validation loss before stopping
        "seed": 0,
    }

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        hp = self.hyperparameters
        if hp["base"] not in SEVENNET_MODELS:
            raise DrxError(f"finetune: unknown base {hp['base']!r}; choose from {', '.join(sorted(SEVENNET_MODELS))}")
        for key in ("epochs", "batch_size", "patience"):
            if not isinstance(hp[key], int) or hp[key] < (0 if key == "epochs" else 1):
                raise DrxError(f"finetune: {key} must be a whole number >= {0 if key == 'epochs' else 1}, got {hp[key]!r}")
        for key in ("time_limit", "lr", "force_weight", "stress_weight", "anchor"):
            if not isinstance(hp[key], (int, float)) or hp[key] < 0:
                raise DrxError(f"finetune: {key} must be a number >= 0, got {hp[key]!r}")
        if not isinstance(hp["validation"], (int, float)) or not 0 < hp["validation"] < 0.5:
            raise DrxError(f"finetune: validation must be a fraction between 0 and 0.5, got {hp['validation']!r}")
        self._base: SevennetBase | None = None
        self.elements: list[str] = []
        self.shifts: np.ndarray | None = None
        self._tuned_state: dict | None = None

    # -- the model -----------------------------------------------------------------------------
    @property
    def base(self) -> SevennetBase:
        if self._base is None:
            torch_threads()
            self._base = SevennetBase(SEVENNET_MODELS[self.hyperparameters["base"]])
            if self._tuned_state is not None:
                self._base.model.load_state_dict(self._tuned_state)
        return self._base

    def _batches(self, graphs: list, order):
        """Batches of the cached graphs, built one at a time (a list of them all would copy every graph)."""
        from torch_geometric.data import Batch

        size = int(self.hyperparameters["batch_size"])
        for k in range(0, len(order), size):
            yield Batch.from_data_list([graphs[i] for i in order[k : k + size]])

    def _forward(self, batch, train: bool):
        """Energies (per graph), forces and stresses (sevenn's Voigt order, ASE sign) of one batch."""
        model, key = self.base.model, self.base.keys
        model.set_is_batch_data(True)
        model.train(train)
        data = model(batch.clone())
        return data[key.PRED_TOTAL_ENERGY].reshape(-1), data[key.PRED_FORCE], -data[key.PRED_STRESS]

    def _composition(self, configs: list[Configuration]) -> np.ndarray:
        index = {e: i for i, e in enumerate(self.elements)}
        comp = np.zeros((len(configs), len(self.elements)))
        for row, c in enumerate(configs):
            for s in c.species:
                if s not in index:
                    raise DrxError(f"finetune: element {s} of {c.id} was not in the training data (no energy shift for it)")
                comp[row, index[s]] += 1
        return comp

    def _raw(self, configs: list[Configuration], graphs: list | None = None):
        """Model energies, forces and stresses (no shifts), parameters frozen."""
        torch = self.base.torch
        graphs = graphs if graphs is not None else [self.base.graph(c) for c in configs]
        for p in self.base.model.parameters():
            p.requires_grad_(False)
        energies, forces, stresses = [], [], []
        for batch in self._batches(graphs, list(range(len(graphs)))):
            with torch.enable_grad():
                e, f, s = self._forward(batch, train=False)
            energies += e.detach().double().tolist()
            f = f.detach().double().numpy()
            forces += np.split(f, np.cumsum(batch.num_atoms.numpy())[:-1])
            stresses += list(s.detach().double().numpy())
        return np.array(energies), forces, stresses

    # -- training ------------------------------------------------------------------------------
    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        torch = self.base.torch
        hp = self.hyperparameters
        t0 = time.perf_counter()
        labelled = [c for c in train if c.energy is not None and c.forces is not None]
        if len(labelled) < len(train):
            raise DrxError(f"finetune: {len(train) - len(labelled)} training structure(s) lack energies or forces")
        check_configurations(train, self.base.covers, hp["base"], "training")
        self.elements = sorted({s for c in train for s in c.species})
        if len(train) < max(len(self.elements) + 1, 4):
            raise DrxError(f"finetune: {len(train)} training structure(s) cannot fit energy shifts of {len(self.elements)} elements and hold out a validation split")
        pretrained = {k: v.detach().clone() for k, v in self.base.model.state_dict().items()}
        if warm_start is not None:
            self._load_weights(Path(warm_start))
        graphs = [self.base.graph(c) for c in train]

        rng = np.random.default_rng(int(hp["seed"]))
        order = rng.permutation(len(train))
        n_val = max(1, int(round(hp["validation"] * len(train))))
        val_idx, fit_idx = order[:n_val], order[n_val:]

        # zero-shot pass: the shifts, the loss scales and the validation score to beat
        e0, f0, s0 = self._raw(train, graphs)
        self.shifts = self._fit_shifts(train, fit_idx, e0)
        e_ref = np.array([c.energy for c in train])
        n_atoms = np.array([c.n_atoms for c in train])
        e_shift = self._composition(train) @ self.shifts
        stress_ref = [c.meta.get("stress") for c in train]
        use_stress = hp["stress_weight"] > 0 and all(s is not None for s in stress_ref)
        scale_e = max(float(np.mean(((e0 + e_shift - e_ref)[fit_idx] / n_atoms[fit_idx]) ** 2)), 1e-8)
        scale_f = max(float(np.mean(np.concatenate([(f0[i] - train[i].forces).ravel() ** 2 for i in fit_idx]))), 1e-6)
        scale_s = 1.0
        if use_stress:
            scale_s = max(float(np.mean([(_voigt(stress_ref[i]) - s0[i]) ** 2 for i in fit_idx])), 1e-10)

        def val_loss(energies, forces) -> float:
            le = np.mean(((energies + e_shift - e_ref)[val_idx] / n_atoms[val_idx]) ** 2) / scale_e
            lf = np.mean(np.concatenate([(forces[i] - train[i].forces).ravel() ** 2 for i in val_idx])) / scale_f
            return float((le + hp["force_weight"] * lf) / (1 + hp["force_weight"]))

        best = val_loss(e0, f0)
        history = [{"epoch": 0, "validation_loss": best}]
        best_state, best_epoch, stale = copy.deepcopy(self.base.model.state_dict()), 0, 0
        val_configs, val_graphs = [train[i] for i in val_idx], [graphs[i] for i in val_idx]
        model = self.base.model
        for p in model.parameters():
            p.requires_grad_(True)
        anchor = {n: pretrained[n] for n, _ in model.named_parameters()}
        optimizer = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]))
        e_target = torch.tensor(e_ref - e_shift, dtype=torch.float32)
        n_t = torch.tensor(n_atoms, dtype=torch.float32)
        deadline = t0 + 60 * float(hp["time_limit"])
        out_of_time, steps = False, 0
        for epoch in range(1, int(hp["epochs"]) + 1):
            for p in model.parameters():
                p.requires_grad_(True)
            shuffled = rng.permutation(fit_idx)
            size = int(hp["batch_size"])
            for k in range(0, len(shuffled), size):
                idx = shuffled[k : k + size]
                batch = next(self._batches(graphs, idx))
                e, f, s = self._forward(batch, train=True)
                f_ref = torch.tensor(np.concatenate([train[i].forces for i in idx]), dtype=f.dtype)
                loss_e = (((e - e_target[idx]) / n_t[idx]) ** 2).mean() / scale_e
                loss = loss_e + hp["force_weight"] * ((f - f_ref) ** 2).mean() / scale_f
                if use_stress:
                    s_ref = torch.tensor(np.stack([_voigt(stress_ref[i]) for i in idx]), dtype=s.dtype)
                    loss = loss + hp["stress_weight"] * ((s - s_ref) ** 2).mean() / scale_s
                loss = loss / (1 + hp["force_weight"] + (hp["stress_weight"] if use_stress else 0))
                if hp["anchor"] > 0:
                    loss = loss + hp["anchor"] * sum(((p - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                steps += 1
                if time.perf_counter() > deadline:
                    out_of_time = True
                    break
            ev, fv, _ = self._raw(val_configs, val_graphs)
            ev_full, fv_full = np.zeros(len(train)), [None] * len(train)
            for j, i in enumerate(val_idx):
                ev_full[i], fv_full[i] = ev[j], fv[j]
            loss_val = val_loss(ev_full, fv_full)
            history.append({"epoch": epoch, "validation_loss": loss_val, "seconds": round(time.perf_counter() - t0, 1)})
            if loss_val < best:
                best, best_epoch, stale = loss_val, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if out_of_time or stale >= int(hp["patience"]):
                break
        model.load_state_dict(best_state)
        self._tuned_state = best_state
        # the tuned model's energy reference moved: refit the shifts on all training structures
        e1 = e0 if best_epoch == 0 else self._raw(train, graphs)[0]
        self.shifts = self._fit_shifts(train, np.arange(len(train)), e1)
        return FitReport(
            seconds=time.perf_counter() - t0,
            n_train=len(train),
            details={
                "base": f"{hp['base']} {self.base.model_name}",
                "best_epoch": best_epoch,
                "steps": steps,
                "stopped": "time_limit" if out_of_time else ("early_stopping" if stale >= int(hp["patience"]) else "epochs"),
                "validation_structures": int(n_val),
                "history": history,
                "warm_start": str(warm_start) if warm_start is not None else None,
                "shifts": dict(zip(self.elements, map(float, self.shifts))),
            },
        )

    def _fit_shifts(self, configs, rows, energies) -> np.ndarray:
        comp = self._composition(configs)
        e_ref = np.array([c.energy for c in configs])
        shifts, *_ = np.linalg.lstsq(comp[rows], (e_ref - energies)[rows], rcond=None)
        return shifts

    # -- prediction ----------------------------------------------------------------------------
    def _check_trained(self):
        if self.shifts is None:
            raise DrxError("finetune: the potential is not trained (fit or load it first)")

    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        self._check_trained()
        if not configs:
            return []
        check_configurations(configs, self.base.covers, self.hyperparameters["base"], "prediction")
        shift = self._composition(configs) @ self.shifts
        energies, forces, _ = self._raw(configs)
        return [Prediction(energy=float(e + s), forces=f) for e, s, f in zip(energies, shift, forces)]

    def predict_stress(self, config: Configuration) -> np.ndarray:
        """Stress (eV/A^3, ASE sign), the model's own strain derivative."""
        self._check_trained()
        xx, yy, zz, xy, yz, zx = self._raw([config])[2][0]
        return np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])

    # -- files ---------------------------------------------------------------------------------
    def save(self, directory) -> Path:
        torch = self.base.torch
        self._check_trained()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(self.base.model.state_dict(), buffer)
        with atomic_path(d / _WEIGHTS) as tmp:
            tmp.write_bytes(buffer.getvalue())
        meta = {"hyperparameters": self.hyperparameters, "elements": self.elements, "shifts": self.shifts.tolist()}
        atomic_write_text(d / _META, json.dumps(meta, indent=1))
        return d

    def _load_weights(self, d: Path) -> None:
        torch = self.base.torch
        try:
            meta = json.loads((d / _META).read_text())
            state = torch.load(d / _WEIGHTS, map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise DrxError(f"{d}: not a finetune model folder ({exc})") from None
        if meta["hyperparameters"]["base"] != self.hyperparameters["base"]:
            raise DrxError(f"{d}: tuned from {meta['hyperparameters']['base']}, not {self.hyperparameters['base']}")
        self.base.model.load_state_dict(state)
        self._tuned_state = state
        self.elements, self.shifts = meta["elements"], np.array(meta["shifts"], dtype=float)

    @classmethod
    def load(cls, directory) -> FinetunePotential:
        d = Path(directory)
        try:
            meta = json.loads((d / _META).read_text())
        except (OSError, ValueError) as exc:
            raise DrxError(f"{d}: not a finetune model folder ({exc})") from None
        pot = cls(**meta["hyperparameters"])
        pot._load_weights(d)
        return pot


def _voigt(stress) -> np.ndarray:
    """A 3x3 stress (ASE sign) in sevenn's order xx yy zz xy yz zx."""
    s = np.asarray(stress, dtype=float).reshape(3, 3)
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[1, 2], s[2, 0]])
