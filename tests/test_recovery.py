"""Reliability drills of the embedded store: kill -9 a launcher mid-slice and recover, submit the
same dataset three times, and the per-firework durability that makes recovery possible.

(Second process on the store, corrupted store file and an unreachable MongoDB URI are
drilled in tests/test_store.py.)
"""

import os
import signal
import subprocess
import time

import pytest
from conftest import run_drx
from drx_drill import (
    DRX,
    clean_env,
    documents,
    fw_states,
    prepare_slice,
    read_store,
    tasks_per_structure,
)


def _script_workflow(lp, n, seconds):
    from fireworks import Firework, ScriptTask, Workflow

    fws = [Firework(ScriptTask.from_str(f"sleep {seconds}"), name=f"drill-{i}", spec={"drx_id": f"drx-{i}"})
           for i in range(n)]
    lp.add_wf(Workflow(fws, name="drill"))


def test_each_firework_is_on_disk_when_it_completes(fresh_store, tmp_path):
    """durable_launches: the file (what a kill -9 leaves) shows every finished firework, before any exit."""
    from fireworks import FWorker
    from fireworks.core.rocket_launcher import rapidfire

    from drx_workflows.pipeline.launch.recovery import durable_launches

    lp = fresh_store.launchpad()
    _script_workflow(lp, 3, 0)
    fresh_store.save()
    seen = []
    import fireworks.core.rocket_launcher as rl

    real = rl.launch_rocket

    def spy(*a, **k):  # runs inside the durable wrapper: record what is on disk before each rocket
        seen.append(sorted(fw_states(read_store(fresh_store.config.path)).values()))
        return real(*a, **k)

    rl.launch_rocket = spy
    try:
        with durable_launches(fresh_store, lp):
            rapidfire(lp, FWorker(), m_dir=str(tmp_path), nlaunches=0, strm_lvl="ERROR")
    finally:
        rl.launch_rocket = real
    assert seen == [["READY"] * 3, ["COMPLETED", "READY", "READY"], ["COMPLETED", "COMPLETED", "READY"]]
    assert sorted(fw_states(read_store(fresh_store.config.path)).values()) == ["COMPLETED"] * 3


def test_recover_puts_a_lost_run_back_and_drops_its_task_document(fresh_store, tmp_path):
    from fireworks import FWorker

    from drx_workflows.pipeline.launch.recovery import recover

    lp = fresh_store.launchpad()
    _script_workflow(lp, 2, 0)
    launch_dir = tmp_path / "launcher_killed"
    launch_dir.mkdir()
    fw, launch_id = lp.checkout_fw(FWorker(), str(launch_dir))  # a launcher that then died
    # it had stored its task document before it was killed
    fresh_store.tasks.insert_one({"task_id": 1, "drx_id": fw.spec["drx_id"], "dir_name": f"node7:{launch_dir}"})
    fresh_store.tasks.insert_one({"task_id": 2, "drx_id": "other", "dir_name": f"node7:{launch_dir}_2"})

    dry = recover(fresh_store, rerun=False)
    assert dry.lost_fw_ids == [fw.fw_id] and lp.get_fw_by_id(fw.fw_id).state == "RUNNING"

    result = recover(fresh_store)
    assert result.lost_fw_ids == [fw.fw_id] and result.launch_dirs == [str(launch_dir)]
    assert result.removed_task_ids == [1]
    assert lp.get_fw_by_id(fw.fw_id).state == "READY"
    assert [t["task_id"] for t in fresh_store.tasks.find({})] == [2]
    assert "1 lost firework(s) put back to READY" in result.summary()
    assert recover(fresh_store).summary() == "no lost runs"


def test_submitting_the_same_dataset_three_times_adds_no_duplicates(tmp_path):
    info = prepare_slice(tmp_path / "s", n=2, per_ntm=4)  # 2 of the enumerated structures already submitted
    store, fworker = info["store"], info["fworker"]
    n_structures = len(documents(read_store(store), "structures"))
    assert n_structures > 2
    outs = []
    for _ in range(3):
        r = run_drx("--store", store, "submit", "--fworker", fworker, "--quiet", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0].startswith(f"{n_structures - 2} workflows added") and "2 already submitted" in outs[0]
    for out in outs[1:]:
        assert out.startswith("0 workflows added") and f"{n_structures} already submitted" in out
    db = read_store(store)
    ids = [fw["spec"].get("drx_id") for fw in documents(db, "fireworks")]
    assert len(documents(db, "workflows")) == n_structures
    assert sorted(set(ids)) == sorted(ids) and len(ids) == n_structures


@pytest.mark.slow
def test_kill_9_mid_slice_then_recover_gives_exactly_one_task_per_structure(tmp_path):
    info = prepare_slice(tmp_path / "s", n=2)  # killed while relaxing the second
    store, fworker, ids = info["store"], info["fworker"], info["drx_ids"]
    proc = subprocess.Popen(
        [DRX, "--store", store, "launch", "--fworker", fworker, "--launch-dir", tmp_path / "runs1"],
        env=clean_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 400
    try:
        while True:  # until the file shows one finished relaxation and the next one running
            assert proc.poll() is None, f"launcher ended early: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no relaxation finished in time"
            states = sorted(fw_states(read_store(store)).values())
            if "COMPLETED" in states and "RUNNING" in states:
                break
            time.sleep(0.5)
        time.sleep(2)  # mid-relaxation
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    db = read_store(store)  # exactly what the killed process left on disk
    states = fw_states(db)
    done = [fw for fw in documents(db, "fireworks") if fw["state"] == "COMPLETED"]
    assert list(states.values()).count("RUNNING") == 1
    assert len(done) >= 1
    per = tasks_per_structure(db)
    assert all(per.get(fw["spec"]["drx_id"]) == 1 for fw in done)  # finished work survived the kill -9

    r = run_drx("--store", store, "recover", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 lost firework(s) put back to READY" in r.stdout
    assert list(fw_states(read_store(store)).values()).count("RUNNING") == 0

    r = run_drx("--store", store, "launch", "--fworker", fworker, "--launch-dir", tmp_path / "runs2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    db = read_store(store)
    assert set(fw_states(db).values()) == {"COMPLETED"}
    assert tasks_per_structure(db) == {i: 1 for i in ids}
    assert all(t["state"] == "successful" for t in documents(db, "tasks"))
