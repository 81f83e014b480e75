"""The main job end to end on a tiny dataset: enumerate -> submit -> surrogate relaxations under
custodian -> task documents -> ANN training -> report; a rerun recomputes nothing. The demo's store is
its own local server (started for it, stopped at its end), or with ``server=False`` the embedded file."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("secantus")

sys.path.insert(0, str(Path(__file__).parent))
from drx_drill import clean_env  # noqa: E402


def _server_db(root):
    """Start the demo's (stopped) server again and open its database, as a user looking at the results would."""
    import pymongo

    from drx_workflows.store.config import StoreConfig
    from drx_workflows.store.server import start

    info, started = start(root / "server")
    assert started, "the demo left its server running"
    c = StoreConfig.from_launchpad_file(info.launchpad_file)
    return pymongo.MongoClient(c.host, c.port, serverSelectionTimeoutMS=10000)[c.name]


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from drx_workflows.demo import DemoSettings, run_demo
    from drx_workflows.enumeration.sampling import EnumerationSettings
    tiny = (EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=3, toc_per_ntm=1, max_cation_sites=4, seed=0),)
    summary = run_demo(DemoSettings(root=Path(sys.argv[1]), datasets=tiny, extra_incar={"EDIFFG": -0.1},
                                    ann={"hidden_layers": [5], "epochs": 30, "radial_order": 4, "angular_order": 2}))
    summary["store"] = summary["store"].kind
    print("SUMMARY " + json.dumps(summary))
    """
)


def _run(root):
    # 5-10 min alone; the timeout leaves room for a loaded machine (the demo's server is stopped by the test)
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True, timeout=2400,
                       env=clean_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return r.stdout, json.loads(line[len("SUMMARY "):])


@pytest.mark.slow
def test_demo_end_to_end_and_rerun_reuses_everything(tmp_path):
    from drx_workflows.store.server import running_pid, stop

    root = tmp_path / "demo"
    try:
        out, summary = _run(root)
        assert summary["store"] == "mongodb"
        assert f"watch it live in FireWorks' webgui: {sys.executable.rsplit('/', 1)[0]}/lpad -l {root / 'server'}" in out
        assert re.search(r"database: server \(pid \d+\) stopped in", out), out
        assert running_pid(root / "server") is None
        _check_first_run(out, summary, root, _server_db(root))

        out2, summary2 = _run(root)  # finds the server running, stops it at its end
        assert "(0 new)" in out2 and "0 added, 4 already submitted" in out2 and "0 launches this run" in out2
        assert "training firework already there" in out2
        assert running_pid(root / "server") is None
        db = _server_db(root)
        assert db.tasks.count_documents({}) == 9 and db.potentials.count_documents({}) == 1
    finally:
        stop(root / "server")


def _check_first_run(out, summary, root, db):
    assert summary["structures"] == 4 and summary["tasks"] == 4 and summary["complete"]
    assert "slice 'demo' complete: 4 task documents" in out
    assert "training firework 'train ann on demo generation 1' started by itself: COMPLETED" in out
    tasks = list(db.tasks.find({}))
    assert len(tasks) == 9  # four structures, the bcc Li relaxation and its four single points
    assert all(t["surrogate"] is True and t["state"] == "successful" for t in tasks)
    assert all(t["output"]["bandgap"] is None for t in tasks)  # the surrogate's placeholder band data is dropped
    structures = {doc["drx_id"] for doc in db.structures.find({})}
    refs = {"ref-Li-bcc", "ref-Li-bcc-v0.85", "ref-Li-bcc-v0.92", "ref-Li-bcc-v1.08", "ref-Li-bcc-v1.15"}
    assert {t["drx_id"] for t in tasks} == structures | refs
    assert "with 5 bcc Li voltage reference calculations" in out
    assert "average Li-intercalation voltages (surrogate engine, NOT DFT)" in out
    # the engine's voltage of LiMn0.5Ni0.5O2 and the demo ANN's (its own relaxations, its own bcc Li)
    assert re.search(r"LiMn0\.5Ni0\.5O2: -?\d+\.\d{3} V \(surrogate", out), out
    assert re.search(r"LiMn0\.5Ni0\.5O2 -?\d+\.\d{3} V \(surrogate engine -?\d+\.\d{3} V; potential trained", out), out
    potentials = list(db.potentials.find({}))
    assert len(potentials) == 1 and potentials[0]["backend"] == "ann" and potentials[0]["surrogate"] is True
    assert potentials[0]["generation"] == 1 and potentials[0]["trained_by"] == "firework"
    assert sorted(potentials[0]["reference_structures"]) == sorted(refs)  # the ANN saw Li metal
    states = {fw["state"] for fw in db.fireworks.find({}, {"state": 1})}
    assert states == {"COMPLETED"}
    report = (root / "report" / "report.md").read_text()
    assert "surrogate" in report and "| ann | demo | total |" in report
    assert (root / "report" / "per_ntm_mae.png").stat().st_size > 5000


@pytest.mark.parametrize("server", [True, False])
def test_fresh_starts_over(tmp_path, server):
    from drx_workflows.store.server import running_pid, stop

    root = tmp_path / "demo"
    root.mkdir()
    (root / "old-result.txt").write_text("from an earlier run")
    code = (
        "import sys; from pathlib import Path; from drx_workflows.demo import DemoSettings, run_demo; "
        "print(run_demo(DemoSettings(root=Path(sys.argv[1]), fresh=True, datasets=(), train=False, "
        f"server={server})))"
    )
    try:  # the bcc Li references still relax (surrogate engine): ~1 min alone
        r = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=1200,
                           env=clean_env())
        left_running = running_pid(root / "server")
    finally:
        stop(root / "server")  # whatever happened to the demo process
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (root / "old-result.txt").exists()
    if server:
        assert (root / "server" / "my_launchpad.yaml").exists() and not (root / "store.json").exists()
        assert left_running is None and "stopped in" in r.stdout
    else:
        assert (root / "store.json").exists() and not (root / "server").exists()
