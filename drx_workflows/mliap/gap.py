"""SOAP-GAP through maml's ``GAPotential`` and QUIP 0.9.14's ``gap_fit``/``quip``.

QUIP comes from PyPI ``quippy-ase==0.9.14`` (0.10's ``quip`` segfaults on these machines,
and a 0.9.14 ``quip`` cannot read a 0.10 model); the binaries inside the package folder
are put on PATH by :mod:`drx_workflows.mliap.maml_common`.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap import maml_common as mc
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import Configuration

XML_NAME = "gap.xml"

_VIRIAL_FIELD = re.compile(r'dft_virial=(?:"([^"]*)"|\{([^}]*)\}|(\S+(?:\s+(?![A-Za-z_]\w*=)\S+)*))')


def _tab_virial(match: re.Match) -> str:
    values = (match.group(1) or match.group(2) or match.group(3) or "").split()
    if len(values) != 9:
        # QUIP rewrites maml's tab-separated virial into one number plus a stray key; the
        # backends never fit virials (XSF has none), so a zero tensor loses nothing.
        values = ["0.0"] * 9
    return "dft_virial=" + "\t".join(values)


def _maml_gap_class():
    from maml.apps.pes import GAPotential

    class FixedGAPotential(GAPotential):
        """maml's GAPotential with an extended-XYZ virial that survives QUIP 0.9.14.

        maml writes ``dft_virial`` as nine tab-separated unquoted numbers and reads it back
        with a regex that only accepts that form; QUIP 0.9.14 re-emits such a field as one
        number followed by a bare key, and maml's reader then fails with an IndexError.  We
        write it quoted (valid extended XYZ, kept intact by QUIP) and normalise whatever
        form is found back to maml's before its reader runs.
        """

        @staticmethod
        def _line_up(structure, energy, forces, virial_stress):
            text = GAPotential._line_up(structure, energy, forces, virial_stress)
            head, sep, rest = text.partition("\n")
            first, sep2, atoms = rest.partition("\n")
            first = re.sub(r"dft_virial=(\S+)", lambda m: 'dft_virial="' + " ".join(m.group(1).split("\t")) + '"',
                           first)
            return head + sep + first + sep2 + atoms

        @staticmethod
        def read_cfgs(filename, predict=False):
            text = Path(filename).read_text()
            fixed = _VIRIAL_FIELD.sub(_tab_virial, text)
            with tempfile.NamedTemporaryFile("w", suffix=".xyz", dir=".", delete=False) as f:
                f.write(fixed)
                name = f.name
            try:
                return GAPotential.read_cfgs(name, predict=predict)
            finally:
                os.unlink(name)

    return FixedGAPotential


class GapPotential(Potential):
    """Gaussian approximation potential with a SOAP descriptor per element."""

    name = "gap"
    DEFAULTS = {
        "l_max": 6,
        "n_max": 6,
        "atom_sigma": 0.5,
        "zeta": 4,
        "cutoff": 5.0,
        "cutoff_transition_width": 0.5,
        "delta": 1.0,
        "n_sparse": 200,
        "covariance_type": "dot_product",
        "sparse_method": "cur_points",
        "sparse_jitter": 1e-8,
        # Regulariser sigmas of gap_fit's default_sigma (energy eV, force eV/A, virial,
        # hessian), maml's defaults.
        "default_sigma": [0.0005, 0.1, 0.05, 0.01],
        # Per-element reference energies subtracted before fitting.  "fit": least squares on
        # the training set (a dot-product kernel with delta 1 cannot carry the -5 to -10
        # eV/atom of total DFT energies); or one number for all elements.
        "e0": "fit",
        "omp_threads": 2,
        # Extra SOAP keys for gap_fit, e.g. "Z_mix=T R_mix=T K=8" (compressed SOAP).  Empty in
        # the study; with 11 elements the full SOAP vector has 15,477 components and gap_fit
        # 0.9.14 needs ~80 MB of RAM per training atom for its gradients.
        "soap_extra": "",
    }

    BINARIES = ("gap_fit", "quip")

    def __init__(self, **hyperparameters):
        super().__init__(**hyperparameters)
        if len(self.hyperparameters["default_sigma"]) != 4:
            raise DrxError("backend gap: default_sigma needs 4 numbers (energy, force, virial, hessian)")
        self._gap = None
        self.elements: list[str] = []
        self.e0: dict[str, float] = {}

    def _e0(self, train: list[Configuration]) -> dict[str, float]:
        setting = self.hyperparameters["e0"]
        elements = mc.elements_of(train)
        if setting != "fit":
            return {e: float(setting) for e in elements}
        counts = np.array([[c.species.count(e) for e in elements] for c in train], dtype=float)
        energies = np.array([c.energy for c in train])
        coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
        return dict(zip(elements, map(float, coef)))

    def fit(self, train: list[Configuration], warm_start: Path | None = None) -> FitReport:
        if warm_start is not None:
            raise DrxError("backend gap: gap_fit solves the GP from scratch; warm_start is not supported")
        mc.require_binaries(self.BINARIES, self.name)
        if not train:
            raise DrxError("backend gap: no training configurations")
        hp = self.hyperparameters
        start = time.perf_counter()
        structures, energies, forces, stresses, _ = mc.to_maml_inputs(train, labelled=True)
        self.e0 = self._e0(train)
        self.elements = mc.elements_of(train)
        e0_arg = "{" + ":".join(f"{e}:{v!r}" for e, v in self.e0.items()) + "}"
        kwargs = {k: hp[k] for k in ("l_max", "n_max", "atom_sigma", "zeta", "cutoff", "cutoff_transition_width",
                                     "delta", "n_sparse", "covariance_type", "sparse_method", "sparse_jitter")}
        if hp["soap_extra"]:
            # maml builds the soap{...} string from a fixed key list; its last key carries the
            # extra settings into the descriptor string.
            kwargs["sparse_method"] = f"{hp['sparse_method']} {hp['soap_extra']}"
        gap = _maml_gap_class()()
        with self._session(), mc.quiet_maml():
            try:
                gap.train(structures, energies, forces, stresses, default_sigma=tuple(hp["default_sigma"]),
                          use_energies=True, use_forces=True, use_stress=False, e0=e0_arg, **kwargs)
            except RuntimeError as exc:
                raise DrxError(f"backend gap: gap_fit failed: {' '.join(map(str, exc.args))}") from None
        self._gap = gap
        seconds = time.perf_counter() - start
        return FitReport(seconds=seconds, n_train=len(train), details={"e0": self.e0, "elements": self.elements})

    def _session(self):
        return _ThreadedSession(self.BINARIES, self.name, self.hyperparameters["omp_threads"])

    def predict(self, configs: list[Configuration]) -> list[Prediction]:
        if self._gap is None:
            raise DrxError("backend gap: predict called before fit/load")
        if not configs:
            return []
        mc.check_elements(configs, self.elements, self.name)
        structures, energies, forces, stresses, rotations = mc.to_maml_inputs(configs, labelled=False)
        with self._session(), mc.quiet_maml():
            try:
                _, df = self._gap.evaluate(structures, energies, forces, stresses)
            except (RuntimeError, IndexError, ValueError) as exc:
                raise DrxError(f"backend gap: quip prediction failed ({exc})") from None
        return [Prediction(energy=e, forces=f) for e, f in mc.split_efs(df, configs, rotations)]

    def save(self, directory: str | os.PathLike) -> Path:
        if self._gap is None:
            raise DrxError("backend gap: nothing to save, fit or load a model first")
        return mc.save_model(
            directory, self.name, lambda: self._gap.write_param(XML_NAME), self.hyperparameters, self.elements,
            e0=self.e0, model=XML_NAME,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GapPotential:
        d = Path(directory)
        meta = mc.read_meta(d, cls.name)
        pot = cls(**meta["hyperparameters"])
        pot.elements = list(meta["elements"])
        pot.e0 = dict(meta.get("e0") or {})
        cwd = os.getcwd()
        # maml resolves the per-element sparse-point files relative to the working directory.
        os.chdir(d)
        try:
            plain = _maml_gap_class().from_config(XML_NAME)  # maml returns its own, unfixed class
            pot._gap = _maml_gap_class()(param=plain.param)
            pot._gap.elements = plain.elements
        except (OSError, ValueError) as exc:
            raise DrxError(f"{d}: cannot load the GAP model ({exc})") from None
        finally:
            os.chdir(cwd)
        return pot


class _ThreadedSession:
    """maml_session plus thread settings: gap_fit is OpenMP, and OpenBLAS threads under
    OpenMP warn on every call and can hang."""

    def __init__(self, binaries, backend, threads):
        self._inner = mc.maml_session(binaries, backend)
        self._threads = str(int(threads))
        self._saved = {}

    def __enter__(self):
        path = self._inner.__enter__()
        for k, v in (("OMP_NUM_THREADS", self._threads), ("OPENBLAS_NUM_THREADS", "1")):
            self._saved[k] = os.environ.get(k)
            os.environ[k] = v
        return path

    def __exit__(self, *exc):
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return self._inner.__exit__(*exc)
