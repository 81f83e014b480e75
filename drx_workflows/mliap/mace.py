"""MACE through ``mace-torch``: the modern equivariant baseline the study's codes lacked.

Trained from scratch (mace's foundation weights are not in the wheel) with mace's own
training command, in a temporary folder; the model is kept as ``model.model`` and
evaluated through mace's ASE calculator.  Warm start fine-tunes a previous model
(``--foundation_model``).  Defaults are sized for CPUs: one small model per slice.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration

_MODEL = "model.model"
_META = "meta.json"


def _write_extxyz(configs: list[Configuration], path: Path) -> None:
    from ase.io import write

    frames = []
    for c in configs:
        atoms = c.to_atoms()
        atoms.info["REF_energy"] = float(c.energy)
        if c.forces is not None:
            atoms.arrays["REF_forces"] = np.asarray(c.forces, dtype=float)
        frames.append(atoms)
    write(path, frames, format="extxyz")


def _require_mace() -> None:
    import importlib.util

    if importlib.util.find_spec("mace") is None:
        raise DrxError(
            "mace: mace-torch is not installed; its e3nn==0.4.4 pin conflicts with sevenn, so install it "
            "without dependencies: pip install --no-deps mace-torch==0.3.16 (make install does)"
        )


class MacePotential(Potential):
    name = "mace"
    WARM_START = True
    # Sized for the 15-minute CPU budget on the ~300-structure DRX sample (benchmarks/backends_drx_dft.py):
    # 32 channels, L 1, correlation 3 in float64 took ~98 s per epoch; this model ~10 s (507 s for 50).
    # Energies weigh as much as forces: at 1:10 the test energy MAE was 84 meV/atom after 30 epochs,
    # at 10:10 62.  Larger models are for GPU workers (--train-category).
    DEFAULTS = {
        "r_max": 5.0,
        "num_channels": 16,
        "max_L": 0,
        "correlation": 2,
        "num_interactions": 2,
        "max_num_epochs": 50,
        "batch_size": 4,
        "lr": 0.01,
        "energy_weight": 10.0,
        "forces_weight": 10.0,
        "valid_fraction": 0.1,
        "default_dtype": "float32",
        "seed": 0,
    }

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self._model_path: Path | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._calc = None

    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        if len(train) < 3:
            raise DrxError(f"mace needs at least 3 training structures (one is kept for validation), got {len(train)}")
        _require_mace()
        hp = self.hyperparameters
        self._tmp = tempfile.TemporaryDirectory(prefix="drx-mace-")
        work = Path(self._tmp.name)
        _write_extxyz(train, work / "train.xyz")
        elements = sorted({s for c in train for s in c.species})
        args = [
            sys.executable, "-m", "mace.cli.run_train",
            "--name", "model",
            "--work_dir", str(work),
            "--train_file", str(work / "train.xyz"),
            "--valid_fraction", str(hp["valid_fraction"]),
            "--energy_key", "REF_energy",
            "--forces_key", "REF_forces",
            "--E0s", "average",
            "--model", "MACE",
            "--r_max", str(hp["r_max"]),
            "--num_channels", str(hp["num_channels"]),
            "--max_L", str(hp["max_L"]),
            "--correlation", str(hp["correlation"]),
            "--num_interactions", str(hp["num_interactions"]),
            "--max_num_epochs", str(hp["max_num_epochs"]),
            "--batch_size", str(hp["batch_size"]),
            "--lr", str(hp["lr"]),
            "--energy_weight", str(hp["energy_weight"]),
            "--forces_weight", str(hp["forces_weight"]),
            "--default_dtype", hp["default_dtype"],
            "--seed", str(hp["seed"]),
            "--device", "cpu",
            "--save_cpu",
            "--eval_interval", "1",
        ]
        if warm_start is not None:
            args += ["--foundation_model", str(Path(warm_start) / _MODEL)]
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        t0 = time.perf_counter()
        run = subprocess.run(args, cwd=work, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        model = work / "model.model"
        if run.returncode != 0 or not model.exists():
            tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DrxError(f"mace training failed: {tail[0][:300]}")
        self._model_path = model
        self._elements = elements
        self._calc = None
        return FitReport(seconds=seconds, n_train=len(train), details={"epochs": hp["max_num_epochs"]})

    def _calculator(self):
        if self._model_path is None:
            raise DrxError("mace: the potential is not trained or loaded")
        if self._calc is None:
            _require_mace()
            from mace.calculators import MACECalculator

            self._calc = MACECalculator(
                model_paths=str(self._model_path), device="cpu", default_dtype=self.hyperparameters["default_dtype"]
            )
        return self._calc

    def calculator(self):
        """An ASE calculator (energy and forces) for relaxations and MD."""
        return self._calculator()

    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        unseen = sorted({s for c in configs for s in c.species} - set(self._elements))
        if unseen:
            raise DrxError(f"mace: element(s) {', '.join(unseen)} were not in the training data")
        calc = self._calculator()
        out = []
        for c in configs:
            atoms = c.to_atoms()
            atoms.calc = calc
            out.append(Prediction(energy=float(atoms.get_potential_energy()), forces=atoms.get_forces().copy()))
        return out

    def save(self, directory) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(self._model_path, d / _MODEL)
        (d / _META).write_text(json.dumps({"hyperparameters": self.hyperparameters, "elements": self._elements}))
        return d

    @classmethod
    def load(cls, directory) -> MacePotential:
        d = Path(directory)
        meta = json.loads((d / _META).read_text())
        pot = cls(**meta["hyperparameters"])
        # a private copy: the folder loaded from is often temporary (the isolated training process's,
        # a GridFS download), and the model file is read again when the potential is saved or used
        pot._tmp = tempfile.TemporaryDirectory(prefix="drx-mace-")
        pot._model_path = Path(pot._tmp.name) / _MODEL
        try:
            shutil.copy2(d / _MODEL, pot._model_path)
        except OSError as exc:
            raise DrxError(f"{d}: not a mace model folder ({exc})") from None
        pot._elements = meta["elements"]
        return pot
