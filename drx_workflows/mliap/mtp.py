"""Moment tensor potentials through maml's ``MTPotential`` and MLIP-2's ``mlp``.

No package registry ships ``mlp``: it has to be built from the MLIP-2 sources.  Without it
on PATH, :meth:`MtpPotential.fit` fails before any work with one line saying so.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.mliap import maml_common as mc
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration

MODEL_NAME = "fitted.mtp"
MLP_MISSING = (
    "backend mtp: MLIP-2's `mlp` executable is not on PATH and no package registry provides it; "
    "build MLIP-2 from source (https://gitlab.com/ashapeev/mlip-2: ./configure && make mlp) "
    "and put the resulting `mlp` binary on PATH"
)


def require_mlp() -> None:
    if shutil.which("mlp") is None:
        raise DrxError(MLP_MISSING)


class MtpPotential(Potential):
    name = "mtp"
    DEFAULTS = {
        "max_dist": 5.0,
        "radial_basis_size": 8,
        "max_iter": 500,
        "energy_weight": 1.0,
        "force_weight": 0.01,
        # XSF data carry no stresses: the zeros passed for them must not be fitted.
        "stress_weight": 0.0,
        "unfitted_mtp": "08g.mtp",  # maml's level-8 template
        "bfgs_conv_tol": 1e-3,
    }

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self._mtp = None
        self.elements: list[str] = []

    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        require_mlp()
        if warm_start is not None:
            raise DrxError("backend mtp: warm_start is not supported")
        if not train:
            raise DrxError("backend mtp: no training configurations")
        from maml.apps.pes import MTPotential

        hp = self.hyperparameters
        start = time.perf_counter()
        structures, energies, forces, stresses, _ = mc.to_maml_inputs(train, labelled=True)
        mtp = MTPotential(version="mlip-2")
        with mc.maml_session(("mlp",), self.name), mc.quiet_maml():
            try:
                mtp.train(structures, energies, forces, stresses, unfitted_mtp=hp["unfitted_mtp"],
                          max_dist=hp["max_dist"], radial_basis_size=int(hp["radial_basis_size"]),
                          max_iter=int(hp["max_iter"]), energy_weight=hp["energy_weight"],
                          force_weight=hp["force_weight"], stress_weight=hp["stress_weight"],
                          bfgs_conv_tol=hp["bfgs_conv_tol"])
            except RuntimeError as exc:
                raise DrxError(f"backend mtp: mlp failed: {exc}") from None
        self._mtp = mtp
        self.elements = list(mtp.elements)
        return FitReport(seconds=time.perf_counter() - start, n_train=len(train), details={"elements": self.elements})

    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        if self._mtp is None:
            raise DrxError("backend mtp: predict called before fit/load")
        if not configs:
            return []
        require_mlp()
        mc.check_elements(configs, self.elements, self.name)
        structures, energies, forces, stresses, rotations = mc.to_maml_inputs(configs, labelled=False)
        with mc.maml_session(("mlp",), self.name), mc.quiet_maml():
            try:
                _, df = self._mtp.evaluate(structures, energies, forces, stresses)
            except RuntimeError as exc:
                raise DrxError(f"backend mtp: mlp failed: {exc}") from None
        return [Prediction(energy=e, forces=f) for e, f in mc.split_efs(df, configs, rotations)]

    def save(self, directory: str | os.PathLike) -> Path:
        if self._mtp is None:
            raise DrxError("backend mtp: nothing to save, fit or load a model first")
        return mc.save_model(
            directory, self.name, lambda: self._mtp.write_param(fitted_mtp=MODEL_NAME), self.hyperparameters,
            self.elements, model=MODEL_NAME,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> MtpPotential:
        from maml.apps.pes import MTPotential

        d = Path(directory)
        meta = mc.read_meta(d, cls.name)
        pot = cls(**meta["hyperparameters"])
        pot.elements = list(meta["elements"])
        try:
            pot._mtp = MTPotential.from_config(str(d / MODEL_NAME), pot.elements)
        except (OSError, ValueError) as exc:
            raise DrxError(f"{d}: cannot load the MTP model ({exc})") from None
        return pot
