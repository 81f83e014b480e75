"""The production path on the server store: FireWorks' own ``qlaunch`` submits four SLURM jobs at once
(local one-node cluster), each running FireWorks' own ``rlaunch`` against ``drx server``, over a slice of
relaxations (surrogate VASP engine) with a training firework; plain ``lpad webgui`` is loaded in
headless Chromium while the jobs run and after, and ``drx status`` is read at the same moments.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("secantus")

sys.path.insert(0, str(Path(__file__).parent))
from browser_drill import browse, wait_http  # noqa: E402
from drx_drill import (  # noqa: E402
    clean_env,
    job_states,
    local_qadapter,
    prepare_slice,
    wait_for_jobs,
)
from server_drill import BIN, describe_run, drx, free_port, wait_for  # noqa: E402

N_STRUCTURES = int(os.environ.get("DRX_DRILL_STRUCTURES", "12"))  # the full drill (20): 4 min 15 s here
N_JOBS = 4
TINY_ANN = {"hidden_layers": [4], "epochs": 20, "radial_order": 4, "angular_order": 1}


def _snapshot(page: str) -> dict[str, int]:
    """The home page's 'Database snapshot' table: fireworks per state, as the browser rendered it."""
    rows = re.findall(r'<span class="label (\w+)">\s*\1\s*</span>\s*</td>\s*<td>\s*<center>\s*<a href="/fw/\1">([\d,]+)</a>',
                      page)
    assert rows, page[-3000:]
    return {state: int(n.replace(",", "")) for state, n in rows}


def _status_counts(text: str) -> dict[str, int]:
    """``drx status``: the relaxations per firework state, from its ``all`` table."""
    lines = [ln.split() for ln in text.splitlines() if ln.startswith("all ")]
    header, row = lines[-2], lines[-1]
    assert header[1:] and row[1:] and all(n.isdigit() for n in row[1:]), text
    return dict(zip(header[1:], map(int, row[1:])))


@pytest.mark.slow
def test_four_qlaunch_jobs_on_slurm_fill_a_slice_on_the_server_and_train_once(server, local_slurm, chromium,
                                                                                tmp_path):
    lp = str(server.launchpad)
    info = prepare_slice(tmp_path / "drill", n=N_STRUCTURES, launchpad=lp, tms="Mn,Ni,Co,Fe",
                         train={"backends": ["ann"], "hyperparameters": {"ann": TINY_ANN}, "test_fraction": 0.2})
    assert info["added"] == N_STRUCTURES
    fworker = info["fworker"]
    # each job: FireWorks' own rlaunch, pulling fireworks until none is left or can become READY
    rocket = f"rlaunch -l {lp} -w {fworker} rapidfire --nlaunches 0 --sleep 2 --timeout 1800"
    qadapter = local_qadapter(tmp_path / "my_qadapter.yaml", None, fworker, rocket_launch=rocket)
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    env = clean_env()

    port = free_port()
    webgui = subprocess.Popen([str(BIN / "lpad"), "-l", lp, "webgui", "-s", "--host", "127.0.0.1", "--port", str(port),
                               "--nworkers", "1"], cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = server.db()
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, webgui)
        before = _snapshot(html.unescape(browse(url, "server_before")))
        assert before.get("READY") == N_STRUCTURES and before.get("WAITING") == 1, before

        q = subprocess.run([str(BIN / "qlaunch"), "-l", lp, "-w", fworker, "-q", str(qadapter), "rapidfire",
                            "--nlaunches", str(N_JOBS), "-m", str(N_JOBS), "--sleep", "1"], cwd=jobs_dir, env=env,
                           capture_output=True, text=True, timeout=300)
        assert q.returncode == 0, q.stderr[-3000:]
        job_ids = re.findall(r"job_id is (\d+)", q.stdout + q.stderr)
        assert len(job_ids) == N_JOBS, q.stdout[-2000:] + q.stderr[-2000:]

        # while the jobs run: some relaxations done, not all
        logs = list(jobs_dir.glob("block_*/launcher_*/*.error")) + list((tmp_path / "fw_logs").glob("*"))

        def two_done() -> bool:
            assert not db.fireworks.count_documents({"state": "FIZZLED"}), describe_run(server)
            return db.tasks.count_documents({}) >= 2

        wait_for(two_done, 1200, "two task documents", logs=logs, describe=lambda: describe_run(server))
        during = _snapshot(html.unescape(browse(url, "server_during")))
        status_during = drx("--launchpad", lp, "status")
        assert status_during.returncode == 0, status_during.stderr

        wait_for_jobs(job_ids, timeout=2400)
        after = _snapshot(html.unescape(browse(url, "server_after")))
    finally:
        os.killpg(webgui.pid, signal.SIGTERM)
        webgui.wait(timeout=60)
    status_after = drx("--launchpad", lp, "status")

    # every firework ran, every structure has exactly one task document
    states = {fw["fw_id"]: fw["state"] for fw in db.fireworks.find({}, {"fw_id": 1, "state": 1})}
    assert set(states.values()) == {"COMPLETED"} and len(states) == N_STRUCTURES + 1, describe_run(server)
    per_structure: dict = {}
    for t in db.tasks.find({}, {"drx_id": 1, "state": 1, "dir_name": 1}):
        per_structure[t["drx_id"]] = per_structure.get(t["drx_id"], 0) + 1
        assert t["state"] == "successful" and str(jobs_dir) in t["dir_name"]
    assert per_structure == {i: 1 for i in info["drx_ids"]}

    # the training firework ran once, after the last relaxation had finished
    train = db.fireworks.find_one({"spec.drx_workflow": "drx-train"})
    train_launches = list(db.launches.find({"fw_id": train["fw_id"]}))
    assert len(train_launches) == 1 and train_launches[0]["state"] == "COMPLETED"
    relax_ends = [la["time_end"] for la in db.launches.find({"fw_id": {"$ne": train["fw_id"]}}, {"time_end": 1})]
    assert len(relax_ends) == N_STRUCTURES and max(relax_ends) <= train_launches[0]["time_start"]
    potential = db.potentials.find_one({"slice": "drill", "generation": 1})
    assert potential and potential["n_train_structures"] + potential["n_test_structures"] == N_STRUCTURES

    # four SLURM jobs, at least two of them at work at the same time
    assert job_states(job_ids) in ({j: "COMPLETED" for j in job_ids}, {})
    by_job: dict = {}
    for la in db.launches.find({}, {"launch_dir": 1, "time_start": 1, "time_end": 1}):
        job_dir = Path(la["launch_dir"]).relative_to(jobs_dir).parts[:2]  # block_*/launcher_* of a queue job
        by_job.setdefault(job_dir, []).append((la["time_start"], la["time_end"]))
    assert 2 <= len(by_job) <= N_JOBS, by_job
    spans = sorted((min(s for s, _ in v), max(e for _, e in v)) for v in by_job.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans

    # what the user watched: the webgui's counts and drx status moved while the jobs ran
    assert 2 <= during.get("COMPLETED", 0) < N_STRUCTURES + 1, during
    assert after.get("COMPLETED") == N_STRUCTURES + 1 and after.get("READY", 0) == 0, after
    assert status_after.returncode == 0
    assert _status_counts(status_during.stdout) != _status_counts(status_after.stdout), status_after.stdout
    assert _status_counts(status_after.stdout).get("COMPLETED") == N_STRUCTURES, status_after.stdout
    db.client.close()


@pytest.mark.slow
def test_a_queue_job_killed_with_kill_9_is_recovered_and_the_next_job_finishes(server, local_slurm, tmp_path):
    """The node dies under a SLURM job mid-relaxation (every process of the job gets SIGKILL): its firework stays
    RUNNING on the server; ``drx recover`` (FireWorks' lost-run detection) puts it back and the next job ends
    the slice, with one task document per structure."""
    lp = str(server.launchpad)
    info = prepare_slice(tmp_path / "drill", n=2, launchpad=lp)
    rocket = f"rlaunch -l {lp} -w {info['fworker']} rapidfire --nlaunches 0 --sleep 2 --timeout 600"
    qadapter = local_qadapter(tmp_path / "my_qadapter.yaml", None, info["fworker"], rocket_launch=rocket)
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    db = server.db()

    def one_job() -> str:
        q = subprocess.run([str(BIN / "qlaunch"), "-l", lp, "-w", info["fworker"], "-q", str(qadapter), "singleshot"],
                           cwd=jobs_dir, env=clean_env(), capture_output=True, text=True, timeout=300)
        assert q.returncode == 0, q.stderr[-3000:]
        return re.findall(r"job_id is (\d+)", q.stdout + q.stderr)[0]

    first = one_job()
    logs = list((tmp_path / "fw_logs").glob("*"))

    def second_relaxation_running() -> bool:
        assert not db.fireworks.count_documents({"state": "FIZZLED"}), describe_run(server)
        return (db.fireworks.count_documents({"state": "COMPLETED"}) == 1
                and db.fireworks.count_documents({"state": "RUNNING"}) == 1)

    wait_for(second_relaxation_running, 900, "one relaxation done and the next running", logs=logs,
             describe=lambda: describe_run(server))
    killed = subprocess.run(["scancel", "--signal=KILL", "--full", first], capture_output=True, text=True)
    assert killed.returncode == 0, killed.stderr
    wait_for_jobs([first], timeout=120)
    assert db.fireworks.count_documents({"state": "RUNNING"}) == 1  # what a dead node leaves
    assert db.tasks.count_documents({}) == 1

    r = drx("--launchpad", lp, "recover", "--expiration-secs", "1")
    assert r.returncode == 0, r.stderr
    assert "1 lost firework(s) put back to READY" in r.stdout, r.stdout
    assert db.fireworks.count_documents({"state": "RUNNING"}) == 0

    second = one_job()
    wait_for_jobs([second], timeout=900)
    assert {fw["state"] for fw in db.fireworks.find({}, {"state": 1})} == {"COMPLETED"}, describe_run(server)
    per_structure: dict = {}
    for t in db.tasks.find({}, {"drx_id": 1, "state": 1}):
        per_structure[t["drx_id"]] = per_structure.get(t["drx_id"], 0) + 1
        assert t["state"] == "successful"
    assert per_structure == {i: 1 for i in info["drx_ids"]}
    db.client.close()
