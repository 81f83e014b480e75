"""Slices over enumerated structures and their training fireworks (FireWorks' own state machine, no VASP)."""

import json

import pytest
from fireworks import FWAction, FWorker

from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.errors import DrxError
from drx_workflows.pipeline.relax.status import relax_status
from drx_workflows.pipeline.relax.submit import submit_structures
from drx_workflows.pipeline.training.firetasks import TRAIN_KIND
from drx_workflows.pipeline.training.slice_flows import TrainingRequest, submit_slice
from drx_workflows.slices.definition import SliceDefinition
from drx_workflows.store.slices import define_slice, load_slice_state
from drx_workflows.store.structures import save_records
from drx_workflows.vasp.metadata import WF_KIND_RELAX

TINY_ANN = {"hidden_layers": [4], "epochs": 5, "radial_order": 4, "angular_order": 1}


def _enumerate(store, per_ntm, seed=0, tms=("Mn", "Ni")):
    ds = EnumerationSettings(tms=tms, n_tm=(2,), per_ntm=per_ntm, toc_per_ntm=0, max_cation_sites=8, seed=seed)
    return save_records(store, enumerate_drx(ds).records)


def _fws(lp, **query):
    return {fw["fw_id"]: fw for fw in lp.fireworks.find(query)}


def _finish(lp, fw_id, state="COMPLETED"):
    """Run a firework's life cycle through the LaunchPad without running its tasks."""
    fw, launch_id = lp.checkout_fw(_worker(), ".", fw_id=fw_id)
    assert fw is not None, f"firework {fw_id} could not be checked out"
    lp.complete_launch(launch_id, action=FWAction(), state=state)
    return launch_id


def _worker():
    return FWorker(name="test")


def test_slice_grows_by_generations_and_keeps_its_split(fresh_store):
    _enumerate(fresh_store, per_ntm=6)
    state = define_slice(fresh_store, SliceDefinition("mnni", kind="all", test_fraction=0.34))
    assert state.generation == 1 and len(state.drx_ids) == 6
    assert len(state.test_ids) == 2 and set(state.train_ids) | set(state.test_ids) == set(state.drx_ids)
    first_train, first_test = list(state.train_ids), list(state.test_ids)

    again = define_slice(fresh_store, SliceDefinition("mnni", kind="all", test_fraction=0.34))
    assert again.generation == 1 and again.added == []  # nothing new: no new generation

    new = _enumerate(fresh_store, per_ntm=4, tms=("Fe", "Co"))
    assert new == 4
    grown = define_slice(fresh_store, SliceDefinition("mnni", kind="all", test_fraction=0.34))
    assert grown.generation == 2 and len(grown.added) == 4
    assert grown.train_ids[: len(first_train)] == first_train and grown.test_ids[: len(first_test)] == first_test
    members, train, test = load_slice_state(fresh_store, "mnni").members_of(1)
    assert sorted(members) == sorted(first_train + first_test) and train == first_train and test == first_test
    tagged = {d["drx_id"] for d in fresh_store.structures.find({"slices": "mnni"})}
    assert tagged == set(grown.drx_ids)

    with pytest.raises(DrxError, match="exists with another definition"):
        define_slice(fresh_store, SliceDefinition("mnni", kind="li_free"))
    with pytest.raises(DrxError, match="selects no stored structure"):
        define_slice(fresh_store, SliceDefinition("none", kind="composition", composition="LiScO2"))


def test_training_firework_waits_for_every_relaxation_and_tolerates_fizzled(fresh_store):
    _enumerate(fresh_store, per_ntm=4)
    define_slice(fresh_store, SliceDefinition("s", kind="all", test_fraction=0.25))
    lp = fresh_store.launchpad()
    result = submit_slice(fresh_store, "s", TrainingRequest(["ann"], {"ann": TINY_ANN}))
    assert result.relaxations_added == 4 and result.training_added == ["ann"]

    relax = _fws(lp, **{"spec.drx_workflow": WF_KIND_RELAX})
    (train_id, train_fw), = _fws(lp, **{"spec.drx_workflow": TRAIN_KIND}).items()
    assert train_fw["spec"]["_allow_fizzled_parents"] is True and train_fw["spec"]["generation"] == 1
    wf = lp.workflows.find_one({"nodes": train_id})
    parents = {int(p) for p, children in wf["links"].items() if train_id in children}
    assert parents == set(relax)

    ids = sorted(relax)
    _finish(lp, ids[0], "FIZZLED")
    for fw_id in ids[1:-1]:
        _finish(lp, fw_id)
        assert lp.get_fw_dict_by_id(train_id)["state"] == "WAITING"
    _finish(lp, ids[-1])
    train_now = lp.get_fw_dict_by_id(train_id)
    assert train_now["state"] == "READY"
    assert [p["spec"]["drx_id"] for p in train_now["spec"]["_fizzled_parents"]] == [relax[ids[0]]["spec"]["drx_id"]]

    again = submit_slice(fresh_store, "s", TrainingRequest(["ann"], {"ann": TINY_ANN}))
    assert again.training_added == [] and again.training_existing == ["ann"]
    assert lp.fireworks.count_documents({}) == 5


def test_members_relaxed_elsewhere_are_linked_not_rerun(fresh_store):
    _enumerate(fresh_store, per_ntm=4)
    lp = fresh_store.launchpad()
    docs = list(fresh_store.structures.find({}, {"_id": 0}).sort("drx_id", 1))
    submit_structures(fresh_store, docs[:3], progress=False)  # submitted before the slice existed
    originals = {fw["spec"]["drx_id"]: fw["fw_id"] for fw in lp.fireworks.find({})}
    done_id = docs[0]["drx_id"]
    _finish(lp, originals[done_id])  # finished: the slice needs no firework for it
    running_id = docs[1]["drx_id"]
    fw, running_launch = lp.checkout_fw(_worker(), ".", fw_id=originals[running_id])  # still running

    define_slice(fresh_store, SliceDefinition("s", kind="all", test_fraction=0.25))
    result = submit_slice(fresh_store, "s", TrainingRequest(["ann"], {"ann": TINY_ANN}))
    assert (result.finished, result.linked, result.relaxations_added) == (1, 2, 1)
    slice_relax = _fws(lp, **{"spec.drx_workflow": WF_KIND_RELAX, "fw_id": {"$nin": list(originals.values())}})
    assert sorted(fw["spec"]["drx_id"] for fw in slice_relax.values()) == sorted(d["drx_id"] for d in docs[1:])

    # Launchers pick the copies: a copy of a running or finished run takes over its launch instead of running
    copy_of_running = next(i for i, fw in slice_relax.items() if fw["spec"]["drx_id"] == running_id)
    for _ in range(4):
        fw, launch_id = lp.checkout_fw(_worker(), ".")
        if fw is None:
            break
        lp.complete_launch(launch_id, action=FWAction())
    assert lp.get_fw_dict_by_id(copy_of_running)["state"] == "RUNNING"
    assert lp.launches.count_documents({}) == 4  # done + running + one each for the two never run before
    lp.complete_launch(running_launch, action=FWAction())
    assert lp.get_fw_dict_by_id(copy_of_running)["state"] == "COMPLETED"
    train = lp.fireworks.find_one({"spec.drx_workflow": TRAIN_KIND})
    assert train["state"] == "READY"

    assert relax_status(fresh_store)["total"] == {"COMPLETED": 4}  # four structures, each counted once


def test_submit_slice_checks_before_adding(fresh_store):
    _enumerate(fresh_store, per_ntm=3)
    define_slice(fresh_store, SliceDefinition("s", kind="all", test_fraction=0.34))
    with pytest.raises(DrxError, match="unknown backend"):
        submit_slice(fresh_store, "s", TrainingRequest(["nope"]))
    with pytest.raises(DrxError, match="unknown hyperparameter"):
        submit_slice(fresh_store, "s", TrainingRequest(["ann"], {"ann": {"hidden": 3}}))
    with pytest.raises(DrxError, match="no slice named"):
        submit_slice(fresh_store, "missing", TrainingRequest(["ann"]))
    assert fresh_store.launchpad().fireworks.count_documents({}) == 0


def test_cli_slice_submit_train_and_status(tmp_path):
    from conftest import run_drx

    store = ["--store", tmp_path / "s.json"]
    r = run_drx(*store, "enumerate", "--tms", "Mn,Ni", "--n-tm", "2", "--per-ntm", "4", "--toc-per-ntm", "0",
                "--max-cation-sites", "8", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_drx(*store, "slice", "mnni", "--kind", "composition", "--composition", "LiMn0.5Ni0.5O2",
                "--test-fraction", "0.25", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    docs = [d for _, d in json.loads((tmp_path / "s.json").read_text())["drx"]["structures"]["documents"]]
    n = sum(d["tm_counts"]["Mn"] == d["tm_counts"]["Ni"] for d in docs)  # Mn:Ni 1:1 orderings
    assert 2 <= n < len(docs)
    assert f"generation 1, {n} structures ({n - 1} train / 1 test)" in r.stdout

    bad = run_drx(*store, "submit", "--train", "ann", "--skip-potcar-check", cwd=tmp_path)
    assert bad.returncode == 2 and "--train goes with --slice" in bad.stderr and bad.stderr.count("\n") == 1
    bad = run_drx(*store, "submit", "--slice", "mnni", "--train", "ann", "--set", "ann.layers=3",
                  "--skip-potcar-check", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown hyperparameter" in bad.stderr

    args = ["submit", "--slice", "mnni", "--train", "ann", "--set", "ann.epochs=5", "--skip-potcar-check", "--quiet"]
    r = run_drx(*store, *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{n} relaxations added" in r.stdout and "training fireworks added: ann" in r.stdout
    again = run_drx(*store, *args, cwd=tmp_path)
    assert "already submitted for this generation: ann" in again.stdout
    plain = run_drx(*store, "submit", "--slice", "mnni", "--skip-potcar-check", "--quiet", cwd=tmp_path)
    assert "already submitted for this generation: ann" in plain.stdout  # the slice remembers its training

    st = run_drx(*store, "status", cwd=tmp_path)
    assert "WAITING    train ann on mnni generation 1" in st.stdout
    assert [ln.split() for ln in st.stdout.splitlines() if ln.startswith("mnni")] == [["mnni", str(n), "0", "0", "0"]]


def test_growing_keeps_the_training_request(fresh_store):
    _enumerate(fresh_store, per_ntm=3)
    define_slice(fresh_store, SliceDefinition("s", kind="all", test_fraction=0.34))
    submit_slice(fresh_store, "s", TrainingRequest(["ann"], {"ann": TINY_ANN}, target="cohesive"))
    _enumerate(fresh_store, per_ntm=2, tms=("Fe", "Co"))
    assert define_slice(fresh_store, SliceDefinition("s", kind="all", test_fraction=0.34)).generation == 2
    kept = TrainingRequest.of_slice(fresh_store, "s")
    assert (kept.backends, kept.hyperparameters, kept.target) == (["ann"], {"ann": TINY_ANN}, "cohesive")


def _frame_task(drx_id, structure, energy, task_id):
    """A task document with one labelled ionic step (the part of atomate's schema training reads)."""
    forces = [[0.0, 0.0, 0.0] for _ in structure]
    step = {"structure": structure.as_dict(), "e_0_energy": energy, "forces": forces}
    return {"drx_id": drx_id, "task_id": task_id, "state": "successful", "last_updated": "2026-12-03",
            "calcs_reversed": [{"output": {"ionic_steps": [step]}}]}


def test_training_with_references_waits_for_them_and_trains_on_them(fresh_store):
    from drx_workflows.enumeration.records import structure_from_doc
    from drx_workflows.pipeline.relax.references import submit_references
    from drx_workflows.store.training_data import slice_data
    from drx_workflows.vasp.references import (
        LI_REFERENCE_ID,
        WF_KIND_REFERENCE,
        reference_structures,
    )

    _enumerate(fresh_store, per_ntm=4)
    define_slice(fresh_store, SliceDefinition("s", kind="all", test_fraction=0.25))
    lp = fresh_store.launchpad()
    assert submit_references(fresh_store).added == 5  # submitted on their own first
    originals = {fw["spec"]["drx_id"]: fw["fw_id"] for fw in lp.fireworks.find({"spec.drx_workflow": WF_KIND_REFERENCE})}
    _finish(lp, originals[LI_REFERENCE_ID])  # the relaxation is done: the slice needs no copy of it

    result = submit_slice(fresh_store, "s", TrainingRequest(["ann"], {"ann": TINY_ANN}, references=True))
    assert result.relaxations_added == 4 and result.references == 4
    assert "4 voltage reference calculations in the workflow" in result.summary()
    (train_id, train_fw), = _fws(lp, **{"spec.drx_workflow": TRAIN_KIND}).items()
    assert train_fw["spec"]["_tasks"][0]["references"] is True
    wf = lp.workflows.find_one({"nodes": train_id})
    parents = {int(p) for p, children in wf["links"].items() if train_id in children}
    copies = {i: fw for i, fw in _fws(lp, **{"spec.drx_workflow": WF_KIND_REFERENCE}).items() if i not in originals.values()}
    assert sorted(fw["spec"]["drx_id"] for fw in copies.values()) == sorted(set(reference_structures()) - {LI_REFERENCE_ID})
    assert set(copies) <= parents and len(parents) == 8
    assert fresh_store.slices.find_one({"name": "s"})["training"]["references"] is True
    assert submit_references(fresh_store).added == 0  # the copies count as submitted

    # training data: every member's frames on its side of the split, the references on the training side only
    state = load_slice_state(fresh_store, "s")
    docs = {d["drx_id"]: d for d in fresh_store.structures.find({}, {"_id": 0})}
    tasks = [_frame_task(i, structure_from_doc(docs[i]), -7.0 * len(docs[i]["structure"]["species"]), k)
             for k, i in enumerate(state.drx_ids)]
    with pytest.raises(DrxError, match="no finished reference calculation to train on"):
        fresh_store.tasks.insert_many(tasks)
        slice_data(fresh_store, "s", references=True)
    fresh_store.tasks.insert_many([_frame_task(i, s, -1.9, 100 + k) for k, (i, s) in enumerate(reference_structures().items())])
    plain = slice_data(fresh_store, "s")
    data = slice_data(fresh_store, "s", references=True)
    assert data.references == sorted(reference_structures())
    assert len(data.train) == len(plain.train) + 5 and [c.id for c in data.test] == [c.id for c in plain.test]
    assert {c.meta["drx_id"] for c in data.train[-5:]} == set(reference_structures())
