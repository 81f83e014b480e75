"""Active learning as one growing workflow: training -> selection -> relaxations of the picks -> training ...

Relaxations run on the surrogate engine; the potential is a small delta on CHGNet (fast).
"""

from __future__ import annotations

import numpy as np
import pytest

from drx_workflows.demo import write_demo_fworker
from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.errors import DrxError
from drx_workflows.pipeline.launch.local import launch
from drx_workflows.pipeline.training.active import ActiveRequest, stop_reason
from drx_workflows.pipeline.training.firetasks import SELECT_KIND, TRAIN_KIND
from drx_workflows.pipeline.training.slice_flows import (
    TrainingRequest,
    submit_slice,
    training_status,
)
from drx_workflows.slices.definition import SliceDefinition
from drx_workflows.store.potentials import load_potential
from drx_workflows.store.slices import (
    add_selected_generation,
    define_slice,
    load_slice_state,
)
from drx_workflows.store.structures import save_records

FAST_DELTA = {"base": "chgnet", "ensemble": 4, "epochs": 150, "hidden": 8}
LOOSE = {"EDIFFG": -0.1}


def _slice_with_pool(store, name="al", fraction=0.3):
    settings = EnumerationSettings(tms=("Mn", "Ni"), n_tm=(1, 2), per_ntm=5, toc_per_ntm=0, max_cation_sites=4, seed=0)
    n = save_records(store, enumerate_drx(settings).records)
    state = define_slice(store, SliceDefinition(name, kind="random", fraction=fraction, test_fraction=0.34, seed=1))
    return n, state


def _run_everything(store, fworker, tmp_path, max_launches=60):
    lp = store.launchpad()
    for _ in range(max_launches):
        if not lp.fireworks.count_documents({"state": "READY"}):
            return
        launch(store, fworker, nlaunches=1, launch_dir=tmp_path / "launches", strm_lvl="ERROR")
    raise AssertionError("fireworks still READY after %d launches" % max_launches)


def _pool_ids(store, state):
    return sorted(d["drx_id"] for d in store.structures.find({}, {"drx_id": 1}) if d["drx_id"] not in set(state.drx_ids))


@pytest.mark.slow
def test_two_rounds_run_as_one_workflow_and_pick_the_most_uncertain(fresh_store, tmp_path):
    _two_rounds(fresh_store, tmp_path)


@pytest.mark.slow
def test_two_rounds_on_the_server_store(server, tmp_path):
    """The same loop against a real ``drx server`` (secantusdb), the store many queue jobs share."""
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig

    store = open_store(StoreConfig.from_launchpad_file(server.launchpad))
    try:
        _two_rounds(store, tmp_path)
    finally:
        store.close()


def _two_rounds(store, tmp_path):
    n_structures, state = _slice_with_pool(store)
    first = list(state.drx_ids)
    assert 2 <= len(first) < n_structures - 4
    result = submit_slice(store, "al", TrainingRequest(["delta"], {"delta": FAST_DELTA}),
                          active=ActiveRequest(2, 2, "uncertainty"), user_incar_settings=LOOSE)
    assert result.active
    fworker = write_demo_fworker(tmp_path, store)
    _run_everything(store, fworker, tmp_path)

    lp = store.launchpad()
    assert {fw["state"] for fw in lp.fireworks.find({})} == {"COMPLETED"}
    final = load_slice_state(store, "al")
    assert [g.generation for g in final.generations] == [1, 2, 3]
    assert [g.selected_after for g in final.generations] == [None, 1, 2]
    assert final.test_ids == state.test_ids  # every generation is scored on the same cells
    assert [g.n_train for g in final.generations] == [len(state.train_ids) + 2 * k for k in range(3)]
    # one training per generation, two selections (rounds=2): nothing after the last training
    trains = sorted(fw["spec"]["generation"] for fw in lp.fireworks.find({"spec.drx_workflow": TRAIN_KIND}))
    selects = sorted(fw["spec"]["active_round"] for fw in lp.fireworks.find({"spec.drx_workflow": SELECT_KIND}))
    assert trains == [1, 2, 3] and selects == [1, 2]
    # every member was relaxed once and has a task document
    assert sorted(t["drx_id"] for t in store.tasks.find({})) == sorted(final.drx_ids)

    # round 1's picks are the two largest ensemble spreads of generation 1's potential over the pool
    # left then, recomputed here with the stored potential's own predict
    gen1 = store.potentials.find_one({"slice": "al", "generation": 1})
    potential = load_potential(store, gen1, tmp_path / "gen1")
    from drx_workflows.pipeline.ranking import rankable_configs

    pool_docs = [d for d in store.structures.find({}, {"_id": 0}) if d["drx_id"] not in set(first)]
    configs, _ = rankable_configs(potential, pool_docs)
    spread = {c.id: p.uncertainty for c, p in zip(configs, potential.predict(configs))}
    expected = sorted(spread, key=lambda i: -spread[i])[:2]
    assert sorted(final.drx_ids[len(first): len(first) + 2]) == sorted(expected)
    # (selection ran the heads on the base passes kept in the store; that predict ran the base itself)
    assert store.db["base_evaluations"].count_documents({}) >= len(pool_docs)

    text = "\n".join(r.get("outcome", "") for r in training_status(store))
    assert "round 1: picked 2 (uncertainty) -> generation 2" in text and "round 2: picked 2" in text

    # a selection firework run again picks nothing new and appends nothing
    n_fws = lp.fireworks.count_documents({})
    select1 = lp.fireworks.find_one({"spec.drx_workflow": SELECT_KIND, "spec.active_round": 1})["fw_id"]
    lp.rerun_fw(select1)
    _run_everything(store, fworker, tmp_path)
    again = load_slice_state(store, "al")
    assert again.drx_ids == final.drx_ids and len(again.generations) == 3
    assert lp.fireworks.count_documents({}) == n_fws


def test_a_selection_is_recorded_once_and_the_test_split_stays(fresh_store):
    store = fresh_store
    _, state = _slice_with_pool(store)
    pool = _pool_ids(store, state)
    grown = add_selected_generation(store, "al", pool[:2], 1, "random")
    assert grown.generation == 2 and grown.added == pool[:2] and grown.test_ids == state.test_ids
    rerun = add_selected_generation(store, "al", pool[2:4], 1, "random")  # a rerun: its first picks stand
    assert rerun.added == pool[:2] and load_slice_state(store, "al").drx_ids == state.drx_ids + pool[:2]
    assert set(pool[:2]) <= {d["drx_id"] for d in store.structures.find({"slices": "al"})}
    with pytest.raises(DrxError, match="at generation 2"):
        add_selected_generation(store, "al", pool[4:5], 1 + 2, "random")


def test_the_loop_stops_when_the_test_error_stops_falling(fresh_store):
    store = fresh_store
    _slice_with_pool(store)

    def potential(generation, mae):
        store.potentials.insert_one({"slice": "al", "backend": "delta", "target": "total", "generation": generation,
                                     "created": f"2026-01-0{generation}", "test": {"energy_mae": mae}})

    potential(1, 10.0)
    request = ActiveRequest(2, 5, min_improvement=0.05)
    assert stop_reason(store, "al", "delta", 1, "total", request, 1) is None
    potential(2, 9.0)  # -10 %: go on
    assert stop_reason(store, "al", "delta", 2, "total", request, 2) is None
    potential(3, 8.8)  # -2.2 %, less than 5 %: stop
    assert "did not fall by 5 % below 9.00" in stop_reason(store, "al", "delta", 3, "total", request, 3)
    assert stop_reason(store, "al", "delta", 3, "total", ActiveRequest(2, 5), 3) is None  # 0: any fall goes on
    assert stop_reason(store, "al", "delta", 3, "total", ActiveRequest(2, 2), 3) == "2 round(s) done"


def test_bad_active_requests_are_refused_before_anything_is_submitted(fresh_store):
    store = fresh_store
    _slice_with_pool(store)
    for request, message in [
        (ActiveRequest(0, 2), "--active N >= 1"),
        (ActiveRequest(2, 2, "best"), "unknown selection strategy"),
        (ActiveRequest(2, 2, backend="ann"), "which --train does not train"),
        (ActiveRequest(2, 2, "uncertainty", backend="snap"), "only delta gives"),
    ]:
        with pytest.raises(DrxError, match=message):
            submit_slice(store, "al", TrainingRequest(["delta", "snap"]), active=request)
    assert store.launchpad().fireworks.count_documents({}) == 0
    np.testing.assert_equal(len(load_slice_state(store, "al").generations), 1)


def test_drx_submit_active_without_a_training_slice_is_one_line(tmp_path):
    from conftest import run_drx

    for extra in ([], ["--slice", "al"], ["--train", "delta"]):
        r = run_drx("--store", tmp_path / "s.json", "submit", "--active", "3", *extra, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip() == \
            "drx: error: --active goes with --slice and --train (it chooses after each training)"
    assert not (tmp_path / "s.json").exists()


class _ShapeDescriptor:
    """A stand-in potential for choose's plumbing: the descriptor is the cell's sorted distances from its centre."""

    elements: list = []

    def __init__(self):
        self.scored: list[str] = []

    def predict_energies(self, configs):
        from drx_workflows.mliap.base import Prediction

        self.scored += [c.id for c in configs]
        return [Prediction(energy=0.0, forces=None, descriptor=_shape(c.positions)) for c in configs]


def _shape(positions):
    p = np.asarray(positions, dtype=float)
    return np.sort(np.linalg.norm(p - p.mean(0), axis=1))[:4]


def test_representative_selection_scores_the_members_and_picks_as_the_strategy_says(fresh_store):
    from drx_workflows.enumeration.records import structure_from_doc
    from drx_workflows.pipeline.training.active import candidate_docs, choose
    from drx_workflows.selection.strategies import select

    store = fresh_store
    _, state = _slice_with_pool(store)
    potential = _ShapeDescriptor()
    picks, skipped = choose(store, state, potential, ActiveRequest(2, 1, "representative", seed=3), after=1)
    members = list(store.structures.find({"drx_id": {"$in": state.train_ids}}, {"_id": 0}))
    pool = candidate_docs(store, state)
    # the training members are scored beside the candidates: the clusters they fall in count as covered
    assert skipped == 0 and sorted(potential.scored) == sorted(d["drx_id"] for d in members + pool)
    docs = members + pool
    structures = [structure_from_doc(d) for d in docs]
    elements = sorted({s.specie.symbol for st in structures for s in st})
    x = np.array([np.concatenate([_shape(st.cart_coords),
                                  [sum(s.specie.symbol == e for s in st) / len(st) for e in elements]])
                  for st in structures])
    expected = select("representative", 2, list(range(len(members))), list(range(len(members), len(docs))), x, seed=3 + 1)
    assert picks == [docs[i]["drx_id"] for i in expected]
    assert not set(picks) & set(state.drx_ids)
