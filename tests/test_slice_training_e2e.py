"""A slice's training firework runs by itself once its relaxations (surrogate engine) have finished;
a grown slice trains again, warm-started from the previous generation's model."""

import numpy as np
import pytest

from drx_workflows.demo import write_demo_fworker
from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.pipeline.launch.local import launch
from drx_workflows.pipeline.training.firetasks import TRAIN_KIND
from drx_workflows.pipeline.training.slice_flows import TrainingRequest, submit_slice
from drx_workflows.slices.definition import SliceDefinition
from drx_workflows.store.potentials import load_potential
from drx_workflows.store.slices import define_slice
from drx_workflows.store.structures import save_records
from drx_workflows.store.training_data import frames_of_task

TINY_ANN = {"hidden_layers": [4], "epochs": 20, "radial_order": 4, "angular_order": 1}
LOOSE = {"EDIFFG": -0.1}


def _train_fw(lp, generation):
    return lp.fireworks.find_one({"spec.drx_workflow": TRAIN_KIND, "spec.generation": generation})


def _run_until_trained(store, fworker, tmp_path, generation):
    """One launch at a time; the training firework must stay WAITING while a relaxation is unfinished."""
    lp = store.launchpad()
    for _ in range(10):
        relax_open = lp.fireworks.count_documents(
            {"spec.drx_workflow": "drx-relax", "state": {"$in": ["READY", "WAITING", "RUNNING", "RESERVED"]}}
        )
        state = _train_fw(lp, generation)["state"]
        if relax_open:
            assert state == "WAITING"
        if state == "COMPLETED":
            return
        assert launch(store, fworker, nlaunches=1, launch_dir=tmp_path / "launches", strm_lvl="ERROR") == 1
    raise AssertionError("the training firework never completed")


@pytest.mark.slow
def test_slice_trains_by_itself_then_grows_with_warm_start(fresh_store, tmp_path):
    store = fresh_store
    first = EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=3, toc_per_ntm=0, max_cation_sites=4, seed=0)
    assert save_records(store, enumerate_drx(first).records) == 3
    state = define_slice(store, SliceDefinition("e2e", kind="all", test_fraction=0.34))
    assert len(state.train_ids) == 2 and len(state.test_ids) == 1
    submit_slice(store, "e2e", TrainingRequest(["ann"], {"ann": TINY_ANN}), user_incar_settings=LOOSE)

    # One training member fails for good: the surrogate refuses MD (IBRION 0) like a bad input
    lp = store.launchpad()
    doomed = state.train_ids[0]
    lp.fireworks.update_one(
        {"spec.drx_id": doomed},
        {"$set": {"spec._tasks.0.user_incar_settings": {**LOOSE, "IBRION": 0}, "spec._tasks.1.max_errors": 1}},
    )
    fworker = write_demo_fworker(tmp_path, store)
    _run_until_trained(store, fworker, tmp_path, 1)

    states = {fw["spec"]["drx_id"]: fw["state"] for fw in lp.fireworks.find({"spec.drx_workflow": "drx-relax"})}
    assert states[doomed] == "FIZZLED" and sorted(states.values()).count("COMPLETED") == 2
    gen1 = store.potentials.find_one({"slice": "e2e", "generation": 1})
    assert gen1["fizzled_members"] == [doomed] and gen1["missing_members"] == [doomed]
    assert gen1["n_train_structures"] == 1 and gen1["n_test_structures"] == 1

    # the stored test error, recomputed here from the test member's task document
    test_task = store.tasks.find_one({"drx_id": state.test_ids[0]})
    test_frames = frames_of_task(test_task)
    potential = load_potential(store, gen1, tmp_path / "gen1")
    pred = potential.predict(test_frames)
    mae = np.mean([abs(p.energy - c.energy) / c.n_atoms for p, c in zip(pred, test_frames)]) * 1000
    assert mae == pytest.approx(gen1["test"]["energy_mae"], rel=1e-6)

    # the slice grows by one structure: a new generation, only the newcomer is relaxed
    more = EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=3, toc_per_ntm=1, max_cation_sites=4, seed=0)
    records = [r for r in enumerate_drx(more).records if r.li_free]  # a top-of-charge (Li-free) ordering
    assert save_records(store, records) == 1
    grown = define_slice(store, SliceDefinition("e2e", kind="all", test_fraction=0.34))
    assert grown.generation == 2 and grown.added == [records[0].drx_id]
    remembered = TrainingRequest.of_slice(store, "e2e")  # what `drx submit --slice e2e` reuses
    assert remembered.backends == ["ann"] and remembered.hyperparameters == {"ann": TINY_ANN}
    result = submit_slice(store, "e2e", remembered, user_incar_settings=LOOSE)
    assert (result.relaxations_added, result.finished, result.training_added) == (1, 3, ["ann"])
    _run_until_trained(store, fworker, tmp_path, 2)

    gen2 = store.potentials.find_one({"slice": "e2e", "generation": 2})
    assert gen2["warm_start_from"]["potential_id"] == str(gen1["_id"])
    assert gen2["n_train_structures"] == 2  # the newcomer joined the surviving training member
    assert store.tasks.count_documents({}) == 3  # nothing relaxed twice
