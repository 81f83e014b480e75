"""Training orchestration: targets, metrics in the store, models in GridFS, the report folder.

Uses a small per-element linear model defined here as the backend, so these tests check
the orchestration, independently of any real backend.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from drx_workflows.constants import ISOLATED_ATOM_ENERGY
from drx_workflows.errors import DrxError
from drx_workflows.mliap import base
from drx_workflows.mliap.base import FitReport, Potential, Prediction
from drx_workflows.mliap.data import read_xsf_dir, split_sane
from drx_workflows.mliap.training import to_target, train_and_evaluate
from drx_workflows.slices.definition import stratified_split
from drx_workflows.store.potentials import load_potential, store_result


class LinearPotential(Potential):
    name = "linear-test"
    DEFAULTS = {"ridge": 0.0}

    def fit(self, train, warm_start=None):
        self.elements = sorted({s for c in train for s in c.species})
        x = np.array([[c.species.count(e) for e in self.elements] for c in train], float)
        y = np.array([c.energy for c in train])
        self.coef = np.linalg.lstsq(x, y, rcond=None)[0]
        return FitReport(seconds=0.0, n_train=len(train))

    def predict(self, configs):
        return [
            Prediction(energy=float(sum(self.coef[self.elements.index(s)] for s in c.species)), forces=np.zeros((c.n_atoms, 3)))
            for c in configs
        ]

    def save(self, directory):
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "m.json").write_text(json.dumps({"elements": self.elements, "coef": self.coef.tolist()}))
        return d

    @classmethod
    def load(cls, directory):
        m = json.loads((Path(directory) / "m.json").read_text())
        p = cls()
        p.elements, p.coef = m["elements"], np.array(m["coef"])
        return p


@pytest.fixture
def linear_backend(monkeypatch):
    monkeypatch.setitem(base.BACKENDS, "linear-test", f"{__name__}:LinearPotential")
    return "linear-test"


@pytest.fixture(scope="module")
def split(shared_dir=None):
    from conftest import SHARED

    sane, _ = split_sane(read_xsf_dir(SHARED / "data" / "drx_dft"))
    return stratified_split(sane[:120], lambda c: c.n_tm, 0.2, seed=1)


def test_train_evaluate_store_and_reload(fresh_store, linear_backend, split, tmp_path):
    train, test = split
    result = train_and_evaluate(linear_backend, train, test, "sample")
    # metrics recomputed independently with numpy
    e_ref = np.array([c.energy / c.n_atoms for c in test])
    e_pred = np.array([p.energy for p in result.potential.predict(test)]) / np.array([c.n_atoms for c in test])
    assert result.test_metrics.energy_mae == pytest.approx(np.abs(e_pred - e_ref).mean() * 1000)
    f_ref = np.concatenate([c.forces.ravel() for c in test])
    assert result.test_metrics.force_mae == pytest.approx(np.abs(f_ref).mean())

    doc = store_result(fresh_store, result)
    stored = fresh_store.potentials.find_one({"slice": "sample"})
    assert stored["test"]["energy_mae"] == pytest.approx(result.test_metrics.energy_mae)
    assert stored["n_train"] == len(train) and len(stored["parity"]["test"]["energies"]) == len(test)
    again = load_potential(fresh_store, doc, tmp_path / "m")
    assert [p.energy for p in again.predict(test)] == pytest.approx([p.energy for p in result.potential.predict(test)])


def test_train_metrics_on_a_seeded_sample_of_a_large_set(linear_backend, split, monkeypatch):
    from drx_workflows.mliap import training

    train, test = split
    monkeypatch.setattr(training, "TRAIN_SCORE_LIMIT", 30)
    result = train_and_evaluate(linear_backend, train, test, "sample")
    assert result.n_train == len(train) > 30 and result.n_train_scored == 30 == len(result.train_set)
    ids = [c.id for c in train]
    picked = [ids.index(c.id) for c in result.train_set]
    assert picked == sorted(picked) and len(set(picked)) == 30  # a sample, in the slice's order
    e_ref = np.array([c.energy / c.n_atoms for c in result.train_set])
    e_pred = np.array([p.energy for p in result.potential.predict(result.train_set)]) / np.array(
        [c.n_atoms for c in result.train_set])
    assert result.train_metrics.energy_mae == pytest.approx(np.abs(e_pred - e_ref).mean() * 1000)
    assert result.to_doc()["n_train_scored"] == 30 and len(result.to_doc()["parity"]["train"]["energies"]) == 30
    again = train_and_evaluate(linear_backend, train, test, "sample")
    assert [c.id for c in again.train_set] == [c.id for c in result.train_set]  # seeded
    monkeypatch.setattr(training, "TRAIN_SCORE_LIMIT", 1000)
    assert train_and_evaluate(linear_backend, train, test, "sample").n_train_scored == len(train)


def test_cohesive_target_subtracts_the_isolated_atoms(split):
    conf = split[0][0]
    cohesive = to_target([conf], "cohesive")[0]
    assert cohesive.energy == pytest.approx(conf.energy - sum(ISOLATED_ATOM_ENERGY[s] for s in conf.species))
    assert conf.energy != cohesive.energy  # the original is untouched
    with pytest.raises(DrxError, match="target"):
        to_target([conf], "binding")


def test_report_folder(fresh_store, linear_backend, split, tmp_path):
    from drx_workflows.pipeline.report import write_report

    for target in ("total", "cohesive"):
        store_result(fresh_store, train_and_evaluate(linear_backend, *split, "sample", target=target))
    report = write_report(fresh_store, tmp_path / "rep")
    text = report.read_text()
    assert "| linear-test | sample | cohesive |" in text and "| linear-test | sample | total |" in text
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    assert pngs == ["parity_linear-test_sample_cohesive.png", "parity_linear-test_sample_total.png", "per_ntm_mae.png"]
    assert all((tmp_path / "rep" / p).stat().st_size > 5000 for p in pngs)


def test_bad_training_input(linear_backend, split):
    train, test = split
    with pytest.raises(DrxError, match="unknown hyperparameter"):
        train_and_evaluate(linear_backend, train, test, hyperparameters={"nope": 1})
    broken = [*train[:3]]
    broken[0] = type(broken[0])(**{**broken[0].__dict__, "energy": None})
    with pytest.raises(DrxError, match="has no energy"):
        train_and_evaluate(linear_backend, broken, test)
    with pytest.raises(DrxError, match="is empty"):
        train_and_evaluate(linear_backend, [], test)


def test_no_potentials_no_report(fresh_store, tmp_path):
    from drx_workflows.pipeline.report import write_report

    with pytest.raises(DrxError, match="no trained potentials"):
        write_report(fresh_store, tmp_path / "r")
