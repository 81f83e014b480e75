"""A training that cannot finish in the queue job's walltime is refused in one line before it starts; one
stopped by the walltime's SIGTERM anyway ends as a one-line error (its firework FIZZLED), not a RUNNING ghost."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import run_drx, wait_for_training_child
from drx_drill import clean_env, wait_for_jobs

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import read_xsf_dir

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft"


def test_squeue_time_left_formats():
    from drx_workflows.mliap.duration import parse_slurm_time_left

    assert parse_slurm_time_left("0:45") == 45
    assert parse_slurm_time_left("29:59") == 29 * 60 + 59
    assert parse_slurm_time_left("1:00:00\n") == 3600
    assert parse_slurm_time_left("2-03:04:05") == ((2 * 24 + 3) * 60 + 4) * 60 + 5
    assert parse_slurm_time_left("UNLIMITED") is None and parse_slurm_time_left("NOT_SET") is None


def test_time_estimates_follow_the_work():
    from drx_workflows.mliap import duration

    configs = read_xsf_dir(SAMPLE)[:40]
    atoms = sum(c.n_atoms for c in configs)
    ann = duration.estimate_seconds("ann", {}, configs)
    longer = duration.estimate_seconds("ann", {"epochs": 4600}, configs)
    cores = max(1.0, duration.worker_cores() / duration.REFERENCE_CORES)
    # the default nets: 2,300 epochs over every atom at the measured cost per atom and epoch
    assert ann.seconds == pytest.approx((duration.ANN_START_S + atoms * 2300 * duration.ANN_PER_ATOM_EPOCH) / cores)
    assert longer.seconds - ann.seconds == pytest.approx(atoms * 2300 * duration.ANN_PER_ATOM_EPOCH / cores)
    forces = duration.estimate_seconds("ann", {"force_weight": 0.1}, configs)
    assert forces.seconds > ann.seconds and "force training" in forces.what
    snap, qsnap = (duration.estimate_seconds(b, {}, configs).seconds for b in ("snap", "qsnap"))
    assert qsnap > snap  # 465 quadratic terms per element beside snap's 31 columns
    # delta is one base pass: SevenNet l3i5 costs ~5x 7net-0
    slow, fast = (duration.estimate_seconds("delta", {"base": b}, configs).seconds for b in ("sevenn-l3i5", "sevenn-0"))
    assert slow > 4 * (fast - duration.DELTA_HEADS_S / cores)
    # delta: an energy-only pass to fit, then the test cells and (all of these few) training cells with forces
    one_pass = atoms * duration.BASE_PASS_PER_ATOM["sevenn-0"]
    assert fast == pytest.approx((duration.DELTA_HEADS_S + one_pass * (
        duration.BASE_ENERGY_ONLY_FRACTION["sevenn-0"] + 1 + duration.TEST_FRACTION)) / cores)
    # fine-tuning stops at its time limit
    passes = duration.FINETUNE_PASSES + 1 + duration.TEST_FRACTION
    assert duration.estimate_seconds("finetune", {"time_limit": 1.0, "base": "sevenn-0"}, configs).seconds == (
        pytest.approx((60 + passes * one_pass) / cores))
    # beyond TRAIN_SCORE_LIMIT training cells only a sample of them is predicted after training
    many = configs * 100  # 4,000 cells
    big = duration.estimate_seconds("delta", {"base": "sevenn-0"}, many).seconds * cores - duration.DELTA_HEADS_S
    assert big == pytest.approx(100 * one_pass * (duration.BASE_ENERGY_ONLY_FRACTION["sevenn-0"] + 0.25 + duration.TEST_FRACTION))
    assert duration.estimate_seconds("mtp", {}, configs) is None


def test_outside_a_queue_job_nothing_is_refused_for_time(monkeypatch):
    from drx_workflows.mliap.duration import check_time, walltime_left_seconds

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("PBS_JOBID", raising=False)
    assert walltime_left_seconds() is None
    assert check_time("ann", {"epochs": 10**8}, read_xsf_dir(SAMPLE)[:5]).seconds > 3600


def test_max_minutes_is_a_walltime_of_ones_own(monkeypatch, tmp_path):
    from drx_workflows.mliap import duration

    configs = read_xsf_dir(SAMPLE)[:5]
    long = {"epochs": 10**6}
    monkeypatch.setattr(duration, "walltime_left_seconds", lambda: None)
    with pytest.raises(DrxError, match=r"^ann on 5 structures needs ~\d[\d,]* min .*more than --max-minutes 2; "
                                       r"use --set ann\.epochs=…, fewer structures, or a larger --max-minutes$"):
        duration.check_time("ann", long, configs, max_seconds=120)
    assert duration.check_time("ann", long, configs, max_seconds=10**7).seconds > 120
    # inside a queue job the shorter of the two counts
    monkeypatch.setattr(duration, "walltime_left_seconds", lambda: 59.0)
    with pytest.raises(DrxError, match="this job has 59 s of walltime left"):
        duration.check_time("ann", long, configs, max_seconds=10**7)
    monkeypatch.setattr(duration, "walltime_left_seconds", lambda: 10.0**7)
    with pytest.raises(DrxError, match="more than --max-minutes 2;"):
        duration.check_time("ann", long, configs, max_seconds=120)

    # through the command line: refused in one line before any backend starts
    monkeypatch.undo()
    xsf = tmp_path / "xsf"
    xsf.mkdir()
    for f in sorted(SAMPLE.glob("*.xsf"))[:12]:
        shutil.copy(f, xsf)
    store = tmp_path / "s.json"
    assert run_drx("--store", store, "import", xsf, "--name", "g", "--test-fraction", "0.25", cwd=tmp_path).returncode == 0
    r = run_drx("--store", store, "train", "--slice", "g", "--backend", "snap,ann", "--set", "ann.epochs=2000000",
                "--max-minutes", "1", cwd=tmp_path)
    assert r.returncode == 2 and "training" not in r.stdout, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drx: error: ann on 9 structures needs ~"), r.stderr
    assert "more than --max-minutes 1;" in lines[0]
    r = run_drx("--store", store, "train", "--slice", "g", "--backend", "snap", "--max-minutes", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--max-minutes" in r.stderr


@pytest.mark.slow
def test_drx_train_in_a_slurm_job_refuses_what_its_walltime_cannot_hold(local_slurm, tmp_path):
    """A real one-minute SLURM job: squeue's time left is read, and an ann run estimated far beyond it
    stops with one line before training; a short one in the same job trains."""
    import shutil

    xsf = tmp_path / "xsf"
    xsf.mkdir()
    for f in sorted(SAMPLE.glob("*.xsf"))[:12]:
        shutil.copy(f, xsf)
    store = tmp_path / "s.json"
    r = run_drx("--store", store, "import", xsf, "--name", "g", "--test-fraction", "0.25", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    drx = f"{sys.executable} -m drx_workflows.cli --store {store}"
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"{sys.executable} -c 'from drx_workflows.mliap.duration import walltime_left_seconds as w; print(\"LEFT\", w())'\n"
        f"{drx} train --slice g --backend ann --set ann.epochs=2000000 > long.out 2> long.err; echo \"LONG $?\"\n"
        f"{drx} train --slice g --backend snap > short.out 2> short.err; echo \"SHORT $?\"\n")
    script.chmod(0o755)
    r = subprocess.run(["sbatch", "--parsable", "--time=1", "-p", "debug", "-o", str(tmp_path / "job.log"),
                        "-D", str(tmp_path), str(script)], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, r.stderr
    wait_for_jobs([r.stdout.strip().split(";")[0]], timeout=300)
    log = (tmp_path / "job.log").read_text()
    left = float(log.split("LEFT ", 1)[1].split()[0])
    assert 0 < left <= 60
    assert "LONG 2" in log, log
    err = (tmp_path / "long.err").read_text().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("drx: error: ann on 9 structures needs ~"), err
    assert "of walltime left; use --set ann.epochs=" in err[0] and "training" not in (tmp_path / "long.out").read_text()
    assert "SHORT 0" in log, log + (tmp_path / "short.err").read_text()
    assert "estimated ~" in (tmp_path / "short.out").read_text()


def _sigterm_when_training_starts(done: threading.Event, children: list):
    """The queue's part at the walltime: SIGTERM to the launcher once its training process exists."""
    pid = wait_for_training_child(done)
    if pid is not None:
        time.sleep(1.0)
        children.append(pid)
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_training_firework_stopped_by_sigterm_fizzles_with_the_reason(fresh_store, tmp_path):
    import shutil

    from fireworks import Workflow

    from drx_workflows.pipeline.training.firetasks import training_firework
    from drx_workflows.pipeline.training.slice_flows import (
        launch_ml_fireworks,
        training_status,
    )
    from drx_workflows.store.imports import import_slice

    xsf = tmp_path / "xsf"
    xsf.mkdir()
    for f in sorted(SAMPLE.glob("*.xsf"))[:12]:
        shutil.copy(f, xsf)
    import_slice(fresh_store, "g", xsf, test_fraction=0.25, seed=0)
    fresh_store.launchpad().add_wf(Workflow([training_firework("g", "ann", {"epochs": 10**6})]))
    before = signal.getsignal(signal.SIGTERM)
    done, children = threading.Event(), []
    stopper = threading.Thread(target=_sigterm_when_training_starts, args=(done, children))
    stopper.start()
    try:
        launch_ml_fireworks(fresh_store, tmp_path / "launches")
    finally:
        done.set()
        stopper.join()
    assert children and not Path(f"/proc/{children[0]}").exists()  # the training process went with it
    assert signal.getsignal(signal.SIGTERM) is before  # the launcher's own handling is back
    row = {r["name"]: r for r in training_status(fresh_store)}["train ann on g"]
    assert row["state"] == "FIZZLED"
    assert row["error"].startswith("ann training on 9 structures was stopped by SIGTERM (to its launcher) after ")
    assert "walltime" in row["error"] and "\n" not in row["error"]
    assert list(fresh_store.potentials.find({})) == []
