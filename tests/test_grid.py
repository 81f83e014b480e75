"""Hyperparameter grid search as fireworks: points on a validation split, best recorded, final model trained."""

import shutil

import numpy as np
import pytest
from conftest import run_drx

from drx_workflows.errors import DrxError
from drx_workflows.pipeline.training.grid_search import (
    GRID_POINTS,
    GRID_SEARCHES,
    load_grid,
)
from drx_workflows.pipeline.training.grid_workflow import submit_grid
from drx_workflows.pipeline.training.slice_flows import (
    launch_ml_fireworks,
    training_status,
)
from drx_workflows.store.imports import import_slice, load_slice
from drx_workflows.store.potentials import load_potential

GRID = """\
ann:
  hidden_layers: [[3], [6]]
  epochs: [15]
  radial_order: [4]
  angular_order: [1]
"""


@pytest.fixture
def xsf12(shared_dir, tmp_path):
    folder = tmp_path / "xsf"
    folder.mkdir()
    for f in sorted((shared_dir / "data" / "drx_dft").glob("*.xsf"))[:12]:
        shutil.copy(f, folder)
    return folder


def test_grid_points_best_setting_and_final_model(fresh_store, xsf12, tmp_path):
    (tmp_path / "grid.yaml").write_text(GRID)
    import_slice(fresh_store, "g", xsf12, test_fraction=0.25, seed=0)
    grid = load_grid(tmp_path / "grid.yaml", ["ann"])
    assert grid == {"ann": [{"hidden_layers": [3], "epochs": 15, "radial_order": 4, "angular_order": 1},
                            {"hidden_layers": [6], "epochs": 15, "radial_order": 4, "angular_order": 1}]}
    grid_id, n = submit_grid(fresh_store, "g", grid, validation_fraction=0.3)
    assert n == 2
    launch_ml_fireworks(fresh_store, tmp_path / "launches")

    states = {row["name"]: row["state"] for row in training_status(fresh_store)}
    assert len(states) == 4 and set(states.values()) == {"COMPLETED"}  # 2 points, selection, final training

    train, test = load_slice(fresh_store, "g")
    points = list(fresh_store.collection(GRID_POINTS).find({"grid_id": grid_id}))
    assert sorted(p["index"] for p in points) == [0, 1]
    for p in points:  # the points never see the test split
        assert p["n_fit"] + p["n_validation"] == len(train) and p["n_validation"] >= 1
    search = fresh_store.collection(GRID_SEARCHES).find_one({"grid_id": grid_id})
    winner = min(points, key=lambda p: p["validation"]["energy_mae"])
    assert search["best"]["ann"]["index"] == winner["index"]
    assert search["best"]["ann"]["hyperparameters"] == grid["ann"][winner["index"]]

    final = fresh_store.potentials.find_one({"grid_id": grid_id})
    assert final["hyperparameters"]["hidden_layers"] == grid["ann"][winner["index"]]["hidden_layers"]
    potential = load_potential(fresh_store, final, tmp_path / "model")
    pred = potential.predict(test)
    mae = np.mean([abs(p.energy - c.energy) / c.n_atoms for p, c in zip(pred, test)]) * 1000
    assert mae == pytest.approx(final["test"]["energy_mae"], rel=1e-6)
    assert final["n_train"] == len(train) and final["n_test"] == len(test)


@pytest.mark.parametrize(
    "text, message",
    [
        ("ann: [1, 2\n", "parses neither as JSON nor as YAML"),
        ("[1, 2]\n", "expected a mapping backend"),
        ("nope:\n  x: [1]\n", "unknown backend 'nope'"),
        ("ann:\n  epochs: 5\n", "ann.epochs must be a non-empty list"),
        ("ann:\n  epochz: [5]\n", "unknown hyperparameter"),
        ("snap:\n  twojmax: [4]\n", "not among --backend ann"),
    ],
)
def test_bad_grid_file(tmp_path, text, message):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(DrxError, match=message):
        load_grid(path, ["ann"])


def test_bad_grid_file_cli_one_line_before_anything(tmp_path):
    (tmp_path / "grid.yaml").write_text("ann: [1, 2\n")
    r = run_drx("--store", tmp_path / "s.json", "train", "--slice", "x", "--grid", tmp_path / "grid.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "grid file" in r.stderr
    assert not (tmp_path / "s.json").exists()


def test_mtp_firework_fails_with_one_clear_line_without_mlp(fresh_store, xsf12, tmp_path, monkeypatch):
    from fireworks import Workflow

    from drx_workflows.pipeline.training.firetasks import training_firework

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no MLIP-2 `mlp` anywhere (there is none in any registry)
    import_slice(fresh_store, "g", xsf12, test_fraction=0.25, seed=0)
    fresh_store.launchpad().add_wf(Workflow([training_firework("g", "mtp")]))
    launch_ml_fireworks(fresh_store, tmp_path / "launches")
    (row,) = training_status(fresh_store)
    assert row["state"] == "FIZZLED"
    assert "`mlp` executable is not on PATH" in row["error"] and "\n" not in row["error"]
    assert fresh_store.potentials.count_documents({}) == 0
