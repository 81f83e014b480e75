"""qlaunch through a real one-node SLURM cluster (Debian slurm-wlm + munge, started by
launchers/local_slurm/slurm.sh), with the project's SLURM qadapter template and the surrogate
VASP engine, on the embedded store: jobs and qlaunch take turns on the store, nothing is lost."""

import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_drx
from drx_drill import (
    documents,
    fw_states,
    job_states,
    local_qadapter,
    prepare_slice,
    read_store,
    tasks_per_structure,
    wait_for_jobs,
)


def test_slurm_script_is_idempotent(local_slurm):
    script = REPO / "launchers" / "local_slurm" / "slurm.sh"
    r = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(script), "status"]).returncode == 0
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %P %T"], capture_output=True, text=True).stdout.split()
    assert out[:2] == ["localhost", "debug*"] and out[2] in ("idle", "mixed", "allocated")


def test_job_script_is_the_template_filled_in(tmp_path):
    from drx_workflows.pipeline.launch.configs import load_qadapter

    q = local_qadapter(tmp_path / "q.yaml", tmp_path / "store.json", tmp_path / "w.yaml")
    script = load_qadapter(q).get_script_str(str(tmp_path / "launcher_x"))
    assert "#SBATCH --partition=debug" in script and "#SBATCH --time=00:30:00" in script
    assert "#SBATCH --job-name=drx_relax" in script and "--account" not in script
    line = [ln for ln in script.splitlines() if " rlaunch " in ln][0]
    assert line.endswith("singleshot") and f"--store {tmp_path / 'store.json'}" in line and "--store-wait 600" in line


_LIGHT = """
import sys
from pathlib import Path
from fireworks import Firework, ScriptTask, Workflow
from drx_workflows.store.config import StoreConfig
from drx_workflows.store.client import open_store
from drx_workflows.store.dbfile import write_db_file
root = Path(sys.argv[1])
st = open_store(StoreConfig.embedded(root / "store.json"))
lp = st.launchpad()
for i in range(3):
    lp.add_wf(Workflow([Firework(ScriptTask.from_str("sleep 3; hostname > out.txt"), name=f"job-{i}")], name=f"wf-{i}"))
db = write_db_file(root / "db.json", st.config)
(root / "w.yaml").write_text(f"name: light\\nenv:\\n  vasp_cmd: 'true'\\n  db_file: {db}\\n  potcar_spec: true\\n")
st.close()
"""


def test_queue_jobs_and_qlaunch_take_turns_on_the_store(local_slurm, tmp_path):
    """Three short fireworks, two SLURM jobs at once: every job's COMPLETED state survives
    (an unguarded qlaunch/rlaunch would write back its own stale copy of the store)."""
    import sys

    r = subprocess.run([sys.executable, "-c", _LIGHT, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    qad = local_qadapter(tmp_path / "q.yaml", tmp_path / "store.json", tmp_path / "w.yaml")
    base = ["--store", tmp_path / "store.json", "qlaunch", "-q", qad, "-w", tmp_path / "w.yaml", "--launch-dir",
            tmp_path / "jobs"]
    r = run_drx(*base, "singleshot", cwd=tmp_path)
    assert r.returncode == 0 and len(re.findall(r"submitted job (\d+)", r.stdout)) == 1, r.stderr
    r = run_drx(*base, "rapidfire", "--maxjobs-queue", "2", "--sleep", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(re.findall(r"submitted job (\d+)", r.stdout)) == 2, r.stdout
    db = read_store(tmp_path / "store.json")
    assert fw_states(db) == {1: "COMPLETED", 2: "COMPLETED", 3: "COMPLETED"}
    dirs = sorted(launch["launch_dir"] for launch in documents(db, "launches"))
    assert len(dirs) == 3 and all((Path(d) / "out.txt").exists() for d in dirs)


@pytest.mark.slow
def test_qlaunch_singleshot_and_rapidfire_run_relaxations_to_completed(local_slurm, tmp_path):
    info = prepare_slice(tmp_path / "slice", n=3)
    store, fworker, ids = info["store"], info["fworker"], info["drx_ids"]
    qad = local_qadapter(tmp_path / "my_qadapter.yaml", store, fworker)
    jobs_dir = tmp_path / "jobs"
    base = ["--store", store, "qlaunch", "-q", qad, "-w", fworker, "--launch-dir", jobs_dir]

    r = run_drx(*base, "singleshot", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    first = re.findall(r"submitted job (\d+)", r.stdout)
    assert len(first) == 1, r.stdout
    wait_for_jobs(first)
    db = read_store(store)
    assert sorted(fw_states(db).values()) == ["COMPLETED", "READY", "READY"]
    assert len(documents(db, "tasks")) == 1

    # two jobs queued at once: they and qlaunch itself take turns on the store
    r = run_drx(*base, "rapidfire", "--maxjobs-queue", "2", "--sleep", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rest = re.findall(r"submitted job (\d+)", r.stdout)
    assert len(rest) == 2 and "no READY firework left and the queue is empty" in r.stdout, r.stdout
    wait_for_jobs(rest)  # qlaunch already waited; nothing may be left

    db = read_store(store)
    assert set(fw_states(db).values()) == {"COMPLETED"}
    assert tasks_per_structure(db) == {i: 1 for i in ids}  # no job's results were overwritten
    tasks = documents(db, "tasks")
    assert all(t["state"] == "successful" and t["surrogate"] is True for t in tasks)
    assert all(str(jobs_dir) in t["dir_name"] for t in tasks)  # each ran in a queue job's launcher dir
    # each job's own output is there (gzipped with the run's files by the firework's gzip_output)
    outs = [p.name for p in jobs_dir.glob("launcher_*/drx_relax-*.out*")]
    assert sorted(re.match(r"drx_relax-(\d+)\.out", n).group(1) for n in outs) == sorted(first + rest)
    states = job_states(first + rest)
    assert states == {j: "COMPLETED" for j in first + rest} or not states, states
