"""MACE backend: trains from scratch on a few real structures, predicts, saves and reloads."""

import numpy as np
import pytest

from drx_workflows.errors import DrxError
from drx_workflows.mliap.base import backend_class
from drx_workflows.mliap.data import read_xsf_dir, split_sane

TINY = {"num_channels": 8, "max_num_epochs": 3, "correlation": 2, "num_interactions": 1, "batch_size": 2}


@pytest.fixture(scope="module")
def small():
    from conftest import SHARED

    sane, _ = split_sane(read_xsf_dir(SHARED / "data" / "drx_dft"))
    sixteen = [c for c in sane if c.n_atoms == 16]
    return sixteen[:6], sixteen[6:8]


@pytest.mark.slow
def test_mace_trains_predicts_and_reloads(small, tmp_path):
    import shutil

    from drx_workflows.mliap.isolated import train_and_evaluate_isolated

    train, test = small
    # as drx train and training fireworks run it: in its own process, loaded back from a folder that is gone
    result = train_and_evaluate_isolated("mace", train, test, "s", TINY)
    assert result.n_train == len(train)
    pot = result.potential
    preds = pot.predict(test)
    for c, p in zip(test, preds):
        assert np.isfinite(p.energy) and p.forces.shape == (c.n_atoms, 3)
        # E0s are averaged from the data, so even a barely trained model is near the right scale
        assert abs(p.energy - c.energy) / c.n_atoms < 2.0
    assert [p.energy for p in preds] == pytest.approx([p.energy for p in result.predictions["test"]], rel=1e-6)
    reloaded = backend_class("mace").load(pot.save(tmp_path / "m"))
    shutil.rmtree(tmp_path / "m")  # the loaded potential keeps its own copy of the model file
    again = reloaded.predict(test)
    assert [p.energy for p in again] == pytest.approx([p.energy for p in preds], rel=1e-9)
    assert (reloaded.save(tmp_path / "m2") / "model.model").exists()
    with pytest.raises(DrxError, match="not in the training data"):
        other = test[0].__class__(**{**test[0].__dict__, "species": ["Sc"] * test[0].n_atoms})
        pot.predict([other])


def test_mace_needs_a_few_structures(small):
    with pytest.raises(DrxError, match="at least 3"):
        backend_class("mace")(**TINY).fit(small[0][:2])
    with pytest.raises(DrxError, match="unknown hyperparameter"):
        backend_class("mace")(hidden=3)
